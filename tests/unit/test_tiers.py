"""The tiered store: packed chunks round-trip, rollups equal raw answers, writes stay idempotent,
each tier keeps its own retention."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor import chunkcodec, metricsdb, tiers
from monitor.api import make_app, views
from monitor.api.stores import HostSeen, Newest, Query, Series
from monitor.api.stores.sqlite import SQLiteStore
from monitor.api.stores.sqlite_tiers import DecodedChunks, plan
from monitor.config import ShipperConfig, SinkConfig
from monitor.errors import QueryFailed
from monitor.lineprotocol import Sample, encode
from monitor.sinks.sqlite import SQLiteSink
from tests.store_helpers import stored, write_rows
from tests.unit.test_api import call, make_config

T0 = 1_700_000_000_000 - 1_700_000_000_000 % metricsdb.CHUNK_MS  # a chunk boundary
HOUR_MS = 3_600_000
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
two_decimals = st.integers(-(10**7), 10**7).map(lambda i: i / 100)


@given(st.lists(st.one_of(finite, two_decimals), min_size=1, max_size=300), st.data())
def test_a_chunk_gives_back_the_same_times_and_values_bit_for_bit(values, data):
    gaps = data.draw(st.lists(st.integers(1, 10**9), min_size=len(values) - 1, max_size=len(values) - 1))
    stamps = [T0]
    for gap in gaps:
        stamps.append(stamps[-1] + gap)
    got_stamps, got_values = chunkcodec.decode(chunkcodec.encode(stamps, values))
    assert got_stamps == stamps
    assert got_values == values  # and bit for bit, but a zero's sign may not survive the scaled form:
    assert [v.hex() for v in got_values if v] == [v.hex() for v in values if v]


def test_realistic_values_pack_to_a_few_bytes_each():
    stamps = [T0 + i * 10_000 for i in range(720)]
    percent = [round(50 + 20 * math.sin(i / 40) + (i * 7919 % 13) / 10, 2) for i in range(720)]
    rate = [float(1000 * (i * 7919 % 97)) for i in range(720)]
    constant = [1.5e12] * 720
    for values, most in ((percent, 3.0), (rate, 3.0), (constant, 0.2)):
        assert len(chunkcodec.encode(stamps, values)) / 720 <= most


@st.composite
def series_samples(draw: st.DrawFn) -> list[tuple[int, float]]:
    """One series' samples over up to 8 hours, with gaps, some on bucket edges."""
    offsets = draw(st.lists(st.integers(0, 8 * HOUR_MS - 1), min_size=1, max_size=120, unique=True))
    offsets += draw(st.lists(st.sampled_from([0, 59_999, 60_000, HOUR_MS, 2 * HOUR_MS - 1]), max_size=3))
    return sorted({T0 + o: draw(two_decimals) for o in offsets}.items())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(series_samples(), st.integers(0, 8 * HOUR_MS), st.integers(0, 8 * HOUR_MS), st.data())
def test_answers_from_the_tiers_equal_answers_from_raw_samples(tmp_path_factory, samples, a, b, data):
    path = tmp_path_factory.mktemp("tiers") / "m.db"
    write_rows(path, [("cpu_usage_overall", "h", ts, v) for ts, v in samples])
    write_rows(path, [("memory_usage", "h", T0 + 9 * HOUR_MS, 1.0)])
    conn = metricsdb.connect(path)
    with conn:
        tiers.seal_idle(conn)  # every window of the series sealed: only rollups and chunks answer
        assert conn.execute("SELECT count(*) FROM recent WHERE series = 1").fetchone()[0] == 0
    conn.close()
    start_ms, end_ms = T0 + min(a, b), T0 + max(a, b) + 1
    inside = [(ts, v) for ts, v in samples if start_ms <= ts < end_ms]
    store = SQLiteStore(path)
    for fn in ("count", "mean", "min", "max", "last"):
        got = store.aggregate("cpu_usage_overall", fn, start_ms, end_ms, "h")
        values = [v for _, v in inside]
        if not values:
            assert got.samples == 0
            continue
        want = {"count": len(values), "mean": sum(values) / len(values), "min": min(values)}
        want |= {"max": max(values), "last": inside[-1][1]}
        assert got.samples == len(values)
        assert got.value == (pytest.approx(want[fn], rel=1e-9, abs=1e-9) if fn == "mean" else want[fn])
    steps = [60_000, 300_000, 600_000, 900_000, HOUR_MS, 2 * HOUR_MS, 10_000, 90_000]  # 5-15 min: packed days
    step_ms = data.draw(st.sampled_from(steps))
    got_rows = store.rows(Query(("cpu_usage_overall",), start_ms, end_ms, "h"), step_ms)
    buckets: dict[int, list[float]] = {}
    for ts, v in inside:
        buckets.setdefault(ts - ts % step_ms, []).append(v)
    want_rows = [(bucket, sum(vs) / len(vs)) for bucket, vs in sorted(buckets.items())]
    got_flat = [(ts, vs[0]) for s in got_rows for ts, vs in s.rows]
    assert [ts for ts, _ in got_flat] == [ts for ts, _ in want_rows]
    assert [v for _, v in got_flat] == pytest.approx([v for _, v in want_rows], rel=1e-9, abs=1e-9)
    assert sum(store.counts(Query(("cpu_usage_overall",), start_ms, end_ms, "h")).values()) == len(inside)


def test_long_windows_are_read_from_the_coarsest_tier_that_fits_raw_only_at_the_edges():
    sealed = T0 + 6 * HOUR_MS
    parts = plan(T0 + 30_000, T0 + 8 * HOUR_MS, sealed, ["hours", "minutes"])
    assert parts == [
        ("raw", T0 + 30_000, T0 + 60_000),
        ("minutes", T0 + 60_000, T0 + HOUR_MS),
        ("hours", T0 + HOUR_MS, sealed),
        ("raw", sealed, T0 + 8 * HOUR_MS),  # not sealed yet: the open window
    ]
    assert plan(T0, T0 + 59_000, sealed, ["hours", "minutes"]) == [("raw", T0, T0 + 59_000)]


def test_a_re_sent_or_late_sample_overwrites_in_every_tier_never_duplicates(tmp_path):
    path = tmp_path / "m.db"
    rows = [("disk_read", "h", T0 + i * 10_000, float(i)) for i in range(1000)]  # crosses a chunk
    write_rows(path, rows)
    write_rows(path, [*rows[:10], ("disk_read", "h", T0 + 20_000, 99.0)])  # re-sent, one changed
    assert [r[4] for r in stored(path)] == [0.0, 1.0, 99.0, *map(float, range(3, 1000))]
    store = SQLiteStore(path)
    count = store.aggregate("disk_read", "count", T0, T0 + 2 * HOUR_MS, None)
    total = store.aggregate("disk_read", "mean", T0, T0 + 2 * HOUR_MS, None)
    assert count.value == 720
    assert total.value == pytest.approx((sum(range(720)) - 2 + 99) / 720)
    five = store.rows(Query(("disk_read",), T0, T0 + 10 * 60_000), step_ms=300_000)  # the packed day
    assert five == [
        Series("h", [(T0, [(sum(range(30)) - 2 + 99) / 30]), (T0 + 300_000, [sum(range(30, 60)) / 30])])
    ]


def test_an_idle_series_is_sealed_into_the_rollups_before_raw_retention_removes_it(tmp_path):
    path = tmp_path / "m.db"
    write_rows(path, [("disk_read", "gone", T0, 5.0), ("disk_read", "live", T0 + 10 * HOUR_MS, 1.0)])
    conn = metricsdb.connect(path)
    with conn:
        assert tiers.seal_idle(conn) == 1
        assert conn.execute("SELECT count(*) FROM recent WHERE ts_ms = ?", (T0,)).fetchone()[0] == 0
        assert conn.execute("SELECT n, sum FROM hours WHERE bucket_ms = ?", (T0,)).fetchall() == [(1, 5.0)]
    conn.close()


def test_each_series_keeps_its_newest_sample_beside_its_name_through_late_and_re_sent_samples(tmp_path):
    path = tmp_path / "m.db"
    write_rows(path, [("disk_read", "h", "", T0 + i * 10_000, float(i)) for i in range(800)])  # sealed
    write_rows(path, [("disk_read", "h", "", T0 + 10_000, 55.0)])  # late: older than the newest
    store = SQLiteStore(path)
    assert store.newest(["disk_read"]) == [Newest("disk_read", "h", (), T0 + 799 * 10_000, 799.0)]
    write_rows(path, [("disk_read", "h", "", T0 + 799 * 10_000, 7.5), ("cpu_usage_overall", "h", "", T0, 1)])
    write_rows(path, [("filesystem_used_percent", "h", "mount=/", T0, 3.0)])
    assert store.newest(["disk_read", "filesystem_used_percent"]) == [
        Newest("disk_read", "h", (), T0 + 799 * 10_000, 7.5),  # re-sent at the newest time: it wins
        Newest("filesystem_used_percent", "h", (("mount", "/"),), T0, 3.0),
    ]
    with pytest.raises(QueryFailed, match="allow-listed"):
        store.newest(["disk_read; DROP TABLE series"])


def test_decoded_chunks_are_kept_up_to_their_limit_and_a_rewritten_chunk_is_read_anew(tmp_path):
    path = tmp_path / "m.db"
    write_rows(path, [("disk_read", "h", T0 + i * 10_000, float(i)) for i in range(800)])  # one sealed chunk
    store = SQLiteStore(path)
    query = Query(("disk_read",), T0, T0 + 3 * 10_000)
    assert store.rows(query) == [Series("h", [(T0, [0.0]), (T0 + 10_000, [1.0]), (T0 + 20_000, [2.0])])]
    write_rows(path, [("disk_read", "h", T0 + 10_000, 55.0)])  # late: the sealed chunk is rewritten
    assert store.rows(query) == [Series("h", [(T0, [0.0]), (T0 + 10_000, [55.0]), (T0 + 20_000, [2.0])])]
    cache = DecodedChunks(max_values=1000)
    blobs = [chunkcodec.encode([T0 + i for i in range(400)], [float(k)] * 400) for k in range(3)]
    first = cache.decode(blobs[0])
    assert cache.decode(blobs[0]) is first  # a hit: no decode
    cache.decode(blobs[1])
    cache.decode(blobs[0])  # the newest use keeps it
    cache.decode(blobs[2])  # 1 200 values: the least recently used (blobs[1]) goes
    assert blobs[1] not in cache and blobs[0] in cache and blobs[2] in cache
    assert cache.decode(blobs[0]) is first
    assert list(cache.decode(blobs[2])[1]) == [2.0] * 400


@pytest.mark.parametrize("days", [1, 3])
def test_api_answers_written_from_kept_segments_follow_a_late_sample(tmp_path, days):
    """A day (raw, segments of sealed chunks) or three (five-minute buckets, segments of packed
    days): the JSON written again from the kept segments equals the JSON written fresh, and a
    late sample into a sealed window (new chunk and day bytes, so new keys) shows at once."""
    cfg = make_config(tmp_path, max_points=20_000 if days == 1 else 1_000)
    now_ms = T0 + days * 86_400_000
    write_rows(
        cfg.sink.path,
        [("cpu_usage_overall", "web1", "", now_ms - i * 10_000, i % 97 / 4) for i in range(days * 8640)],
    )
    write_rows(
        cfg.sink.path,
        [("memory_usage", "web1", "", now_ms - i * 10_000, i % 89 / 2) for i in range(days * 8640)],
    )
    app = make_app(cfg, SQLiteStore(cfg.sink.path), clock=lambda: now_ms / 1000)
    target = f"/metrics?start={days * 1440}&end=0"
    first = call(app, target).json()
    assert first["step_s"] == (None if days == 1 else 300) and first["points"] > 800
    query = Query(("cpu_usage_overall", "memory_usage"), now_ms - days * 86_400_000, now_ms)
    rows = SQLiteStore(cfg.sink.path).rows(query, None if days == 1 else 300_000)[0].rows
    assert len(rows.segments) >= (10 if days == 1 else 2)  # type: ignore[attr-defined]  # whole chunks or days
    views.RENDERED.clear()
    assert call(app, target).json() == first  # written fresh ...
    assert call(app, target).json() == first  # ... and from what was kept
    late_ms = now_ms - days * 8640 // 2 * 10_000  # mid-window: a whole chunk or day, long sealed
    write_rows(cfg.sink.path, [("cpu_usage_overall", "web1", "", late_ms, 1000.0)])
    again = call(app, target).json()
    changed = [p for p in again["series"][0]["points"] if p["cpu_usage_overall"] != _point(first, p["ts_ms"])]
    assert len(changed) == 1  # the point or bucket holding it, nothing else
    assert (
        changed[0]["cpu_usage_overall"] > _point(first, changed[0]["ts_ms"]) + 20
    )  # 1000 in 1 or 30 samples
    assert changed[0]["ts_ms"] <= late_ms < changed[0]["ts_ms"] + (10_000 if days == 1 else 300_000)


def _point(body: dict, ts_ms: int) -> float | None:
    return next((p["cpu_usage_overall"] for p in body["series"][0]["points"] if p["ts_ms"] == ts_ms), None)


def sink(path: Path, clock_s: list[float], **kw: object) -> SQLiteSink:
    config = SinkConfig(kind="sqlite", path=path, **kw)  # type: ignore[arg-type]
    return SQLiteSink(config, ShipperConfig(), clock=lambda: clock_s[0], monotonic=lambda: clock_s[0])


def test_each_tier_keeps_its_own_retention(tmp_path):
    path = tmp_path / "m.db"
    now_s = [(T0 + 40 * 86_400_000) / 1000]
    days = {"retention_days": 2.0, "minutes_retention_days": 10.0, "hours_retention_days": 30.0}
    s = sink(path, now_s, **days)
    now_ms = int(now_s[0] * 1000)
    ages_days = (35, 20, 5, 1)  # past every tier, hours only, minutes and hours, all three
    lines = [
        encode(Sample(now_ms - d * 86_400_000, "h", {"disk_read": float(d)}), "system") for d in ages_days
    ]
    s.write(lines)
    s.close()
    conn = metricsdb.connect(path)
    held = {
        tier: sorted(v for (v,) in conn.execute(f"SELECT sum FROM {tier}")) for tier in ("minutes", "hours")
    }
    held["five_minutes"] = sorted(
        v
        for (blob,) in conn.execute("SELECT data FROM five_minute_days")
        for v in chunkcodec.decode_buckets(blob).sum
    )
    conn.close()
    assert [r[4] for r in stored(path)] == [1.0]
    # the newest is still in its open window; five-minute days go with the minute tier's retention
    assert held == {"minutes": [5.0], "hours": [5.0, 20.0], "five_minutes": [5.0]}
    store = SQLiteStore(path)
    old = store.aggregate("disk_read", "max", now_ms - 21 * 86_400_000, now_ms - 19 * 86_400_000, None)
    assert old.value == 20.0  # answered from the hour tier: raw and minutes are gone there
    rows = store.rows(Query(("disk_read",), now_ms - 6 * 86_400_000, now_ms), step_ms=3_600_000)
    assert rows == [Series("h", [(now_ms - 5 * 86_400_000, [5.0]), (now_ms - 86_400_000, [1.0])])]


def test_one_read_sees_one_snapshot_while_the_sink_seals_a_window(tmp_path):
    path = tmp_path / "m.db"
    write_rows(path, [("disk_read", "h", T0, 1.0)])
    store = SQLiteStore(path)
    with store._connect() as conn:
        assert conn is not None
        before = conn.execute("SELECT count(*) FROM recent").fetchone()[0]
        write_rows(path, [("disk_read", "h", T0 + 3 * HOUR_MS, 2.0)])  # seals T0's window meanwhile
        after = conn.execute("SELECT count(*), (SELECT count(*) FROM chunks) FROM recent").fetchone()
    assert (before, *after) == (1, 1, 0)  # not the sample in neither table, nor in both
    assert [r[4] for r in stored(path)] == [1.0, 2.0]


def test_a_bucket_whose_scaled_sum_a_float_cannot_hold_is_stored_unscaled_and_exact(tmp_path):
    path = tmp_path / "m.db"
    big = 90_000_000_000_000.0  # with the one 0.25 below the window's scale is 100: 9e15 each
    rows = [("swap_used_bytes", "h", T0 + i * 1000, big + (0.25 if i == 0 else 0.0)) for i in range(40)]
    write_rows(path, [*rows, ("swap_used_bytes", "h", T0 + 3 * HOUR_MS, 1.0)])  # seals the window
    conn = metricsdb.connect(path)
    assert conn.execute("SELECT scale, n FROM minutes WHERE bucket_ms = ?", (T0,)).fetchall() == [(1, 40)]
    conn.close()
    store = SQLiteStore(path)
    assert store.aggregate("swap_used_bytes", "min", T0, T0 + 60_000, "h").value == big
    assert store.aggregate("swap_used_bytes", "max", T0, T0 + 60_000, "h").value == big + 0.25
    mean = store.aggregate("swap_used_bytes", "mean", T0, T0 + 60_000, "h").value
    assert mean == pytest.approx(big + 0.25 / 40, rel=1e-15)


def test_each_host_keeps_its_newest_sample_time_and_goes_with_its_last_series(tmp_path):
    path = tmp_path / "m.db"
    now_s = [(T0 + 40 * 86_400_000) / 1000]
    s = sink(path, now_s, retention_days=2.0, minutes_retention_days=10.0, hours_retention_days=30.0)
    now_ms = int(now_s[0] * 1000)
    s.write(
        [
            encode(Sample(now_ms - 35 * 86_400_000, "gone", {"disk_read": 1.0}), "system"),
            encode(Sample(now_ms - 35 * 86_400_000, "kept", {"disk_read": 2.0}), "system"),
            encode(Sample(now_ms - 1_000, "kept", {"cpu_usage_overall": 3.0}), "system"),
            encode(Sample(now_ms - 60_000, "kept", {"memory_usage": 4.0}), "system"),  # late: older
        ]
    )
    s.close()
    store = SQLiteStore(path)
    assert store.hosts() == [HostSeen("kept", now_ms - 1_000)]  # gone's only series outlived its hours
    conn = metricsdb.connect(path)
    with conn:
        tiers.store(conn, [("disk_read", "other", "", now_ms, 5.0)], {})
    assert [h.host for h in store.hosts()] == ["kept", "other"]
    with conn:
        tiers.delete_host(conn, "kept")
    conn.close()
    assert store.hosts() == [HostSeen("other", now_ms)]
