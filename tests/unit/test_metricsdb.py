"""The embedded store's schema: tag texts, and the migration of a store written before tags."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor import metricsdb
from monitor.api.stores import Query, Series
from monitor.api.stores.sqlite import SQLiteStore
from monitor.errors import StoreUnavailable

# The schema of every store written before tags existed (main at 170879b), kept verbatim.
SCHEMA_0 = """
CREATE TABLE IF NOT EXISTS points (
    metric TEXT NOT NULL,
    host   TEXT NOT NULL,
    ts_ms  INTEGER NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (metric, host, ts_ms)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS points_by_time ON points (ts_ms);
"""
T0 = 1_700_000_000_000


def old_store(path: Path, rows: list[tuple[str, str, int, float]]) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_0)
    conn.executemany("INSERT INTO points (metric, host, ts_ms, value) VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    "tags",
    [
        (),
        (("mount", "/"),),
        (("mount", r"/a,b\c=d "),),
        (("device", "sda"), ("mount", "x,")),
        (("a", "\\"), ("b", ",")),
        (("a", ""), ("b", "")),
    ],
)
def test_tag_text_round_trips(tags):
    text = metricsdb.encode_tags(tags)
    assert metricsdb.decode_tags(text) == tags


def test_tag_text_is_readable_and_canonical():
    assert metricsdb.encode_tags((("mount", "/"),)) == "mount=/"
    assert metricsdb.encode_tags(()) == ""
    assert metricsdb.encode_tags((("b", "2"), ("a", "1"))) == "a=1,b=2"  # sorted: one text per set


def test_distinct_tag_sets_have_distinct_texts():
    sets = [(("a", "x,b=y"),), (("a", "x"), ("b", "y")), (("a", "x\\"),), (("a", "x\\,b=y"),)]
    assert len({metricsdb.encode_tags(t) for t in sets}) == len(sets)


def test_a_new_store_is_created_at_the_current_version(tmp_path):
    conn = metricsdb.connect(tmp_path / "m.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == metricsdb.SCHEMA_VERSION == 1
    columns = [row[1] for row in conn.execute("PRAGMA table_info(points)")]
    assert columns == ["metric", "host", "tags", "ts_ms", "value"]
    conn.close()


def test_a_store_written_before_tags_is_migrated_on_first_open_with_nothing_lost(tmp_path):
    path = tmp_path / "m.db"
    old = [(f"cpu_usage_{i % 3 + 1}", f"h{i % 4}", T0 + i, float(i)) for i in range(3000)]
    old_store(path, old)
    conn = metricsdb.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
    got = conn.execute(
        "SELECT metric, host, tags, ts_ms, value FROM points ORDER BY metric, host, ts_ms"
    ).fetchall()
    assert got == sorted((m, h, "", ts, v) for m, h, ts, v in old)
    pk = [row[1] for row in conn.execute("PRAGMA table_info(points)") if row[5]]
    assert pk == ["metric", "host", "tags", "ts_ms"]
    indexes = {row[1] for row in conn.execute("PRAGMA index_list(points)")}
    assert "points_by_time" in indexes
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'points_new'").fetchone()[0] == 0
    conn.close()
    assert SQLiteStore(path).rows(Query(("cpu_usage_1",), T0, T0 + 4, "h0")) == [Series("h0", [(T0, [0.0])])]


def test_reopening_a_migrated_store_changes_nothing(tmp_path):
    path = tmp_path / "m.db"
    old_store(path, [("disk_read", "h", T0, 1.0)])
    metricsdb.connect(path).close()
    conn = metricsdb.connect(path)
    conn.execute(
        "INSERT INTO points (metric, host, tags, ts_ms, value) VALUES ('disk_read', 'h', 'x=1', ?, 2)", (T0,)
    )
    conn.commit()
    conn.close()
    conn = metricsdb.connect(path)
    assert conn.execute("SELECT tags, value FROM points ORDER BY tags").fetchall() == [
        ("", 1.0),
        ("x=1", 2.0),
    ]
    conn.close()


def test_a_failed_migration_leaves_the_old_store_as_it_was(tmp_path):
    path = tmp_path / "m.db"
    old_store(path, [("disk_read", "h", T0, 1.0)])
    blocker = sqlite3.connect(path)
    blocker.execute("CREATE TABLE points_new (x)")  # the copy cannot be created: the migration fails
    blocker.commit()
    blocker.close()
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        metricsdb.connect(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert conn.execute("SELECT * FROM points").fetchall() == [("disk_read", "h", T0, 1.0)]
    conn.close()


def test_a_store_of_a_newer_version_is_refused_not_changed(tmp_path):
    path = tmp_path / "m.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE points (anything)")
    conn.execute("PRAGMA user_version = 7")
    conn.close()
    with pytest.raises(sqlite3.DatabaseError, match="version 7 is newer"):
        metricsdb.connect(path)
    conn = sqlite3.connect(path)
    assert [row[1] for row in conn.execute("PRAGMA table_info(points)")] == ["anything"]
    conn.close()


def test_the_api_on_a_store_not_yet_migrated_is_unavailable_naming_why(tmp_path):
    path = tmp_path / "m.db"
    old_store(path, [("disk_read", "h", T0, 1.0)])
    with pytest.raises(StoreUnavailable, match="older version"):
        SQLiteStore(path).rows(Query(("disk_read",), T0, T0 + 1))
