"""validate's windows: every day judged once, and every check's query bounded by its window;
its options, and the recorded config it simulates again."""

import re

import pytest
from click.testing import CliRunner

from hospital_stream.cli.main import main
from hospital_stream.model import HospitalConfig
from hospital_stream.tools import validate


@pytest.mark.parametrize(
    ("first", "last", "days", "expected"),
    [
        (0, 65, 30, [(0, 29), (30, 59), (60, 65)]),
        (0, 59, 30, [(0, 29), (30, 59)]),
        (31, 45, 30, [(31, 45)]),
        (7, 7, 30, [(7, 7)]),
        (0, 863, 30, [(d, min(d + 29, 863)) for d in range(0, 864, 30)]),
    ],
)
def test_windows_cover_every_day_once_in_order(first, last, days, expected):
    windows = list(validate.windows(first, last, days))
    assert windows == expected
    assert [d for lo, hi in windows for d in range(lo, hi + 1)] == list(range(first, last + 1))


def test_no_window_when_no_day_is_complete():
    assert list(validate.windows(0, -1)) == []


@pytest.mark.parametrize("check", validate.CHECKS, ids=lambda c: c.name)
def test_every_check_reads_only_its_window(check):
    """Each query names both ends of its window (and at most the last complete day besides), so
    it reads a bounded range of days however long the history."""
    assert set(re.findall(r"%\((\w+)\)s", check.query)) - {"day", "tz"} == {"first", "last"}


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("bad_row", "is not KIND=N"),
        ("bad_row=two", "is not KIND=N"),
        ("bad_row=-1", "is not KIND=N"),
        ("forged=1", "is no dead-letter kind: one of invalid_message, bad_row"),
    ],
)
def test_expect_dead_letters_refuses_what_is_not_a_kind_and_a_count(value, error):
    result = CliRunner().invoke(main, ["validate", "--expect-dead-letters", value])
    assert result.exit_code == 2
    assert error in result.output


def test_a_kind_declared_twice_is_refused():
    args = ["validate", "--expect-dead-letters", "bad_row=1", "--expect-dead-letters", "bad_row=2"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "bad_row is declared twice" in result.output


@pytest.mark.parametrize(
    "config",
    [
        HospitalConfig(),
        HospitalConfig(seed=7, beds=100, population=150_000),
        HospitalConfig(beds=40, population=90_000, market_share=0.123456),
    ],
)
def test_the_recorded_config_gives_back_the_hospital_it_simulated(config):
    """A planned share is recomputed, not taken rounded; a given share is kept."""
    again = HospitalConfig.from_json(config.to_json())
    assert again == config
    assert again.share == config.share


def test_every_check_has_a_name_of_its_own():
    names = [check.name for check in validate.ALL_CHECKS]
    assert len(set(names)) == len(names)
    assert validate.CONTENT.name in names and validate.DEAD_LETTERS.name in names
