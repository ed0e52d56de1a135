"""The ticker: ticks on wall-clock multiples of the interval, kept in rhythm by the monotonic clock.

Every tick is stamped with the wall clock's aligned time in integer milliseconds,
``ts_ms = round(k * interval_s * 1000)``, so samples of every host line up in the database and a
sample's timestamp names its tick, not the moment the process woke up. The waiting itself is
measured on the monotonic clock, which no clock step moves, so sampling never stops because
the wall clock moved:

* Each wait re-aims at the next aligned tick from a fresh reading of both clocks: no drift,
  however long it runs and however much the sleeps jitter.
* A tick that comes late by one interval or more on the monotonic clock (the work overran, the
  process was suspended) is logged with how late it is and how many ticks were skipped; it takes
  the current tick's time. Missed ticks are never back-filled.
* A change of (wall - monotonic) by more than ``step_tolerance_s`` between two readings is a
  clock step (NTP, a resumed VM, an operator): it is logged with its size, reported to
  ``on_step(step_s, wall_s)``, and the ticks follow the wall clock from then on.
* After a step BACK, ticks can land on times already taken. So that no sample overwrites an
  earlier one (InfluxDB and the embedded store keep one point per series and timestamp), such a
  tick is stamped 1 ms after its aligned time — 2 ms if that was taken twice already, and so
  on; ticks at times not taken before keep their aligned stamps. Two ticks never share a
  timestamp (among the last ``MAX_RUNS`` runs of consecutive ticks, which the ticker remembers).

With ``stop``, waiting is ``stop.wait(timeout)`` (``threading.Event`` waits on the monotonic
clock), so setting the event ends the wait at once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

MAX_RUNS = 64  # runs of ticks remembered for stamping after a step back (shift < 0.1 s interval)
STEP_TOLERANCE_S = 1.0  # a smaller change of (wall - monotonic) is drift or slewing, not a step
OnStep = Callable[[float, float], None]  # (step_s: + forward / - back, wall_s after the step)


@dataclass
class _Run:
    """Ticks ``start_k`` .. ``end_k`` were taken, each stamped ``shift`` ms after its aligned time."""

    start_k: int
    end_k: int
    shift: int


class StopEvent(Protocol):
    """What :meth:`Ticker.wait_next` needs of a stop signal; ``threading.Event`` is one."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class Ticker:
    """See the module docstring. ``wait_next`` is called from one thread."""

    def __init__(
        self,
        interval_s: float,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        step_tolerance_s: float = STEP_TOLERANCE_S,
        on_step: OnStep | None = None,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self.interval_s = interval_s
        self._clock = clock
        self._monotonic = monotonic
        self._sleep = sleep
        self._tolerance_s = step_tolerance_s
        self._on_step = on_step
        self._offset_s: float | None = None  # wall - monotonic at the last reading
        self._last_k: int | None = None  # index of the last tick taken
        self._stepped = False  # a clock step was seen since the last tick was taken
        self._runs: list[_Run] = []  # the ticks taken, as runs of consecutive indexes

    def wait_next(self, stop: threading.Event | StopEvent | None = None) -> int | None:
        """Sleep until the next tick; its ``ts_ms``, or None when ``stop`` was set meanwhile."""
        if stop is not None and stop.is_set():
            return None
        wall_s, mono_s = self._read()
        target = self._target(wall_s)
        deadline_mono_s = mono_s + (target * self.interval_s - wall_s)
        late_on_entry = deadline_mono_s <= mono_s
        while (remaining_s := deadline_mono_s - self._monotonic()) > 0:
            if self._pause(remaining_s, stop):
                return None
        wall_s, mono_s = self._read()
        late_s = mono_s - deadline_mono_s
        current = target + max(0, math.floor(late_s / self.interval_s))
        if self._stepped and abs(wall_s - current * self.interval_s) > self._tolerance_s:
            current = math.floor(wall_s / self.interval_s)  # the wall clock moved: its tick now
        elif late_on_entry or current > target:
            log.warning(
                "tick late by %.3f s (work or sleep overran); %d tick(s) skipped, taking tick at %d ms",
                late_s,
                current - target,
                self._ts_ms(current),
            )
        self._stepped = False
        return self._take(current)

    # -- internals ------------------------------------------------------------------------

    def _target(self, wall_s: float) -> int:
        """The tick to wait for: the one after the last, unless the wall clock stepped away.

        After a step, the wall clock's next tick — or, when that is at most one tick before
        the next unused one (a small step back), the next unused one: better one tick late
        than a tick taken twice.
        """
        following = math.floor(wall_s / self.interval_s) + 1
        if self._last_k is None:
            return following
        if not self._stepped or 0 <= self._last_k + 1 - following <= 1:
            return self._last_k + 1
        return following

    def _read(self) -> tuple[float, float]:
        """Both clocks, read together; notices a clock step between two readings."""
        wall_s, mono_s = self._clock(), self._monotonic()
        offset_s = wall_s - mono_s
        if self._offset_s is not None and abs(offset_s - self._offset_s) > self._tolerance_s:
            step_s = offset_s - self._offset_s
            self._stepped = True
            log.warning(
                "wall clock stepped %s by %.3f s; ticks keep their rhythm on the monotonic clock"
                " and are stamped by the wall clock from now on",
                "forward" if step_s > 0 else "back",
                abs(step_s),
            )
            if self._on_step is not None:
                self._on_step(step_s, wall_s)
        self._offset_s = offset_s
        return wall_s, mono_s

    def _take(self, k: int) -> int:
        """The stamp of tick K: its aligned time, plus 1 ms for each earlier run that used it."""
        shift = 1 + max((run.shift for run in self._runs if run.start_k <= k <= run.end_k), default=-1)
        last = self._runs[-1] if self._runs else None
        if last is not None and last.shift == shift and last.end_k == k - 1:
            last.end_k = k
        else:
            if shift:
                log.warning(
                    "tick at %d ms was taken before the wall clock stepped back; stamping it and the"
                    " ticks after it that were taken before %d ms later, so that none overwrites a sample",
                    self._ts_ms(k),
                    shift,
                )
            self._runs.append(_Run(k, k, shift))
            del self._runs[:-MAX_RUNS]
        self._last_k = k
        return self._ts_ms(k) + shift

    def _ts_ms(self, k: int) -> int:
        return round(k * self.interval_s * 1000)

    def _pause(self, duration_s: float, stop: threading.Event | StopEvent | None) -> bool:
        """Sleep ``duration_s``; True when ``stop`` was set (the wait ends early then)."""
        if stop is None:
            self._sleep(duration_s)
            return False
        return stop.wait(duration_s)
