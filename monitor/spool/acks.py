"""Acks: the rows of shipped samples deleted at once, or marked and deleted beside the next send.

A deferred ack (``Spool.ack_deferred``, while a backlog drains) only records the batch's seq
ranges in the ``acked`` table, one small transaction; the rows are deleted by the next call
that reads or measures the queue (the shipper's read-ahead, while the next batch is in
flight). Rows in ``acked`` are gone as far as every reader is concerned: this process deletes
them before it reads (:meth:`Acks.settle`); another process's ``read_status`` leaves them out;
a crash before the delete leaves them for the next open, which deletes them first. So a crash
still re-sends at most the batch in flight.

An immediate ack settles every earlier deferred ack, then deletes its rows; a deferred ack
settles them only when its ranges overlap theirs, so that a row acked twice is counted once.
Deletes run in pieces of at most ``piece_rows`` seqs, one transaction each, so that none needs
more WAL than a checkpoint frees (a crash between two pieces re-sends the rest of that one
batch, no more).

On a full disk (SQLITE_FULL) an ack that cannot be written is kept in memory instead: its
rows are *unwritten*, out of the queue for this process, and their delete is retried by every
:meth:`Acks.settle`; a crash meanwhile re-sends that one batch, no more. (Other processes see
them as waiting until the delete is written.) A deferred ack's delete that a full disk stops
(after some of its pieces, or before the first) leaves its rows marked and in the queue table
until a later settle deletes them. Both kinds are *undeleted* (:meth:`Acks.undeleted`): the
queue table still holds delivered rows that its reads would return, so the spool hands out
nothing while any remain and the overflow policy never takes them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from monitor.spool.budget import is_disk_full
from monitor.spool.schema import transaction

Ranges = Sequence[tuple[int, int]]  # inclusive seq ranges (lo, hi)
Write = Callable[[sqlite3.Connection], object]  # more writes for the same transaction

_DELETE = "DELETE FROM queue WHERE seq BETWEEN ? AND ?"
_COUNT = "SELECT count(*) FROM queue WHERE seq BETWEEN ? AND ?"


class Acks:
    """Deletes or marks acked rows on CONN; the caller holds the spool's lock."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._deferred: list[tuple[int, int]] = []  # marked ranges whose rows are not deleted yet
        self._unwritten: list[tuple[int, int]] = []  # delivered ranges neither deleted nor marked
        self.piece_rows = 1 << 62  # most seqs one delete transaction takes (the spool sets it)

    def delete_leftover(self) -> int:
        """At open: delete the rows a deferred ack marked before the last stop; how many."""
        ranges = self._conn.execute("SELECT lo, hi FROM acked").fetchall()
        if not ranges:
            return 0
        with transaction(self._conn) as conn:
            return _delete_marked(conn, ranges)

    def delete(self, ranges: Ranges, also: Write) -> tuple[int, bool]:
        """Delete the rows of RANGES (and every deferred ack's), with ALSO.

        Returns the rows taken off the queue and whether ALSO was written; on a full disk the
        rows not deleted become unwritten.
        """
        self.settle()
        pieces = _pieces(ranges, self.piece_rows)
        removed, done = 0, 0
        try:
            for i, piece in enumerate(pieces):
                with transaction(self._conn) as conn:
                    deleted = _delete(conn, [piece])
                    if i == 0:
                        also(conn)
                removed += deleted  # committed (a piece whose COMMIT failed is kept unwritten below)
                done = i + 1
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            removed += self._keep_unwritten(pieces[done:])
        return removed, done > 0

    def defer(self, ranges: Ranges, also: Write) -> tuple[int, bool]:
        """Mark the rows of RANGES delivered, with ALSO; as :meth:`delete` returns."""
        if _overlap(ranges, self._deferred):
            self.settle()
        try:
            with transaction(self._conn) as conn:
                removed = _mark(conn, ranges)
                also(conn)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            return self._keep_unwritten(list(ranges)), False
        self._deferred.extend(ranges)
        return removed, True

    def settle(self) -> bool:
        """Delete the rows of deferred and unwritten acks (before anything reads or measures the queue).

        True if there were any: the file may have free pages to give back. On a full disk what
        is left stays for the next call.
        """
        if not (self._deferred or self._unwritten):
            return False
        try:
            if self._unwritten:
                self._delete_pieces(self._unwritten)
                self._unwritten = []
            if self._deferred:
                self._delete_pieces(self._deferred)
                with transaction(self._conn) as conn:
                    conn.execute("DELETE FROM acked")
                self._deferred.clear()  # forgotten only once the delete committed
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
        return True

    @property
    def any_unwritten(self) -> bool:
        """An ack is kept in memory only: neither its delete nor its mark is on disk."""
        return bool(self._unwritten)

    @property
    def any_undeleted(self) -> bool:
        """Delivered rows are still in the queue table: an unwritten ack's, or those of a
        deferred ack whose delete a full disk stopped (after :meth:`settle`, only on a full disk)."""
        return bool(self._unwritten or self._deferred)

    def undeleted(self, seq: int) -> bool:
        """SEQ was delivered and its row is not deleted yet."""
        return any(lo <= seq <= hi for lo, hi in (*self._unwritten, *self._deferred))

    def unwritten_rows(self) -> int:
        """How many rows the unwritten acks still hold (other readers count them as waiting)."""
        return _count(self._conn, self._unwritten)

    def undeleted_rows(self) -> int:
        """How many delivered rows the queue table still holds."""
        return _count(self._conn, [*self._unwritten, *self._deferred])

    def _keep_unwritten(self, ranges: Ranges) -> int:
        """Keep RANGES as unwritten (the disk is full); the rows they hold."""
        self._unwritten.extend(ranges)
        return _count(self._conn, ranges)

    def _delete_pieces(self, ranges: list[tuple[int, int]]) -> None:
        """Delete the rows of RANGES piece by piece; each piece done is taken off RANGES."""
        for piece in _pieces(ranges, self.piece_rows):
            with transaction(self._conn) as conn:
                _delete(conn, [piece])
            hi = ranges[0][1]
            if piece[1] >= hi:
                ranges.pop(0)
            else:
                ranges[0] = (piece[1] + 1, hi)


def runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted seqs as runs of consecutive integers: [1, 2, 3, 7, 8] -> [(1, 3), (7, 8)].

    A batch of samples that arrived in time order is one run, deleted by one range statement.
    """
    lo, hi = min(seqs), max(seqs)
    if hi - lo + 1 == len(seqs) == len(set(seqs)):
        return [(lo, hi)]  # the usual batch: one run (checked without sorting)
    found: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if found and seq == found[-1][1] + 1:
            found[-1] = (found[-1][0], seq)
        else:
            found.append((seq, seq))
    return found


def _pieces(ranges: Ranges, piece_rows: int) -> list[tuple[int, int]]:
    """RANGES cut into ranges of at most PIECE_ROWS seqs, in order."""
    step = max(1, piece_rows)
    return [(a, min(hi, a + step - 1)) for lo, hi in ranges for a in range(lo, hi + 1, step)]


def _overlap(a: Ranges, b: Ranges) -> bool:
    return any(lo <= other_hi and other_lo <= hi for lo, hi in a for other_lo, other_hi in b)


def _count(conn: sqlite3.Connection, ranges: Ranges) -> int:
    return sum(int(conn.execute(_COUNT, r).fetchone()[0]) for r in ranges)


def _delete(conn: sqlite3.Connection, ranges: Ranges) -> int:
    return sum(conn.execute(_DELETE, r).rowcount for r in ranges)


def _mark(conn: sqlite3.Connection, ranges: Ranges) -> int:
    """Record RANGES in ``acked``; the rows they still hold."""
    present = _count(conn, ranges)
    conn.executemany("INSERT INTO acked (lo, hi) VALUES (?, ?)", ranges)
    return present


def _delete_marked(conn: sqlite3.Connection, ranges: Ranges) -> int:
    """Delete the rows of RANGES, which are all the marks in ``acked``, and the marks."""
    deleted = _delete(conn, ranges)
    conn.execute("DELETE FROM acked")
    return deleted
