"""The System Metrics dashboard's queries, run against the real InfluxDB 1.x with known data.

Every panel target's InfluxQL is taken from files/dashboards/system-metrics.json, Grafana's
macros are expanded the way Grafana's InfluxDB datasource expands them ($timeFilter,
$__interval, $host as a regex), and the result is compared with what the known data must give.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests import servers

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "files" / "dashboards" / "system-metrics.json"
HOSTS = ("web-1", "db.example-2")  # '-' and '.' must survive the regex expansion
CORES = 3
MINUTES = 10
STEP_S = 10
T0_MS = 1_700_000_040_000 - (1_700_000_040_000 % 60_000)  # a whole minute, long ago


def value(field: str, host_index: int, minute: int) -> float:
    """The known value of FIELD for a host during a minute (constant within the minute)."""
    base = {
        "cpu_usage_overall": 10.0,
        "memory_usage": 40.0,
        "disk_read": 1000.0,
        "disk_write": 2000.0,
        "network_sent": 3000.0,
        "network_recv": 4000.0,
    }
    if field.startswith("cpu_usage_") and field != "cpu_usage_overall":
        core = int(field.rsplit("_", 1)[1])
        return 20.0 + 5 * core + host_index + minute / 4
    return base[field] * (1 + host_index) + minute


FIELDS = (
    "cpu_usage_overall",
    *(f"cpu_usage_{c}" for c in range(1, CORES + 1)),
    "memory_usage",
    "disk_read",
    "disk_write",
    "network_sent",
    "network_recv",
)


def load_known_data(url: str, db: str) -> None:
    lines = []
    for h, host in enumerate(HOSTS):
        for minute in range(MINUTES):
            for k in range(60 // STEP_S):
                ts = T0_MS + minute * 60_000 + k * STEP_S * 1000
                fields = ",".join(f"{f}={value(f, h, minute)}" for f in FIELDS)
                lines.append(f"system,host={host} {fields} {ts}")
    req = urllib.request.Request(
        f"{url}/write?db={db}&precision=ms", data="\n".join(lines).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 204


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows
    return [p for p in out if p.get("targets")]


def targets() -> list[tuple[str, dict[str, Any]]]:
    return [(p["title"], t) for p in panels(dashboard()) for t in p["targets"]]


def grafana_regex(values: list[str]) -> str:
    """$host in a regex context, as Grafana formats it: escaped, several values as (a|b)."""
    escaped = [re.sub(r"([\\/^$.|?*+()\[\]{}-])", r"\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand(query: str, hosts: list[str], start_ms: int, end_ms: int, interval: str) -> str:
    """Grafana's InfluxQL macros: $timeFilter, $__interval(_ms), $host."""
    interval_ms = {"1m": 60_000, "10s": 10_000}[interval]
    out = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    out = out.replace("$__interval_ms", str(interval_ms)).replace("$__interval", interval)
    out = out.replace("$host", grafana_regex(hosts))
    assert "$" not in out.replace("$/", ""), f"unexpanded macro left in {out!r}"
    return out


def column_fields(query: str) -> dict[str, list[str]]:
    """Result column -> the fields it aggregates, from the SELECT clause."""
    select = re.search(r"SELECT (.*) FROM", query).group(1)  # type: ignore[union-attr]
    columns: dict[str, list[str]] = {}
    for fn, arg, alias in re.findall(r'(\w+)\((".*?"|/.*?/)\)(?: AS "(\w+)")?', select):
        if arg.startswith("/"):
            pattern = re.compile(arg[1:-1])
            for field in FIELDS:
                if pattern.search(field):
                    columns[f"{fn}_{field}"] = [field]
        else:
            columns[alias or fn] = [arg.strip('"')]
    return columns


def run(url: str, db: str, q: str) -> list[dict[str, Any]]:
    result = servers.influx_query(url, q, db)["results"][0]
    assert "error" not in result, f"{q}: {result.get('error')}"
    return result.get("series", [])


@pytest.fixture
def loaded_db(influxdb1, influx_db) -> tuple[str, str]:
    load_known_data(influxdb1.url, influx_db)
    return influxdb1.url, influx_db


def test_dashboard_is_the_system_metrics_board_with_a_host_variable():
    board = dashboard()
    assert board["title"] == "System Metrics"
    (host_var,) = [v for v in board["templating"]["list"] if v["name"] == "host"]
    assert host_var["query"] == 'SHOW TAG VALUES FROM "system" WITH KEY = "host"'
    assert host_var["multi"] and host_var["includeAll"]
    queried = {f for _, t in targets() for cols in column_fields(t["query"]).values() for f in cols}
    assert queried == set(FIELDS), "every field (CPU overall, each core, memory, disk, network) is on a panel"


@pytest.mark.parametrize(("title", "target"), targets(), ids=[f"{p}:{t['refId']}" for p, t in targets()])
def test_every_target_is_bounded_by_time_host_and_interval(title, target):
    q = target["query"]
    assert target["rawQuery"] is True
    assert target["datasource"]["uid"] == "hostmon-influxdb"
    assert "$timeFilter" in q and "GROUP BY time($__interval)" in q
    assert '"host" =~ /^$host$/' in q


def test_host_variable_query_lists_every_host(loaded_db):
    url, db = loaded_db
    (host_var,) = dashboard()["templating"]["list"]
    series = run(url, db, host_var["query"])
    assert sorted(v[1] for v in series[0]["values"]) == sorted(HOSTS)


@pytest.mark.parametrize(("title", "target"), targets(), ids=[f"{p}:{t['refId']}" for p, t in targets()])
@pytest.mark.parametrize("selected", [list(HOSTS), [HOSTS[1]]], ids=["all-hosts", "one-host"])
def test_panel_query_returns_the_known_means_per_host_and_minute(loaded_db, title, target, selected):
    url, db = loaded_db
    end_ms = T0_MS + MINUTES * 60_000 - 1
    q = expand(target["query"], selected, T0_MS, end_ms, "1m")
    series = run(url, db, q)
    assert series, f"{title}: no data for {q}"
    assert sorted(s["tags"]["host"] for s in series) == sorted(selected)
    expected_columns = column_fields(target["query"])
    for s in series:
        h = HOSTS.index(s["tags"]["host"])
        assert set(s["columns"]) == {"time", *expected_columns}, f"{title}: columns {s['columns']}"
        assert len(s["values"]) == MINUTES
        for row in s["values"]:
            record = dict(zip(s["columns"], row, strict=True))
            minute = (record["time"] - T0_MS) // 60_000
            assert 0 <= minute < MINUTES
            for column, (field,) in expected_columns.items():
                assert record[column] == pytest.approx(value(field, h, minute)), (title, column, minute)


def test_panel_query_outside_the_data_returns_nothing(loaded_db):
    url, db = loaded_db
    _, target = targets()[0]
    start = T0_MS + 2 * MINUTES * 60_000
    assert run(url, db, expand(target["query"], list(HOSTS), start, start + 60_000, "10s")) == []
