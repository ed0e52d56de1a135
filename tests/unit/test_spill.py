"""The spill file's writer: appends that survive a concurrent claim, and the claim itself."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

from monitor.spool.spill import append_lines, claim


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
