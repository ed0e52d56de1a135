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
* Before each append the budget (:mod:`~monitor.spool.budget`) is checked and, past it, the
  overflow policy (:mod:`~monitor.spool.overflow`) applied. A full disk (SQLITE_FULL) on append
  applies the policy once and retries.
* Acks delete at once (``ack``) or mark the rows and delete them beside the next send
  (``ack_deferred``, :mod:`~monitor.spool.acks`).
* One agent per spool file: the row count is kept in memory.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

from monitor.config import SpoolConfig
from monitor.spool import budget, schema
from monitor.spool.acks import Acks, Ranges, Write, runs
from monitor.spool.overflow import Events, InFlight, OnOverflow, Overflow
from monitor.spool.state import ShippingState
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
    ) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._closed = False
        # A damaged file is moved aside and a fresh one started: ``moved_aside`` says where it went.
        self._conn, self.moved_aside = schema.open_spool(config.path, clock=clock)
        self._state = ShippingState(clock)
        self._acks = Acks(self._conn)
        self._in_flight = InFlight()
        self._overflow = Overflow(self._conn, self._state, self._in_flight, on_overflow)
        if n := self._acks.delete_leftover():
            log.info("%s: deleted %d samples delivered before the last stop", config.path, n)
        self._depth = int(self._conn.execute("SELECT count(*) FROM queue").fetchone()[0])
        self._bytes = budget.ByteBudget(self._conn, config.path, config.max_spool_bytes)
        with schema.transaction(self._conn) as conn:
            self._state.create_counters(conn)
        log.info("%s: %d samples waiting", config.path, self._depth)

    # -- the queue ---------------------------------------------------------------------------

    def append(self, ts_ms: int, line: str) -> None:
        """Store one encoded sample; it is on disk when this returns."""
        if not line or "\n" in line or "\r" in line:
            raise ValueError(f"a spooled sample must be exactly one line, got {line!r}")
        events: Events = []
        try:
            with self._lock:
                self._make_room(len(line.encode()) + self._bytes.page_size, events)
                try:
                    self._insert(ts_ms, line)
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode != sqlite3.SQLITE_FULL or self._depth == 0:
                        raise
                    log.error("%s: disk full; applying the overflow policy", self._config.path)
                    n = self._bytes.rows_for(self._bytes.chunk_bytes(), self._depth)
                    self._evict(n, "disk full", events)
                    self._insert(ts_ms, line)
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
            if after is None:
                cursor = self._conn.execute(schema.OLDEST, (limit,))
            else:
                cursor = self._conn.execute(schema.OLDEST_AFTER, (*after, limit))
            rows: list[Row] = cursor.fetchall()  # INTEGER, INTEGER, TEXT NOT NULL
            self._in_flight.handed_out((seq for seq, _, _ in rows), new_round=after is None)
            return rows

    def ack(self, seqs: Sequence[int], *, success_ms: int | None = None) -> None:
        """Delete shipped samples (seqs already gone are ignored), and earlier deferred acks' rows.

        With ``success_ms`` the write's success is recorded in the same transaction (one
        fsync per shipped batch, not two).
        """
        if seqs:
            with self._lock:
                self._acked(seqs, success_ms, self._acks.delete)
                self._bytes.release_free_pages()

    def ack_deferred(self, seqs: Sequence[int], *, success_ms: int | None = None) -> None:
        """Like :meth:`ack`, but only mark the rows: the next peek, measurement or ack deletes them.

        Marked rows are out of the queue at once, for this process and every reader.
        """
        if seqs:
            with self._lock:
                self._acked(seqs, success_ms, self._acks.defer)

    def status(self) -> SpoolStatus:
        with self._lock:
            self._settle()
            return status_from(self._conn)

    # -- the shipping state ------------------------------------------------------------------

    def record_success(self, now_ms: int) -> None:
        with self._lock, schema.transaction(self._conn) as conn:
            self._state.succeeded(conn, now_ms)

    def record_failure(self, error: str, reachable: bool) -> None:
        with self._lock, schema.transaction(self._conn) as conn:
            self._state.failed(conn, error, reachable=reachable)

    def record_clock_step(self, step_ms: int, at_ms: int) -> None:
        with self._lock, schema.transaction(self._conn) as conn:
            self._state.clock_stepped(conn, step_ms, at_ms)

    def add_rejected(self, n: int) -> None:
        with self._lock, schema.transaction(self._conn) as conn:
            self._state.add(conn, "rejected_total", n)
            self._state.touch(conn)

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
                self._settle()
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("%s: cleanup on close failed: %s", self._config.path, exc)
            self._conn.close()

    # -- internals (the caller holds the lock) -----------------------------------------------

    def _acked(
        self, seqs: Sequence[int], success_ms: int | None, remove: Callable[[Ranges, Write], int]
    ) -> None:
        """REMOVE the rows of SEQS; the write's success and delivered drops in the same transaction."""
        delivered = self._in_flight.delivered(seqs)  # dropped while their batch was being shipped

        def record(conn: sqlite3.Connection) -> None:
            if success_ms is not None:
                self._state.succeeded(conn, success_ms)
            if delivered:
                self._state.add(conn, "dropped_total", -len(delivered))

        self._depth -= remove(runs(seqs), record)
        self._in_flight.acked(seqs, delivered)
        if delivered:
            log.info(
                "%s: %d samples dropped while their batch was being shipped were delivered;"
                " no longer counted as dropped",
                self._config.path,
                len(delivered),
            )

    def _settle(self) -> None:
        """Delete the rows of deferred acks, before anything reads or measures the queue."""
        if self._acks.settle():
            self._bytes.release_free_pages()

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
            self._evict(n, f"max_spool_bytes {cfg.max_spool_bytes} reached", events)
        log.warning("%s: cannot get under max_spool_bytes %d", cfg.path, cfg.max_spool_bytes)

    def _evict(self, n: int, reason: str, events: Events) -> None:
        self._settle()  # the oldest rows may be delivered ones
        self._depth -= self._overflow.evict(n, self._config, reason, events)
