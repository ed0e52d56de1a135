"""The overflow policy: what happens to the oldest samples when the spool's budget is reached.

``drop_oldest`` deletes them (``dropped_total``); ``spill`` appends their lines to
``spill_path``, fsyncs, then deletes them (``spilled_total``). If the spill file cannot be
written they are dropped instead (logged, counted as dropped): the budget is a hard limit. A
crash between the spill's fsync and the delete leaves samples in both places; replaying them
rewrites the same points (idempotent). Each application is reported as ``on_overflow(policy,
n)``, after the spool's lock is released.

The oldest samples may be the batch the shipper is sending at that moment (or the next one,
already read ahead): :class:`InFlight` tracks the rows handed out until they are acked or a
plain peek starts over. If their write then succeeds, the samples the policy dropped were
delivered after all, and the ack takes them off ``dropped_total`` again, so it counts only
samples that never reached the database. (A spilled one stays in the spill file and in
``spilled_total``; replay rewrites it, harmless.)
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Final

from monitor.config import SpoolConfig
from monitor.spool import schema, spill
from monitor.spool.state import Counter, ShippingState

log = logging.getLogger(__name__)

DROP_OLDEST: Final = "drop_oldest"
SPILL: Final = "spill"

OnOverflow = Callable[[str, int], None]  # (policy applied, samples it removed)
Events = list[tuple[str, int]]  # the same pairs, collected while the spool's lock is held


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
        on_overflow: OnOverflow | None,
    ) -> None:
        self._conn = conn
        self._state = state
        self._in_flight = in_flight
        self._on_overflow = on_overflow

    def evict(self, n: int, config: SpoolConfig, reason: str, events: Events) -> int:
        """Apply CONFIG's policy to the N oldest samples because of REASON; how many it removed.

        The application is added to EVENTS, for :meth:`report`.
        """
        policy, spill_path = config.overflow, config.spill_path
        rows = self._conn.execute(schema.OLDEST, (n,)).fetchall()
        if policy == SPILL:
            try:
                spill.append_lines(spill_path, [line for _, _, line in rows])
            except OSError as exc:
                log.error("cannot spill to %s (%s); dropping instead", spill_path, exc)
                policy = DROP_OLDEST
        counter: Counter = "spilled_total" if policy == SPILL else "dropped_total"
        if policy == DROP_OLDEST:
            self._in_flight.dropped(seq for seq, _, _ in rows)
        with schema.transaction(self._conn) as conn:
            removed = conn.executemany("DELETE FROM queue WHERE seq = ?", [(r[0],) for r in rows]).rowcount
            self._state.add(conn, counter, removed)
            self._state.touch(conn)
        where = f"spilled to {spill_path}" if policy == SPILL else "dropped"
        log.warning("%s: %s; %s the %d oldest samples", config.path, reason, where, removed)
        events.append((policy, removed))
        return removed

    def report(self, events: Events) -> None:
        """Call ``on_overflow`` for each of EVENTS (after the spool's lock is released)."""
        for policy, n in events:
            if self._on_overflow is not None and n > 0:
                self._on_overflow(policy, n)
