"""The durable spool: every sample is stored here (SQLite, WAL) before it is shipped.

Decisions, and why:

* Durability: WAL with ``synchronous=FULL``. Each append is one transaction, fsync'd before
  ``append`` returns, so neither an agent crash (SIGKILL) nor a power loss loses a sample
  that was appended; at most the one being appended at that moment. NORMAL would survive a
  process crash too, but could lose the last commits on power loss; FULL costs one fsync per
  sample (about 0.3 ms on this project's machines), nothing at one sample per interval.
* Lines are stored exactly as encoded (:mod:`monitor.lineprotocol`); the shipper sends the
  stored text, nothing is re-encoded.
* One connection guarded by one lock: the collector thread appends while the shipper thread
  peeks and acks; every call is one short transaction.
* Order: ``peek`` reads ``ORDER BY ts_ms, seq`` through ``queue_by_time`` (an index on ts_ms
  also holds the rowid, which is seq), so it costs the same with millions of rows;
  ``peek(after=(ts_ms, seq))`` continues after a given row the same way (the shipper's read-ahead).
* Budget: ``buffer_size`` rows and ``max_spool_bytes`` of disk, checked before each append.
  (The byte measurement is skipped while the bytes appended since the last one stay under a
  quarter of the headroom it found, for at most ``_MEASURE_EVERY`` appends: the agent's
  per-sample cost matters.) Bytes are the pages in use,
  ``(page_count - freelist_count) * page_size``, plus the WAL.
  Free pages are reused before the file grows, so the file never outgrows the budget; new
  files use ``auto_vacuum=INCREMENTAL`` and hand free pages back to the file system once the
  shipper has drained a backlog, so the file shrinks again. The WAL is checkpointed every
  ~2.5% of the budget (at most 1000 pages) and twice that is reserved for it; if it outgrows
  the reserve (a reader held a checkpoint back) it is checkpointed (TRUNCATE) before any
  sample is evicted on its account.
* Overflow: past a limit the policy applies to the OLDEST samples, in chunks of 1% of the
  limit (at least the excess), so it runs once per chunk, not on every append, and calls
  ``on_overflow(policy, n)`` each time. ``drop_oldest`` deletes them (``dropped_total``);
  ``spill`` appends their lines to ``spill_path``, fsyncs, then deletes them
  (``spilled_total``). If the spill file cannot be written they are dropped instead (logged,
  counted as dropped): the budget is a hard limit. A crash between the spill's fsync and the
  delete leaves samples in both places; replaying them rewrites the same points (idempotent).
  The oldest samples may be the batch the shipper is sending at that moment (or the next one,
  already read ahead): the spool tracks peeked rows until acked or a plain peek starts over; if a write
  then succeeds, the samples the policy dropped were delivered after all, and ``ack`` takes
  them off ``dropped_total`` again, so it counts only samples that never reached the database.
  (A spilled one stays in the spill file and in ``spilled_total``; replay rewrites it, harmless.)
  A full disk (SQLITE_FULL) on append applies the policy once and retries.
* Acks while a backlog drains (``ack(..., defer=True)``): deleting a 5000-row batch costs
  ~12 ms, and the ack sits between two sends, with the database idle. So a deferred ack only
  records the batch's seq ranges in the ``acked`` table (one small fsync'd transaction, 2-4 ms)
  and the rows are deleted by the next call that reads or measures the queue (the shipper's
  read-ahead helper, while the next batch is in flight). Rows in ``acked`` are gone as far as
  every reader is concerned: this process deletes them before it reads; another process's
  ``read_status`` leaves them out; a crash before the delete leaves them for the next open,
  which deletes them first. So a crash still re-sends at most the batch in flight.
* ``reconfigure`` applies a new budget or policy to the same file, enforced from the next
  append on. A changed ``path`` needs a restart: it is logged and the old file is kept.
* One agent per spool file: the row count is kept in memory.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from monitor import spill, sqlitedb
from monitor.config import SpoolConfig
from monitor.status import SpoolStatus, status_from

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    line  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_by_time ON queue (ts_ms);
CREATE TABLE IF NOT EXISTS state (
    key   TEXT PRIMARY KEY,
    value
);
CREATE TABLE IF NOT EXISTS acked (
    lo INTEGER NOT NULL,
    hi INTEGER NOT NULL
);
"""
# acked: seq ranges [lo, hi] the database accepted whose rows are not deleted yet (deferred acks).

DROP_OLDEST = "drop_oldest"
SPILL = "spill"
CHUNK_FRACTION = 0.01  # overflow removes this share of the exceeded limit at a time
_MAX_ROUNDS = 16  # bound on checkpoint/evict rounds per append
_MEASURE_EVERY = 100  # appends at most between two measurements of the byte budget
_ERROR_MAX_CHARS = 500
_SET = "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
_ADD = (
    "INSERT INTO state (key, value) VALUES (?, ?)"
    " ON CONFLICT(key) DO UPDATE SET value = coalesce(value, 0) + excluded.value"
)
_INSERT = "INSERT INTO queue (ts_ms, line) VALUES (?, ?)"
# An append refreshes the ``updated_ms`` heartbeat at most this often (and whenever the clock went
# back): /health tolerates max(300 s, 3 intervals), and skipping the upsert makes each append a
# single autocommitted INSERT.
HEARTBEAT_EVERY_MS = 5_000
# SQLite's page cache for the spool's connection, in KiB. The default (2 MiB) filled up over
# ~4,000 ticks and showed as RSS growth; the working set (the queue's two ends, a batch being
# read) needs far less, and replay was no slower with it (bench_replay, bench_soak).
CACHE_KIB = 512
_OLDEST = "SELECT seq, ts_ms, line FROM queue ORDER BY ts_ms, seq LIMIT ?"
_COUNT = "SELECT count(*) FROM queue WHERE seq BETWEEN ? AND ?"
_OLDEST_AFTER = "SELECT seq, ts_ms, line FROM queue WHERE (ts_ms, seq) > (?, ?) ORDER BY ts_ms, seq LIMIT ?"


class Spool:
    """A durable queue of encoded samples, read in timestamp order. Thread-safe."""

    def __init__(
        self,
        config: SpoolConfig,
        *,
        clock: Callable[[], float] = time.time,
        on_overflow: Callable[[str, int], None] | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._on_overflow = on_overflow
        self._lock = threading.Lock()
        self._closed = False
        self._conn = _connect(config.path)
        self._page_size = self._pragma("page_size")
        self._deferred: list[tuple[int, int]] = []  # acked seq ranges whose rows are not deleted yet
        self._delete_leftover_acked()
        self._depth = int(self._conn.execute("SELECT count(*) FROM queue").fetchone()[0])
        self._peeked: set[int] = set()  # seqs handed out by peek and not yet acked: being shipped
        self._dropped_peeked: set[int] = set()  # of those, the ones drop_oldest removed since
        self._wal_reserve_bytes = 0
        self._heartbeat_ms: int | None = None  # updated_ms last written by an append
        self._headroom_bytes = self._unmeasured_bytes = self._unmeasured_appends = 0
        self._apply_limits()
        with self._tx() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO state (key, value) VALUES (?, 0)",
                [(k,) for k in ("dropped_total", "spilled_total", "rejected_total")],
            )
        log.info("spool %s: %d samples waiting", config.path, self._depth)

    # -- the queue ---------------------------------------------------------------------------

    def append(self, ts_ms: int, line: str) -> None:
        """Store one encoded sample; it is on disk when this returns."""
        if not line or "\n" in line or "\r" in line:
            raise ValueError(f"a spooled sample must be exactly one line, got {line!r}")
        events: list[tuple[str, int]] = []
        try:
            with self._lock:
                self._make_room(len(line.encode()) + self._page_size, events)
                try:
                    self._insert(ts_ms, line)
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode != sqlite3.SQLITE_FULL or self._depth == 0:
                        raise
                    log.error("spool %s: disk full; applying the overflow policy", self._config.path)
                    self._evict(self._rows_for_bytes(self._chunk_bytes()), "disk full", events)
                    self._insert(ts_ms, line)
        finally:
            self._notify(events)

    def peek(self, limit: int, *, after: tuple[int, int] | None = None) -> list[tuple[int, int, str]]:
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
            self._delete_deferred()
            if after is None:
                cursor = self._conn.execute(_OLDEST, (limit,))
            else:
                cursor = self._conn.execute(_OLDEST_AFTER, (*after, limit))
            rows: list[tuple[int, int, str]] = cursor.fetchall()  # INTEGER, INTEGER, TEXT NOT NULL
            if after is None:
                self._peeked = {seq for seq, _, _ in rows}
                self._dropped_peeked.clear()
            else:
                self._peeked.update(seq for seq, _, _ in rows)
            return rows

    def ack(self, seqs: Sequence[int], *, success_ms: int | None = None, defer: bool = False) -> None:
        """Remove shipped samples (seqs already gone are ignored).

        With ``success_ms`` the write's success is recorded in the same transaction (one
        fsync per shipped batch, not two). Runs of consecutive seqs — the usual case, as
        samples arrive in time order — are deleted with one range statement each. With
        ``defer`` the rows are only marked (module docstring) and deleted by the next read.
        """
        if not seqs:
            return
        ranges = _runs(seqs)
        with self._lock:
            delivered = self._dropped_peeked.intersection(seqs)  # dropped while being shipped
            # Earlier deferred acks are settled in the same transaction by an immediate ack, and
            # by a deferred one for rows already marked (so that they are counted once).
            settle = bool(self._deferred) and (not defer or _overlap(ranges, self._deferred))
            with self._tx() as conn:
                if settle:
                    self._delete_marked(conn, self._deferred)
                if defer:
                    removed = sum(conn.execute(_COUNT, r).fetchone()[0] for r in ranges)
                    conn.executemany("INSERT INTO acked (lo, hi) VALUES (?, ?)", ranges)
                else:
                    removed = self._delete_ranges(conn, ranges)
                if success_ms is not None:
                    state = {"last_success_ms": success_ms, "last_error": "", "sink_reachable": 1}
                    conn.executemany(_SET, [*state.items(), ("updated_ms", self._now_ms())])
                if delivered:
                    conn.execute(_ADD, ("dropped_total", -len(delivered)))
            if settle:
                self._deferred.clear()
            if defer:
                self._deferred.extend(ranges)
            else:
                self._release_free_pages()
            self._depth -= removed
            self._peeked.difference_update(seqs)
            self._dropped_peeked -= delivered
        if delivered:
            log.info(
                "spool %s: %d samples dropped while their batch was being shipped were delivered;"
                " no longer counted as dropped",
                self._config.path,
                len(delivered),
            )

    # -- the shipping state ------------------------------------------------------------------

    def record_success(self, now_ms: int) -> None:
        self._set_state(last_success_ms=now_ms, last_error="", sink_reachable=1)

    def record_failure(self, error: str, reachable: bool) -> None:
        first_line = (error.strip().splitlines() or [""])[0]
        self._set_state(last_error=first_line[:_ERROR_MAX_CHARS], sink_reachable=int(reachable))

    def add_rejected(self, n: int) -> None:
        with self._lock, self._tx() as conn:
            conn.execute(_ADD, ("rejected_total", n))
            conn.execute(_SET, ("updated_ms", self._now_ms()))

    def status(self) -> SpoolStatus:
        with self._lock:
            self._delete_deferred()
            return status_from(self._conn)

    # -- life cycle --------------------------------------------------------------------------

    def reconfigure(self, config: SpoolConfig) -> None:
        """Apply a new budget and policy (SIGHUP); enforced from the next append on."""
        with self._lock:
            if config.path != self._config.path:
                log.warning(
                    "spool.path changed to %s: a new spool path needs a restart; still using %s",
                    config.path,
                    self._config.path,
                )
                config = dataclasses.replace(config, path=self._config.path)
            self._config = config
            self._apply_limits()
        log.info(
            "spool %s: max_spool_bytes=%d buffer_size=%d overflow=%s",
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
                self._delete_deferred()
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("spool %s: cleanup on close failed: %s", self._config.path, exc)
            self._conn.close()

    # -- internals (the caller holds the lock) -----------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _delete_ranges(self, conn: sqlite3.Connection, ranges: Sequence[tuple[int, int]]) -> int:
        return sum(conn.execute("DELETE FROM queue WHERE seq BETWEEN ? AND ?", r).rowcount for r in ranges)

    def _delete_marked(self, conn: sqlite3.Connection, ranges: Sequence[tuple[int, int]]) -> int:
        """Delete the rows of RANGES, which are all the marks in ``acked``, and the marks."""
        n = self._delete_ranges(conn, ranges)
        conn.execute("DELETE FROM acked")
        return n

    def _delete_deferred(self) -> None:
        """Delete the rows of deferred acks (before anything reads or measures the queue)."""
        if not self._deferred:
            return
        with self._tx() as conn:
            self._delete_marked(conn, self._deferred)
        self._deferred.clear()
        self._release_free_pages()

    def _delete_leftover_acked(self) -> None:
        """At open: rows a deferred ack marked before a crash were delivered; delete them."""
        ranges = self._conn.execute("SELECT lo, hi FROM acked").fetchall()
        if ranges:
            with self._tx() as conn:
                n = self._delete_marked(conn, ranges)
            log.info("spool %s: deleted %d samples delivered before the last stop", self._config.path, n)

    def _insert(self, ts_ms: int, line: str) -> None:
        now_ms = self._now_ms()
        last_ms = self._heartbeat_ms
        if last_ms is not None and 0 <= now_ms - last_ms < HEARTBEAT_EVERY_MS:
            # One statement in autocommit mode: its own transaction, fsync'd (synchronous=FULL)
            # before execute() returns, without the BEGIN/COMMIT round trips or the state upsert.
            self._conn.execute(_INSERT, (ts_ms, line))
        else:
            with self._tx() as conn:
                conn.execute(_INSERT, (ts_ms, line))
                conn.execute(_SET, ("updated_ms", now_ms))
            self._heartbeat_ms = now_ms
        self._depth += 1

    def _set_state(self, **values: object) -> None:
        with self._lock, self._tx() as conn:
            conn.executemany(_SET, [*values.items(), ("updated_ms", self._now_ms())])

    def _make_room(self, incoming_bytes: int, events: list[tuple[str, int]]) -> None:
        cfg = self._config
        excess = self._depth + 1 - cfg.buffer_size
        if excess > 0:
            n = max(excess, int(cfg.buffer_size * CHUNK_FRACTION))
            self._evict(n, f"buffer_size {cfg.buffer_size} reached", events)
        if self._unmeasured_appends < _MEASURE_EVERY and (
            self._unmeasured_bytes + incoming_bytes < self._headroom_bytes // 4
        ):  # far from the byte budget: skip the page-count queries and the WAL stat
            self._unmeasured_appends += 1
            self._unmeasured_bytes += incoming_bytes
            return
        self._delete_deferred()
        for _ in range(_MAX_ROUNDS):
            wal_bytes = self._wal_bytes()
            if wal_bytes > self._wal_reserve_bytes and self._checkpoint():
                continue
            used = self._db_bytes() + max(wal_bytes, self._wal_reserve_bytes)
            over = used + incoming_bytes - cfg.max_spool_bytes
            if over <= 0:
                self._headroom_bytes, self._unmeasured_bytes, self._unmeasured_appends = -over, 0, 0
                return
            if self._depth == 0:
                break
            n = self._rows_for_bytes(over + self._chunk_bytes())
            self._evict(n, f"max_spool_bytes {cfg.max_spool_bytes} reached", events)
        log.warning("spool %s: cannot get under max_spool_bytes %d", cfg.path, cfg.max_spool_bytes)

    def _evict(self, n: int, reason: str, events: list[tuple[str, int]]) -> None:
        """Apply the overflow policy to the N oldest samples."""
        policy, spill_path = self._config.overflow, self._config.spill_path
        self._delete_deferred()  # the oldest rows may be delivered ones
        rows = self._conn.execute(_OLDEST, (n,)).fetchall()
        if policy == SPILL:
            try:
                spill.append_lines(spill_path, [line for _, _, line in rows])
            except OSError as exc:
                log.error("spool: cannot spill to %s (%s); dropping instead", spill_path, exc)
                policy = DROP_OLDEST
        counter = "spilled_total" if policy == SPILL else "dropped_total"
        if policy == DROP_OLDEST:
            self._dropped_peeked |= self._peeked.intersection(r[0] for r in rows)
        with self._tx() as conn:
            removed = conn.executemany("DELETE FROM queue WHERE seq = ?", [(r[0],) for r in rows]).rowcount
            conn.execute(_ADD, (counter, removed))
            conn.execute(_SET, ("updated_ms", self._now_ms()))
        self._depth -= removed
        where = f"spilled to {spill_path}" if policy == SPILL else "dropped"
        log.warning("spool %s: %s; %s the %d oldest samples", self._config.path, reason, where, removed)
        events.append((policy, removed))

    def _notify(self, events: list[tuple[str, int]]) -> None:
        for policy, n in events:
            if self._on_overflow is not None and n > 0:
                self._on_overflow(policy, n)

    def _pragma(self, name: str) -> int:
        return int(self._conn.execute(f"PRAGMA {name}").fetchone()[0])

    def _db_bytes(self) -> int:
        return sqlitedb.live_bytes(self._conn)

    def _wal_bytes(self) -> int:
        try:
            return os.stat(f"{self._config.path}-wal").st_size
        except FileNotFoundError:
            return 0

    def _checkpoint(self) -> bool:
        """Checkpoint and truncate the WAL; True if it got smaller."""
        before = self._wal_bytes()
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return self._wal_bytes() < before

    def _chunk_bytes(self) -> int:
        return max(self._page_size, int(self._config.max_spool_bytes * CHUNK_FRACTION))

    def _rows_for_bytes(self, n_bytes: int) -> int:
        per_row = max(1, self._db_bytes() // max(1, self._depth))
        return max(1, -(-n_bytes // per_row))

    def _apply_limits(self) -> None:
        """Keep the WAL small: checkpoint every ~2.5% of the budget, reserve twice that for it."""
        self._headroom_bytes = self._unmeasured_bytes = self._unmeasured_appends = 0  # measure next
        checkpoint_pages = min(1000, max(16, self._config.max_spool_bytes // self._page_size // 40))
        self._wal_reserve_bytes = 2 * checkpoint_pages * self._page_size
        self._conn.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")
        self._conn.execute(f"PRAGMA journal_size_limit={checkpoint_pages * self._page_size}")

    def _release_free_pages(self) -> None:
        """Give free pages back to the file system once there are many (incremental auto_vacuum)."""
        threshold = max(64 * self._page_size, self._config.max_spool_bytes // 20)
        if self._pragma("freelist_count") * self._page_size >= threshold:
            # executescript steps the pragma to completion (execute() frees only one page)
            self._conn.executescript("PRAGMA incremental_vacuum")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted seqs as runs of consecutive integers: [1, 2, 3, 7, 8] -> [(1, 3), (7, 8)]."""
    lo, hi = min(seqs), max(seqs)
    if hi - lo + 1 == len(seqs) == len(set(seqs)):
        return [(lo, hi)]  # the usual batch: one run (checked without sorting)
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _overlap(a: Sequence[tuple[int, int]], b: Sequence[tuple[int, int]]) -> bool:
    return any(lo <= other_hi and other_lo <= hi for lo, hi in a for other_lo, other_hi in b)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlitedb.connect_writer(
        path, synchronous="FULL", cache_kib=CACHE_KIB, isolation_level=None, auto_vacuum="INCREMENTAL"
    )
    conn.executescript(SCHEMA)
    return conn
