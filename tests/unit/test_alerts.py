"""Alerts: fire once / resolve once, for_s, hysteresis, system conditions, reconfigure, webhooks."""

from __future__ import annotations

import json
import logging
import tempfile
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.alerts import Alerts
from monitor.alerts.log import parse_line
from monitor.config import AlertRule, AlertsConfig
from monitor.lineprotocol import Sample

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20.000Z
STEP_MS = 10_000
CPU = "cpu_usage_overall"


def rule(name: str = "cpu_high", op: str = ">", threshold: float = 90.0, **kw: object) -> AlertRule:
    return AlertRule(name, str(kw.pop("metric", CPU)), op, threshold, **kw)  # type: ignore[arg-type]


def config(path: Path, *rules: AlertRule, **kw: object) -> AlertsConfig:
    return AlertsConfig(log_path=path / "alerts.log", rules=rules, **kw)  # type: ignore[arg-type]


class Posts:
    """Captures webhook calls instead of sending them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object], float]] = []

    def __call__(self, url: str, body: bytes, timeout_s: float) -> None:
        self.calls.append((url, json.loads(body), timeout_s))


def feed(alerts: Alerts, values: Sequence[float | None], metric: str = CPU, start_ms: int = T0) -> None:
    """One sample per value, STEP_MS apart; None means a sample without the metric."""
    for i, value in enumerate(values):
        fields = {"memory_usage": 1.0} if value is None else {metric: value}
        alerts.observe(Sample(start_ms + i * STEP_MS, "web1", fields))


def events(path: Path) -> list[dict[str, str]]:
    log_file = path / "alerts.log"
    if not log_file.exists():
        return []
    return [parse_line(line) for line in log_file.read_text(encoding="utf-8").splitlines()]


def states(path: Path) -> list[tuple[str, str]]:
    return [(e["state"], e["value"]) for e in events(path)]


def run(tmp_path: Path, r: AlertRule, values: Sequence[float | None]) -> list[tuple[str, str]]:
    alerts = Alerts(config(tmp_path, r), "web1")
    feed(alerts, values)
    alerts.close()
    return states(tmp_path)


# -- the rule state machine -------------------------------------------------------------------


def test_rule_fires_once_at_the_first_sample_over_threshold_and_resolves_once(tmp_path: Path) -> None:
    got = run(tmp_path, rule(), [50, 95, 97, 99, 80, 70, 60])
    assert got == [("FIRING", "95"), ("RESOLVED", "80")]


def test_greater_than_is_strict_and_greater_or_equal_is_not(tmp_path: Path) -> None:
    assert run(tmp_path / "gt", rule(op=">"), [90, 90]) == []
    assert run(tmp_path / "ge", rule(op=">="), [90, 89.9]) == [("FIRING", "90"), ("RESOLVED", "89.9")]


def test_less_than_rules_mirror_with_hysteresis_above_the_threshold(tmp_path: Path) -> None:
    r = rule("mem_low", op="<", threshold=10.0, hysteresis=5.0, metric="memory_usage")
    alerts = Alerts(config(tmp_path, r), "web1")
    feed(alerts, [20, 9, 12, 14.9, 8, 15, 30], metric="memory_usage")
    alerts.close()
    assert states(tmp_path) == [("FIRING", "9"), ("RESOLVED", "15")]


def test_less_or_equal_rule_resolves_only_above_threshold_plus_hysteresis(tmp_path: Path) -> None:
    got = run(tmp_path, rule(op="<=", threshold=10.0, hysteresis=2.0), [10, 12, 12.5])
    assert got == [("FIRING", "10"), ("RESOLVED", "12.5")]


def test_rule_fires_only_after_the_condition_held_for_for_s(tmp_path: Path) -> None:
    # for_s = 30 s and samples every 10 s: the 4th consecutive high sample fires.
    got = run(tmp_path, rule(for_s=30.0), [95, 95, 95, 95, 95])
    assert got == [("FIRING", "95")]
    first = events(tmp_path)[0]
    assert first["time"] == "2023-11-14T22:13:50.000Z"  # T0 + 30 s


def test_a_dip_below_threshold_restarts_the_for_s_wait(tmp_path: Path) -> None:
    assert run(tmp_path, rule(for_s=20.0), [95, 95, 80, 95, 95]) == []
    assert run(tmp_path / "b", rule(for_s=20.0), [95, 95, 80, 95, 95, 95]) == [("FIRING", "95")]


def test_resolve_also_waits_for_for_s_of_clear_values(tmp_path: Path) -> None:
    got = run(tmp_path, rule(for_s=10.0), [95, 95, 50, 95, 50, 50])
    assert got == [("FIRING", "95"), ("RESOLVED", "50")]
    assert events(tmp_path)[1]["time"] == "2023-11-14T22:14:10.000Z"  # the 6th sample


def test_hysteresis_keeps_a_value_oscillating_around_the_threshold_from_flapping(tmp_path: Path) -> None:
    values = [95, 89, 91, 88, 92, 86, 90.5, 85.5] * 10  # around 90, never down to 85
    assert run(tmp_path, rule(hysteresis=5.0), values) == [("FIRING", "95")]


def test_with_hysteresis_resolve_needs_the_value_back_at_threshold_minus_hysteresis(tmp_path: Path) -> None:
    got = run(tmp_path, rule(op=">=", hysteresis=5.0), [95, 86, 85, 84.99])
    assert got == [("FIRING", "95"), ("RESOLVED", "84.99")]


def test_samples_without_the_metric_leave_state_and_timers_unchanged(tmp_path: Path) -> None:
    # for_s = 20: high at t=0, missing at t=10, high at t=20 -> held for 20 s -> fires.
    got = run(tmp_path, rule(for_s=20.0), [95, None, 95, None, None, 50, None, None, 50, None])
    assert got == [("FIRING", "95"), ("RESOLVED", "50")]
    assert run(tmp_path / "b", rule(), [None, None]) == []


def test_every_rule_is_evaluated_on_every_sample(tmp_path: Path) -> None:
    alerts = Alerts(
        config(tmp_path, rule("a", threshold=50), rule("b", threshold=60), rule("m", metric="memory_usage")),
        "web1",
    )
    alerts.observe(Sample(T0, "web1", {CPU: 70.0, "memory_usage": 95.0}))
    alerts.close()
    assert sorted(e["rule"] for e in events(tmp_path)) == ["a", "b", "m"]


def _expected(values: list[float], k: int, threshold: float, clear_at: float) -> list[tuple[str, int]]:
    """The spec restated over windows: each event is at the earliest sample that completes a run
    of k + 1 consecutive samples past the threshold (firing) or at the clear level (resolving),
    counted from the sample after the previous event."""
    out: list[tuple[str, int]] = []
    firing, start = False, 0
    while True:
        ok = (lambda v: v <= clear_at) if firing else (lambda v: v > threshold)
        found = next(
            (i for i in range(start + k, len(values)) if all(ok(v) for v in values[i - k : i + 1])),
            None,
        )
        if found is None:
            return out
        firing = not firing
        out.append(("FIRING" if firing else "RESOLVED", found))
        start = found + 1


def _index(iso: str) -> int:
    ms = round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    return (ms - T0) // STEP_MS


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.floats(min_value=0, max_value=100), st.sampled_from([40.0, 47.5, 50.0, 50.5])),
        max_size=60,
    ),
    k=st.integers(min_value=0, max_value=4),
    hysteresis=st.sampled_from([0.0, 2.5, 10.0]),
)
def test_property_events_happen_exactly_when_the_condition_held_for_for_s(
    values: list[float], k: int, hysteresis: float
) -> None:
    r = rule(threshold=50.0, for_s=k * STEP_MS / 1000, hysteresis=hysteresis)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        alerts = Alerts(config(path, r), "web1")
        feed(alerts, values)
        alerts.close()
        got = [(e["state"], _index(e["time"])) for e in events(path)]
    assert got == _expected(values, k, 50.0, 50.0 - hysteresis)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(min_value=85.01, max_value=100), min_size=1, max_size=80))
def test_property_values_that_never_reach_the_clear_level_fire_at_most_once(values: list[float]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp)
        alerts = Alerts(config(path, rule(hysteresis=5.0)), "web1")
        feed(alerts, [95.0, *values])
        alerts.close()
        assert [e["state"] for e in events(path)] == ["FIRING"]


# -- system conditions ------------------------------------------------------------------------


def test_set_condition_fires_once_and_resolves_once(tmp_path: Path) -> None:
    now = [1_700_000_000.123]
    alerts = Alerts(config(tmp_path), "web1", clock=lambda: now[0])
    alerts.set_condition("sink_unreachable", False, "critical", "fine")  # never active: nothing
    alerts.set_condition("sink_unreachable", True, "critical", "cannot reach http://db:8086")
    now[0] += 5
    alerts.set_condition("sink_unreachable", True, "critical", "still down")
    assert alerts.firing() == ["sink_unreachable"]
    now[0] += 60
    alerts.set_condition("sink_unreachable", False, "critical", "reachable again")
    alerts.set_condition("sink_unreachable", False, "critical", "reachable again")
    alerts.close()
    got = events(tmp_path)
    assert [(e["rule"], e["state"], e["message"]) for e in got] == [
        ("sink_unreachable", "FIRING", "cannot reach http://db:8086"),
        ("sink_unreachable", "RESOLVED", "reachable again"),
    ]
    assert got[0]["time"] == "2023-11-14T22:13:20.123Z"
    assert got[1]["time"] == "2023-11-14T22:14:25.123Z"
    assert (got[0]["value"], got[0]["op"], got[0]["threshold"]) == ("-", "-", "-")


def test_conditions_are_independent_of_each_other(tmp_path: Path) -> None:
    alerts = Alerts(config(tmp_path), "web1", clock=lambda: 1.0)
    alerts.set_condition("spool_overflow", True, "warning", "dropped 10 samples")
    alerts.set_condition("sink_auth_failed", True, "critical", "401")
    alerts.set_condition("spool_overflow", False, "warning", "ok")
    assert alerts.firing() == ["sink_auth_failed"]
    alerts.close()
    assert [(e["rule"], e["state"]) for e in events(tmp_path)] == [
        ("spool_overflow", "FIRING"),
        ("sink_auth_failed", "FIRING"),
        ("spool_overflow", "RESOLVED"),
    ]


# -- reconfigure (SIGHUP) ---------------------------------------------------------------------


def test_reconfigure_keeps_state_of_unchanged_rules_and_drops_removed_ones_silently(tmp_path: Path) -> None:
    keep, gone = rule("keep"), rule("gone", threshold=10.0)
    alerts = Alerts(config(tmp_path, keep, gone), "web1")
    feed(alerts, [95])
    alerts.reconfigure(config(tmp_path, keep))
    feed(alerts, [96, 50], start_ms=T0 + STEP_MS)
    alerts.close()
    assert [(e["rule"], e["state"]) for e in events(tmp_path)] == [
        ("keep", "FIRING"),
        ("gone", "FIRING"),
        ("keep", "RESOLVED"),
    ]


def test_reconfigure_with_new_severity_keeps_state_and_uses_it_for_the_next_event(tmp_path: Path) -> None:
    alerts = Alerts(config(tmp_path, rule(severity="warning")), "web1")
    feed(alerts, [95])
    alerts.reconfigure(config(tmp_path, rule(severity="critical")))
    feed(alerts, [95, 50], start_ms=T0 + STEP_MS)
    alerts.close()
    assert [(e["state"], e["severity"]) for e in events(tmp_path)] == [
        ("FIRING", "warning"),
        ("RESOLVED", "critical"),
    ]


def test_reconfigure_with_a_changed_condition_starts_the_rule_afresh(tmp_path: Path) -> None:
    alerts = Alerts(config(tmp_path, rule(threshold=90.0)), "web1")
    feed(alerts, [95])
    alerts.reconfigure(config(tmp_path, rule(threshold=80.0)))
    feed(alerts, [95], start_ms=T0 + STEP_MS)
    alerts.close()
    assert [(e["state"], e["threshold"]) for e in events(tmp_path)] == [("FIRING", "90"), ("FIRING", "80")]


def test_reconfigure_moves_the_log_and_keeps_conditions(tmp_path: Path) -> None:
    alerts = Alerts(config(tmp_path / "a"), "web1", clock=lambda: 1.0)
    alerts.set_condition("sink_unreachable", True, "critical", "down")
    alerts.reconfigure(config(tmp_path / "b", max_bytes=4096, backup_count=1))
    alerts.set_condition("sink_unreachable", True, "critical", "down")  # still firing: nothing
    alerts.set_condition("sink_unreachable", False, "critical", "up")
    alerts.close()
    assert [e["state"] for e in events(tmp_path / "a")] == ["FIRING"]
    assert [e["state"] for e in events(tmp_path / "b")] == ["RESOLVED"]


def test_reconfigure_with_a_new_host_uses_it_for_later_events(tmp_path: Path) -> None:
    alerts = Alerts(config(tmp_path, rule()), "old-name")
    feed(alerts, [95])
    alerts.reconfigure(config(tmp_path, rule()), host="new-name")
    feed(alerts, [50], start_ms=T0 + STEP_MS)
    alerts.close()
    assert [(e["state"], e["host"]) for e in events(tmp_path)] == [
        ("FIRING", "old-name"),
        ("RESOLVED", "new-name"),
    ]


# -- webhooks ---------------------------------------------------------------------------------


def test_webhook_gets_the_event_as_json_with_the_configured_timeout(tmp_path: Path) -> None:
    posts = Posts()
    hook = "http://127.0.0.1:9/hook"
    alerts = Alerts(config(tmp_path, rule(webhook=hook), webhook_timeout_s=3.5), "web1", post=posts)
    feed(alerts, [95, 50])
    alerts.set_condition("spool_overflow", True, "warning", "no webhook for system conditions")
    alerts.close()  # delivers what is queued
    assert [(url, timeout) for url, _, timeout in posts.calls] == [(hook, 3.5), (hook, 3.5)]
    assert posts.calls[0][1] == {
        "host": "web1",
        "rule": "cpu_high",
        "severity": "warning",
        "state": "FIRING",
        "value": 95.0,
        "threshold": 90.0,
        "op": ">",
        "time": "2023-11-14T22:13:20.000Z",
        "message": "cpu_usage_overall is 95, > 90",
    }
    assert posts.calls[1][1]["state"] == "RESOLVED"


def test_rule_without_webhook_posts_nothing(tmp_path: Path) -> None:
    posts = Posts()
    alerts = Alerts(config(tmp_path, rule()), "web1", post=posts)
    feed(alerts, [95])
    alerts.close()
    assert posts.calls == []
    assert len(events(tmp_path)) == 1


def test_failing_webhook_is_logged_and_never_raises(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(url: str, body: bytes, timeout_s: float) -> None:
        raise ConnectionRefusedError("connection refused")

    alerts = Alerts(config(tmp_path, rule(webhook="http://127.0.0.1:9/hook")), "web1", post=refuse)
    with caplog.at_level(logging.WARNING, logger="monitor.alerts.webhook"):
        feed(alerts, [95, 50, 95])
        alerts.close()
    assert len(events(tmp_path)) == 3  # the log is written regardless
    failures = [r for r in caplog.records if r.name == "monitor.alerts.webhook"]
    assert len(failures) == 3
    assert "connection refused" in failures[0].getMessage()


def test_slow_webhook_does_not_block_the_sampling_thread(tmp_path: Path) -> None:
    release, started = threading.Event(), threading.Event()

    def stuck(url: str, body: bytes, timeout_s: float) -> None:
        started.set()
        assert release.wait(30), "test never released the webhook"

    alerts = Alerts(config(tmp_path, rule(webhook="http://127.0.0.1:9/hook")), "web1", post=stuck)
    feed(alerts, [95, 50, 95, 50])  # returns while the first delivery is still stuck
    assert started.wait(30)
    assert [e["state"] for e in events(tmp_path)] == ["FIRING", "RESOLVED", "FIRING", "RESOLVED"]
    release.set()
    alerts.close()


# -- lifecycle --------------------------------------------------------------------------------


def test_after_close_events_are_ignored(tmp_path: Path) -> None:
    alerts = Alerts(config(tmp_path, rule()), "web1")
    alerts.close()
    feed(alerts, [95])
    alerts.set_condition("x", True, "info", "m")
    alerts.close()  # idempotent
    assert events(tmp_path) == []


def test_unwritable_log_is_reported_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the log directory should be")
    alerts = Alerts(AlertsConfig(log_path=blocker / "alerts.log", rules=(rule(),)), "web1")
    with caplog.at_level(logging.ERROR, logger="monitor.alerts.log"):
        feed(alerts, [95])
    alerts.close()
    assert "cannot write alerts log" in caplog.text
    assert "state=FIRING" in caplog.text  # the lost line is in the agent's own log


# -- rules on tagged metrics: one state per series ----------------------------------------------

FS = "filesystem_used_percent"


def fs_tick(ts_ms: int, used: dict[str, float]) -> list[Sample]:
    """One tick as the collector makes it: the host sample first, then one per mount."""
    host = Sample(ts_ms, "web1", {CPU: 5.0})
    mounts = [Sample(ts_ms, "web1", {FS: v}, (("mount", m),), "filesystem") for m, v in sorted(used.items())]
    return [host, *mounts]


def test_filesystem_above_90_for_5_minutes_fires_and_resolves_once_per_mount(tmp_path: Path) -> None:
    posts = Posts()
    hook = "http://127.0.0.1:9/hook"
    disk_full = rule("disk_full", ">", 90.0, metric=FS, for_s=300.0, webhook=hook, mount="*")
    alerts = Alerts(config(tmp_path, disk_full), "web1", post=posts)
    # "/" fills at tick 0, "/data" at tick 10; "/boot" never; "/" clears at tick 40, "/data" at 50.
    for i in range(90):
        used = {
            "/": 95.0 if i < 40 else 50.0,
            "/data": 97.0 if 10 <= i < 50 else 10.0,
            "/boot": 20.0,
        }
        alerts.observe_tick(fs_tick(T0 + i * STEP_MS, used))
    alerts.close()
    got = [(e["state"], e["mount"], e["time"]) for e in events(tmp_path)]
    assert got == [
        ("FIRING", "/", "2023-11-14T22:18:20.000Z"),  # 300 s after tick 0
        ("FIRING", "/data", "2023-11-14T22:20:00.000Z"),  # 300 s after tick 10
        ("RESOLVED", "/", "2023-11-14T22:25:00.000Z"),  # 300 s after tick 40
        ("RESOLVED", "/data", "2023-11-14T22:26:40.000Z"),
    ]
    line = (tmp_path / "alerts.log").read_text(encoding="utf-8").splitlines()[0]
    assert " threshold=90 mount=/ message=" in line
    assert "filesystem_used_percent of mount=/ is 95, > 90 for at least 300 s" in line
    bodies = [body for _, body, _ in posts.calls]
    assert [(b["state"], b["tags"]) for b in bodies] == [
        ("FIRING", {"mount": "/"}),
        ("FIRING", {"mount": "/data"}),
        ("RESOLVED", {"mount": "/"}),
        ("RESOLVED", {"mount": "/data"}),
    ]
    assert bodies[0]["rule"] == "disk_full" and bodies[0]["value"] == 95.0


def test_a_rule_with_one_mount_watches_only_that_series(tmp_path: Path) -> None:
    root_full = rule("root_full", ">", 90.0, metric=FS, mount="/")
    alerts = Alerts(config(tmp_path, root_full), "web1")
    alerts.observe_tick(fs_tick(T0, {"/": 50.0, "/data": 99.0}))
    assert alerts.firing() == []
    alerts.observe_tick(fs_tick(T0 + STEP_MS, {"/": 91.0, "/data": 99.0}))
    assert alerts.firing() == ["root_full"]
    alerts.close()
    assert [(e["state"], e["mount"]) for e in events(tmp_path)] == [("FIRING", "/")]


def test_a_tagged_rule_without_a_matcher_watches_every_series_and_host_rules_ignore_tagged_samples(
    tmp_path: Path,
) -> None:
    any_disk = rule("busy", ">=", 80.0, metric="disk_busy_percent")
    cpu = rule("cpu_high", ">", 90.0)
    alerts = Alerts(config(tmp_path, any_disk, cpu), "web1")
    tick = [
        Sample(T0, "web1", {CPU: 50.0}),
        Sample(T0, "web1", {"disk_busy_percent": 85.0}, (("device", "sda"),), "disk"),
        Sample(T0, "web1", {"disk_busy_percent": 99.0, CPU: 99.0}, (("device", "sdb"),), "disk"),
    ]
    alerts.observe_tick(tick)
    alerts.close()
    assert [(e["rule"], e.get("device")) for e in events(tmp_path)] == [("busy", "sda"), ("busy", "sdb")]


def test_a_series_keeps_its_state_while_absent_and_reconfigure_keeps_per_series_states(
    tmp_path: Path,
) -> None:
    disk_full = rule("disk_full", ">", 90.0, metric=FS, mount="*")
    alerts = Alerts(config(tmp_path, disk_full), "web1")
    alerts.observe_tick(fs_tick(T0, {"/": 95.0, "/mnt/usb": 99.0}))
    alerts.observe_tick(fs_tick(T0 + STEP_MS, {"/": 95.0}))  # /mnt/usb unplugged: no event
    alerts.reconfigure(
        config(tmp_path, rule("disk_full", ">", 90.0, metric=FS, mount="*", severity="critical"))
    )
    alerts.observe_tick(fs_tick(T0 + 2 * STEP_MS, {"/": 95.0, "/mnt/usb": 10.0}))  # back, clear
    alerts.close()
    assert [(e["state"], e["mount"], e["severity"]) for e in events(tmp_path)] == [
        ("FIRING", "/", "warning"),
        ("FIRING", "/mnt/usb", "warning"),
        ("RESOLVED", "/mnt/usb", "critical"),
    ]


def test_changing_the_matcher_starts_the_rule_afresh(tmp_path: Path) -> None:
    alerts = Alerts(config(tmp_path, rule("disk_full", ">", 90.0, metric=FS, mount="*")), "web1")
    alerts.observe_tick(fs_tick(T0, {"/": 95.0, "/data": 95.0}))
    alerts.reconfigure(config(tmp_path, rule("disk_full", ">", 90.0, metric=FS, mount="/data")))
    assert alerts.firing() == []
    alerts.observe_tick(fs_tick(T0 + STEP_MS, {"/": 95.0, "/data": 95.0}))
    alerts.close()
    assert [e["mount"] for e in events(tmp_path)] == ["/", "/data", "/data"]
