"""The System Metrics dashboard's queries, run against the real InfluxDB 1.x with known data.

Every panel target's InfluxQL is taken from files/dashboards/system-metrics.json, Grafana's
macros are expanded the way Grafana's InfluxDB datasource expands them ($timeFilter,
$__interval, $host and $mount as regexes), and the result is compared with what the known data
must give. Tagged families (filesystem, disk, network) are written as the agent writes them
(monitor.lineprotocol.encode), a series per host and mount, device or interface.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from monitor import catalog
from monitor.lineprotocol import Sample, encode
from tests import servers

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parents[2] / "files" / "dashboards" / "system-metrics.json"
HOSTS = ("web-1", "db.example-2")  # '-' and '.' must survive the regex expansion
CORES = 3
MINUTES = 10
STEP_S = 10
T0_MS = 1_700_000_040_000 - (1_700_000_040_000 % 60_000)  # a whole minute, long ago


# Each tagged family's tag values: '/' and ' ' must survive the regex and the line protocol.
TAG_VALUES = {"filesystem": ("/", "/var lib"), "disk": ("sda", "nvme0n1"), "network": ("eth0",)}


def value(field: str, host_index: int, minute: int, tag_index: int = 0) -> float:
    """The known value of FIELD for a host (and tag value) during a minute (constant within it)."""
    if catalog.family_of(field) != "host" or field.startswith(("load_", "swap_")):
        return 1.0 + catalog.METRICS.index(catalog.BY_NAME[field]) + 7 * host_index + minute + 50 * tag_index
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
    "load_1",
    "load_5",
    "load_15",
    "swap_used_percent",
)
TAGGED_FIELDS = {
    family: tuple(m.name for m in catalog.METRICS if m.family == family) for family in TAG_VALUES
}
ALL_FIELDS = (*FIELDS, *(f for fields in TAGGED_FIELDS.values() for f in fields))


def load_known_data(url: str, db: str) -> None:
    lines = []
    for h, host in enumerate(HOSTS):
        for minute in range(MINUTES):
            for k in range(60 // STEP_S):
                ts = T0_MS + minute * 60_000 + k * STEP_S * 1000
                fields = ",".join(f"{f}={value(f, h, minute)}" for f in FIELDS)
                lines.append(f"system,host={host} {fields} {ts}")
                for family, tag_values in TAG_VALUES.items():
                    key = catalog.TAG_KEY[family]
                    assert key is not None
                    for t, tag in enumerate(tag_values):
                        known = {f: value(f, h, minute, t) for f in TAGGED_FIELDS[family]}
                        lines.append(encode(Sample(ts, host, known, ((key, tag),), family), "system"))
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


def expand(
    query: str, hosts: list[str], start_ms: int, end_ms: int, interval: str, mounts: list[str] | None = None
) -> str:
    """Grafana's InfluxQL macros: $timeFilter, $__interval(_ms), $host, $mount."""
    interval_ms = {"1m": 60_000, "10s": 10_000}[interval]
    out = query.replace("$timeFilter", f"time >= {start_ms}ms and time <= {end_ms}ms")
    out = out.replace("$__interval_ms", str(interval_ms)).replace("$__interval", interval)
    out = out.replace("$host", grafana_regex(hosts))
    out = out.replace("$mount", grafana_regex(mounts or list(TAG_VALUES["filesystem"])))
    assert "$" not in out.replace("$/", ""), f"unexpanded macro left in {out!r}"
    return out


def column_fields(query: str) -> dict[str, list[str]]:
    """Result column -> the fields it aggregates, from the SELECT clause."""
    select = re.search(r"SELECT (.*) FROM", query).group(1)  # type: ignore[union-attr]
    columns: dict[str, list[str]] = {}
    for fn, arg, alias in re.findall(r'(\w+)\((".*?"|/.*?/)\)(?: AS "(\w+)")?', select):
        if arg.startswith("/"):
            pattern = re.compile(arg[1:-1])
            for field in ALL_FIELDS:
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
    tagged = ("filesystem_used_percent", "filesystem_inodes_used_percent", "disk_read_bytes_per_s")
    on_panels = {
        *FIELDS,
        *tagged,
        "disk_write_bytes_per_s",
        "network_sent_bytes_per_s",
        "network_recv_bytes_per_s",
    }
    assert queried == on_panels, "every original field, load, swap and the space/I/O/traffic fields"
    (fs_panel,) = [p for p in panels(board) if p.get("repeat")]
    assert fs_panel["repeat"] == "mount" and "$mount" in fs_panel["title"]


@pytest.mark.parametrize(("title", "target"), targets(), ids=[f"{p}:{t['refId']}" for p, t in targets()])
def test_every_target_is_bounded_by_time_host_and_interval(title, target):
    q = target["query"]
    assert target["rawQuery"] is True
    assert target["datasource"]["uid"] == "hostmon-influxdb"
    assert "$timeFilter" in q and "GROUP BY time($__interval)" in q
    assert '"host" =~ /^$host$/' in q


def variables() -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in dashboard()["templating"]["list"]}


def test_host_variable_query_lists_every_host(loaded_db):
    url, db = loaded_db
    series = run(url, db, variables()["host"]["query"])
    assert sorted(v[1] for v in series[0]["values"]) == sorted(HOSTS)


@pytest.mark.parametrize("selected", [list(HOSTS), [HOSTS[1]], ["nobody"]], ids=["all", "one", "none"])
def test_mount_variable_lists_the_mounts_of_the_selected_hosts(loaded_db, selected):
    url, db = loaded_db
    series = run(url, db, expand(variables()["mount"]["query"], selected, 0, 1, "1m"))
    found = sorted(v[1] for s in series for v in s["values"])
    assert found == ([] if selected == ["nobody"] else sorted(TAG_VALUES["filesystem"]))


@pytest.mark.parametrize(("title", "target"), targets(), ids=[f"{p}:{t['refId']}" for p, t in targets()])
@pytest.mark.parametrize("selected", [list(HOSTS), [HOSTS[1]]], ids=["all-hosts", "one-host"])
def test_panel_query_returns_the_known_means_per_host_and_minute(loaded_db, title, target, selected):
    url, db = loaded_db
    end_ms = T0_MS + MINUTES * 60_000 - 1
    mounts = [TAG_VALUES["filesystem"][1]]  # a repeated panel asks for one mount
    q = expand(target["query"], selected, T0_MS, end_ms, "1m", mounts)
    series = run(url, db, q)
    assert series, f"{title}: no data for {q}"
    measurement = re.search(r'FROM "(\w+)"', q).group(1)  # type: ignore[union-attr]
    family = next(f for f in catalog.FAMILIES if catalog.measurement_of(f, "system") == measurement)
    key = catalog.TAG_KEY[family]
    tag_values = [] if key is None else (mounts if key == "mount" else list(TAG_VALUES[family]))
    expected_series = sorted((h, t) for h in selected for t in (tag_values or [None]))
    assert sorted((s["tags"]["host"], s["tags"].get(str(key))) for s in series) == expected_series
    expected_columns = column_fields(target["query"])
    for s in series:
        h = HOSTS.index(s["tags"]["host"])
        t = TAG_VALUES[family].index(s["tags"][key]) if key is not None else 0
        assert set(s["columns"]) == {"time", *expected_columns}, f"{title}: columns {s['columns']}"
        assert len(s["values"]) == MINUTES
        for row in s["values"]:
            record = dict(zip(s["columns"], row, strict=True))
            minute = (record["time"] - T0_MS) // 60_000
            assert 0 <= minute < MINUTES
            for column, (field,) in expected_columns.items():
                assert record[column] == pytest.approx(value(field, h, minute, t)), (title, column, minute)


def test_panel_query_outside_the_data_returns_nothing(loaded_db):
    url, db = loaded_db
    _, target = targets()[0]
    start = T0_MS + 2 * MINUTES * 60_000
    assert run(url, db, expand(target["query"], list(HOSTS), start, start + 60_000, "10s")) == []
