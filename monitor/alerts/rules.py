"""Alerts: threshold rules evaluated on every sample, plus system conditions, logged once per change.

Rule semantics (``AlertRule``: metric, op, threshold, for_s, hysteresis, severity, webhook):

- A rule FIRES once, at the first sample where its condition (``value op threshold``) has held
  on every sample for at least ``for_s`` seconds (``for_s = 0``: at the first such sample).
  A sample where the condition does not hold restarts the wait.
- A firing rule RESOLVES once, when its *clear* condition has held on every sample for at
  least ``for_s`` seconds. Clear means the condition fails even with the threshold moved by
  ``hysteresis`` towards the clear side: for ``>``/``>=`` the value must fall to
  ``threshold - hysteresis`` (``<=`` it for ``>``, below it for ``>=``), for ``<``/``<=`` it
  must rise to ``threshold + hysteresis``. With ``hysteresis = 0`` clear is exactly "not the
  condition". A value oscillating around the threshold therefore never flaps: once firing it
  stays firing until the value is clearly and steadily back.
- A rule on a tagged metric (``filesystem_used_percent``, ...) matches series by its tag
  (``mount = "/"``: that one series; ``mount = "*"`` or no matcher: every series) and keeps one
  state per series: "above 90 % for 5 minutes" fires and resolves once per mount. Its events
  carry the series' tag (alerts.log ``mount=/``, webhook ``"tags": {"mount": "/"}``). A series
  that stops coming (unmounted) keeps its state; it resolves when its values come back clear.
- Time is the sample's timestamp (its aligned tick), so evaluation is deterministic and the
  logged time matches the stored point. A sample without the rule's metric (or with a
  non-finite value) leaves the rule's state and timers unchanged.

System conditions (``set_condition``: "sink_unreachable", "sink_auth_failed", "spool_overflow"
...) follow the same FIRING-once/RESOLVED-once semantics, timed by the handed-in clock.

Every event is one line in alerts.log (format in :mod:`monitor.alerts.log`), a log record on this
module's logger (WARNING when firing, INFO when resolved) and, for rules with ``webhook``, a
JSON POST ``{host, rule, severity, state, value, threshold, op, time, message, tags}`` delivered off
the sampling thread (:mod:`monitor.alerts.webhook`).

``reconfigure`` (SIGHUP) keeps the state of every rule whose name and condition (metric, op,
threshold, for_s, hysteresis) are unchanged; a change of severity or webhook alone keeps the
state too and applies from the next event. Changed rules start afresh, removed rules are
dropped without an event, system conditions keep their state, and the log is re-opened with
the new path and rotation settings.
"""

from __future__ import annotations

import math
import operator
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.alerts.log import FIRING, RESOLVED, AlertEvent, AlertState
from monitor.alerts.notify import Notifier
from monitor.alerts.webhook import RETRY_DELAYS_S, Post
from monitor.config import AlertRule, AlertsConfig, Comparison, Severity
from monitor.formats import number
from monitor.lineprotocol import Sample, Tags

_OPS: dict[Comparison, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
_CLEAR_OPS: dict[Comparison, Comparison] = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}


def _condition(rule: AlertRule) -> tuple[object, ...]:
    return (rule.metric, rule.op, rule.threshold, rule.for_s, rule.hysteresis, rule.matcher)


def clear_threshold(rule: AlertRule) -> float:
    """The value a firing rule must get back to (see the module docstring)."""
    if rule.op in (">", ">="):
        return rule.threshold - rule.hysteresis
    return rule.threshold + rule.hysteresis


@dataclass
class _RuleState:
    rule: AlertRule
    firing: bool = False
    since_ms: int | None = None  # first sample of the current run towards the other state

    def holds(self, value: float) -> bool:
        return _OPS[self.rule.op](value, self.rule.threshold)

    def clears(self, value: float) -> bool:
        return not _OPS[self.rule.op](value, clear_threshold(self.rule))

    def step(self, value: float, now_ms: int) -> AlertState | None:
        """Feed one value; FIRING or RESOLVED when the state changes, else None."""
        towards_other = self.clears(value) if self.firing else self.holds(value)
        if not towards_other:
            self.since_ms = None
            return None
        if self.since_ms is None:
            self.since_ms = now_ms
        if now_ms - self.since_ms < self.rule.for_s * 1000:
            return None
        self.firing = not self.firing
        self.since_ms = None
        return FIRING if self.firing else RESOLVED

    def message(self, state: AlertState, value: float, tags: Tags = ()) -> str:
        r = self.rule
        held = f" for at least {number(r.for_s)} s" if r.for_s > 0 else ""
        series = "".join(f" {k}={v}" for k, v in tags)
        what = f"{r.metric}{' of' if series else ''}{series}"
        if state == FIRING:
            return f"{what} is {number(value)}, {r.op} {number(r.threshold)}{held}"
        return (
            f"{what} is {number(value)}, back {_CLEAR_OPS[r.op]} {number(clear_threshold(r))}{held}"
            f" (threshold {number(r.threshold)}, hysteresis {number(r.hysteresis)})"
        )


class _Rule:
    """One rule's states: one for a host metric, one per matching series for a tagged one."""

    def __init__(self, rule: AlertRule) -> None:
        self.series: dict[Tags, _RuleState] = {}
        self.rule = rule

    @property
    def rule(self) -> AlertRule:
        return self._rule

    @rule.setter
    def rule(self, rule: AlertRule) -> None:
        self._rule = rule
        self.matcher = rule.matcher
        for state in self.series.values():
            state.rule = rule

    def matches(self, sample: Sample) -> bool:
        if self.matcher is None:
            return not sample.tags
        key, wanted = self.matcher
        return any(k == key and wanted in ("*", v) for k, v in sample.tags)

    def state(self, tags: Tags) -> _RuleState:
        state = self.series.get(tags)
        if state is None:
            state = self.series[tags] = _RuleState(self.rule)
        return state

    @property
    def firing(self) -> bool:
        return any(s.firing for s in self.series.values())


class Alerts:
    """Evaluates rules on samples and records system conditions; thread-safe."""

    def __init__(
        self,
        config: AlertsConfig,
        host: str,
        *,
        clock: Callable[[], float] = time.time,
        post: Post | None = None,
        webhook_retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
    ) -> None:
        self._host = host
        self._clock = clock
        self._lock = threading.Lock()
        self._rules = {rule.name: _Rule(rule) for rule in config.rules}
        self._conditions: dict[str, bool] = {}
        self._notifier = Notifier(config, post=post, webhook_retry_delays_s=webhook_retry_delays_s)
        self._closed = False

    def observe(self, sample: Sample) -> None:
        """Evaluate every rule on one sample."""
        self.observe_tick((sample,))

    def observe_tick(self, samples: Sequence[Sample]) -> None:
        """Evaluate every rule on every sample of one tick (the host's and each tagged series')."""
        with self._lock:
            if self._closed:
                return
            for sample in samples:
                for rule in self._rules.values():
                    value = sample.fields.get(rule.rule.metric)
                    if value is None or not math.isfinite(value) or not rule.matches(sample):
                        continue
                    state = rule.state(sample.tags)
                    change = state.step(value, sample.ts_ms)
                    if change is not None:
                        r = state.rule
                        event = AlertEvent(
                            sample.ts_ms,
                            self._host,
                            r.name,
                            r.severity,
                            change,
                            value,
                            r.op,
                            r.threshold,
                            state.message(change, value, sample.tags),
                            sample.tags,
                        )
                        self._notifier.emit(event, r.webhook)

    def set_condition(self, name: str, active: bool, severity: Severity, message: str) -> None:
        """A system alert: FIRING once when it becomes active, RESOLVED once when it clears."""
        with self._lock:
            if self._closed or self._conditions.get(name, False) == active:
                return
            self._conditions[name] = active
            now_ms = round(self._clock() * 1000)
            state = FIRING if active else RESOLVED
            event = AlertEvent(now_ms, self._host, name, severity, state, None, "", None, message)
            self._notifier.emit(event, "")

    def firing(self) -> list[str]:
        """Names of the rules and system conditions firing now, sorted."""
        with self._lock:
            names = {n for n, s in self._rules.items() if s.firing}
            names |= {n for n, active in self._conditions.items() if active}
        return sorted(names)

    def reconfigure(self, config: AlertsConfig, host: str | None = None) -> None:
        """SIGHUP: new rules and log settings (and ``host``, if given); unchanged rules keep their state."""
        with self._lock:
            if host is not None:
                self._host = host
            rules: dict[str, _Rule] = {}
            for rule in config.rules:
                old = self._rules.get(rule.name)
                if old is not None and _condition(old.rule) == _condition(rule):
                    old.rule = rule  # severity/webhook may have changed
                    rules[rule.name] = old
                else:
                    rules[rule.name] = _Rule(rule)
            self._rules = rules
            self._notifier.reconfigure(config)

    def close(self) -> None:
        """Close the log and deliver queued webhooks (waiting a bounded time)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._notifier.close()
