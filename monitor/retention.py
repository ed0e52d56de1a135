"""Where a retention cut may go: never further than time has really passed.

Retention deletes what is older than ``now - retention``. "Now" is the wall clock, which can
jump: a forward step of a month would delete every real sample. So the cut is bounded twice:

* the first cut of a process goes no further than the newest sample stored before the process
  wrote anything, minus the retention (a clock that is already wrong at start cannot empty
  the store);
* every later cut advances by at most the time that passed on the monotonic clock since the
  previous one, which no clock step moves, give or take what NTP's slewing of the wall clock
  accounts for (up to 500 ppm, allowed twice over) and a second.

A cut held back by a bound is logged once per jump. What it costs: after a real jump (a host
that was off for weeks) old data outlives its retention by up to the length of the jump.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

SLEW = 0.001
"""How much faster than the monotonic clock the wall clock may run without a step (NTP slews
it by at most 500 ppm)."""
SLACK_MS = 1000
"""How far a later cut may run ahead of the monotonic clock besides SLEW: a step under a
second is not worth holding retention back (or a warning)."""


class RetentionCut:
    """Tracks one retention window (``retention_ms``) across calls of :meth:`cutoff_ms`."""

    def __init__(self, retention_ms: int, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.retention_ms = retention_ms
        self._monotonic = monotonic
        self._last: tuple[int, float] | None = None  # (cut in ms, monotonic s) of the previous call
        self._held_back = False

    def cutoff_ms(self, now_ms: int, newest_at_start_ms: int | None) -> int:
        """Delete what is older than the returned ms: ``now_ms - retention``, bounded as above.

        ``newest_at_start_ms``: the newest timestamp stored before this process wrote anything
        (None for an empty store); only the first call uses it.
        """
        wanted = now_ms - self.retention_ms
        mono_s = self._monotonic()
        if self._last is None:
            limit = wanted if newest_at_start_ms is None else newest_at_start_ms - self.retention_ms
            why = "the newest stored sample (the agent was stopped, or the clock is ahead?)"
        else:
            last_cut, last_mono_s = self._last
            limit = last_cut + max(0, round((mono_s - last_mono_s) * 1000 * (1 + SLEW))) + SLACK_MS
            why = "time has passed (a clock step?)"
        cut = min(wanted, limit)
        if cut < wanted and not self._held_back:
            log.warning(
                "retention: the wall clock asks to delete data up to %d ms, %.0f s further than %s;"
                " deleting only up to %d ms",
                wanted,
                (wanted - cut) / 1000,
                why,
                cut,
            )
        self._held_back = cut < wanted
        if self._last is not None:
            cut = max(cut, self._last[0])  # a clock step back never moves the cut back either
        self._last = (cut, mono_s)
        return cut
