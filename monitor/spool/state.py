"""The agent's shipping state in the spool file: counters, the last write's outcome, a heartbeat.

It writes the keys :data:`monitor.status.STATE_KEYS` names, which ``/health`` and
``hostmon spool`` read from another process. Each method but :meth:`write_with_heartbeat`
writes inside the caller's transaction, so a state change commits with the queue change it
belongs to.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Literal, get_args

from monitor.spool.schema import transaction

Counter = Literal["dropped_total", "spilled_total", "rejected_total"]

COUNTERS: tuple[Counter, ...] = get_args(Counter)
ERROR_MAX_CHARS = 500  # last_error keeps the first line of a failure, at most this long
# An append refreshes the ``updated_ms`` heartbeat at most this often (and whenever the clock went
# back): /health tolerates max(300 s, 3 intervals), and skipping the upsert makes each append a
# single autocommitted INSERT.
HEARTBEAT_EVERY_MS = 5_000

_SET = "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"
_ADD = (
    "INSERT INTO state (key, value) VALUES (?, ?)"
    " ON CONFLICT(key) DO UPDATE SET value = coalesce(value, 0) + excluded.value"
)


class ShippingState:
    """Writes the ``state`` table; ``clock`` (seconds) stamps ``updated_ms``."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._heartbeat_ms: int | None = None  # updated_ms last written by write_with_heartbeat

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def create_counters(self, conn: sqlite3.Connection) -> None:
        """Start every counter at 0 unless the file already has it."""
        conn.executemany("INSERT OR IGNORE INTO state (key, value) VALUES (?, 0)", [(k,) for k in COUNTERS])

    def succeeded(self, conn: sqlite3.Connection, success_ms: int) -> None:
        """The database accepted a write at SUCCESS_MS: reachable, no error."""
        self._set(conn, last_success_ms=success_ms, last_error="", sink_reachable=1)

    def failed(self, conn: sqlite3.Connection, error: str, *, reachable: bool) -> None:
        """A write failed: the first line of ERROR (bounded) and whether the database answered."""
        first_line = (error.strip().splitlines() or [""])[0]
        self._set(conn, last_error=first_line[:ERROR_MAX_CHARS], sink_reachable=int(reachable))

    def add(self, conn: sqlite3.Connection, counter: Counter, n: int) -> None:
        """Add N to COUNTER (a negative N takes samples back)."""
        conn.execute(_ADD, (counter, n))

    def clock_stepped(self, conn: sqlite3.Connection, step_ms: int, at_ms: int) -> None:
        """The wall clock stepped by STEP_MS (+ forward, - back); AT_MS is the time after the step."""
        self._set(conn, clock_step_ms=step_ms, clock_step_at_ms=at_ms)

    def touch(self, conn: sqlite3.Connection) -> None:
        """Refresh the heartbeat."""
        self._set(conn)

    def write_with_heartbeat(
        self, conn: sqlite3.Connection, write: Callable[[sqlite3.Connection], object]
    ) -> None:
        """WRITE (one statement), with the heartbeat in its transaction when the last is not recent.

        Otherwise WRITE runs alone in autocommit mode: its own transaction, fsync'd before it
        returns, without the BEGIN/COMMIT round trips or the state upsert.
        """
        now_ms = self._now_ms()
        last_ms = self._heartbeat_ms
        if last_ms is not None and 0 <= now_ms - last_ms < HEARTBEAT_EVERY_MS:
            write(conn)
            return
        with transaction(conn):
            write(conn)
            conn.execute(_SET, ("updated_ms", now_ms))
        self._heartbeat_ms = now_ms

    def _set(self, conn: sqlite3.Connection, **values: object) -> None:
        conn.executemany(_SET, [*values.items(), ("updated_ms", self._now_ms())])
