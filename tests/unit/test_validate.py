"""validate's windows: every day judged once, and every check's query bounded by its window."""

import re

import pytest

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
