"""Acks: the rows of shipped samples deleted at once, or marked and deleted beside the next send.

A deferred ack (``Spool.ack_deferred``, while a backlog drains) only records the batch's seq
ranges in the ``acked`` table, one small transaction; the rows are deleted by the next call
that reads or measures the queue (the shipper's read-ahead, while the next batch is in
flight). Rows in ``acked`` are gone as far as every reader is concerned: this process deletes
them before it reads (:meth:`Acks.settle`); another process's ``read_status`` leaves them out;
a crash before the delete leaves them for the next open, which deletes them first. So a crash
still re-sends at most the batch in flight.

An immediate ack deletes its rows and settles every earlier deferred ack in the same
transaction; a deferred ack settles them only when its ranges overlap theirs, so that a row
acked twice is counted once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

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

    def delete_leftover(self) -> int:
        """At open: delete the rows a deferred ack marked before the last stop; how many."""
        ranges = self._conn.execute("SELECT lo, hi FROM acked").fetchall()
        if not ranges:
            return 0
        with transaction(self._conn) as conn:
            return _delete_marked(conn, ranges)

    def delete(self, ranges: Ranges, also: Write) -> int:
        """Delete the rows of RANGES and of every deferred ack, with ALSO; rows taken off the queue."""
        return self._write(bool(self._deferred), lambda conn: _delete(conn, ranges), also)

    def defer(self, ranges: Ranges, also: Write) -> int:
        """Mark the rows of RANGES delivered, with ALSO; rows taken off the queue (marked now)."""
        removed = self._write(_overlap(ranges, self._deferred), lambda conn: _mark(conn, ranges), also)
        self._deferred.extend(ranges)
        return removed

    def settle(self) -> bool:
        """Delete the rows of deferred acks (before anything reads or measures the queue).

        True if there were any: the file may have free pages to give back.
        """
        if not self._deferred:
            return False
        self._write(True, lambda _conn: 0, lambda _conn: None)
        return True

    def _write(self, settle: bool, remove: Callable[[sqlite3.Connection], int], also: Write) -> int:
        """REMOVE and ALSO in one transaction, after the deferred acks' rows if SETTLE."""
        with transaction(self._conn) as conn:
            if settle:
                _delete_marked(conn, self._deferred)
            removed = remove(conn)
            also(conn)
        if settle:  # forgotten only once the delete committed
            self._deferred.clear()
        return removed


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


def _overlap(a: Ranges, b: Ranges) -> bool:
    return any(lo <= other_hi and other_lo <= hi for lo, hi in a for other_lo, other_hi in b)


def _delete(conn: sqlite3.Connection, ranges: Ranges) -> int:
    return sum(conn.execute(_DELETE, r).rowcount for r in ranges)


def _mark(conn: sqlite3.Connection, ranges: Ranges) -> int:
    """Record RANGES in ``acked``; the rows they still hold."""
    present = sum(conn.execute(_COUNT, r).fetchone()[0] for r in ranges)
    conn.executemany("INSERT INTO acked (lo, hi) VALUES (?, ?)", ranges)
    return int(present)


def _delete_marked(conn: sqlite3.Connection, ranges: Ranges) -> int:
    """Delete the rows of RANGES, which are all the marks in ``acked``, and the marks."""
    deleted = _delete(conn, ranges)
    conn.execute("DELETE FROM acked")
    return deleted
