"""The spool's budget: at most ``buffer_size`` rows and ``max_spool_bytes`` of disk, and never more
than the file system has free.

Both are checked before each append; past either, the overflow policy removes the oldest
samples in chunks of :data:`CHUNK_FRACTION` of the limit (at least the excess), so it runs
once per chunk, not on every append.

Bytes are the file's pages in use, ``(page_count - freelist_count) * page_size``, plus the WAL.
Free pages are reused before the file grows, so the file never outgrows the budget, and are
handed back to the file system once many are free (a drained backlog), so the file shrinks
again.

The limit is ``max_spool_bytes`` or, when less, what the spool's files take now plus the
file system's free space (``statvfs`` of the spool's directory, handed in) minus
:data:`DISK_RESERVE_BYTES`. The reserve stays free so that on a full disk a delete (an
eviction, an ack) and a checkpoint can still commit; a spill file never writes into it
(:meth:`ByteBudget.room_bytes`).

The WAL is checkpointed every ~2.5% of the limit (16 to :data:`MAX_CHECKPOINT_PAGES` pages)
and twice that is reserved for it; if it outgrows the reserve (a reader held a checkpoint
back) it is checkpointed (TRUNCATE) before any sample is evicted on its account. Every append
adds about three pages to the WAL (the queue's last leaf, its index's, ``sqlite_sequence``),
and a delete about as many pages as it deletes, so deletes run in pieces of at most one
checkpoint's worth (:meth:`ByteBudget.rows_per_delete`). The measurement is skipped while the
bytes appended since the last one stay under a quarter of the headroom it found, for at most
:data:`MEASURE_EVERY` appends.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from monitor import sqlitedb

log = logging.getLogger(__name__)

CHUNK_FRACTION = 0.01  # overflow removes this share of the exceeded limit at a time
MEASURE_EVERY = 100  # appends at most between two measurements of the byte budget
DISK_RESERVE_BYTES = 256 * 1024  # kept free on the file system for a delete and a checkpoint
MIN_CHECKPOINT_PAGES = 16
MAX_CHECKPOINT_PAGES = 256  # a WAL of at most ~1 MiB between checkpoints (4 KiB pages)


class FsStats(Protocol):
    """What the budget reads of ``os.statvfs``."""

    @property
    def f_bavail(self) -> int: ...
    @property
    def f_frsize(self) -> int: ...


StatVfs = Callable[[Path], FsStats]


def rows_over(depth: int, buffer_size: int) -> int:
    """Rows to remove before one more fits among DEPTH under BUFFER_SIZE: 0, or at least a chunk."""
    excess = depth + 1 - buffer_size
    return max(excess, int(buffer_size * CHUNK_FRACTION)) if excess > 0 else 0


def is_disk_full(exc: BaseException) -> bool:
    """True for SQLite's "database or disk is full" (SQLITE_FULL)."""
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == sqlite3.SQLITE_FULL


class ByteBudget:
    """The byte limit for the spool file at PATH, open on CONN; the caller holds the spool's lock."""

    def __init__(
        self, conn: sqlite3.Connection, path: Path, max_spool_bytes: int, statvfs: StatVfs = os.statvfs
    ) -> None:
        self._conn = conn
        self._path = path
        self._statvfs = statvfs
        self.page_size = self._pragma("page_size")
        self._max_bytes = self._limit_bytes = max_spool_bytes
        self._checkpoint_pages = 0
        self.disk_limit = ""  # why the disk, not max_spool_bytes, limits the spool ("" if it does not)
        # What the last measurement found, and what was appended since without measuring again.
        self._headroom_bytes = self._unmeasured_bytes = self._unmeasured_appends = 0
        self.configure(max_spool_bytes)

    def configure(self, max_spool_bytes: int) -> None:
        """Apply a (new) budget; the next append measures."""
        self._max_bytes = max_spool_bytes
        self._measured(headroom_bytes=0)
        self._fit_checkpoints(min(max_spool_bytes, self._limit_bytes))

    def surely_fits(self, incoming_bytes: int) -> bool:
        """True (and INCOMING_BYTES counted) while far from the limit: no measurement needed."""
        if self._unmeasured_appends < MEASURE_EVERY and (
            self._unmeasured_bytes + incoming_bytes < self._headroom_bytes // 4
        ):
            self._unmeasured_appends += 1
            self._unmeasured_bytes += incoming_bytes
            return True
        return False

    def over(self, incoming_bytes: int) -> int:
        """Measure: bytes to free before INCOMING_BYTES fit (0 or less: they fit).

        A WAL beyond its reserve is checkpointed first. Sets :attr:`disk_limit`.
        """
        wal_bytes = self._wal_bytes()
        while wal_bytes > self.wal_reserve_bytes and self._checkpoint("TRUNCATE"):
            wal_bytes = self._wal_bytes()
        self._limit_bytes = self._limit(wal_bytes)
        self._fit_checkpoints(self._limit_bytes)
        used = sqlitedb.live_bytes(self._conn) + max(wal_bytes, self.wal_reserve_bytes)
        over = used + incoming_bytes - self._limit_bytes
        if over <= 0:
            self._measured(headroom_bytes=-over)
        return over

    def room_bytes(self) -> int:
        """Bytes the file system can take beside the spool without touching the reserve."""
        return self.free_bytes() - DISK_RESERVE_BYTES

    def free_bytes(self) -> int:
        """The file system's free space (for unprivileged users), ``statvfs`` of the spool's directory."""
        st = self._statvfs(self._path.parent)
        return int(st.f_bavail) * int(st.f_frsize)

    def chunk_bytes(self) -> int:
        """How much the overflow policy frees at a time."""
        return max(self.page_size, int(min(self._max_bytes, self._limit_bytes) * CHUNK_FRACTION))

    def rows_for(self, n_bytes: int, depth: int) -> int:
        """About how many of the DEPTH rows hold N_BYTES (at least one)."""
        per_row = max(1, sqlitedb.live_bytes(self._conn) // max(1, depth))
        return max(1, -(-n_bytes // per_row))

    def rows_per_delete(self, depth: int) -> int:
        """The most rows one delete transaction should take: about one checkpoint's worth of WAL."""
        return max(1, self.rows_for(self._checkpoint_pages * self.page_size, depth) // 2)

    @property
    def wal_reserve_bytes(self) -> int:
        return 2 * self._checkpoint_pages * self.page_size

    def release_free_pages(self) -> None:
        """Give free pages back to the file system once there are many (incremental auto_vacuum).

        Skipped while the disk limits the spool: moving pages needs WAL space (as much as the
        pages moved), and the spool reuses free pages anyway.
        """
        if self.disk_limit:
            return
        threshold = max(64 * self.page_size, min(self._max_bytes, self._limit_bytes) // 20)
        if self._pragma("freelist_count") * self.page_size >= threshold:
            try:  # executescript steps the pragma to completion (execute() frees only one page)
                self._conn.executescript("PRAGMA incremental_vacuum")
            except sqlite3.OperationalError as exc:
                if not is_disk_full(exc):
                    raise
                log.info("%s: disk full; free pages kept in the file for reuse", self._path)

    def restart_wal(self) -> None:
        """Checkpoint so that the next write starts the WAL over in the space it already has."""
        try:
            self._checkpoint("RESTART")
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise

    def _limit(self, wal_bytes: int) -> int:
        """max_spool_bytes, or what the spool's files have plus the free space, less the reserve."""
        free = self.free_bytes()
        disk = self._file_bytes() + wal_bytes + free - DISK_RESERVE_BYTES
        if disk >= self._max_bytes:
            self.disk_limit = ""
            return self._max_bytes
        self.disk_limit = f"{free} bytes free on {self._path.parent} (reserve {DISK_RESERVE_BYTES})"
        return disk

    def _fit_checkpoints(self, limit_bytes: int) -> None:
        """Checkpoint every ~2.5% of LIMIT_BYTES; the WAL file is cut back to that after each."""
        pages = min(MAX_CHECKPOINT_PAGES, max(MIN_CHECKPOINT_PAGES, limit_bytes // self.page_size // 40))
        if pages != self._checkpoint_pages:
            self._checkpoint_pages = pages
            self._conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
            self._conn.execute(f"PRAGMA journal_size_limit={pages * self.page_size}")

    def _measured(self, *, headroom_bytes: int) -> None:
        self._headroom_bytes, self._unmeasured_bytes, self._unmeasured_appends = headroom_bytes, 0, 0

    def _file_bytes(self) -> int:
        try:
            return os.stat(self._path).st_size
        except FileNotFoundError:
            return 0

    def _wal_bytes(self) -> int:
        try:
            return os.stat(f"{self._path}-wal").st_size
        except FileNotFoundError:
            return 0

    def _checkpoint(self, mode: str) -> bool:
        """Checkpoint the WAL (TRUNCATE also cuts the file to nothing); True if it got smaller."""
        before = self._wal_bytes()
        self._conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchall()
        return self._wal_bytes() < before

    def _pragma(self, name: str) -> int:
        return int(self._conn.execute(f"PRAGMA {name}").fetchone()[0])
