"""Dead letters: the kinds the code writes are the kinds the schema allows, and the dead-letter
topic's messages round-trip into what the sink stores, old ones (without a kind) included."""

import json
import re

import pytest

from hospital_stream import db
from hospital_stream.errors import InvalidMessage
from hospital_stream.sink.postgres import parse_dead_letter
from hospital_stream.wire.dead_letters import DeadLetterKind, encode_dead_letter


def _kinds_allowed_by_the_schema() -> list[str]:
    (migration,) = (m for m in db.migrations() if m.name == "0009_add_dead_letter_kind_and_day")
    check = re.search(r"CHECK \(kind IN \((.*?)\)\)", migration.path.read_text(), re.DOTALL)
    assert check, "migration 0009 has no CHECK on kind"
    return re.findall(r"'([a-z_]+)'", check.group(1))


def test_the_enum_lists_exactly_the_kinds_the_migration_allows():
    allowed = _kinds_allowed_by_the_schema()
    assert len(allowed) == len(set(allowed))
    assert sorted(allowed) == sorted(kind.value for kind in DeadLetterKind)


@pytest.mark.parametrize("kind", [k for k in DeadLetterKind if k is not DeadLetterKind.UNCLASSIFIED])
def test_a_dead_letter_round_trips_through_the_topic_with_its_kind(kind):
    raw = encode_dead_letter("h.staff.changes", 3, 41, b"key", "bad change", b"\x00payload", kind)

    letter = parse_dead_letter(raw)

    assert (letter.source.topic, letter.source.partition, letter.source.offset) == ("h.staff.changes", 3, 41)
    assert (letter.source.key, letter.source.value) == (b"key", b"\x00payload")
    assert (letter.kind, letter.reason, letter.sim_day, letter.row_number) == (kind, "bad change", None, 0)


def test_an_agent_letter_is_agent_rejected_and_one_without_a_kind_too():
    assert parse_dead_letter(encode_dead_letter("t", 0, 1, None, "r", b"x")).kind == "agent_rejected"
    old = json.loads(encode_dead_letter("t", 0, 1, None, "r", b"x"))
    del old["kind"]  # as agents sent them before kinds existed
    letter = parse_dead_letter(json.dumps(old).encode())
    assert letter.kind is DeadLetterKind.AGENT_REJECTED and letter.source.value == b"x"


@pytest.mark.parametrize("kind", ["misc", "unclassified", 7, None])
def test_a_letter_of_no_known_kind_is_itself_invalid(kind):
    raw = json.loads(encode_dead_letter("t", 0, 1, None, "r", b"x"))
    raw["kind"] = kind
    with pytest.raises(InvalidMessage, match="malformed dead letter"):
        parse_dead_letter(json.dumps(raw).encode())
