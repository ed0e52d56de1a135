"""The SQLite store: what the API reads back from the SQLite sink's file."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from monitor import metricsdb, tiers
from monitor.api.stores import Aggregate, Query, Series, sqlite_tiers
from monitor.api.stores.sqlite import _METRICS, _NEWEST, _SERIES_SQL, SQLiteStore
from monitor.errors import QueryFailed, StoreUnavailable
from tests.store_helpers import write_rows

T0 = 1_700_000_000_000  # a multiple of 10 s, so bucket edges are easy to read


def write(path: Path, rows: list[tuple[str, str, int, float]]) -> None:
    write_rows(path, rows)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "metrics.db"
    write(
        path,
        [
            ("cpu_usage_overall", "a", T0, 10.0),
            ("memory_usage", "a", T0, 50.0),
            ("cpu_usage_overall", "a", T0 + 1000, 20.0),
            ("cpu_usage_overall", "b", T0 + 1000, 30.0),
            ("memory_usage", "b", T0 + 1000, 70.0),
            ("memory_usage", "b", T0 + 12_000, 71.0),
            ("cpu_usage_overall", "b", T0 + 20_000, 99.0),  # exactly at the window's end: excluded
        ],
    )
    return path


CPU_MEM = ("cpu_usage_overall", "memory_usage")


def test_missing_file_is_an_empty_store_not_an_error(tmp_path):
    store = SQLiteStore(tmp_path / "absent.db")
    query = Query(CPU_MEM, T0, T0 + 20_000)
    assert store.names() == []
    assert store.counts(query) == {}
    assert store.rows(query) == []
    assert store.aggregate("cpu_usage_overall", "mean", T0, T0 + 1, None) == Aggregate(None, 0)
    assert store.aggregate("cpu_usage_overall", "count", T0, T0 + 1, None) == Aggregate(0.0, 0)
    assert "no file yet" in store.ping()
    assert not (tmp_path / "absent.db").exists()  # read-only: never creates it


def test_file_without_the_tables_is_an_empty_store(tmp_path):
    path = tmp_path / "empty.db"
    sqlite3.connect(path).close()
    store = SQLiteStore(path)
    assert store.names() == []
    assert store.rows(Query(CPU_MEM, T0, T0 + 1)) == []
    assert "no tables yet" in store.ping()


def test_raw_rows_pivot_per_host_with_null_for_missing_metrics_and_half_open_window(db):
    rows = SQLiteStore(db).rows(Query(CPU_MEM, T0, T0 + 20_000))
    assert rows == [
        Series("a", [(T0, [10.0, 50.0]), (T0 + 1000, [20.0, None])]),
        Series("b", [(T0 + 1000, [30.0, 70.0]), (T0 + 12_000, [None, 71.0])]),
    ]


def test_host_filter_and_start_is_inclusive(db):
    rows = SQLiteStore(db).rows(Query(("cpu_usage_overall",), T0 + 1000, T0 + 20_001, "b"))
    assert rows == [Series("b", [(T0 + 1000, [30.0]), (T0 + 20_000, [99.0])])]


def test_buckets_are_epoch_aligned_means_like_influxql_group_by_time(db):
    # The window starts mid-bucket: the first bucket is labelled with its epoch-aligned start
    # (T0) and holds only the samples inside the window.
    rows = SQLiteStore(db).rows(Query(CPU_MEM, T0 + 500, T0 + 20_000), step_ms=10_000)
    assert rows == [
        Series("a", [(T0, [20.0, None])]),
        Series("b", [(T0, [30.0, 70.0]), (T0 + 10_000, [None, 71.0])]),
    ]


def test_buckets_align_to_the_epoch_before_1970_too(tmp_path):
    path = tmp_path / "m.db"
    write(path, [("disk_read", "a", -1500, 1.0), ("disk_read", "a", -500, 3.0)])
    rows = SQLiteStore(path).rows(Query(("disk_read",), -2000, 0), step_ms=1000)
    assert rows == [Series("a", [(-2000, [1.0]), (-1000, [3.0])])]


def test_counts_are_rows_per_host_over_the_requested_metrics(db):
    assert SQLiteStore(db).counts(Query(CPU_MEM, T0, T0 + 20_000)) == {("a", ()): 2, ("b", ()): 2}
    assert SQLiteStore(db).counts(Query(CPU_MEM, T0, T0 + 20_000, "a")) == {("a", ()): 2}


@pytest.mark.parametrize(
    ("fn", "host", "expected"),
    [
        ("mean", None, Aggregate(20.0, 3, 2)),
        ("min", None, Aggregate(10.0, 3, 2, "a")),
        ("max", None, Aggregate(30.0, 3, 2, "b")),
        ("count", None, Aggregate(3.0, 3, 2)),
        ("mean", "a", Aggregate(15.0, 2, 1)),
        ("last", "a", Aggregate(20.0, 2, 1, "a")),
        ("mean", "nobody", Aggregate(None, 0)),
    ],
)
def test_aggregates_over_all_hosts_or_one(db, fn, host, expected):
    assert SQLiteStore(db).aggregate("cpu_usage_overall", fn, T0, T0 + 20_000, host) == expected


def test_last_across_hosts_prefers_the_larger_value_on_a_timestamp_tie_as_influxdb_does(tmp_path):
    path = tmp_path / "m.db"
    write(
        path, [("disk_read", "a", T0, 99.0), ("disk_read", "b", T0, 5.0), ("disk_read", "c", T0 - 1, 500.0)]
    )
    last = SQLiteStore(path).aggregate("disk_read", "last", T0 - 10, T0 + 10, None)
    assert last == Aggregate(99.0, 3, 3, "a")


def test_names_lists_only_allow_listed_metrics_with_cores_in_numeric_order(tmp_path):
    path = tmp_path / "m.db"
    names = [
        "cpu_usage_10",
        "cpu_usage_2",
        "memory_usage",
        "cpu_usage_overall",
        "not_a_metric",
        "cpu_usage_1",
    ]
    write(path, [(name, "a", T0, 1.0) for name in names])
    assert SQLiteStore(path).names() == [
        "cpu_usage_overall",
        "cpu_usage_1",
        "cpu_usage_2",
        "cpu_usage_10",
        "memory_usage",
    ]


def test_injection_attempts_in_host_are_plain_values(db):
    store = SQLiteStore(db)
    for host in ("x' OR 1=1 --", "a' OR 'a'='a", 'a"; DROP TABLE points; --'):
        assert store.rows(Query(CPU_MEM, T0, T0 + 20_000, host)) == []
        assert store.aggregate("cpu_usage_overall", "mean", T0, T0 + 20_000, host) == Aggregate(None, 0)
    assert store.names() == list(CPU_MEM)  # the table is still there


def test_metric_outside_the_allow_list_never_reaches_a_query(db):
    with pytest.raises(QueryFailed):
        SQLiteStore(db).aggregate('cpu_usage_overall"; DROP TABLE points; --', "mean", T0, T0 + 1, None)


def test_a_query_past_its_deadline_becomes_store_unavailable(db):
    ticks = itertools.count(0, 100)  # every look at the clock is 100 s later: the deadline passes
    store = SQLiteStore(db, timeout_s=5, monotonic=lambda: float(next(ticks)))
    write(db, [("disk_read", "a", T0 + i, float(i)) for i in range(20_000)])
    with pytest.raises(StoreUnavailable, match="longer than 5 s"):
        store.aggregate("disk_read", "mean", T0, T0 + 20_000, None)


def test_a_file_that_is_not_a_database_is_store_unavailable(tmp_path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    store = SQLiteStore(path)
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.names()


def plan(conn: sqlite3.Connection, sql: str, params: dict[str, object]) -> str:
    return " | ".join(row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_range_queries_seek_the_primary_key_instead_of_scanning(db):
    conn = metricsdb.connect(db)
    window = {"sid": 1, "start": T0, "end": T0 + 1, "chunk": metricsdb.CHUNK_MS, "step": 60_000}
    for sql in (sqlite_tiers._CHUNKS_SQL, sqlite_tiers._CHUNK_COUNTS_SQL):
        text = plan(conn, sql, window)
        assert "SEARCH chunks USING PRIMARY KEY (series=? AND start_ms>? AND start_ms<?)" in text, text
    for sql in (sqlite_tiers._RECENT_SQL, sqlite_tiers._RECENT_COUNT_SQL):
        text = plan(conn, sql, window)
        assert "SEARCH recent USING PRIMARY KEY (series=? AND ts_ms>? AND ts_ms<?)" in text, text
    text = plan(conn, sqlite_tiers._PACKED_SQL, {**window, "day": metricsdb.PACKED_DAY_MS})
    assert "SEARCH five_minute_days USING PRIMARY KEY (series=? AND day_ms>? AND day_ms<?)" in text, text
    for tier in metricsdb.ROW_TIERS:
        for sql in (
            *sqlite_tiers.TIER_SQL.values(),
            sqlite_tiers.TIER_LAST_SQL,
            sqlite_tiers._STEP_SQL,
            sqlite_tiers._BUCKETS_SQL,
        ):
            text = plan(conn, sql.format(tier=tier), window)
            assert f"SEARCH {tier} USING PRIMARY KEY (series=? AND bucket_ms>? AND bucket_ms<?)" in text, text
            assert "SCAN" not in text, text
    text = plan(conn, _METRICS, {})  # a seek per distinct metric
    assert "SEARCH series USING COVERING INDEX" in text and "SCAN series" not in text, text
    text = plan(conn, _NEWEST, ["m"])  # the index alone, in its order
    assert "SEARCH series USING COVERING INDEX series_newest (metric=?)" in text, text
    assert "TEMP B-TREE" not in text, text
    series = plan(conn, _SERIES_SQL + " AND host = :host", {"metric": "m", "host": "a"})
    assert "SEARCH series USING INDEX sqlite_autoindex_series_1 (metric=? AND host=?)" in series, series
    for statements in tiers._DELETE.values():  # retention: one seek per series
        for sql in statements:
            text = plan(conn, sql, {"cut": T0, "chunk": metricsdb.CHUNK_MS, "day": metricsdb.PACKED_DAY_MS})
            assert "USING PRIMARY KEY (series=?" in text and "SCAN" not in text, text
    conn.close()


def test_infinite_values_never_reach_rows_or_buckets(tmp_path):
    path = tmp_path / "m.db"
    write(
        path,
        [
            ("disk_read", "a", T0, float("inf")),
            ("disk_read", "a", T0 + 1, 2.0),
            ("memory_usage", "a", T0, 1.0),
        ],
    )
    store = SQLiteStore(path)
    query = Query(("disk_read", "memory_usage"), T0, T0 + 10)
    assert store.rows(query) == [Series("a", [(T0, [None, 1.0]), (T0 + 1, [2.0, None])])]
    assert store.rows(query, step_ms=1000) == [Series("a", [(T0, [2.0, 1.0])])]
