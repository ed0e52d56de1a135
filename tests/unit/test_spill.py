"""The spill file: appends that survive a concurrent replay, and the replay itself."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from monitor.config import SpoolConfig
from monitor.errors import ReplayFailed, SinkError, Unavailable
from monitor.spill import append_lines, claim, replay
from monitor.spool import Spool
from tests.unit.test_shipper import FakeSink, fill, unavailable


def wait_until(predicate, what: str, deadline_s: float = 10.0) -> None:
    """Poll (no fixed sleep) until PREDICATE holds; fail with WHAT after the deadline."""
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


def blocked_lock_waiters() -> int:
    """flock requests of this process currently waiting (lines with '->' in /proc/locks)."""
    pid = str(os.getpid())
    return sum(
        1 for line in Path("/proc/locks").read_text().splitlines() if "->" in line and pid in line.split()
    )


def test_append_lines_appends_complete_lines_and_cuts_a_partial_one(tmp_path: Path) -> None:
    spill = tmp_path / "dir" / "spill.lp"
    append_lines(spill, ["a v=1 1", "a v=2 2"])
    with spill.open("ab") as fh:
        fh.write(b"a v=3")  # an interrupted spill: its rows are still in the spool
    append_lines(spill, ["a v=4 4"])
    assert spill.read_text() == "a v=1 1\na v=2 2\na v=4 4\n"


def test_an_append_racing_a_claim_goes_to_a_fresh_file_not_the_claimed_one(tmp_path: Path) -> None:
    spill = tmp_path / "spill.lp"
    append_lines(spill, ["a v=1 1"])
    with spill.open("rb") as holder:  # hold the lock as a replay would
        fcntl.flock(holder.fileno(), fcntl.LOCK_EX)
        writer = threading.Thread(target=append_lines, args=(spill, ["a v=2 2"]))
        writer.start()
        wait_until(lambda: blocked_lock_waiters() == 1, "the writer to wait for the lock")
        spill.rename(tmp_path / "spill.lp.claimed")  # the writer opened the old inode
    writer.join(10)
    assert not writer.is_alive()
    assert (tmp_path / "spill.lp.claimed").read_text() == "a v=1 1\n"
    assert spill.read_text() == "a v=2 2\n"


def test_claim_waits_for_an_append_in_progress(tmp_path: Path) -> None:
    spill = tmp_path / "spill.lp"
    append_lines(spill, ["a v=1 1"])
    with spill.open("ab") as writer:  # a writer mid-append holds the lock
        fcntl.flock(writer.fileno(), fcntl.LOCK_EX)
        result: list[Path] = []
        claimer = threading.Thread(target=lambda: result.append(claim(spill, "replaying-1")))
        claimer.start()
        wait_until(lambda: blocked_lock_waiters() == 1, "claim to wait for the writer")
        assert result == []
        writer.write(b"a v=2 2\n")
        writer.flush()
    claimer.join(10)
    assert result == [tmp_path / "spill.lp.replaying-1"]
    assert result[0].read_text() == "a v=1 1\na v=2 2\n"
    assert not spill.exists()


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
