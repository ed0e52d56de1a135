"""InfluxDB's JSON writes a whole float without a fraction (``50``, not ``50.0``): the InfluxQL
store still answers floats for values and ints for times, against the real InfluxDB 1.6.7."""

from __future__ import annotations

import urllib.request

import pytest

from monitor.api import make_app
from monitor.api.stores import ColumnRows, Query
from monitor.api.stores.influxql import InfluxQLStore
from monitor.config import parse
from tests.unit.test_api import call

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000
CPU_MEM = ("cpu_usage_overall", "memory_usage")


@pytest.fixture
def store(influxdb1, influx_db):
    lines = [
        f"system,host=a cpu_usage_overall=10,memory_usage=50.5 {T0}",
        f"system,host=a cpu_usage_overall=20 {T0 + 1000}",
        f"system,host=b cpu_usage_overall=-3,memory_usage=0 {T0 + 1000}",
    ]
    req = urllib.request.Request(
        f"{influxdb1.url}/write?db={influx_db}&precision=ms", data="\n".join(lines).encode(), method="POST"
    )
    urllib.request.urlopen(req, timeout=10).close()
    store = InfluxQLStore(influxdb1.url, influx_db, timeout_s=5)
    yield store
    store.close()


def types(rows: list[tuple[int, list[float | None]]]) -> set[tuple[type, ...]]:
    return {(type(ts), *(type(v) for v in values)) for ts, values in rows}


def test_whole_float_values_come_back_as_floats_and_times_as_ints(store):
    query = Query(CPU_MEM, T0, T0 + 2000)
    raw = store.rows(query)
    assert [(s.host, s.rows) for s in raw] == [
        ("a", [(T0, [10.0, 50.5]), (T0 + 1000, [20.0, None])]),
        ("b", [(T0 + 1000, [-3.0, 0.0])]),
    ]
    assert types(raw[0].rows) | types(raw[1].rows) == {(int, float, float), (int, float, type(None))}
    window = store.raw_window(query, 1000)
    assert window is not None and window[1] == raw
    assert types(window[1][1].rows) == {(int, float, float)}
    means = store.rows(query, step_ms=10_000)
    assert means[1].rows == [(T0, [-3.0, 0.0])] and types(means[1].rows) == {(int, float, float)}


def test_aggregates_of_whole_floats_are_floats_and_counts_ints(store):
    for fn in ("mean", "min", "max", "last", "count"):
        result = store.aggregate("cpu_usage_overall", fn, T0, T0 + 2000, None)
        assert type(result.value) is float and type(result.samples) is int, (fn, result)
    assert store.aggregate("cpu_usage_overall", "count", T0, T0 + 2000, None).value == 3.0
    assert store.aggregate("cpu_usage_overall", "min", T0, T0 + 2000, None).value == -3.0
    assert store.counts(Query(CPU_MEM, T0, T0 + 2000)) == {("a", ()): 2, ("b", ()): 1}


def test_the_metrics_answer_writes_whole_floats_with_a_fraction(store, tmp_path):
    config = parse({"agent": {"state_dir": str(tmp_path)}}, environ={})
    app = make_app(config, store, clock=lambda: (T0 + 2000) / 1000, spool_status=lambda: None)
    response = call(app, "/metrics?start=1&end=0&host=b&metrics=cpu_usage_overall,memory_usage")
    assert response.status == 200
    assert b'"ts_ms":1700000001000,"cpu_usage_overall":-3.0,"memory_usage":0.0}' in response.body
    csv = call(app, "/metrics?start=1&end=0&host=b&metrics=cpu_usage_overall,memory_usage&format=csv")
    assert csv.body.decode().splitlines()[1].endswith(",-3.0,0.0"), csv.body


def test_fields_missing_here_and_there_come_back_as_floats_and_none_held_as_columns(influxdb1, influx_db):
    lines = [
        f"system,host=c cpu_usage_overall=1,memory_usage=2,disk_read=3 {T0}",
        f"system,host=c cpu_usage_overall=4,disk_read=5 {T0 + 1000}",
        f"system,host=c memory_usage=6,disk_read=7 {T0 + 2000}",
    ]
    req = urllib.request.Request(
        f"{influxdb1.url}/write?db={influx_db}&precision=ms", data="\n".join(lines).encode(), method="POST"
    )
    urllib.request.urlopen(req, timeout=10).close()
    store = InfluxQLStore(influxdb1.url, influx_db, timeout_s=5)
    try:
        # two statements, (cpu, memory) and (disk): each answers all three times, with gaps
        query = Query(("cpu_usage_overall", "memory_usage", "disk_read"), T0, T0 + 3000)
        expected = [(T0, [1.0, 2.0, 3.0]), (T0 + 1000, [4.0, None, 5.0]), (T0 + 2000, [None, 6.0, 7.0])]
        (raw,) = store.rows(query)
        assert isinstance(raw.rows, ColumnRows) and raw.rows == expected
        none = type(None)
        assert types(list(raw.rows)) == {
            (int, float, float, float),
            (int, float, none, float),
            (int, none, float, float),
        }
        window = store.raw_window(query, 10)
        assert window is not None and window[0] == {("c", ()): 3} and window[1] == [raw]
        # (cpu) and (memory): the halves answer different times, merged by time
        (pair,) = store.rows(Query(("cpu_usage_overall", "memory_usage"), T0, T0 + 3000))
        assert list(pair.rows) == [(T0, [1.0, 2.0]), (T0 + 1000, [4.0, None]), (T0 + 2000, [None, 6.0])]
    finally:
        store.close()
