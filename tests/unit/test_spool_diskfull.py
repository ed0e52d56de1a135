"""The spool on a nearly full disk, with the file system's free space faked (``statvfs`` handed in).

The fake file system has a fixed capacity; what it has free is that capacity less what the
spool's files (and the spill file) really take on disk, so the spool meets exactly the limit a
real small file system would set. (The real thing, a tmpfs, is in tests/integration/test_disk_full.py.)
The last tests put the spool on a real tmpfs, to meet SQLITE_FULL itself at a chosen statement.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from monitor.config import MiB, SpoolConfig
from monitor.spool import Overflowed, Spool
from monitor.spool.budget import DISK_RESERVE_BYTES
from tests.tmpfs import fill, skip_unless_mountable, small_filesystem
from tests.unit.spool_helpers import (
    NOW_S,
    FillWhen,
    Overflows,
    count_rows,
    deletes_seqs_in,
    disk_bytes,
    keys,
    line,
    seqs_of,
)

BLOCK = 4096
W = 30  # fields per line: ~700 bytes, so that a few thousand samples fill the disk


class FakeFileSystem:
    """``statvfs`` of a file system of CAPACITY bytes holding the files in DIRECTORY."""

    def __init__(self, directory: Path, capacity: int) -> None:
        self.directory = directory
        self.capacity = capacity
        self.calls: list[Path] = []

    def used(self) -> int:
        return sum(p.stat().st_size for p in self.directory.iterdir() if p.is_file())

    def free(self) -> int:
        return max(0, self.capacity - self.used())

    def __call__(self, path: Path) -> SimpleNamespace:
        self.calls.append(Path(path))
        return SimpleNamespace(f_bavail=self.free() // BLOCK, f_frsize=BLOCK)


@pytest.fixture
def fs(tmp_path: Path) -> FakeFileSystem:
    return FakeFileSystem(tmp_path, capacity=MiB)


@pytest.fixture
def open_spool(tmp_path: Path, fs: FakeFileSystem, overflows: Overflows):  # type: ignore[no-untyped-def]
    opened: list[Spool] = []

    def make(**settings: object) -> Spool:
        config = SpoolConfig(path=tmp_path / "spool.db", spill_path=tmp_path / "spill.lp")
        config = dataclasses.replace(config, **settings)  # type: ignore[arg-type]
        spool = Spool(config, clock=lambda: NOW_S, on_overflow=overflows, statvfs=fs)
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        spool.close()


def test_the_budget_keeps_within_the_free_space_less_the_reserve_and_says_the_disk_is_full(
    open_spool, fs: FakeFileSystem, overflows: Overflows, tmp_path: Path
) -> None:
    spool = open_spool()  # max_spool_bytes 256 MiB: far more than the 2 MiB the disk has
    largest = 0
    for ts in range(3000):
        spool.append(ts, line(ts, width=W))
        largest = max(largest, fs.used())

    status = spool.status()
    assert largest <= fs.capacity - DISK_RESERVE_BYTES
    assert status.dropped_total == overflows.total("drop_oldest") > 0
    assert status.depth + status.dropped_total == 3000
    assert status.oldest_ts_ms == status.dropped_total  # the oldest went first
    assert status.depth * len(line(0, width=W)) > MiB // 3  # the space is used, not only reserved
    assert {e.disk_full for e in overflows.events} == {True}
    reason = overflows.events[0].reason
    assert f"bytes free on {tmp_path}" in reason and f"reserve {DISK_RESERVE_BYTES}" in reason
    assert fs.calls and all(p == tmp_path for p in fs.calls)  # statvfs of the spool's directory


def test_the_wal_stays_small_on_a_small_disk(open_spool, fs: FakeFileSystem, tmp_path: Path) -> None:
    spool = open_spool()
    wal = Path(f"{tmp_path / 'spool.db'}-wal")
    largest_wal = 0
    for ts in range(600):
        spool.append(ts, line(ts, width=W))
        largest_wal = max(largest_wal, wal.stat().st_size if wal.exists() else 0)

    # 16-page checkpoints (2.5% of a 1 MiB limit is less): a few dozen pages at most, not 1000.
    assert largest_wal <= 40 * (4096 + 24)
    assert spool.status().dropped_total == 0  # 600 samples fit


def test_the_configured_budget_applies_when_the_disk_has_room(
    open_spool, fs: FakeFileSystem, overflows: Overflows
) -> None:
    fs.capacity = 64 * MiB
    spool = open_spool(max_spool_bytes=MiB)
    for ts in range(2000):
        spool.append(ts, line(ts, width=W))

    assert overflows.total("drop_oldest") > 0
    assert {e.disk_full for e in overflows.events} == {False}
    assert "max_spool_bytes 1048576 reached" in overflows.events[0].reason
    assert disk_bytes(fs.directory / "spool.db") <= MiB


def test_space_that_returns_lifts_the_disk_limit(
    open_spool, fs: FakeFileSystem, overflows: Overflows
) -> None:
    spool = open_spool()
    for ts in range(2000):
        spool.append(ts, line(ts, width=W))
    held_on_a_full_disk = spool.status().depth
    dropped = spool.status().dropped_total
    assert dropped > 0

    fs.capacity = 4 * MiB  # another file was deleted
    for ts in range(2000, 3000):
        spool.append(ts, line(ts, width=W))

    status = spool.status()
    assert status.dropped_total == dropped  # nothing more lost
    assert status.depth == held_on_a_full_disk + 1000


def test_spill_never_writes_into_the_reserve_and_drops_instead_counted(
    open_spool, fs: FakeFileSystem, overflows: Overflows, tmp_path: Path
) -> None:
    spool = open_spool(overflow="spill")
    largest = 0
    for ts in range(3000):
        spool.append(ts, line(ts, width=W))
        largest = max(largest, fs.used())

    status = spool.status()
    spilled = (tmp_path / "spill.lp").read_text(encoding="utf-8").splitlines()
    assert largest <= fs.capacity - DISK_RESERVE_BYTES // 2  # the reserve is not spent on spilling
    assert len(spilled) == status.spilled_total > 0
    assert status.dropped_total == overflows.total("drop_oldest") > 0  # the spill had no room left
    assert status.depth + status.spilled_total + status.dropped_total == 3000
    assert spilled == [line(ts, width=W) for ts in range(len(spilled))]  # the oldest, unchanged


def test_a_sample_that_cannot_be_stored_at_all_is_counted_as_dropped_never_raised(
    make_spool, overflows: Overflows
) -> None:
    spool = make_spool()
    for ts in range(20):
        spool.append(ts, line(ts))
    # SQLite refuses to grow the file: a huge line cannot be stored even after eviction.
    pages = spool._conn.execute("PRAGMA page_count").fetchone()[0]
    spool._conn.execute(f"PRAGMA max_page_count={pages}")

    spool.append(20, line(20, width=4000))  # ~100 kB: needs overflow pages the file cannot get
    spool.append(21, line(21))

    status = spool.status()
    assert status.newest_ts_ms == 21
    assert status.depth + status.dropped_total == 22
    assert 20 not in [ts for _, ts, _ in spool.peek(100)]
    disk_events = [e for e in overflows.events if e.disk_full]
    assert disk_events and "could not be stored" in disk_events[-1].reason


# -- on a real full disk (a tmpfs): deletes that SQLite cannot write (SQLITE_FULL) --------------

BACKLOG = 1500  # rows of ~700 bytes: ~1 MiB, several pieces per delete


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs (root only; skipped elsewhere, failed in CI) with BACKLOG rows in spool.db
    and its WAL checkpointed away, so that every delete needs new space for its WAL."""
    skip_unless_mountable()
    with small_filesystem(tmp_path / "state", 3 * MiB) as directory:
        spool = Spool(_config(directory), clock=lambda: NOW_S)
        for ts in range(BACKLOG):
            spool.append(ts, line(ts, width=W))
        spool.close()
        yield directory


def _config(directory: Path) -> SpoolConfig:
    return SpoolConfig(path=directory / "spool.db", spill_path=directory / "spill.lp")


def test_delivered_rows_whose_delete_a_full_disk_cut_short_are_never_handed_out_again(tiny_dir: Path) -> None:
    """The order the agent's log showed: a full batch in flight with the next one read ahead,
    its ack deferred; the disk fills; the read-ahead's ack is only kept in memory; later the
    kept delete commits but the deferred one stops after its first pieces."""
    spool = Spool(_config(tiny_dir), clock=lambda: NOW_S)
    try:
        first = spool.peek(600)
        ahead = spool.peek(300, after=keys(first)[-1])
        assert spool.ack_deferred(seqs_of(first))
        filler = fill(tiny_dir, leave_free_bytes=0)
        assert spool.ack(seqs_of(ahead)) is False  # kept in memory
        assert spool._depth == BACKLOG - 900  # a piece whose COMMIT failed is not taken off twice
        assert spool.peek(600) == []
        filler.unlink()
        disk = FillWhen(spool, tiny_dir, deletes_seqs_in(first[0][0], first[-1][0], after_the_first=True))

        handed_out = spool.peek(600)  # the kept delete commits; the deferred one stops partway

        assert disk.filler is not None, "the disk never filled during the deferred ack's delete"
        assert handed_out == []  # (its undeleted rows were handed out again: sent twice)
        assert 0 < count_rows(tiny_dir / "spool.db") - 600 < 600  # some of its pieces committed
        assert spool.status().depth == BACKLOG - 900
        disk.filler.unlink()
        rest = spool.peek(600)
        assert [ts for _, ts, _ in rest] == list(range(900, BACKLOG))  # each row once, in order
        assert count_rows(tiny_dir / "spool.db") == BACKLOG - 900
    finally:
        spool.close()


def test_rows_a_full_disk_kept_from_being_evicted_are_not_uncounted_when_their_batch_is_acked(
    tiny_dir: Path,
) -> None:
    """drop_oldest picks rows of the batch in flight, but the disk refuses their delete: they
    were never dropped, so delivering them takes nothing off dropped_total."""
    spool = Spool(_config(tiny_dir), clock=lambda: NOW_S)
    try:
        batch = spool.peek(100)
        filler = fill(tiny_dir, leave_free_bytes=0)
        spool.append(BACKLOG, line(BACKLOG, width=W))  # neither an eviction nor the insert commits
        assert spool.status().dropped_total == 1  # the sample that could not be stored
        filler.unlink()

        assert spool.ack(seqs_of(batch)) is True

        status = spool.status()
        assert status.dropped_total == 1
        assert status.depth == BACKLOG - 100
        assert [ts for _, ts, _ in spool.peek(1)] == [100]
    finally:
        spool.close()


def test_a_deferred_delete_the_full_disk_stopped_keeps_its_rows_from_eviction(tiny_dir: Path) -> None:
    """Rows of a delivered batch whose delete is not written yet are not the oldest samples to
    drop: evicting them would count delivered samples as lost (and take them off depth twice)."""
    events: list[Overflowed] = []
    spool = Spool(_config(tiny_dir), clock=lambda: NOW_S, on_overflow=events.append)
    try:
        first = spool.peek(300)
        assert spool.ack_deferred(seqs_of(first))
        disk = FillWhen(spool, tiny_dir, deletes_seqs_in(first[0][0], first[-1][0]))
        assert spool.peek(10) == []  # the deferred delete could not be written
        assert disk.filler is not None
        disk.filler.unlink()
        spool._conn.set_trace_callback(None)
        spool.reconfigure(dataclasses.replace(_config(tiny_dir), buffer_size=BACKLOG - 300))

        spool._evict(50, "a test's eviction", [])  # what the budget does past a limit

        status = spool.status()
        assert status.dropped_total == 50
        assert status.depth == BACKLOG - 300 - 50
        assert [ts for _, ts, _ in spool.peek(1)] == [350]  # the 50 oldest undelivered went
    finally:
        spool.close()
