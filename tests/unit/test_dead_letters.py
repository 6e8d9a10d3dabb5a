"""Dead letters: the kinds the code writes are the kinds the schema allows, and the dead-letter
topic's messages round-trip into what the sink stores, old ones (without a kind) included."""

import json
import re

import pytest

from hospital_stream import db
from hospital_stream.errors import InvalidMessage
from hospital_stream.sink.postgres import check_dead_letter, parse_dead_letter
from hospital_stream.wire.dead_letters import AGENT_KINDS, DeadLetterKind, encode_dead_letter


def _kinds_allowed_by_the_schema() -> list[str]:
    """The kinds of the last migration that sets the CHECK on ``dead_letters.kind``."""
    checks = [
        check
        for m in db.migrations()
        if (check := re.search(r"CHECK \(kind IN \((.*?)\)\)", m.path.read_text(), re.DOTALL))
    ]
    assert checks, "no migration has a CHECK on kind"
    return re.findall(r"'([a-z_]+)'", checks[-1].group(1))


def test_the_enum_lists_exactly_the_kinds_the_migration_allows():
    allowed = _kinds_allowed_by_the_schema()
    assert len(allowed) == len(set(allowed))
    assert sorted(allowed) == sorted(kind.value for kind in DeadLetterKind)


@pytest.mark.parametrize("kind", sorted(AGENT_KINDS))
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


@pytest.mark.parametrize("kind", ["misc", 7, None, *sorted(set(DeadLetterKind) - AGENT_KINDS)])
def test_a_letter_of_a_kind_no_agent_sends_is_itself_a_bad_dead_letter(kind):
    raw = json.loads(encode_dead_letter("t", 0, 1, None, "r", b"x"))
    raw["kind"] = kind
    with pytest.raises(InvalidMessage, match="malformed dead letter") as refused:
        parse_dead_letter(json.dumps(raw).encode())
    assert refused.value.kind == DeadLetterKind.BAD_DEAD_LETTER


GOOD = encode_dead_letter("h.staff.changes", 0, 7, b"41", "unknown staff change", b"{}")


@pytest.mark.parametrize(
    ("raw", "key", "reason"),
    [
        (None, b"41", "tombstone"),
        (b"", b"41", "empty message"),
        (b'{"x": "' + b"a" * 950_000 + b'"}', b"41", "exceeds"),
        (b"[1]", b"41", "JSON object"),
        (json.dumps({**json.loads(GOOD), "v": 99}).encode(), b"41", "unsupported schema version"),
        (json.dumps({**json.loads(GOOD), "topic": "h.deadletter"}).encode(), b"41", "no agent dead-letters"),
        (json.dumps({**json.loads(GOOD), "offset": -1}).encode(), b"41", "not an offset"),
        (json.dumps({**json.loads(GOOD), "partition": True}).encode(), b"41", "must be int"),
        (json.dumps({**json.loads(GOOD), "payload": "zz"}).encode(), b"41", "non-hexadecimal"),
        (json.dumps({**json.loads(GOOD), "payload_bytes": 0}).encode(), b"41", "payload_bytes is less"),
        (GOOD, b"42", "its key is not the key"),
        (GOOD, None, "its key is not the key"),
    ],
)
def test_a_forged_or_broken_letter_on_the_topic_is_a_bad_dead_letter(raw, key, reason):
    with pytest.raises(InvalidMessage, match=reason) as refused:
        check_dead_letter(parse_dead_letter(raw), key, {"h.staff.changes", "h.occupancy.changes"})
    assert refused.value.kind == DeadLetterKind.BAD_DEAD_LETTER


def test_the_letter_an_agent_sends_passes_the_checks():
    letter = check_dead_letter(parse_dead_letter(GOOD), b"41", {"h.staff.changes"})
    assert (letter.source.key, letter.kind) == (b"41", DeadLetterKind.AGENT_REJECTED)
