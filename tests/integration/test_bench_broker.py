"""`make bench-broker` on a tiny hospital: a broker of its own per mode, every chunk back intact."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_broker
from hospital_stream.model import HospitalConfig
from hospital_stream.wire.batch import parse_batch_message

pytestmark = pytest.mark.integration

TINY = ["--days", "2", "--beds", "60", "--population", "12000", "--seed", "7", "--rounds", "1"]
MODES = ("none", "protocol-zstd", "payload-zstd")


def test_each_mode_sends_every_chunk_through_the_broker_and_reads_it_back_intact(tmp_path, capsys):
    out = tmp_path / "broker.json"
    assert bench_broker.main([*TINY, "--modes", ",".join(MODES), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    lines = {
        line.split()[0]: line for line in text.splitlines() if line.split()[:1] and line.split()[0] in MODES
    }
    assert set(lines) == set(MODES) and all(" yes " in line for line in lines.values())
    rounds = json.loads(out.read_text())["rounds"]
    figures = {mode: results[0] for mode, results in rounds.items()}
    chunks = bench_broker.day_chunks(HospitalConfig(seed=7, beds=60, population=12_000), 2)
    plain = sum(len(parse_batch_message(m).payload) for m in chunks)
    for mode, result in figures.items():
        assert (result["messages"], result["plain_bytes"], result["intact"], result["error"]) == (
            len(chunks),
            plain,
            True,
            "",
        ), mode
        assert result["produce_seconds"] > 0 and result["consume_seconds"] > 0
    # only the payload codec shrinks the messages; aiokafka compresses protocol-zstd's batches
    assert figures["payload-zstd"]["sent_bytes"] * 2 < figures["none"]["sent_bytes"]
    assert figures["protocol-zstd"]["sent_bytes"] == figures["none"]["sent_bytes"]


def test_unknown_modes_are_refused(capsys):
    with pytest.raises(SystemExit):
        bench_broker.main(["--modes", "none,brotli"])
    assert "unknown mode 'brotli'" in capsys.readouterr().err
