"""The durable queue: every sample is stored here (SQLite, WAL) before it is shipped.

* Durability: each append is one transaction, fsync'd before ``append`` returns
  (:func:`monitor.spool.schema.connect`), so neither an agent crash (SIGKILL) nor a power loss
  loses a sample that was appended; at most the one being appended at that moment.
* Lines are stored exactly as encoded (:mod:`monitor.lineprotocol`); the shipper sends the
  stored text, nothing is re-encoded.
* One connection guarded by one lock: the collector thread appends while the shipper thread
  (and its read-ahead) peeks and acks; every call is one short transaction.
* Order: ``peek`` reads ``ORDER BY ts_ms, seq`` through an index, so it costs the same with
  millions of rows; ``peek(after=(ts_ms, seq))`` continues after a given row the same way.
* Before each append the budget (:mod:`~monitor.spool.budget`: ``max_spool_bytes`` and the
  file system's free space) is checked and, past it, the overflow policy
  (:mod:`~monitor.spool.overflow`) applied. A full disk (SQLITE_FULL) on append applies the
  policy once and retries.
* A full disk never raises: a sample that cannot be stored even then is counted in
  ``dropped_total`` and reported (``Overflowed(disk_full=True)``); a counter that cannot be
  written is kept in memory and written with the next transaction that commits; an ack that
  cannot be written is kept in memory (:mod:`~monitor.spool.acks`). While any delivered row's
  delete is not written (that ack's, or a deferred ack's that a full disk stopped partway),
  ``peek`` hands out nothing: a row is never handed out twice unless its delivery failed.
* Acks delete at once (``ack``) or mark the rows and delete them beside the next send
  (``ack_deferred``, :mod:`~monitor.spool.acks`).
* One agent per spool file: the row count is kept in memory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Sequence

from monitor.config import SpoolConfig
from monitor.spool import budget, schema
from monitor.spool.acks import Acks, Ranges, Write, runs
from monitor.spool.budget import StatVfs, is_disk_full
from monitor.spool.overflow import DROP_OLDEST, Events, InFlight, OnOverflow, Overflow, Overflowed
from monitor.spool.state import Counter, ShippingState
from monitor.status import SpoolStatus, status_from

log = logging.getLogger(__name__)

Row = tuple[int, int, str]  # (seq, ts_ms, line)

_MAX_ROUNDS = 16  # bound on measure/evict rounds per append
_INSERT = "INSERT INTO queue (ts_ms, line) VALUES (?, ?)"


class Spool:
    """A durable queue of encoded samples, read in timestamp order. Thread-safe."""

    def __init__(
        self,
        config: SpoolConfig,
        *,
        clock: Callable[[], float] = time.time,
        on_overflow: OnOverflow | None = None,
        statvfs: StatVfs = os.statvfs,
    ) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._closed = False
        # A damaged file is moved aside and a fresh one started: ``moved_aside`` says where it went.
        self._conn, self.moved_aside = schema.open_spool(config.path, clock=clock)
        self._state = ShippingState(clock)
        self._unrecorded: Tally[Counter] = Tally()  # counts a full disk kept from being written
        self._lost_in_a_row = 0  # samples not stored since the last one that was
        self._acks = Acks(self._conn)
        self._in_flight = InFlight()
        self._bytes = budget.ByteBudget(self._conn, config.path, config.max_spool_bytes, statvfs)
        self._overflow = Overflow(
            self._conn,
            self._state,
            self._in_flight,
            self._acks,
            room_bytes=self._bytes.room_bytes,
            on_overflow=on_overflow,
        )
        if n := self._acks.delete_leftover():
            log.info("%s: deleted %d samples delivered before the last stop", config.path, n)
        self._depth = int(self._conn.execute("SELECT count(*) FROM queue").fetchone()[0])
        with schema.transaction(self._conn) as conn:
            self._state.create_counters(conn)
        log.info("%s: %d samples waiting", config.path, self._depth)

    # -- the queue ---------------------------------------------------------------------------

    def append(self, ts_ms: int, line: str) -> None:
        """Store one tick's encoded samples (one or more lines joined by ``"\\n"``, host first);
        it is on disk when this returns, unless the disk is full.

        A tick that cannot be stored even after the overflow policy ran is counted as
        dropped and reported; this never raises for a full disk.
        """
        if not line or "\r" in line or "\n\n" in line or line.startswith("\n") or line.endswith("\n"):
            raise ValueError(f"a spooled tick must be one or more non-empty lines, got {line!r}")
        events: Events = []
        try:
            with self._lock:
                self._record_unrecorded()
                try:
                    self._store(ts_ms, line, events)
                except sqlite3.OperationalError as exc:
                    if not is_disk_full(exc):
                        raise
                    self._lost(ts_ms, events)
        finally:
            self._overflow.report(events)

    def peek(self, limit: int, *, after: tuple[int, int] | None = None) -> list[Row]:
        """Up to LIMIT oldest samples as (seq, ts_ms, line), in (ts_ms, seq) order.

        A plain peek starts a new round: the rows it returns are the batch being shipped, and
        any earlier peek is forgotten. ``after=(ts_ms, seq)`` (the last row of a batch still in
        flight) reads the rows that follow it, the next batch, and keeps tracking both: the
        shipper's read-ahead. A row appended later with an older key is not among them; the
        next plain peek returns it.
        """
        if limit < 1:  # SQLite reads LIMIT -1 as "no limit"
            return []
        with self._lock:
            self._settle()
            if self._acks.any_undeleted:  # delivered rows a full disk left in the table: it would read them
                return []
            if after is None:
                cursor = self._conn.execute(schema.OLDEST, (limit,))
            else:
                cursor = self._conn.execute(schema.OLDEST_AFTER, (*after, limit))
            rows: list[Row] = cursor.fetchall()  # INTEGER, INTEGER, TEXT NOT NULL
            self._in_flight.handed_out((seq for seq, _, _ in rows), new_round=after is None)
            return rows

    def ack(self, seqs: Sequence[int], *, success_ms: int | None = None) -> bool:
        """Delete shipped samples (seqs already gone are ignored), and earlier deferred acks' rows.

        With ``success_ms`` the write's success is recorded in the same transaction (one
        fsync per shipped batch, not two). False if the disk is full and the ack is only kept
        in memory: ``peek`` returns nothing until its delete is written (as it does while an
        earlier deferred ack's rows are not deleted).
        """
        if not seqs:
            return True
        with self._lock:
            self._acked(seqs, success_ms, self._acks.delete)
            self._bytes.release_free_pages()
            return not self._acks.any_unwritten

    def ack_deferred(self, seqs: Sequence[int], *, success_ms: int | None = None) -> bool:
        """Like :meth:`ack`, but only mark the rows: the next peek, measurement or ack deletes them.

        Marked rows are out of the queue at once, for this process and every reader.
        """
        if not seqs:
            return True
        with self._lock:
            self._acked(seqs, success_ms, self._acks.defer)
            return not self._acks.any_unwritten

    def status(self) -> SpoolStatus:
        """Depth and counters as this process knows them (what a full disk kept unwritten included)."""
        with self._lock:
            self._settle()
            status = status_from(self._conn)
            if not (self._unrecorded or self._acks.any_unwritten):
                return status
            return dataclasses.replace(
                status,
                depth=status.depth - self._acks.unwritten_rows(),
                dropped_total=status.dropped_total + self._unrecorded["dropped_total"],
                spilled_total=status.spilled_total + self._unrecorded["spilled_total"],
                rejected_total=status.rejected_total + self._unrecorded["rejected_total"],
            )

    def free_bytes(self) -> int:
        """The free space of the spool's file system."""
        with self._lock:
            return self._bytes.free_bytes()

    # -- the shipping state ------------------------------------------------------------------

    def record_success(self, now_ms: int) -> None:
        with self._lock:
            self._write_state(lambda conn: self._state.succeeded(conn, now_ms))

    def record_failure(self, error: str, reachable: bool) -> None:
        with self._lock:
            self._write_state(lambda conn: self._state.failed(conn, error, reachable=reachable))

    def record_clock_step(self, step_ms: int, at_ms: int) -> None:
        with self._lock, schema.transaction(self._conn) as conn:
            self._state.clock_stepped(conn, step_ms, at_ms)

    def add_rejected(self, n: int) -> None:
        with self._lock:
            self._unrecorded["rejected_total"] += n
            self._record_unrecorded()

    # -- life cycle --------------------------------------------------------------------------

    def reconfigure(self, config: SpoolConfig) -> None:
        """Apply a new budget and policy (SIGHUP); enforced from the next append on.

        A changed ``path`` needs a restart: it is logged and the open file is kept.
        """
        with self._lock:
            if config.path != self._config.path:
                log.warning(
                    "spool.path changed to %s: a new spool path needs a restart; still using %s",
                    config.path,
                    self._config.path,
                )
                config = dataclasses.replace(config, path=self._config.path)
            self._config = config
            self._bytes.configure(config.max_spool_bytes)
        log.info(
            "%s: max_spool_bytes=%d buffer_size=%d overflow=%s",
            config.path,
            config.max_spool_bytes,
            config.buffer_size,
            config.overflow,
        )

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._record_unrecorded()
                self._settle()
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("%s: cleanup on close failed: %s", self._config.path, exc)
            if self._unrecorded:
                log.error(
                    "%s: disk full; these counts were never written: %s",
                    self._config.path,
                    dict(self._unrecorded),
                )
            self._conn.close()

    # -- internals (the caller holds the lock) -----------------------------------------------

    def _acked(
        self, seqs: Sequence[int], success_ms: int | None, remove: Callable[[Ranges, Write], tuple[int, bool]]
    ) -> None:
        """REMOVE the rows of SEQS; the write's success and delivered drops in the same transaction."""
        delivered = self._in_flight.delivered(seqs)  # dropped while their batch was being shipped

        def record(conn: sqlite3.Connection) -> None:
            if success_ms is not None:
                self._state.succeeded(conn, success_ms)
            if delivered:
                self._state.add(conn, "dropped_total", -len(delivered))

        self._acks.piece_rows = self._bytes.rows_per_delete(self._depth)
        removed, recorded = remove(runs(seqs), record)
        self._depth -= removed
        self._in_flight.acked(seqs, delivered)
        if not recorded:
            self._unrecorded["dropped_total"] -= len(delivered)
        if self._acks.any_unwritten:
            log.error(
                "%s: disk full; the ack of %d delivered samples is kept in memory (nothing more is"
                " shipped until its delete can be written)",
                self._config.path,
                len(seqs),
            )
        if delivered:
            log.info(
                "%s: %d samples dropped while their batch was being shipped were delivered;"
                " no longer counted as dropped",
                self._config.path,
                len(delivered),
            )

    def _settle(self) -> None:
        """Delete the rows of deferred (and unwritten) acks, before anything reads or measures the queue."""
        self._acks.piece_rows = self._bytes.rows_per_delete(self._depth)
        if self._acks.settle():
            self._bytes.release_free_pages()

    def _store(self, ts_ms: int, line: str, events: Events) -> None:
        """Make room for the sample and insert it; raises SQLITE_FULL if even that fails."""
        self._make_room(len(line.encode()) + self._bytes.page_size, events)
        try:
            self._insert(ts_ms, line)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc) or self._depth == 0:
                raise
            log.error("%s: disk full; applying the overflow policy", self._config.path)
            self._bytes.restart_wal()  # the next write reuses the WAL's space from its start
            n = self._bytes.rows_for(self._bytes.chunk_bytes(), self._depth)
            self._evict(n, "disk full (the file system refused a write)", events, disk_full=True)
            self._insert(ts_ms, line)
        if self._lost_in_a_row:
            log.warning(
                "%s: samples stored again after %d lost to a full disk",
                self._config.path,
                self._lost_in_a_row,
            )
            self._lost_in_a_row = 0

    def _lost(self, ts_ms: int, events: Events) -> None:
        """The sample at TS_MS could not be stored: counted as dropped, reported as a full disk."""
        self._unrecorded["dropped_total"] += 1
        self._record_unrecorded()
        self._lost_in_a_row += 1
        if self._lost_in_a_row == 1:
            log.error(
                "%s: disk full; sample %d could not be stored (counted as dropped)", self._config.path, ts_ms
            )
        free = self._bytes.free_bytes()
        reason = f"disk full: a sample could not be stored ({free} bytes free on {self._config.path.parent})"
        events.append(Overflowed(DROP_OLDEST, 1, reason, disk_full=True))

    def _record_unrecorded(self) -> None:
        """Write the counts a full disk kept in memory, if it can now."""
        if not self._unrecorded:
            return
        pending = dict(self._unrecorded)

        def add(conn: sqlite3.Connection) -> None:
            for counter, n in pending.items():
                self._state.add(conn, counter, n)
            self._state.touch(conn)

        if self._write_state(add):
            self._unrecorded.subtract(pending)
            self._unrecorded = Tally({k: n for k, n in self._unrecorded.items() if n})

    def _write_state(self, write: Write) -> bool:
        """WRITE state in a transaction; False (and nothing written) if the disk is full."""
        try:
            with schema.transaction(self._conn) as conn:
                write(conn)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            log.debug("%s: disk full; state not written", self._config.path)
            return False
        return True

    def _insert(self, ts_ms: int, line: str) -> None:
        self._state.write_with_heartbeat(self._conn, lambda conn: conn.execute(_INSERT, (ts_ms, line)))
        self._depth += 1

    def _make_room(self, incoming_bytes: int, events: Events) -> None:
        cfg = self._config
        if n := budget.rows_over(self._depth, cfg.buffer_size):
            self._evict(n, f"buffer_size {cfg.buffer_size} reached", events)
        if self._bytes.surely_fits(incoming_bytes):  # skip the page-count queries and the WAL stat
            return
        self._settle()
        for _ in range(_MAX_ROUNDS):
            over = self._bytes.over(incoming_bytes)
            if over <= 0:
                return
            if self._depth == 0:
                break
            n = self._bytes.rows_for(over + self._bytes.chunk_bytes(), self._depth)
            if disk := self._bytes.disk_limit:
                removed = self._evict(n, f"disk full: {disk}", events, disk_full=True)
            else:
                removed = self._evict(n, f"max_spool_bytes {cfg.max_spool_bytes} reached", events)
            if removed == 0:
                break
        log.warning(
            "%s: cannot get under max_spool_bytes %d%s",
            cfg.path,
            cfg.max_spool_bytes,
            f" or the disk's limit ({self._bytes.disk_limit})" if self._bytes.disk_limit else "",
        )

    def _evict(self, n: int, reason: str, events: Events, *, disk_full: bool = False) -> int:
        self._settle()  # the oldest rows may be delivered ones
        piece_rows = self._bytes.rows_per_delete(self._depth)
        removed = self._overflow.evict(
            n, self._config, reason, events, piece_rows=piece_rows, disk_full=disk_full
        )
        self._depth -= removed
        return removed
