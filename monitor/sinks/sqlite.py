"""Embedded SQLite sink: decodes each line into samples of the tiered store (monitor/metricsdb.py).

A spool row is one tick: its lines joined by ``"\n"`` (the host line, then one line per mount,
device or interface). A line of N fields becomes N samples (metric = field name, host, tags,
ts_ms, value); ``tags`` holds the family's tag (``mount=/``: :func:`monitor.metricsdb.encode_tags`),
any other tag is not stored, nor is the measurement name (a metric's name says its family).
One batch is one transaction (monitor/tiers.py: re-sent samples overwrite themselves).

A store found damaged (not a database, corrupt, a directory in its place) when a write opens
it (a read-only look first: :func:`monitor.sqlitedb.damage_at`) or uses it is moved aside
(:func:`monitor.sqlitedb.move_aside`): that write fails as ``Unavailable`` naming where it
went, and the retry starts a fresh store.

Retention runs after a write at most once per ``RETENTION_INTERVAL_S`` of the monotonic clock,
per tier: raw data older than ``retention_days``, minute buckets older than
``minutes_retention_days``, hour buckets older than ``hours_retention_days`` go (a coarser
tier keeps at least as long as a finer one; never further than time has passed:
:mod:`monitor.retention`). Then, while the live pages of the file exceed ``max_db_bytes``,
each tier above its share (``raw_share``; ``minutes_share`` for the one- and five-minute
tiers together; ``hours_share``) loses its oldest data until it is under ``SHRINK_TO`` of its
share. Freed pages are reused by later inserts, so the file stops growing near ``max_db_bytes``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence

from monitor import metricsdb, sqlitedb, tiers
from monitor.catalog import TAG_KEY
from monitor.config import ShipperConfig, SinkConfig
from monitor.errors import AccessDenied, MonitorError, Rejected, Unavailable
from monitor.formats import one_line
from monitor.lineprotocol import decode
from monitor.retention import RetentionCut

log = logging.getLogger(__name__)

RETENTION_INTERVAL_S = 60.0
SHRINK_TO = 0.9  # after a size cut the live data is under this fraction of max_db_bytes
MAX_SHRINK_ROUNDS = 20
Row = tiers.Row


def to_rows(lines: Sequence[str]) -> tuple[list[Row], list[str]]:
    """Rows for every decodable line of LINES (spool rows: one or more lines each), and one
    problem per spool row that holds a line that is not (``line N: why``; its other lines are
    stored)."""
    rows: list[Row] = []
    problems: list[str] = []
    for number, text in enumerate(lines, 1):
        parts = text.split("\n")
        problem = None
        for part, line in enumerate(parts, 1):
            try:
                _, sample = decode(line)
                bad = [k for k, v in sample.fields.items() if not math.isfinite(v)]
                if bad:
                    raise ValueError(f"field {bad[0]} is not a finite number")
            except ValueError as exc:
                where = (
                    f"line {number}" if len(parts) == 1 else f"line {number} (part {part} of {len(parts)})"
                )
                problem = problem or f"{where}: {exc}"
                continue
            key = TAG_KEY[sample.family]
            tags = metricsdb.encode_tags(tuple(t for t in sample.tags if t[0] == key))
            rows.extend(
                (metric, sample.host, tags, sample.ts_ms, value) for metric, value in sample.fields.items()
            )
        if problem:
            problems.append(problem)
    return rows, problems


class SQLiteSink:
    """Stores batches in the embedded SQLite database the API reads."""

    def __init__(
        self,
        config: SinkConfig,
        shipper: ShipperConfig,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = config.path
        days = {"raw": config.retention_days}
        days["minutes"] = max(days["raw"], config.minutes_retention_days)
        days["hours"] = max(days["minutes"], config.hours_retention_days)
        self._retention = {
            tier: RetentionCut(int(d * 86_400_000), monotonic=monotonic) for tier, d in days.items()
        }
        self._max_db_bytes = config.max_db_bytes
        self._shares = {"raw": config.raw_share, "minutes": config.minutes_share, "hours": config.hours_share}
        self._ids: dict[tiers.SeriesKey, int] = {}  # series ids of the open connection
        self._timeout_s = shipper.timeout_s
        self._clock = clock
        self._monotonic = monotonic
        self._next_retention_s = -math.inf  # on the monotonic clock
        self._newest_at_start_ms: int | None = None  # read before the first write
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._name = f"sqlite {config.path}"

    @property
    def name(self) -> str:
        return self._name

    def write(self, lines: Sequence[str]) -> None:
        """Store every decodable line; raise Rejected (after storing the rest) if any is not."""
        rows, problems = to_rows(lines)
        if rows:
            with self._lock:
                self._insert(rows)
        if problems:
            reason = f"{len(problems)} of {len(lines)} lines not stored (the rest were): {problems[0]}"
            raise Rejected(self._name, one_line(reason))

    def close(self) -> None:
        with self._lock:
            self._drop()

    def _insert(self, rows: list[Row]) -> None:
        try:
            if self._conn is None:
                if problem := sqlitedb.damage_at(self._path):
                    raise Unavailable(self._name, one_line(self._move_aside(problem)))
                self._conn = metricsdb.connect(self._path, timeout_s=self._timeout_s)
                if self._next_retention_s == -math.inf:  # before this process's first write
                    self._newest_at_start_ms = tiers.newest_ms(self._conn)
            with self._conn:  # one transaction: all rows or none
                tiers.store(self._conn, rows, self._ids)
        except (sqlite3.Error, OSError) as exc:  # locked, disk full, I/O error, cannot create, damaged
            self._drop()
            reason = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, sqlite3.Error) and sqlitedb.damage(exc):  # found by this write
                reason = self._move_aside(reason)
            raise Unavailable(self._name, one_line(reason)) from exc
        except AccessDenied as exc:  # the store cannot be read as this user: retried, alerted
            raise Unavailable(self._name, str(exc)) from exc
        mono_s = self._monotonic()
        if mono_s >= self._next_retention_s:
            self._next_retention_s = mono_s + RETENTION_INTERVAL_S
            try:
                self._retain(self._conn, self._clock())
            except sqlite3.Error as exc:  # the batch is stored; retention tries again later
                log.warning("%s: retention failed, will retry: %s", self._name, exc)

    def _move_aside(self, reason: str) -> str:
        """Rename the damaged store out of the way (never deleted); the next write starts a fresh one."""
        try:
            moved = sqlitedb.move_aside(self._path, reason, clock=self._clock)
        except MonitorError as exc:
            return f"{reason}; the damaged store could not be moved aside: {exc}"
        log.error(
            "%s: damaged (%s); moved aside to %s; a fresh store starts with the next write (the API"
            " shows only what is written from now on; sqlite3 %s .recover reads the old data)",
            self._name,
            reason,
            moved.moved_to,
            moved.moved_to,
        )
        return f"damaged ({reason}); moved aside to {moved.moved_to}; the next write starts a fresh store"

    def _retain(self, conn: sqlite3.Connection, now_s: float) -> None:
        with conn:
            tiers.seal_idle(conn)
        for tier, retention in self._retention.items():
            cutoff_ms = retention.cutoff_ms(int(now_s * 1000), self._newest_at_start_ms)
            with conn:
                old = tiers.delete_before(conn, tier, cutoff_ms)
                if tier == "hours":  # nothing of these series is left in any tier
                    tiers.delete_series_before(conn, cutoff_ms)
            if old:
                log.info("%s: deleted %d %s rows older than their retention", self._name, old, tier)
        if sqlitedb.live_bytes(conn) > self._max_db_bytes:
            self._shrink(conn)

    def _shrink(self, conn: sqlite3.Connection) -> None:
        """Cut each tier above SHRINK_TO of its share of max_db_bytes from its oldest end.

        Each round estimates the cut from the tier's time range (assuming data spread evenly
        over time) and re-measures, so uneven data only costs another round.
        """
        for tier, share in self._shares.items():
            target = self._max_db_bytes * share * SHRINK_TO
            deleted, cutoff = 0, None
            for _ in range(MAX_SHRINK_ROUNDS):
                used = _tier_bytes(conn, tier)
                oldest = tiers.oldest_ms(conn, tier)
                newest = tiers.newest_ms(conn)
                if used <= target or oldest is None or newest is None or oldest >= newest:
                    break
                cutoff = oldest + max(1, int((newest - oldest) * (1 - target / used)))
                with conn:
                    deleted += tiers.delete_before(conn, tier, cutoff)
            if cutoff is not None:
                log.warning(
                    "%s: %s tier above its share of max_db_bytes=%d (%g); deleted its %d oldest rows"
                    " (before ts_ms %s)",
                    self._name,
                    tier,
                    self._max_db_bytes,
                    share,
                    deleted,
                    cutoff,
                )
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _drop(self) -> None:
        self._ids.clear()  # a failed transaction may have rolled back a new series' row
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None


def _tier_bytes(conn: sqlite3.Connection, tier: str) -> int:
    """Bytes of the pages TIER's tables hold (SQLite's dbstat)."""
    sql = "SELECT coalesce(sum(pgsize), 0) FROM dbstat WHERE aggregate = 1 AND name = ?"
    return sum(int(conn.execute(sql, (name,)).fetchone()[0]) for name in tiers.TABLES[tier])
