"""/hosts' status and newest values, and /alerts, in-process over a real SQLite store and alert log."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from monitor.alerts import FIRING, RESOLVED, AlertEvent, AlertLog
from monitor.api import make_app
from monitor.api.stores.sqlite import SQLiteStore
from tests.store_helpers import write_rows
from tests.unit.test_api import NOW_MS, NOW_S, call, make_config

S = 1000


def write_points(path: Path, rows: list[tuple[str, str, str, int, float]]) -> None:
    """(metric, host, tags text, ts_ms, value) rows into the embedded store at PATH."""
    write_rows(path, rows)


def host_rows(host: str, last_ms: int, cpu: float, memory: float, fs: dict[str, float]) -> list:
    rows = []
    for i, ts in enumerate((last_ms - 20 * S, last_ms - 10 * S, last_ms)):
        rows += [("cpu_usage_overall", host, "", ts, cpu + i), ("memory_usage", host, "", ts, memory + i)]
        rows += [("filesystem_used_percent", host, f"mount={m}", ts, v + i) for m, v in fs.items()]
    return rows


def event(t_ms: int, host: str, rule: str, state: str, value: float | None = 95.0, tags=()) -> AlertEvent:
    return AlertEvent(t_ms, host, rule, "warning", state, value, ">" if value is not None else "",
                      90.0 if value is not None else None, f"{rule} {state}", tags)  # fmt: skip


def write_log(path: Path, *events: AlertEvent, max_bytes: int = 10 * 1024 * 1024) -> None:
    log = AlertLog(path, max_bytes, 5)
    for e in events:
        log.write(e)
    log.close()


@pytest.fixture
def fleet(tmp_path):
    cfg = make_config(tmp_path, silent_after_s=60)
    write_points(
        cfg.sink.path,
        host_rows("web1", NOW_MS - 5 * S, 10.0, 40.0, {"/": 50.0, "/var": 80.0})
        + host_rows("web2", NOW_MS - 7 * S, 20.0, 30.0, {"/": 60.0})
        + host_rows("db1", NOW_MS - 3600 * S, 5.0, 70.0, {"/": 91.0}),
    )
    return cfg, make_app(cfg, SQLiteStore(cfg.sink.path), clock=lambda: NOW_S)


def test_hosts_status_is_silent_past_silent_after_s_and_alerting_while_a_rule_fires(fleet):
    cfg, app = fleet
    write_log(
        cfg.alerts.log_path,
        event(NOW_MS - 100 * S, "web2", "cpu_high", FIRING),
        event(NOW_MS - 90 * S, "db1", "cpu_high", FIRING),
        event(NOW_MS - 80 * S, "web1", "cpu_high", FIRING),
        event(NOW_MS - 70 * S, "web1", "cpu_high", RESOLVED),
    )
    body = call(app, "/hosts").json()
    by_host = {h["host"]: h for h in body["hosts"]}
    assert {h: v["status"] for h, v in by_host.items()} == {"db1": "silent", "web1": "ok", "web2": "alerting"}
    assert by_host["web2"]["firing"] == ["cpu_high"]
    assert by_host["db1"]["firing"] == ["cpu_high"]  # silent wins over alerting
    assert body["silent_after_s"] == by_host["web1"]["silent_after_s"] == 60.0


def test_a_host_back_before_host_silent_resolves_is_ok_not_alerting(fleet):
    cfg, app = fleet
    write_log(cfg.alerts.log_path, event(NOW_MS - 60 * S, "web1", "host_silent", FIRING, 61.0))
    web1 = next(h for h in call(app, "/hosts").json()["hosts"] if h["host"] == "web1")
    assert (web1["status"], web1["firing"]) == ("ok", ["host_silent"])


def test_hosts_now_holds_the_newest_cpu_memory_and_the_fullest_filesystem(fleet):
    _, app = fleet
    by_host = {h["host"]: h["now"] for h in call(app, "/hosts").json()["hosts"]}
    assert by_host["web1"] == {
        "cpu_usage_overall": 12.0,
        "memory_usage": 42.0,
        "filesystem_used_percent": 82.0,
        "filesystem_mount": "/var",
    }
    assert by_host["web2"]["filesystem_mount"] == "/"
    # a silent host shows its last known values
    assert by_host["db1"] == {
        "cpu_usage_overall": 7.0,
        "memory_usage": 72.0,
        "filesystem_used_percent": 93.0,
        "filesystem_mount": "/",
    }


class CountingStore(SQLiteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.queries = 0

    def rows(self, query, step_ms=None):  # type: ignore[no-untyped-def]
        self.queries += 1
        return super().rows(query, step_ms)


class WindowsStore:
    """The embedded store without its newest-sample read: /hosts then reads windows of rows,
    as it does over InfluxDB."""

    def __init__(self, path: Path) -> None:
        self._store = CountingStore(path)

    @property
    def queries(self) -> int:
        return self._store.queries

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        if name == "newest":
            raise AttributeError(name)
        return getattr(self._store, name)


@pytest.mark.parametrize(("make_store", "queries"), [(CountingStore, 0), (WindowsStore, 4)])
def test_hosts_that_went_silent_together_keep_their_own_newest_values(tmp_path, make_store, queries):
    cfg = make_config(tmp_path, silent_after_s=60)
    died_ms = NOW_MS - 3600 * S
    rows = []
    for i in range(40):  # a rack lost power: forty hosts' last samples within a few seconds
        rows += host_rows(f"r{i:02d}", died_ms + i * 100, float(i), 50.0, {"/": 10.0 + i})
    # a1 died an hour earlier; b1 had a fuller /tmp then (in a1's window), and only / at its end:
    # the samples near b1's newest decide, not the largest value it ever had
    rows += host_rows("a1", died_ms - 3600 * S, 1.0, 1.0, {"/": 5.0})
    rows += host_rows("b1", died_ms - 3600 * S, 1.0, 1.0, {"/tmp": 99.0})
    rows += host_rows("b1", died_ms + 2 * S, 3.0, 3.0, {"/": 20.0})
    write_points(cfg.sink.path, rows)
    store = make_store(cfg.sink.path)
    app = make_app(cfg, store, clock=lambda: NOW_S)
    by_host = {h["host"]: h for h in call(app, "/hosts").json()["hosts"]}
    assert by_host["r07"]["now"] == {
        "cpu_usage_overall": 9.0,
        "memory_usage": 52.0,
        "filesystem_used_percent": 19.0,
        "filesystem_mount": "/",
    }
    assert by_host["a1"]["now"]["filesystem_used_percent"] == 7.0
    assert by_host["b1"]["now"]["filesystem_mount"] == "/"
    assert by_host["b1"]["now"]["cpu_usage_overall"] == 5.0
    assert {h["status"] for h in by_host.values()} == {"silent"}
    # windows: two (a1's, and the rest's) for 42 hosts, two families each; the embedded store
    # reads its series table only
    assert store.queries == queries


def test_both_ways_of_reading_the_newest_values_give_the_same_hosts_body(fleet, tmp_path):
    cfg, app = fleet
    late = [("filesystem_used_percent", "web1", "mount=/old", NOW_MS - 900 * S, 99.0)]  # unmounted since
    late.append(("cpu_usage_overall", "web2", "", NOW_MS - 30 * S, 1.0))  # late: older than its newest
    write_points(cfg.sink.path, late)
    windows = make_app(cfg, WindowsStore(cfg.sink.path), clock=lambda: NOW_S)
    body = call(app, "/hosts").json()
    assert body == call(windows, "/hosts").json()
    by_host = {h["host"]: h["now"] for h in body["hosts"]}
    assert by_host["web1"]["filesystem_mount"] == "/var"
    assert by_host["web2"]["cpu_usage_overall"] == 22.0


def test_hosts_now_is_null_for_a_family_the_host_has_no_samples_of(tmp_path):
    cfg = make_config(tmp_path)
    write_points(cfg.sink.path, [("cpu_usage_overall", "web1", "", NOW_MS - S, 3.0)])
    app = make_app(cfg, SQLiteStore(cfg.sink.path), clock=lambda: NOW_S)
    host = call(app, "/hosts").json()["hosts"][0]
    assert host["now"] == {
        "cpu_usage_overall": 3.0,
        "memory_usage": None,
        "filesystem_used_percent": None,
        "filesystem_mount": None,
    }
    assert host["status"] == "ok"
    assert host["silent_after_s"] == 40.0  # the default: 2 x (10 s interval + 10 s flush)


def test_alerts_without_a_log_is_empty_not_an_error(fleet):
    _, app = fleet
    assert call(app, "/alerts").json() == {"time": "2023-11-14T22:13:20.000Z", "firing": [], "history": []}


def test_alerts_lists_what_fires_since_its_first_fire_and_the_history_newest_first(fleet):
    cfg, app = fleet
    root = (("mount", "/"),)
    write_log(
        cfg.alerts.log_path,
        event(NOW_MS - 50 * S, "web1", "disk_full", FIRING, 91.0, root),
        event(NOW_MS - 40 * S, "web1", "disk_full", FIRING, 92.0, root),  # the agent restarted
        event(NOW_MS - 30 * S, "web2", "cpu_high", FIRING),
        event(NOW_MS - 20 * S, "web2", "cpu_high", RESOLVED, 10.0),
        event(NOW_MS - 10 * S, "web1", "sink_unreachable", FIRING, None),
    )
    body = call(app, "/alerts").json()
    assert body["firing"] == [
        {
            "rule": "disk_full",
            "host": "web1",
            "tags": {"mount": "/"},
            "since": "2023-11-14T22:12:30.000Z",
            "since_ms": NOW_MS - 50 * S,
            "value": 92.0,
            "message": "disk_full FIRING",
        },
        {
            "rule": "sink_unreachable",
            "host": "web1",
            "tags": {},
            "since": "2023-11-14T22:13:10.000Z",
            "since_ms": NOW_MS - 10 * S,
            "value": None,
            "message": "sink_unreachable FIRING",
        },
    ]
    history = body["history"]
    assert [(h["rule"], h["state"]) for h in history] == [
        ("sink_unreachable", "fire"),
        ("cpu_high", "resolve"),
        ("cpu_high", "fire"),
        ("disk_full", "fire"),
        ("disk_full", "fire"),
    ]
    assert history[1] == {
        "time": "2023-11-14T22:13:00.000Z",
        "time_ms": NOW_MS - 20 * S,
        "rule": "cpu_high",
        "state": "resolve",
        "host": "web2",
        "tags": {},
        "value": 10.0,
        "message": "cpu_high RESOLVED",
    }
    assert [h["time_ms"] for h in call(app, "/alerts?limit=2").json()["history"]] == [
        NOW_MS - 10 * S,
        NOW_MS - 20 * S,
    ]


def test_alerts_reads_the_rotated_files_and_new_lines_appended_since_the_last_call(fleet):
    cfg, app = fleet
    events = [event(NOW_MS - (100 - i) * S, f"h{i}", "cpu_high", FIRING) for i in range(40)]
    write_log(cfg.alerts.log_path, *events, max_bytes=1024)  # rotates into alerts.log.1 .. .5
    assert Path(f"{cfg.alerts.log_path}.1").exists()
    first = call(app, "/alerts?limit=1000").json()
    times = [h["time_ms"] for h in first["history"]]
    assert times == sorted(times, reverse=True) and times[0] == events[-1].time_ms
    kept = len(times)
    write_log(cfg.alerts.log_path, event(NOW_MS - S, "h0", "cpu_high", RESOLVED))
    second = call(app, "/alerts?limit=1000").json()
    assert second["history"][0]["host"] == "h0" and second["history"][0]["state"] == "resolve"
    assert "h0" not in {f["host"] for f in second["firing"]}
    assert len(second["history"]) >= kept  # the oldest may have rotated out, nothing else lost


def test_alerts_skips_lines_that_are_not_events(fleet):
    cfg, app = fleet
    write_log(cfg.alerts.log_path, event(NOW_MS - 2 * S, "web1", "cpu_high", FIRING))
    with open(cfg.alerts.log_path, "a", encoding="utf-8") as fh:
        fh.write("garbage line\ntime=bad host=x rule=y state=FIRING message=m\n")
        fh.write("time=2023-11-14T22:13:19.000Z host=web1 rule=cpu_high state=RESOL")  # being written
    assert len(call(app, "/alerts").json()["history"]) == 1


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "ten", "1.5", ""])
def test_alerts_limit_out_of_range_or_not_a_whole_number_is_a_400_naming_it(fleet, limit):
    _, app = fleet
    response = call(app, f"/alerts?limit={limit}")
    assert response.status == 400
    assert response.json()["error"]["parameter"] == "limit"


def test_alerts_refuses_unknown_parameters_and_needs_the_token_when_one_is_set(tmp_path):
    cfg = make_config(tmp_path)
    cfg = replace(cfg, api=replace(cfg.api, token="s3"))
    app = make_app(cfg, SQLiteStore(cfg.sink.path), clock=lambda: NOW_S)
    assert call(app, "/alerts").status == 401
    assert call(app, "/hosts").status == 401
    ok = call(app, "/alerts", headers={"Authorization": "Bearer s3"})
    assert ok.status == 200
    bad = call(app, "/alerts?limt=5", headers={"Authorization": "Bearer s3"})
    assert bad.status == 400 and bad.json()["error"]["parameter"] == "limt"
