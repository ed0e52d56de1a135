"""A /metrics window whose raw rows fit the cap is answered over InfluxDB from one raw read,
no count() first; one that does not fit is counted and downsampled as before. Every read of
rows is two statements, each over half of the metrics, asked at once.

A FaultProxy in mode "record" in front of a real InfluxDB 1.6.7 keeps every statement the
store sends.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from monitor.api import make_app, views
from monitor.api.stores import Query
from monitor.api.stores.influxql import InfluxQLStore
from monitor.config import parse
from tests import servers
from tests.faultproxy import FaultProxy
from tests.unit.test_api import call

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
NOW_MS = T0 + 3_600_000
DB = "window"
FIELDS = "cpu_usage_overall,memory_usage"


def lines() -> list[str]:
    """Host a: an hour at 1 s; host b: its first 10 minutes at 1 s; host fast: the last 20 s at
    10 Hz; host mem: memory only, minutes 30 to 40 at 1 s."""
    out = [
        f"system,host=a cpu_usage_overall={i % 97},memory_usage={i % 13} {T0 + i * 1000}" for i in range(3600)
    ]
    out += [f"system,host=b cpu_usage_overall={i % 7},memory_usage=5 {T0 + i * 1000}" for i in range(600)]
    out += [
        f"system,host=fast cpu_usage_overall={i},memory_usage=1 {NOW_MS - 20_000 + i * 100}"
        for i in range(200)
    ]
    out += [f"system,host=mem memory_usage={i % 5} {T0 + 1_800_000 + i * 1000}" for i in range(600)]
    return out


@pytest.fixture(scope="module")
def loaded(influxdb1: servers.Server) -> servers.Server:
    servers.influx_query(influxdb1.url, f"CREATE DATABASE {DB}")
    body = "\n".join(lines()).encode()
    req = urllib.request.Request(f"{influxdb1.url}/write?db={DB}&precision=ms", data=body, method="POST")
    urllib.request.urlopen(req, timeout=30).close()
    return influxdb1


@pytest.fixture
def recorded(loaded: servers.Server) -> Iterator[tuple[FaultProxy, InfluxQLStore]]:
    with FaultProxy(loaded.url) as proxy:
        proxy.record()
        store = InfluxQLStore(proxy.url, DB, timeout_s=20)
        yield proxy, store
        store.close()


def ask(store: InfluxQLStore, target: str, tmp_path: Any, max_points: int) -> dict[str, Any]:
    config = parse({"agent": {"state_dir": str(tmp_path)}, "api": {"max_points": max_points}}, environ={})
    app = make_app(config, store, clock=lambda: NOW_MS / 1000, spool_status=lambda: None)
    response = call(app, target)
    assert response.status == 200, response.json()
    return dict(response.json())


def statements(proxy: FaultProxy) -> list[str]:
    return [urllib.parse.parse_qs(urllib.parse.urlsplit(r.target).query)["q"][0] for r in proxy.requests]


def test_a_window_that_fits_is_one_raw_read_and_no_count(recorded, tmp_path):
    proxy, store = recorded
    answer = ask(store, f"/metrics?start=10&end=0&host=a&metrics={FIELDS}", tmp_path, 1000)
    assert (answer["raw_samples"], answer["points"], answer["downsampled"]) == (600, 600, False)
    sent = statements(proxy)
    # one raw read: a statement per half of the metrics, asked at once
    assert sorted(q.split(" FROM ")[0] for q in sent) == [
        'SELECT "cpu_usage_overall"',
        'SELECT "memory_usage"',
    ]
    assert all(q.endswith("LIMIT 1001") for q in sent), sent
    query = Query(tuple(FIELDS.split(",")), NOW_MS - 600_000, NOW_MS, "a")
    assert [[ts, *values] for ts, values in store.rows(query)[0].rows] == [
        [p["ts_ms"], p["cpu_usage_overall"], p["memory_usage"]] for p in answer["series"][0]["points"]
    ]
    assert answer["raw_samples"] == sum(store.counts(query).values())


def test_series_that_fit_but_exceed_the_cap_together_are_downsampled_without_a_count(recorded, tmp_path):
    proxy, store = recorded
    answer = ask(store, f"/metrics?start=60&end=50&metrics={FIELDS}", tmp_path, 1000)
    assert (answer["raw_samples"], answer["downsampled"]) == (1200, True)  # a and b, 600 rows each
    assert answer["downsample_reason"] == "1200 raw points exceed max_points=1000"
    sent = statements(proxy)
    assert not any("count(" in q for q in sent), sent
    assert len(sent) == 4 and all(q.endswith("LIMIT 1001") for q in sent[:2]), sent  # the raw read...
    assert all("GROUP BY time(" in q for q in sent[2:]), sent  # ...then the rows at the step


def test_a_window_the_probe_expects_over_the_cap_is_downsampled_while_it_is_counted(recorded, tmp_path):
    proxy, store = recorded
    answer = ask(store, f"/metrics?start=60&end=0&host=a&metrics={FIELDS}", tmp_path, 1000)
    assert (answer["raw_samples"], answer["downsampled"], answer["step_s"]) == (3600, True, 5)
    sent = statements(proxy)
    assert sent[0].endswith("LIMIT 16"), sent  # the probe: a's first rows, 1 s apart
    assert not any(q.endswith("LIMIT 1001") for q in sent)
    # then the rows at the probe's step and the counts, asked at once (in any order), each in
    # two halves of the metrics
    assert len(sent) == 5 and sorted("count(" in q for q in sent[1:]) == [False, False, True, True], sent
    assert sum("GROUP BY time(5000ms" in q for q in sent) == 2, sent
    query = Query(tuple(FIELDS.split(",")), NOW_MS - 3_600_000, NOW_MS, "a")
    assert [[ts, *values] for ts, values in store.rows(query, 5000)[0].rows] == [
        [p["ts_ms"], p["cpu_usage_overall"], p["memory_usage"]] for p in answer["series"][0]["points"]
    ]


def test_a_window_whose_counts_find_a_series_the_probe_missed_is_read_again_at_their_step(recorded, tmp_path):
    proxy, store = recorded
    # minutes 20 to 40: the probe reads cpu_usage_overall, which host mem does not have
    answer = ask(store, f"/metrics?start=40&end=20&metrics={FIELDS}", tmp_path, 1000)
    assert answer["raw_samples"] == 1200 + 600 and [s["host"] for s in answer["series"]] == ["a", "mem"]
    grouped = [q for q in statements(proxy) if "GROUP BY time(" in q]
    one, two = (views.choose_step(None, n, hosts, 1_200_000, 1000)[0] for n, hosts in ((1200, 1), (1800, 2)))
    assert one != two and answer["step_s"] * 1000 == two
    # the rows at the probe's step (two halves of the metrics), then again at the counts' step
    assert [f"time({one}ms)" in q for q in grouped] == [True, True, False, False], grouped
    assert [f"time({two}ms)" in q for q in grouped] == [False, False, True, True], grouped
    assert answer["points"] <= 1000


def test_a_series_over_the_cap_in_the_raw_read_is_then_counted_and_downsampled(recorded, tmp_path):
    proxy, store = recorded
    answer = ask(store, f"/metrics?start=0.5&end=0&host=fast&metrics={FIELDS}", tmp_path, 100)
    assert (answer["raw_samples"], answer["downsampled"]) == (200, True)  # 10 Hz: 200 rows in 30 s
    sent = statements(proxy)
    assert sent[0].endswith("LIMIT 101"), sent  # 30 s fit the cap at 1 s: no probe
    assert any("count(" in q for q in sent) and "GROUP BY time(" in sent[-1]


def test_a_requested_step_is_counted_and_grouped_without_a_raw_read(recorded, tmp_path):
    proxy, store = recorded
    answer = ask(store, f"/metrics?start=10&end=0&host=a&step=60&metrics={FIELDS}", tmp_path, 1000)
    assert (answer["raw_samples"], answer["step_s"], answer["points"]) == (
        600,
        60,
        11,
    )  # 10 minutes over 11 epoch-aligned minutes
    sent = statements(proxy)
    assert not any("LIMIT" in q for q in sent), sent
    assert any("count(" in q for q in sent) and "GROUP BY time(60000ms" in sent[-1]
