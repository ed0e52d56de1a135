"""/hosts' newest values read the same from InfluxDB 1.6.7 (InfluxQL) as from the embedded store.

The same samples, written as the agent writes them, go to a real InfluxDB 1.6.7 and through the
SQLite sink's own decoding to an SQLite file; :func:`monitor.api.fleet.newest_values` must give
one answer for both: a recent host from the fleet-wide query, a silent one from its own.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.api.fleet import Now, newest_values
from monitor.api.stores.influxql import InfluxQLStore
from monitor.api.stores.sqlite import SQLiteStore
from monitor.lineprotocol import Sample, encode
from tests.integration.test_store_influxql import T0, write
from tests.unit.test_store_sqlite_tags import store_lines

pytestmark = pytest.mark.integration

SILENT_AFTER_S = 30.0
NOW_MS = T0 + 3_600_000


def _tick(ts_ms: int, host: str, cpu: float, fs: dict[str, float]) -> list[Sample]:
    samples = [Sample(ts_ms, host, {"cpu_usage_overall": cpu, "memory_usage": cpu + 1})]
    samples += [
        Sample(ts_ms, host, {"filesystem_used_percent": v}, (("mount", m),), "filesystem")
        for m, v in fs.items()
    ]
    return samples


SAMPLES = [
    *_tick(NOW_MS - 20_000, "live", 10.0, {"/": 50.0, "/var lib": 70.0}),
    *_tick(NOW_MS - 10_000, "live", 11.0, {"/": 51.0, "/var lib": 69.0}),
    *_tick(NOW_MS - 15_000, "busy", 90.0, {"/": 20.0}),
    *_tick(T0, "dead", 5.0, {"/": 99.0}),  # an hour ago: silent
    Sample(NOW_MS - 5_000, "bare", {"cpu_usage_overall": 1.0}),  # no memory, no filesystem
]
EXPECTED = {
    "live": Now(11.0, 12.0, 69.0, "/var lib"),
    "busy": Now(90.0, 91.0, 20.0, "/"),
    "dead": Now(5.0, 6.0, 99.0, "/"),
    "bare": Now(1.0, None, None, None),
}


@pytest.fixture
def influx_store(influxdb1, influx_db) -> InfluxQLStore:
    write(influxdb1.url, influx_db, [encode(s, "system") for s in SAMPLES])
    return InfluxQLStore(influxdb1.url, influx_db, timeout_s=5)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> SQLiteStore:
    ticks: dict[tuple[int, str], list[str]] = {}
    for sample in SAMPLES:
        ticks.setdefault((sample.ts_ms, sample.host), []).append(encode(sample, "system"))
    store_lines(tmp_path / "m.db", ["\n".join(lines) for lines in ticks.values()])
    return SQLiteStore(tmp_path / "m.db")


@pytest.mark.parametrize("kind", ["influx_store", "sqlite_store"])
def test_newest_values_are_the_same_from_both_stores(kind, request):
    store = request.getfixturevalue(kind)
    seen = store.hosts()
    assert [h.host for h in seen] == ["bare", "busy", "dead", "live"]
    assert newest_values(store, seen, SILENT_AFTER_S) == EXPECTED
