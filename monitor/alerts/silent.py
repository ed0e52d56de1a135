"""The silent-host rule: a host whose newest sample stops advancing fires an alert, once.

An agent cannot report its own death, so the API evaluates this rule on the fleet the store
knows (``store.hosts()``: every host and the time of its newest sample):

- A host FIRES ``host_silent`` once when its newest sample is older than ``api.silent_after_s``
  by the wall clock *and* has not advanced for that long by the monotonic clock (measured from
  the evaluation that last saw it advance, or first saw the host); it RESOLVES once at the first
  evaluation that sees a newer sample (or when the host is gone from the store: its samples
  expired). So a step of the wall clock never fires a live host: forward, the samples keep
  advancing; back (the agents on the stepped machine write older times), the newest sample is
  "younger" than ever. A dead host's alert is delayed by a backward step, not lost; one
  already silent when the API starts fires ``silent_after_s`` after the start.
- The state survives a restart of the API: a host whose last ``host_silent`` event in the alert
  log is a fire is firing; it resolves when its samples are seen to advance, or at once when
  its newest sample is younger than ``silent_after_s`` by the wall clock.

Events go through :class:`~monitor.alerts.notify.Notifier`, as the agent's rules' do: a line
of alerts.log (``value`` the silence in seconds, ``op`` ``>=``, ``threshold`` the configured
time) and, with ``api.silent_webhook``, a POST.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from monitor.alerts.history import AlertHistory
from monitor.alerts.log import FIRING, RESOLVED, AlertEvent, AlertState
from monitor.alerts.notify import Notifier
from monitor.config import Config, Severity
from monitor.errors import MonitorError
from monitor.formats import iso_ms, number

log = logging.getLogger(__name__)

RULE = "host_silent"
MIN_CHECK_INTERVAL_S = 0.5
MAX_CHECK_INTERVAL_S = 5.0


class Seen(Protocol):
    """A host and the time of its newest sample (``monitor.api.stores.HostSeen``)."""

    @property
    def host(self) -> str: ...

    @property
    def last_ms(self) -> int: ...


@dataclass
class _Host:
    last_ms: int
    changed_s: float  # monotonic time the evaluation saw last_ms advance (or first saw the host)
    firing: bool = False


def check_interval_s(silent_after_s: float) -> float:
    """How often the API evaluates the rule: a fifth of the silent time, 0.5 to 5 s."""
    return min(MAX_CHECK_INTERVAL_S, max(MIN_CHECK_INTERVAL_S, silent_after_s / 5))


class SilentHosts:
    """The rule's state over the fleet; :meth:`evaluate` is called from one thread."""

    def __init__(
        self,
        notifier: Notifier,
        silent_after_s: float,
        *,
        severity: Severity = "warning",
        webhook: str = "",
        firing_hosts: Iterable[str] = (),
    ) -> None:
        self._notifier = notifier
        self.silent_after_s = silent_after_s
        self._severity = severity
        self._webhook = webhook
        self._restored = set(firing_hosts)  # firing by the log; cleared by the first evaluation
        self._hosts: dict[str, _Host] = {}

    def firing(self) -> list[str]:
        return sorted(h for h, s in self._hosts.items() if s.firing)

    def evaluate(self, seen: Sequence[Seen], now_ms: int, mono_s: float) -> None:
        """One evaluation over SEEN (every host of the store) at wall NOW_MS, monotonic MONO_S."""
        silent_ms = self.silent_after_s * 1000
        for h in seen:
            state = self._hosts.get(h.host)
            if state is None:
                state = self._hosts[h.host] = _Host(h.last_ms, mono_s, h.host in self._restored)
                if state.firing and now_ms - h.last_ms < silent_ms:  # came back while we were down
                    self._resolve(h.host, state, now_ms, "sends samples again")
            elif h.last_ms > state.last_ms:
                state.last_ms, state.changed_s = h.last_ms, mono_s
                if state.firing:
                    self._resolve(h.host, state, now_ms, "sends samples again")
            elif (
                not state.firing
                and mono_s - state.changed_s >= self.silent_after_s
                and now_ms - h.last_ms >= silent_ms
            ):
                state.firing = True
                silent_s = round(mono_s - state.changed_s, 3)
                message = f"no sample from {h.host} for {number(silent_s)} s (newest {iso_ms(h.last_ms)})"
                self._emit(h.host, FIRING, silent_s, now_ms, message)
        present = {h.host for h in seen}
        for name in sorted(set(self._hosts) - present):
            state = self._hosts.pop(name)
            if state.firing:
                self._resolve(name, state, now_ms, "is no longer in the store")
        for name in sorted(self._restored - present):  # fired before a restart, gone since
            self._emit(name, RESOLVED, 0.0, now_ms, f"{name} is no longer in the store")
        self._restored.clear()

    def _resolve(self, host: str, state: _Host, now_ms: int, why: str) -> None:
        state.firing = False
        self._emit(host, RESOLVED, 0.0, now_ms, f"{host} {why} (newest {iso_ms(state.last_ms)})")

    def _emit(self, host: str, change: AlertState, value: float, now_ms: int, message: str) -> None:
        event = AlertEvent(
            now_ms, host, RULE, self._severity, change, value, ">=", self.silent_after_s, message
        )
        self._notifier.emit(event, self._webhook)


def restored_hosts(history: AlertHistory) -> list[str]:
    """Hosts whose last ``host_silent`` event in the alert log is a fire."""
    return sorted({f.last.host for f in history.firing() if f.last.rule == RULE})


@contextmanager
def watching(
    config: Config,
    hosts: Callable[[], Sequence[Seen]],
    *,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    notifier: Notifier | None = None,
) -> Iterator[SilentHosts]:
    """Evaluate the rule on HOSTS() every few seconds on a thread of its own while inside."""
    own = notifier is None
    notifier = notifier or Notifier(config.alerts)
    rule = SilentHosts(
        notifier,
        config.api.silent_after_s,
        severity=config.api.silent_severity,
        webhook=config.api.silent_webhook,
        firing_hosts=restored_hosts(AlertHistory(config.alerts.log_path)),
    )
    stop = threading.Event()
    interval_s = check_interval_s(rule.silent_after_s)

    def loop() -> None:
        failing = False  # say a store outage once, and its end
        while not stop.is_set():
            try:
                seen = hosts()
            except MonitorError as exc:  # the store down: the next evaluation tries again
                if not failing:
                    log.warning("silent-host rule: cannot read the hosts, not evaluating: %s", exc)
                failing = True
            else:
                if failing:
                    log.info("silent-host rule: the hosts can be read again")
                failing = False
                try:
                    rule.evaluate(seen, round(clock() * 1000), monotonic())
                except Exception:
                    log.exception("silent-host rule: evaluation failed (a bug)")
                log.debug("silent-host rule evaluated: %d hosts, firing for %s", len(seen), rule.firing())
            stop.wait(interval_s)

    thread = threading.Thread(target=loop, name="hostmon-silent-hosts", daemon=True)
    thread.start()
    log.info("silent-host rule: a host silent for %s s fires %s", number(rule.silent_after_s), RULE)
    try:
        yield rule
    finally:
        stop.set()
        thread.join(MAX_CHECK_INTERVAL_S + 30)
        if own:
            notifier.close()
