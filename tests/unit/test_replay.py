"""Replaying a spill file into a sink: every line in batches, and how far a failed replay got."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import SpoolConfig
from monitor.errors import ReplayFailed, SinkError, Unavailable
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
