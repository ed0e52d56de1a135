"""Replaying a spill file into a sink: every line in batches, and how far a failed replay got."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import SpoolConfig
from monitor.errors import ReplayFailed, SinkError, Unavailable
from monitor.lineprotocol import Sample, decode, encode
from monitor.replay import replay
from monitor.spool import Spool
from tests.unit.test_shipper import FakeSink, fill, unavailable


def test_replay_sends_every_line_in_batches_skipping_blank_lines_and_comments(tmp_path: Path) -> None:
    spill = tmp_path / "spill.lp"
    wanted = [f"system,host=a v={i} {i}" for i in range(7)]
    spill.write_bytes(
        (
            f"# spilled by hostmon\n{wanted[0]}\n\n{wanted[1]}\r\n   \n"
            + "\n".join(wanted[2:6])
            + "\n  # a note\n"
            + wanted[6]
        ).encode()
    )
    sink = FakeSink()

    assert replay(spill, sink, batch_size=3) == 7

    assert sink.accepted == wanted
    assert [len(batch) for batch, _ in sink.attempts] == [3, 3, 1]
    assert spill.exists()  # removing it is the caller's decision


def test_replay_failure_says_how_many_lines_were_sent(tmp_path: Path) -> None:
    spill = tmp_path / "spill.lp"
    spill.write_text("".join(f"system,host=a v={i} {i}\n" for i in range(10)), encoding="utf-8")
    sink = FakeSink([None, None, unavailable(503)])

    with pytest.raises(ReplayFailed) as caught:
        replay(spill, sink, batch_size=4)

    assert caught.value.sent == 8
    assert isinstance(caught.value, SinkError) and caught.value.retryable
    assert "stopped after 8 lines" in str(caught.value)
    assert isinstance(caught.value.__cause__, Unavailable)


def test_replay_sends_exactly_what_the_spool_spilled(tmp_path: Path) -> None:
    config = SpoolConfig(
        path=tmp_path / "spool.db", spill_path=tmp_path / "spill.lp", buffer_size=100, overflow="spill"
    )
    spool = Spool(config)
    try:
        lines = fill(spool, range(150))
    finally:
        spool.close()
    sink = FakeSink()

    assert replay(tmp_path / "spill.lp", sink, batch_size=7) == 50

    assert sink.accepted == lines[:50]


def test_replay_refuses_a_batch_size_below_one(tmp_path: Path) -> None:
    (tmp_path / "spill.lp").write_text("a v=1 1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="batch_size"):
        replay(tmp_path / "spill.lp", FakeSink(), batch_size=0)


def tick_row(ts: int) -> str:
    """A tick's spool row as the agent writes it: the host line, then one line per mount."""
    samples = [
        Sample(ts, "web-1", {"cpu_usage_overall": 1.5}),
        Sample(ts, "web-1", {"filesystem_used_percent": 40.0}, (("mount", "/"),), "filesystem"),
        Sample(ts, "web-1", {"filesystem_used_percent": 70.0}, (("mount", "/srv data"),), "filesystem"),
    ]
    return "\n".join(encode(s, "system") for s in samples)


def test_multi_line_ticks_round_trip_through_spill_and_replay_without_loss_or_duplicates(
    tmp_path: Path,
) -> None:
    config = SpoolConfig(
        path=tmp_path / "spool.db", spill_path=tmp_path / "spill.lp", buffer_size=10, overflow="spill"
    )
    spool = Spool(config)
    rows = [tick_row(1000 * i) for i in range(25)]
    try:
        for i, row in enumerate(rows):
            spool.append(1000 * i, row)
        kept = [text for _, _, text in spool.peek(100)]
    finally:
        spool.close()
    spilled = rows[: len(rows) - len(kept)]
    assert spilled and kept == rows[len(spilled) :]
    sink = FakeSink()

    # A batch of 4 lines splits ticks of 3: lines are independent points, so nothing is lost.
    assert replay(tmp_path / "spill.lp", sink, batch_size=4) == 3 * len(spilled)

    expected = [line for row in spilled for line in row.split("\n")]
    assert sink.accepted == expected
    assert len(set(sink.accepted)) == len(expected)
    assert [decode(line)[1].tags for line in sink.accepted[:3]] == [
        (),
        (("mount", "/"),),
        (("mount", "/srv data"),),
    ]
