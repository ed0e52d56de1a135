"""Acks on a real spool file: deleted at once, or marked (deferred) and deleted beside the next send."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import SpoolConfig
from monitor.spool import Spool, acks
from monitor.status import read_status
from tests.unit.spool_helpers import (
    REPO,
    Overflows,
    SpoolFactory,
    count_rows,
    keys,
    line,
    seqs_of,
    stored_ts,
)


@pytest.mark.parametrize(
    ("seqs", "runs"),
    [
        ([5, 6, 7, 8], [(5, 8)]),
        ([8, 5, 7, 6], [(5, 8)]),
        ([1, 2, 3, 7, 8, 10], [(1, 3), (7, 8), (10, 10)]),
        ([4, 4, 5, 6], [(4, 6)]),  # a duplicate: still the right ranges
        ([3, 3, 5], [(3, 3), (5, 5)]),  # as many values as the span is long, but not a run
        ([42], [(42, 42)]),
    ],
)
def test_seqs_are_acked_as_runs_of_consecutive_integers(seqs: list[int], runs: list[tuple[int, int]]) -> None:
    assert acks.runs(seqs) == runs


def test_a_deferred_ack_takes_the_rows_out_of_depth_and_every_read_at_once(
    make_spool: SpoolFactory, tmp_path: Path
) -> None:
    spool = make_spool()
    for ts in range(10):
        spool.append(ts, line(ts))
    batch = spool.peek(4)

    spool.ack_deferred(seqs_of(batch), success_ms=123)

    # Another process reading the file while the rows are only marked leaves them out too.
    other = read_status(tmp_path / "spool.db")
    assert other is not None
    assert (other.depth, other.oldest_ts_ms, other.newest_ts_ms) == (6, 4, 9)
    assert other.last_success_ms == 123
    assert stored_ts(spool) == list(range(4, 10))  # this peek also deletes them
    assert spool.status().depth == 6


def test_the_read_ahead_deletes_the_rows_of_a_deferred_ack(make_spool: SpoolFactory, tmp_path: Path) -> None:
    spool = make_spool()
    for ts in range(9):
        spool.append(ts, line(ts))
    first = spool.peek(3)
    second = spool.peek(3, after=keys(first)[-1])
    spool.ack_deferred(seqs_of(first))

    third = spool.peek(3, after=keys(second)[-1])  # what the helper does while `second` is in flight

    assert [ts for _, ts, _ in third] == [6, 7, 8]
    assert count_rows(tmp_path / "spool.db") == 6  # really deleted, not only marked
    spool.ack_deferred(seqs_of(second))
    spool.ack(seqs_of(third))  # the last, not full batch: deleted at once, with what was marked
    assert count_rows(tmp_path / "spool.db") == 0
    assert count_rows(tmp_path / "spool.db", "acked") == 0  # no marks left behind either
    assert spool.status().depth == 0


def test_acking_the_same_rows_twice_counts_them_once(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    for ts in range(10):
        spool.append(ts, line(ts))
    batch = seqs_of(spool.peek(4))
    spool.ack_deferred(batch)
    spool.ack_deferred([*batch[2:], batch[-1] + 1])  # overlaps: only the one new row counts

    assert spool.status().depth == 5
    assert stored_ts(spool) == list(range(5, 10))


def test_drop_oldest_after_a_deferred_ack_drops_only_undelivered_samples(
    make_spool: SpoolFactory, overflows: Overflows
) -> None:
    spool = make_spool(buffer_size=100)  # chunk: 1 sample
    for ts in range(100):
        spool.append(ts, line(ts))
    spool.ack_deferred(seqs_of(spool.peek(10)))  # 0..9 delivered, only marked

    for ts in range(100, 112):  # 90 waiting + 12: the two oldest undelivered ones go
        spool.append(ts, line(ts))

    status = spool.status()
    assert (status.depth, status.dropped_total) == (100, 2)
    assert stored_ts(spool)[:2] == [12, 13]


_DEFERRED_CHILD = """
import sys, time
from pathlib import Path
from monitor.config import SpoolConfig
from monitor.spool import Spool

spool = Spool(SpoolConfig(path=Path(sys.argv[1]), spill_path=Path(sys.argv[1] + ".spill")))
for ts in range(20):
    spool.append(ts, f"system,host=crash v={ts} {ts}")
batch = spool.peek(8)
spool.ack_deferred([seq for seq, _, _ in batch])
print("acked", flush=True)
time.sleep(600)  # killed here: the rows are marked, not deleted
"""


def test_rows_of_a_deferred_ack_are_gone_after_sigkill_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _DEFERRED_CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "acked"
        assert count_rows(path) == 20  # marked only
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)

    before = read_status(path)
    assert before is not None and before.depth == 12
    spool = Spool(SpoolConfig(path=path, spill_path=tmp_path / "spill.lp"))
    try:
        assert spool.status().depth == 12
        assert stored_ts(spool) == list(range(8, 20))  # nothing delivered is sent again
    finally:
        spool.close()
    assert count_rows(path) == 12
