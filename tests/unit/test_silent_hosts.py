"""The silent-host rule with a fake fleet and fake clocks: fire once, resolve once, clock steps."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.alerts import FIRING, RESOLVED, AlertEvent, AlertLog
from monitor.alerts.history import AlertHistory
from monitor.alerts.notify import Notifier
from monitor.alerts.silent import RULE, SilentHosts, check_interval_s, restored_hosts
from monitor.config import AlertsConfig

T0_MS = 1_700_000_000_000
HOOK = "http://127.0.0.1:9/hook"


@dataclass(frozen=True)
class Seen:
    host: str
    last_ms: int


class Posts:
    def __init__(self) -> None:
        self.bodies: list[dict[str, object]] = []

    def __call__(self, url: str, body: bytes, timeout_s: float) -> None:
        self.bodies.append(json.loads(body))


class Fleet:
    """The rule over a fake store: hosts' newest samples, a wall clock and a monotonic clock."""

    def __init__(self, tmp_path: Path, silent_after_s: float = 30.0, restored: tuple[str, ...] = ()) -> None:
        self.log_path = tmp_path / "alerts.log"
        self.posts = Posts()
        self.notifier = Notifier(AlertsConfig(log_path=self.log_path), post=self.posts)
        self.rule = SilentHosts(self.notifier, silent_after_s, webhook=HOOK, firing_hosts=restored)
        self.last_ms = {"web1": T0_MS, "web2": T0_MS}
        self.wall_ms = T0_MS
        self.mono_s = 1000.0

    def tick(self, seconds: float, *, alive: tuple[str, ...] = ("web1", "web2"), step_ms: int = 0) -> None:
        """SECONDS pass (the wall clock also jumps by STEP_MS); the ALIVE hosts write a sample."""
        self.mono_s += seconds
        self.wall_ms += round(seconds * 1000) + step_ms
        for host in alive:  # the store's newest sample: a clock stepped back does not lower it
            self.last_ms[host] = max(self.last_ms[host], self.wall_ms)
        seen = [Seen(h, t) for h, t in sorted(self.last_ms.items())]
        self.rule.evaluate(seen, self.wall_ms, self.mono_s)

    def events(self) -> list[tuple[str, str]]:
        return [(r.host, r.state) for r in AlertHistory(self.log_path).recent()]

    def webhooks(self) -> list[tuple[str, str]]:
        self.notifier.close()  # delivers what is queued
        return [(str(b["host"]), str(b["state"])) for b in self.posts.bodies]


def test_a_host_silent_for_silent_after_s_fires_once_then_resolves_once_when_samples_come_back(tmp_path):
    fleet = Fleet(tmp_path)
    fleet.tick(0)
    for _ in range(5):
        fleet.tick(5, alive=("web1",))  # web2 silent for 25 s: not yet
    assert fleet.events() == []
    fleet.tick(5, alive=("web1",))  # 30 s
    for _ in range(10):
        fleet.tick(5, alive=("web1",))  # repeated evaluations: no second fire
    assert fleet.events() == [("web2", FIRING)]
    assert fleet.rule.firing() == ["web2"]
    for _ in range(3):
        fleet.tick(5)
    assert fleet.events() == [("web2", FIRING), ("web2", RESOLVED)]
    assert fleet.webhooks() == [("web2", FIRING), ("web2", RESOLVED)]


def test_the_alert_line_names_the_rule_the_silence_and_the_configured_time(tmp_path):
    fleet = Fleet(tmp_path, silent_after_s=10)
    fleet.tick(0)
    fleet.tick(12, alive=("web1",))
    (record,) = AlertHistory(fleet.log_path).recent()
    assert (record.rule, record.host, record.value, record.severity) == (RULE, "web2", 12.0, "warning")
    assert record.message == "no sample from web2 for 12 s (newest 2023-11-14T22:13:20.000Z)"
    assert "op=>= threshold=10 " in fleet.log_path.read_text()
    assert fleet.webhooks() == [("web2", FIRING)]
    body = fleet.posts.bodies[0]
    assert (body["rule"], body["value"], body["op"], body["threshold"]) == (RULE, 12.0, ">=", 10.0)


def test_a_forward_step_of_the_wall_clock_fires_nothing(tmp_path):
    fleet = Fleet(tmp_path)
    fleet.tick(0)
    fleet.tick(5, step_ms=3_600_000)  # every host's newest sample is now an hour "old" ...
    fleet.tick(5)  # ... and keeps advancing
    fleet.tick(40)
    assert fleet.events() == []


def test_a_backward_step_of_the_wall_clock_fires_nothing_while_the_samples_catch_up(tmp_path):
    fleet = Fleet(tmp_path)
    fleet.tick(0)
    fleet.tick(5, step_ms=-3_600_000)  # the agents' new samples are an hour older than the newest
    for _ in range(20):
        fleet.tick(5)
    assert fleet.events() == []


def test_a_backward_step_delays_a_dead_hosts_alert_by_the_step_but_does_not_lose_it(tmp_path):
    fleet = Fleet(tmp_path)
    fleet.tick(0)
    fleet.tick(5, alive=("web1",), step_ms=-60_000)  # web2 dies as the clock steps back a minute
    for _ in range(16):
        fleet.tick(5, alive=("web1",))  # 85 s: web2's newest sample is only 25 s old by the clock
    assert fleet.events() == []
    fleet.tick(5, alive=("web1",))
    assert fleet.events() == [("web2", FIRING)]


def test_a_host_silent_when_the_api_starts_fires_silent_after_s_later_not_at_once(tmp_path):
    fleet = Fleet(tmp_path)
    fleet.last_ms["web2"] = T0_MS - 3_600_000  # dead for an hour already
    fleet.tick(0)
    assert fleet.events() == []
    fleet.tick(30, alive=("web1",))
    assert fleet.events() == [("web2", FIRING)]


def test_a_host_that_fired_before_a_restart_does_not_fire_again_and_resolves_when_back(tmp_path):
    first = Fleet(tmp_path)
    first.tick(0)
    first.tick(31, alive=("web1",))
    first.notifier.close()
    assert restored_hosts(AlertHistory(first.log_path)) == ["web2"]
    second = Fleet(tmp_path, restored=("web2",))
    second.last_ms = dict(first.last_ms)
    second.wall_ms, second.mono_s = first.wall_ms, 5.0  # a new process: a new monotonic origin
    second.tick(0, alive=("web1",))
    second.tick(60, alive=("web1",))
    assert second.events() == [("web2", FIRING)]
    second.tick(5)
    assert second.events() == [("web2", FIRING), ("web2", RESOLVED)]


def test_a_host_that_fired_and_came_back_while_the_api_was_down_resolves_at_the_first_evaluation(tmp_path):
    fleet = Fleet(tmp_path, restored=("web2", "gone"))
    fleet.tick(1)
    assert sorted(fleet.events()) == [("gone", RESOLVED), ("web2", RESOLVED)]
    assert fleet.rule.firing() == []


def test_a_firing_host_whose_samples_expired_from_the_store_resolves(tmp_path):
    fleet = Fleet(tmp_path)
    fleet.tick(0)
    fleet.tick(31, alive=("web1",))
    del fleet.last_ms["web2"]
    fleet.tick(5, alive=("web1",))
    assert fleet.events() == [("web2", FIRING), ("web2", RESOLVED)]
    (_, resolved) = AlertHistory(fleet.log_path).recent()
    assert "no longer in the store" in resolved.message


def test_agent_rules_events_in_the_log_do_not_count_as_silent_fires(tmp_path):
    log = AlertLog(tmp_path / "alerts.log", 1 << 20, 1)
    log.write(AlertEvent(T0_MS, "web1", "cpu_high", "warning", FIRING, 95.0, ">", 90.0, "hot"))
    log.write(AlertEvent(T0_MS, "web2", RULE, "warning", FIRING, 31.0, ">=", 30.0, "silent"))
    log.write(AlertEvent(T0_MS + 1, "web3", RULE, "warning", FIRING, 31.0, ">=", 30.0, "silent"))
    log.write(AlertEvent(T0_MS + 2, "web3", RULE, "warning", RESOLVED, 0.0, ">=", 30.0, "back"))
    log.close()
    assert restored_hosts(AlertHistory(tmp_path / "alerts.log")) == ["web2"]


@pytest.mark.parametrize(("silent_after_s", "expected_s"), [(1, 0.5), (3, 0.6), (30, 5.0), (3600, 5.0)])
def test_the_rule_is_evaluated_a_fifth_of_the_silent_time_apart_half_a_second_to_five(
    silent_after_s, expected_s
):
    assert check_interval_s(silent_after_s) == expected_s
