"""The sinks against the real servers: InfluxDB 1.6.7 (v1 sink), VictoriaMetrics (v2 sink), SQLite.

Faults the real servers cannot be made to produce on demand (500, 429, a slow answer) come
from tests/faultproxy.py standing in front of the real server.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import ShipperConfig, SinkConfig
from monitor.errors import AuthFailed, Rejected, Unavailable
from monitor.lineprotocol import Sample, encode
from monitor.sinks import Sink, make_sink
from monitor.sinks.sqlite import SQLiteSink
from monitor.sqlitedb import live_bytes
from tests import servers
from tests.faultproxy import FaultProxy
from tests.helpers import ADMIN
from tests.store_helpers import stored

pytestmark = pytest.mark.integration

FIELDS = ("cpu_usage_overall", "memory_usage", "disk_read")


def samples(n: int, host: str, start_ms: int, step_ms: int = 1000) -> list[Sample]:
    return [
        Sample(
            start_ms + i * step_ms,
            host,
            {"cpu_usage_overall": i * 0.5 + 0.25, "memory_usage": 40.0 + i, "disk_read": 1024.0 * i},
        )
        for i in range(n)
    ]


def lines_of(batch: list[Sample]) -> list[str]:
    return [encode(s, "system") for s in batch]


def v1_config(url: str, db: str, **kw: object) -> SinkConfig:
    return SinkConfig(kind="influxdb_v1", url=url, database=db, **kw)  # type: ignore[arg-type]


def read_v1(
    url: str, db: str, auth: tuple[str, str] | None = None
) -> list[tuple[int, str, dict[str, float]]]:
    q = 'SELECT "cpu_usage_overall","memory_usage","disk_read","host" FROM "system" ORDER BY time'
    result = servers.influx_query(url, q, db, auth=auth)["results"][0]
    rows = result.get("series", [{}])[0].get("values", [])
    return [(r[0], r[4], dict(zip(FIELDS, r[1:4], strict=True))) for r in rows]


@pytest.fixture
def closing() -> Iterator[list[Sink]]:
    """Sinks appended here are closed after the test."""
    sinks: list[Sink] = []
    yield sinks
    for sink in sinks:
        sink.close()


# -- InfluxDB v1 sink against InfluxDB 1.6.7 -------------------------------------------------


@pytest.mark.parametrize("gzip_on", [True, False], ids=["gzip", "plain"])
def test_v1_sink_writes_samples_that_read_back_exactly(influxdb1, influx_db, closing, gzip_on):
    sink = make_sink(v1_config(influxdb1.url, influx_db), ShipperConfig(gzip=gzip_on))
    closing.append(sink)
    batch = samples(120, "web-1", 1_700_000_000_000)
    sink.write(lines_of(batch[:60]))
    sink.write(lines_of(batch[60:]))  # second batch over the same kept-alive connection
    assert read_v1(influxdb1.url, influx_db) == [(s.ts_ms, s.host, dict(s.fields)) for s in batch]


def test_v1_sink_rewrite_of_a_batch_does_not_duplicate(influxdb1, influx_db, closing):
    sink = make_sink(v1_config(influxdb1.url, influx_db), ShipperConfig())
    closing.append(sink)
    lines = lines_of(samples(10, "web-1", 1_700_000_000_000))
    sink.write(lines)
    sink.write(lines)
    assert len(read_v1(influxdb1.url, influx_db)) == 10


@pytest.fixture(scope="module")
def writer_db(influxdb1_auth: servers.Server) -> tuple[str, tuple[str, str]]:
    """A database on the auth server and a user that may only write to it."""
    db, user = "authdb", ("writer", "writer-pw-123")
    for q in (
        f'CREATE DATABASE "{db}"',
        f"CREATE USER {user[0]} WITH PASSWORD '{user[1]}'",
        f'GRANT WRITE ON "{db}" TO {user[0]}',
        "CREATE USER reader WITH PASSWORD 'reader-pw-123'",
        f'GRANT READ ON "{db}" TO reader',
    ):
        servers.influx_query(influxdb1_auth.url, q, auth=ADMIN)
    return db, user


def test_v1_sink_with_write_only_user_is_accepted(influxdb1_auth, writer_db, closing):
    db, (user, password) = writer_db
    sink = make_sink(v1_config(influxdb1_auth.url, db, username=user, password=password), ShipperConfig())
    closing.append(sink)
    batch = samples(5, "auth-host", 1_700_000_100_000)
    sink.write(lines_of(batch))
    assert read_v1(influxdb1_auth.url, db, auth=ADMIN)[-5:] == [
        (s.ts_ms, s.host, dict(s.fields)) for s in batch
    ]


@pytest.mark.parametrize(
    ("user", "password", "status"),
    [("writer", "wrong-password", 401), ("nobody", "writer-pw-123", 401), ("reader", "reader-pw-123", 403)],
)
def test_v1_sink_with_refused_credentials_raises_auth_failed(
    influxdb1_auth, writer_db, closing, user, password, status
):
    db, _ = writer_db
    sink = make_sink(v1_config(influxdb1_auth.url, db, username=user, password=password), ShipperConfig())
    closing.append(sink)
    with pytest.raises(AuthFailed) as info:
        sink.write(lines_of(samples(1, "auth-host", 1_700_000_200_000)))
    assert info.value.status == status
    assert password not in str(info.value) + sink.name


def test_v1_sink_field_type_conflict_is_rejected_with_the_server_message(influxdb1, influx_db, closing):
    sink = make_sink(v1_config(influxdb1.url, influx_db), ShipperConfig())
    closing.append(sink)
    sink.write(["system,host=a cpu_usage_overall=1.5 1700000000000"])
    with pytest.raises(Rejected) as info:
        sink.write(['system,host=a cpu_usage_overall="busy" 1700000001000'])
    assert info.value.status == 400
    assert "field type conflict" in info.value.reason
    assert "\n" not in info.value.reason


def test_v1_sink_missing_database_keeps_the_batch(influxdb1, closing):
    sink = make_sink(v1_config(influxdb1.url, "no_such_db"), ShipperConfig())
    closing.append(sink)
    with pytest.raises(Unavailable) as info:
        sink.write(lines_of(samples(1, "a", 1_700_000_000_000)))
    assert info.value.status == 404
    assert "database not found" in info.value.reason


def test_v1_sink_is_unavailable_while_its_server_is_stopped_and_recovers(tmp_path, closing):
    try:
        server = servers.start_influxdb1(tmp_path / "own-influxdb")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        servers.influx_query(server.url, 'CREATE DATABASE "outage"')
        sink = make_sink(v1_config(server.url, "outage"), ShipperConfig(timeout_s=5))
        closing.append(sink)
        batch = samples(3, "outage-host", 1_700_000_000_000)
        sink.write(lines_of(batch[:1]))
        server.stop()
        with pytest.raises(Unavailable) as info:
            sink.write(lines_of(batch[1:2]))
        assert info.value.status is None
        assert "refused" in info.value.reason.lower()
        server.start("/ping")
        sink.write(lines_of(batch[1:]))  # the same sink reconnects by itself
        assert [row[0] for row in read_v1(server.url, "outage")] == [s.ts_ms for s in batch]
    finally:
        server.stop()


@pytest.fixture
def v1_proxy(influxdb1: servers.Server) -> Iterator[FaultProxy]:
    with FaultProxy(influxdb1.url) as proxy:
        yield proxy


@pytest.mark.parametrize("mode", ["slow", "hang"])
def test_v1_sink_slow_server_is_unavailable_within_the_timeout(v1_proxy, influx_db, closing, mode):
    v1_proxy.set_mode(mode, delay_s=10)
    sink = make_sink(v1_config(v1_proxy.url, influx_db), ShipperConfig(timeout_s=0.5))
    closing.append(sink)
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        sink.write(lines_of(samples(1, "a", 1_700_000_000_000)))
    assert time.monotonic() - started < 3.0
    assert "timed out" in info.value.reason


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "retry_after_s"),
    [
        (500, {}, '{"error":"internal"}', Unavailable, None),
        (503, {"Retry-After": "5"}, "unavailable", Unavailable, 5.0),
        (429, {"Retry-After": "17"}, '{"error":"too many requests"}', Unavailable, 17.0),
        (401, {}, '{"error":"authorization failed"}', AuthFailed, None),
        (403, {}, '{"error":"forbidden"}', AuthFailed, None),
        (400, {}, '{"error":"unable to parse"}', Rejected, None),
    ],
)
def test_v1_sink_error_answers_through_the_proxy(
    v1_proxy, influx_db, closing, status, headers, body, cls, retry_after_s
):
    sink = make_sink(v1_config(v1_proxy.url, influx_db), ShipperConfig())
    closing.append(sink)
    sink.write(lines_of(samples(1, "a", 1_700_000_000_000)))  # a kept-alive connection exists
    v1_proxy.set_mode("status", status=status, headers=headers, body=body)
    with pytest.raises(cls) as info:
        sink.write(lines_of(samples(1, "a", 1_700_000_001_000)))
    assert type(info.value) is cls
    assert info.value.status == status
    assert getattr(info.value, "retry_after_s", None) == retry_after_s
    assert v1_proxy.requests[0].target.startswith("/write?")


@pytest.mark.parametrize("mode", ["refuse", "reset"])
def test_v1_sink_unreachable_then_back_writes_again(v1_proxy, influxdb1, influx_db, closing, mode):
    sink = make_sink(v1_config(v1_proxy.url, influx_db), ShipperConfig(timeout_s=5))
    closing.append(sink)
    batch = samples(3, "flaky", 1_700_000_000_000)
    sink.write(lines_of(batch[:1]))
    v1_proxy.set_mode(mode)
    with pytest.raises(Unavailable):
        sink.write(lines_of(batch[1:]))
    v1_proxy.set_mode("pass")
    sink.write(lines_of(batch[1:]))
    assert [row[0] for row in read_v1(influxdb1.url, influx_db)] == [s.ts_ms for s in batch]


# -- InfluxDB v2 sink against VictoriaMetrics ------------------------------------------------


def v2_config(url: str, token: str = "vm-ignores-the-token") -> SinkConfig:
    return SinkConfig(kind="influxdb_v2", url=url, org="acme", bucket="hosts", token=token)


def read_vm(url: str, host: str) -> dict[str, list[tuple[int, float]]]:
    """``{series name: [(ts_ms, value), ...]}`` of every series with ``host``."""
    urllib.request.urlopen(f"{url}/internal/force_flush", timeout=10).read()
    match = urllib.parse.quote(f'{{host="{host}"}}')
    with urllib.request.urlopen(f"{url}/api/v1/export?match[]={match}", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, list[tuple[int, float]]] = {}
    for line in text.splitlines():
        item = json.loads(line)
        points = zip(item["timestamps"], item["values"], strict=True)
        out.setdefault(item["metric"]["__name__"], []).extend(points)
    return {name: sorted(points) for name, points in out.items()}


@pytest.mark.parametrize("gzip_on", [True, False], ids=["gzip", "plain"])
def test_v2_sink_samples_arrive_in_victoriametrics(victoriametrics, closing, gzip_on):
    host = f"vm-{'gz' if gzip_on else 'plain'}-{time.time_ns()}"
    start_ms = (int(time.time()) - 600) * 1000  # recent: VictoriaMetrics drops points past retention
    batch = samples(50, host, start_ms)
    sink = make_sink(v2_config(victoriametrics.url), ShipperConfig(gzip=gzip_on))
    closing.append(sink)
    sink.write(lines_of(batch[:25]))
    sink.write(lines_of(batch[25:]))
    expected = {f"system_{name}": [(s.ts_ms, s.fields[name]) for s in batch] for name in FIELDS}
    deadline = time.monotonic() + 10
    while (got := read_vm(victoriametrics.url, host)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert got == expected


@pytest.fixture
def vm_proxy(victoriametrics: servers.Server) -> Iterator[FaultProxy]:
    with FaultProxy(victoriametrics.url) as proxy:
        yield proxy


@pytest.mark.parametrize(
    ("status", "headers", "body", "cls", "retry_after_s"),
    [
        (500, {}, '{"code":"internal error","message":"boom"}', Unavailable, None),
        (503, {"Retry-After": "9"}, "", Unavailable, 9.0),
        (429, {"Retry-After": "4"}, "slow down", Unavailable, 4.0),
        (401, {}, '{"code":"unauthorized","message":"unauthorized access"}', AuthFailed, None),
        (403, {}, '{"code":"forbidden","message":"no write permission"}', AuthFailed, None),
        (400, {}, '{"code":"invalid","message":"unable to parse"}', Rejected, None),
    ],
)
def test_v2_sink_error_answers_through_the_proxy(
    vm_proxy, closing, status, headers, body, cls, retry_after_s
):
    sink = make_sink(v2_config(vm_proxy.url, token="tok-not-in-errors"), ShipperConfig())
    closing.append(sink)
    now_ms = int(time.time()) * 1000
    sink.write(lines_of(samples(1, "vm-proxy", now_ms)))  # passes through to VictoriaMetrics
    vm_proxy.set_mode("status", status=status, headers=headers, body=body)
    with pytest.raises(cls) as info:
        sink.write(lines_of(samples(1, "vm-proxy", now_ms + 1000)))
    assert type(info.value) is cls
    assert info.value.status == status
    assert getattr(info.value, "retry_after_s", None) == retry_after_s
    assert "tok-not-in-errors" not in str(info.value)
    assert vm_proxy.requests[0].target.startswith("/api/v2/write?")


@pytest.mark.parametrize("mode", ["refuse", "reset", "slow"])
def test_v2_sink_unreachable_or_slow_is_unavailable_then_recovers(vm_proxy, victoriametrics, closing, mode):
    host = f"vm-{mode}-{time.time_ns()}"
    sink = make_sink(v2_config(vm_proxy.url), ShipperConfig(timeout_s=0.5))
    closing.append(sink)
    now_ms = int(time.time()) * 1000
    vm_proxy.set_mode(mode, delay_s=10)
    started = time.monotonic()
    with pytest.raises(Unavailable) as info:
        sink.write(lines_of(samples(1, host, now_ms)))
    assert time.monotonic() - started < 3.0
    assert info.value.status is None
    vm_proxy.set_mode("pass")
    sink.write(lines_of(samples(1, host, now_ms)))
    assert read_vm(victoriametrics.url, host)["system_memory_usage"] == [(now_ms, 40.0)]


# -- SQLite sink -----------------------------------------------------------------------------

NOW_S = 1_700_000_000.0
DAY_MS = 86_400_000


class Clock:
    """A wall clock (``now_s``) and a monotonic one: ``advance`` moves both, ``step`` the wall alone."""

    def __init__(self, now_s: float) -> None:
        self.now_s = now_s
        self.mono_s = 50.0

    def __call__(self) -> float:
        return self.now_s

    def monotonic(self) -> float:
        return self.mono_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds
        self.mono_s += seconds

    def step(self, seconds: float) -> None:
        self.now_s += seconds


def sqlite_sink(path: Path, clock: Clock, **kw: object) -> SQLiteSink:
    config = SinkConfig(kind="sqlite", path=path, **kw)  # type: ignore[arg-type]
    return SQLiteSink(config, ShipperConfig(timeout_s=0.2), clock=clock, monotonic=clock.monotonic)


def rows(path: Path) -> list[tuple[str, str, int, float]]:
    return sorted(((m, h, ts, v) for m, h, _, ts, v in stored(path)), key=lambda r: (r[2], r[0]))


def test_sqlite_sink_stores_every_field_of_every_sample_in_a_new_directory(tmp_path, closing):
    path = tmp_path / "not" / "yet" / "metrics.db"
    sink = sqlite_sink(path, Clock(NOW_S))
    closing.append(sink)
    batch = samples(20, "db-host", int(NOW_S * 1000) - 20_000)
    sink.write(lines_of(batch))
    expected = sorted((m, s.host, s.ts_ms, v) for s in batch for m, v in s.fields.items())
    assert rows(path) == sorted(expected, key=lambda r: (r[2], r[0]))


def test_sqlite_sink_resent_batch_does_not_duplicate(tmp_path, closing):
    sink = sqlite_sink(tmp_path / "m.db", Clock(NOW_S))
    closing.append(sink)
    lines = lines_of(samples(10, "h", int(NOW_S * 1000) - 10_000))
    sink.write(lines)
    sink.write(lines)
    assert len(rows(tmp_path / "m.db")) == 10 * len(FIELDS)


def test_sqlite_sink_bad_line_is_rejected_but_the_good_lines_are_stored(tmp_path, closing):
    sink = sqlite_sink(tmp_path / "m.db", Clock(NOW_S))
    closing.append(sink)
    good = lines_of(samples(2, "h", int(NOW_S * 1000) - 2000))
    with pytest.raises(Rejected) as info:
        sink.write([good[0], "this is not line protocol at all", good[1], "system,host=h x=nan 1"])
    assert info.value.reason.startswith("2 of 4 lines not stored")
    assert "line 2" in info.value.reason
    assert len(rows(tmp_path / "m.db")) == 2 * len(FIELDS)


def test_sqlite_sink_retention_by_age_runs_at_most_once_a_minute(tmp_path, closing):
    clock = Clock(NOW_S)
    sink = sqlite_sink(tmp_path / "m.db", clock, retention_days=1.0)
    closing.append(sink)
    now_ms = int(NOW_S * 1000)
    old, fresh = samples(1, "h", now_ms - 2 * DAY_MS), samples(1, "h", now_ms - 1000)
    sink.write(lines_of(old + fresh))  # first write: retention runs
    assert {r[2] for r in rows(tmp_path / "m.db")} == {now_ms - 1000}
    clock.advance(30)
    sink.write(lines_of(old))  # within the minute: no retention pass
    assert {r[2] for r in rows(tmp_path / "m.db")} == {now_ms - 2 * DAY_MS, now_ms - 1000}
    clock.advance(31)
    sink.write(lines_of(samples(1, "h", now_ms + 60_000)))
    assert {r[2] for r in rows(tmp_path / "m.db")} == {now_ms - 1000, now_ms + 60_000}


def test_sqlite_sink_retention_never_follows_the_wall_clock_a_month_forward(tmp_path, closing):
    clock = Clock(NOW_S)
    sink = sqlite_sink(tmp_path / "m.db", clock, retention_days=30.0)
    closing.append(sink)
    now_ms = int(NOW_S * 1000)
    real = samples(60, "h", now_ms - 60_000)
    sink.write(lines_of(real))
    clock.step(31 * 86_400)  # the wall clock jumps a month ahead; samples are stamped by it
    for _ in range(3):
        clock.advance(61)  # a retention pass each time
        sink.write(lines_of(samples(1, "h", int(clock() * 1000))))
    assert {s.ts_ms for s in real} <= {r[2] for r in rows(tmp_path / "m.db")}


def test_sqlite_sink_started_with_a_wrong_clock_keeps_the_stored_samples(tmp_path, closing):
    now_ms = int(NOW_S * 1000)
    real = samples(60, "h", now_ms - 60_000)
    first = sqlite_sink(tmp_path / "m.db", Clock(NOW_S), retention_days=30.0)
    first.write(lines_of(real))
    first.close()
    wrong = Clock(NOW_S + 31 * 86_400)  # the next process starts with the clock a month ahead
    second = sqlite_sink(tmp_path / "m.db", wrong, retention_days=30.0)
    closing.append(second)
    second.write(lines_of(samples(1, "h", int(wrong() * 1000))))
    assert {s.ts_ms for s in real} <= {r[2] for r in rows(tmp_path / "m.db")}


def test_sqlite_sink_retention_catches_up_at_the_pace_of_real_time(tmp_path, closing):
    clock = Clock(NOW_S)
    sink = sqlite_sink(tmp_path / "m.db", clock, retention_days=1.0)
    closing.append(sink)
    now_ms = int(NOW_S * 1000)
    sink.write(lines_of(samples(1, "h", now_ms)))
    clock.step(2 * 86_400)
    clock.advance(61)
    sink.write(lines_of(samples(1, "h", int(clock() * 1000))))
    assert now_ms in {r[2] for r in rows(tmp_path / "m.db")}  # a jump alone deletes nothing
    clock.advance(86_400 + 7200)  # a real day passes (and a chunk: raw data goes by whole chunks)
    sink.write(lines_of(samples(1, "h", int(clock() * 1000))))
    assert now_ms not in {r[2] for r in rows(tmp_path / "m.db")}


def test_sqlite_sink_retention_by_size_drops_the_oldest_and_caps_the_file(tmp_path, closing):
    max_db_bytes = 512 * 1024
    clock = Clock(NOW_S)
    path = tmp_path / "m.db"
    sink = sqlite_sink(path, clock, max_db_bytes=max_db_bytes, retention_days=3650.0)
    closing.append(sink)
    start_ms = int(NOW_S * 1000) - 30 * DAY_MS
    total = 0
    rnd = random.Random(7)
    for batch_no in range(30):  # 30 x 1000 noisy samples x 3 fields, 10 s apart: several times the cap
        batch = [
            Sample(s.ts_ms, s.host, {k: round(rnd.uniform(0, 100), 2) for k in s.fields})
            for s in samples(1000, "h", start_ms + batch_no * 10_000_000, step_ms=10_000)
        ]
        sink.write(lines_of(batch))
        total += len(batch)
        clock.advance(61)
    newest_ms = start_ms + 29 * 10_000_000 + 999 * 10_000
    kept = rows(path)
    with sqlite3.connect(path) as conn:
        used = live_bytes(conn)
        minutes_from = conn.execute("SELECT min(bucket_ms), max(bucket_ms) FROM minutes").fetchone()
    assert used <= max_db_bytes
    assert path.stat().st_size <= 2 * max_db_bytes  # freed pages are reused: the file stays bounded
    assert 0 < len(kept) < total * len(FIELDS)
    assert max(r[2] for r in kept) == newest_ms  # the newest data is what is kept
    assert min(r[2] for r in kept) > start_ms
    assert minutes_from[0] > start_ms  # the minute tier was cut at its own share too
    assert minutes_from[1] > newest_ms - 3 * 7_200_000  # up to the newest sealed chunk


def test_sqlite_sink_locked_database_is_unavailable_then_recovers(tmp_path, closing):
    path = tmp_path / "m.db"
    sink = sqlite_sink(path, Clock(NOW_S))
    closing.append(sink)
    lines = lines_of(samples(2, "h", int(NOW_S * 1000) - 2000))
    sink.write(lines[:1])
    blocker = sqlite3.connect(path, timeout=0)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(Unavailable) as info:
            sink.write(lines[1:])
        assert "locked" in info.value.reason
    finally:
        blocker.rollback()
        blocker.close()
    sink.write(lines[1:])
    assert len(rows(path)) == 2 * len(FIELDS)


def tick(host: str, ts_ms: int, mounts: dict[str, float]) -> str:
    """One tick as the spool holds it: the host line, then one line per mount, joined by newlines."""
    lines = [encode(Sample(ts_ms, host, {"cpu_usage_overall": 1.0}), "system")]
    for mount, used in mounts.items():
        fs = Sample(ts_ms, host, {"filesystem_used_percent": used}, (("mount", mount),), "filesystem")
        lines.append(encode(fs, "system"))
    return "\n".join(lines)


def tagged_rows(path: Path) -> list[tuple[str, str, str, int, float]]:
    return sorted(stored(path), key=lambda r: (r[3], r[0], r[2]))


def test_sqlite_sink_stores_every_line_of_a_multi_line_tick_with_its_tags(tmp_path, closing):
    sink = sqlite_sink(tmp_path / "m.db", Clock(NOW_S))
    closing.append(sink)
    ts = int(NOW_S * 1000) - 1000
    row = tick("h", ts, {"/": 40.0, "/srv/a b,c=d": 7.5})  # a mount needing line-protocol escapes
    sink.write([row])
    sink.write([row])  # re-sent: overwrites itself
    assert tagged_rows(tmp_path / "m.db") == [
        ("cpu_usage_overall", "h", "", ts, 1.0),
        ("filesystem_used_percent", "h", "mount=/", ts, 40.0),
        ("filesystem_used_percent", "h", "mount=/srv/a b\\,c=d", ts, 7.5),
    ]


def test_sqlite_sink_keeps_only_the_familys_tag_key(tmp_path, closing):
    sink = sqlite_sink(tmp_path / "m.db", Clock(NOW_S))
    closing.append(sink)
    ts = int(NOW_S * 1000)
    sink.write([f"system_filesystem,host=h,mount=/,owner=x filesystem_used_percent=3 {ts}"])
    assert tagged_rows(tmp_path / "m.db") == [("filesystem_used_percent", "h", "mount=/", ts, 3.0)]


def test_sqlite_sink_bad_part_of_a_tick_is_rejected_and_its_other_lines_stored(tmp_path, closing):
    sink = sqlite_sink(tmp_path / "m.db", Clock(NOW_S))
    closing.append(sink)
    ts = int(NOW_S * 1000)
    good = tick("h", ts, {"/": 40.0})
    with pytest.raises(Rejected) as info:
        sink.write([good + "\nnot line protocol\n" + tick("h", ts, {"/home": 5.0}).split("\n")[1]])
    assert info.value.reason.startswith("1 of 1 lines not stored")
    assert "line 1 (part 3 of 4)" in info.value.reason
    assert [r[2] for r in tagged_rows(tmp_path / "m.db")] == ["", "mount=/", "mount=/home"]


def test_sqlite_sink_retention_deletes_tagged_rows_by_age_too(tmp_path, closing):
    clock = Clock(NOW_S)
    sink = sqlite_sink(tmp_path / "m.db", clock, retention_days=1.0)
    closing.append(sink)
    now_ms = int(NOW_S * 1000)
    sink.write([tick("h", now_ms - 1000, {"/": 1.0})])
    clock.advance(3 * 86_400)
    new_ms = int(clock.now_s * 1000)
    sink.write([tick("h", new_ms, {"/": 2.0})])
    assert [(r[2], r[3], r[4]) for r in tagged_rows(tmp_path / "m.db")] == [
        ("", new_ms, 1.0),
        ("mount=/", new_ms, 2.0),
    ]
