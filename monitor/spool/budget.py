"""The spool's budget: at most ``buffer_size`` rows and ``max_spool_bytes`` of disk.

Both are checked before each append; past either, the overflow policy removes the oldest
samples in chunks of :data:`CHUNK_FRACTION` of the limit (at least the excess), so it runs
once per chunk, not on every append.

Bytes are the file's pages in use, ``(page_count - freelist_count) * page_size``, plus the WAL.
Free pages are reused before the file grows, so the file never outgrows the budget, and are
handed back to the file system once many are free (a drained backlog), so the file shrinks
again. The WAL is checkpointed every ~2.5% of the budget (at most 1000 pages) and twice that
is reserved for it; if it outgrows the reserve (a reader held a checkpoint back) it is
checkpointed (TRUNCATE) before any sample is evicted on its account. The measurement is
skipped while the bytes appended since the last one stay under a quarter of the headroom it
found, for at most :data:`MEASURE_EVERY` appends.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from monitor import sqlitedb

CHUNK_FRACTION = 0.01  # overflow removes this share of the exceeded limit at a time
MEASURE_EVERY = 100  # appends at most between two measurements of the byte budget


def rows_over(depth: int, buffer_size: int) -> int:
    """Rows to remove before one more fits among DEPTH under BUFFER_SIZE: 0, or at least a chunk."""
    excess = depth + 1 - buffer_size
    return max(excess, int(buffer_size * CHUNK_FRACTION)) if excess > 0 else 0


class ByteBudget:
    """``max_spool_bytes`` for the spool file at PATH, open on CONN; the caller holds the spool's lock."""

    def __init__(self, conn: sqlite3.Connection, path: Path, max_spool_bytes: int) -> None:
        self._conn = conn
        self._path = path
        self.page_size = self._pragma("page_size")
        self._max_bytes = max_spool_bytes
        self._wal_reserve_bytes = 0
        # What the last measurement found, and what was appended since without measuring again.
        self._headroom_bytes = self._unmeasured_bytes = self._unmeasured_appends = 0
        self.configure(max_spool_bytes)

    def configure(self, max_spool_bytes: int) -> None:
        """Apply a (new) budget; the next append measures. Sizes the WAL's checkpoints and reserve."""
        self._max_bytes = max_spool_bytes
        self._measured(headroom_bytes=0)
        checkpoint_pages = min(1000, max(16, max_spool_bytes // self.page_size // 40))
        self._wal_reserve_bytes = 2 * checkpoint_pages * self.page_size
        self._conn.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")
        self._conn.execute(f"PRAGMA journal_size_limit={checkpoint_pages * self.page_size}")

    def surely_fits(self, incoming_bytes: int) -> bool:
        """True (and INCOMING_BYTES counted) while far from the budget: no measurement needed."""
        if self._unmeasured_appends < MEASURE_EVERY and (
            self._unmeasured_bytes + incoming_bytes < self._headroom_bytes // 4
        ):
            self._unmeasured_appends += 1
            self._unmeasured_bytes += incoming_bytes
            return True
        return False

    def over(self, incoming_bytes: int) -> int:
        """Measure: bytes to free before INCOMING_BYTES fit (0 or less: they fit).

        A WAL beyond its reserve is checkpointed first.
        """
        wal_bytes = self._wal_bytes()
        while wal_bytes > self._wal_reserve_bytes and self._checkpoint():
            wal_bytes = self._wal_bytes()
        used = sqlitedb.live_bytes(self._conn) + max(wal_bytes, self._wal_reserve_bytes)
        over = used + incoming_bytes - self._max_bytes
        if over <= 0:
            self._measured(headroom_bytes=-over)
        return over

    def chunk_bytes(self) -> int:
        """How much the overflow policy frees at a time on this budget's account."""
        return max(self.page_size, int(self._max_bytes * CHUNK_FRACTION))

    def rows_for(self, n_bytes: int, depth: int) -> int:
        """About how many of the DEPTH rows hold N_BYTES (at least one)."""
        per_row = max(1, sqlitedb.live_bytes(self._conn) // max(1, depth))
        return max(1, -(-n_bytes // per_row))

    def release_free_pages(self) -> None:
        """Give free pages back to the file system once there are many (incremental auto_vacuum)."""
        threshold = max(64 * self.page_size, self._max_bytes // 20)
        if self._pragma("freelist_count") * self.page_size >= threshold:
            # executescript steps the pragma to completion (execute() frees only one page)
            self._conn.executescript("PRAGMA incremental_vacuum")

    def _measured(self, *, headroom_bytes: int) -> None:
        self._headroom_bytes, self._unmeasured_bytes, self._unmeasured_appends = headroom_bytes, 0, 0

    def _wal_bytes(self) -> int:
        try:
            return os.stat(f"{self._path}-wal").st_size
        except FileNotFoundError:
            return 0

    def _checkpoint(self) -> bool:
        """Checkpoint and truncate the WAL; True if it got smaller."""
        before = self._wal_bytes()
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return self._wal_bytes() < before

    def _pragma(self, name: str) -> int:
        return int(self._conn.execute(f"PRAGMA {name}").fetchone()[0])
