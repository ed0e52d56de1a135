"""The overflow policy: what happens to the oldest samples when the spool's budget is reached.

``drop_oldest`` deletes them (``dropped_total``); ``spill`` appends their lines to
``spill_path``, fsyncs, then deletes them (``spilled_total``). If the spill file cannot be
written they are dropped instead (logged, counted as dropped): the budget is a hard limit. A
crash between the spill's fsync and the delete leaves samples in both places; replaying them
rewrites the same points (idempotent). Each application is reported as
``on_overflow(Overflowed(...))``, after the spool's lock is released.

The oldest samples may be the batch the shipper is sending at that moment (or the next one,
already read ahead): :class:`InFlight` tracks the rows handed out until they are acked or a
plain peek starts over. If their write then succeeds, the samples the policy dropped were
delivered after all, and the ack takes them off ``dropped_total`` again, so it counts only
samples that never reached the database. (A spilled one stays in the spill file and in
``spilled_total``; replay rewrites it, harmless.)

On a full disk the spill file only writes into the file system's free space above the
budget's reserve; beyond it the samples are dropped. Rows are deleted in pieces of at most
``piece_rows``, each its own transaction with its counter, so a delete never needs more WAL
than a checkpoint frees; rows an ack delivered but could not delete yet
(:meth:`monitor.spool.acks.Acks.undeleted`) are never taken. Only rows whose delete committed
count as dropped, for ``dropped_total`` and for :class:`InFlight` alike.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from monitor.config import Overflow as Policy
from monitor.config import SpoolConfig
from monitor.spool import schema, spill
from monitor.spool.acks import Acks
from monitor.spool.budget import is_disk_full
from monitor.spool.state import Counter, ShippingState

log = logging.getLogger(__name__)

DROP_OLDEST: Final[Policy] = "drop_oldest"
SPILL: Final[Policy] = "spill"


@dataclass(frozen=True)
class Overflowed:
    """Samples the spool could not keep: one application of the policy, or one sample not stored."""

    policy: str  # DROP_OLDEST or SPILL: what became of them
    n: int
    reason: str  # e.g. "max_spool_bytes 1048576 reached", "disk full: 0 bytes free on /var/lib/..."
    disk_full: bool = False  # the file system's free space was the limit, not the configured budget


OnOverflow = Callable[[Overflowed], None]
Events = list[Overflowed]  # collected while the spool's lock is held, reported after


class InFlight:
    """The seqs handed out by peek and not acked yet, and those of them drop_oldest removed."""

    def __init__(self) -> None:
        self._peeked: set[int] = set()
        self._dropped: set[int] = set()

    def handed_out(self, seqs: Iterable[int], *, new_round: bool) -> None:
        """SEQS were peeked; a NEW_ROUND (a plain peek) forgets every earlier batch."""
        if new_round:
            self._peeked = set(seqs)
            self._dropped.clear()
        else:
            self._peeked.update(seqs)

    def dropped(self, seqs: Iterable[int]) -> None:
        """drop_oldest removed SEQS; those being shipped are remembered."""
        self._dropped |= self._peeked.intersection(seqs)

    def delivered(self, seqs: Sequence[int]) -> set[int]:
        """Of acked SEQS, those drop_oldest had removed: delivered after all."""
        return self._dropped.intersection(seqs)

    def acked(self, seqs: Sequence[int], delivered: set[int]) -> None:
        """The ack of SEQS (DELIVERED among them) committed: forget them."""
        self._peeked.difference_update(seqs)
        self._dropped -= delivered


class Overflow:
    """Applies the policy to the oldest rows on CONN; the caller holds the spool's lock."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        state: ShippingState,
        in_flight: InFlight,
        acks: Acks,
        *,
        room_bytes: Callable[[], int],
        on_overflow: OnOverflow | None,
    ) -> None:
        self._conn = conn
        self._state = state
        self._in_flight = in_flight
        self._acks = acks
        self._room_bytes = room_bytes  # what a spill may write (the file system's free space)
        self._on_overflow = on_overflow

    def evict(
        self, n: int, config: SpoolConfig, reason: str, events: Events, *, piece_rows: int, disk_full: bool
    ) -> int:
        """Apply CONFIG's policy to the N oldest samples because of REASON; how many it removed.

        The application is added to EVENTS, for :meth:`report`. On a full disk it stops at the
        first piece it cannot delete (the pieces before stay deleted and counted).
        """
        policy, spill_path = config.overflow, config.spill_path
        skipped = self._acks.undeleted_rows()
        rows = self._conn.execute(schema.OLDEST, (n + skipped,)).fetchall()
        rows = [row for row in rows if not self._acks.undeleted(row[0])][:n]
        if policy == SPILL:
            policy = self._spill(spill_path, [text for _, _, text in rows])
        counter: Counter = "spilled_total" if policy == SPILL else "dropped_total"
        where = f"spilled to {spill_path}" if policy == SPILL else "dropped"
        removed = 0
        try:
            for start in range(0, len(rows), max(1, piece_rows)):
                piece = rows[start : start + max(1, piece_rows)]
                with schema.transaction(self._conn) as conn:
                    deleted = conn.executemany("DELETE FROM queue WHERE seq = ?", [(r[0],) for r in piece])
                    self._state.add(conn, counter, deleted.rowcount)
                    self._state.touch(conn)
                removed += deleted.rowcount
                if policy == DROP_OLDEST:  # committed: these were dropped
                    self._in_flight.dropped(seq for seq, _, _ in piece)
        except sqlite3.OperationalError as exc:
            if not is_disk_full(exc):
                raise
            log.error(
                "%s: disk full; cannot even delete the oldest samples (%d of %d done)",
                config.path,
                removed,
                len(rows),
            )
        finally:
            if removed:
                log.warning("%s: %s; %s the %d oldest samples", config.path, reason, where, removed)
                events.append(Overflowed(policy, removed, reason, disk_full))
        return removed

    def _spill(self, spill_path: Path, lines: list[str]) -> Policy:
        """Append LINES to the spill file; the policy that applied (DROP_OLDEST if it could not)."""
        needed = sum(len(text.encode()) + 1 for text in lines)
        room = self._room_bytes()
        if needed > room:
            log.error(
                "cannot spill to %s: %d bytes needed, %d free above the reserve; dropping instead",
                spill_path,
                needed,
                max(0, room),
            )
            return DROP_OLDEST
        try:
            spill.append_lines(spill_path, lines)
        except OSError as exc:
            log.error("cannot spill to %s (%s); dropping instead", spill_path, exc)
            return DROP_OLDEST
        return SPILL

    def report(self, events: Events) -> None:
        """Call ``on_overflow`` for each of EVENTS (after the spool's lock is released)."""
        for event in events:
            if self._on_overflow is not None and event.n > 0:
                self._on_overflow(event)
