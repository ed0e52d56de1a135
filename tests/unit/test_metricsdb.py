"""The embedded store's schema: tag texts, and the migration of a store written before tags."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor import chunkcodec, metricsdb, tiers
from monitor.api.stores import HostSeen, Newest, Query, Series
from monitor.api.stores.sqlite import SQLiteStore
from monitor.errors import StoreUnavailable
from tests.store_helpers import stored, write_rows

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
# Version 1 (tags, main at f390389), kept verbatim.
SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS points (
    metric TEXT NOT NULL,
    host   TEXT NOT NULL,
    tags   TEXT NOT NULL DEFAULT '',
    ts_ms  INTEGER NOT NULL,
    value  REAL NOT NULL,
    PRIMARY KEY (metric, host, tags, ts_ms)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS points_by_time ON points (ts_ms);
PRAGMA user_version = 1;
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
    assert conn.execute("PRAGMA user_version").fetchone()[0] == metricsdb.SCHEMA_VERSION == 4
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"series", "recent", "chunks", "minutes", "five_minute_days", "hours", "hosts"}
    conn.close()


def test_a_store_written_before_tags_is_migrated_on_first_open_with_nothing_lost(tmp_path):
    path = tmp_path / "m.db"
    old = [(f"cpu_usage_{i % 3 + 1}", f"h{i % 4}", T0 + i * 7_000, float(i)) for i in range(3000)]
    old_store(path, old)
    conn = metricsdb.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == metricsdb.SCHEMA_VERSION
    assert tiers.read_all(conn) == sorted((m, h, "", ts, v) for m, h, ts, v in old)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'points'").fetchone()[0] == 0
    conn.close()
    got = SQLiteStore(path).rows(Query(("cpu_usage_1",), T0, T0 + 4 * 7_000, "h0"))
    assert got == [Series("h0", [(T0, [0.0])])]


def test_reopening_a_migrated_store_changes_nothing(tmp_path):
    path = tmp_path / "m.db"
    old_store(path, [("disk_read", "h", T0, 1.0)])
    metricsdb.connect(path).close()
    conn = metricsdb.connect(path)
    with conn:
        tiers.store(conn, [("disk_read", "h", "x=1", T0, 2.0)], {})
    conn.close()
    conn = metricsdb.connect(path)
    assert tiers.read_all(conn) == [("disk_read", "h", "", T0, 1.0), ("disk_read", "h", "x=1", T0, 2.0)]
    conn.close()


def test_a_failed_migration_leaves_the_old_store_as_it_was(tmp_path):
    path = tmp_path / "m.db"
    old_store(path, [("disk_read", "h", T0, 1.0)])
    blocker = sqlite3.connect(path)
    blocker.execute("CREATE TABLE recent (x)")  # the copy cannot be written: the migration fails
    blocker.commit()
    blocker.close()
    with pytest.raises(sqlite3.OperationalError, match="recent"):
        metricsdb.connect(path)
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 0
    assert conn.execute("SELECT * FROM points").fetchall() == [("disk_read", "h", T0, 1.0)]
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'series'").fetchone()[0] == 0
    conn.close()


def test_a_version_1_store_is_migrated_into_chunks_and_rollups_with_nothing_lost(tmp_path):
    path = tmp_path / "m.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_1)
    step_ms = 10_000
    old = [
        (metric, host, tags, T0 + i * step_ms, round((i * 7.31 + len(host)) % 100, 2))
        for metric, tags in (("cpu_usage_overall", ""), ("filesystem_used_percent", "mount=/"))
        for host in ("a", "b")
        for i in range(3 * 720 + 17)  # three two-hour chunks and a bit: sealed ones and an open one
    ]
    old.append(("disk_read", "a", "", T0, float("inf")))  # a REAL column holds it; the API never showed it
    conn.executemany("INSERT INTO points (metric, host, tags, ts_ms, value) VALUES (?, ?, ?, ?, ?)", old)
    conn.commit()
    conn.close()
    conn = metricsdb.connect(path)
    assert tiers.read_all(conn) == sorted(old[:-1])
    assert conn.execute("SELECT count(*) FROM chunks").fetchone()[0] >= 4 * 3
    store = SQLiteStore(path)
    end_ms = T0 + (3 * 720 + 17) * step_ms
    assert store.hosts() == [HostSeen("a", end_ms - step_ms), HostSeen("b", end_ms - step_ms)]
    for fn in ("count", "mean", "min", "max", "last"):
        got = store.aggregate("cpu_usage_overall", fn, T0, end_ms, "a")
        values = [v for m, h, _, _, v in old if m == "cpu_usage_overall" and h == "a"]
        want = {"count": len(values), "mean": sum(values) / len(values), "min": min(values)}
        want |= {"max": max(values), "last": values[-1]}
        assert got.value == pytest.approx(want[fn], rel=1e-12), fn
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


def version_3_store(path: Path, rows: list[tuple[str, str, str, int, float]]) -> None:
    """A store as version 3 wrote it: today's tables but ``hosts``, and the ``series_by_host``
    index (``CREATE INDEX series_by_host ON series (host, last_ms)``) where today's has
    ``series_newest``."""
    write_rows(path, rows)
    conn = metricsdb.connect(path)
    with conn:  # what an idle series' newest sample went through: sealed into a chunk
        tiers.seal_idle(conn)
    conn.close()
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE hosts")
    conn.execute("DROP INDEX series_newest")
    conn.execute("CREATE INDEX series_by_host ON series (host, last_ms)")
    conn.execute("PRAGMA user_version = 3")
    conn.commit()
    conn.close()


def version_2_store(path: Path, rows: list[tuple[str, str, str, int, float]]) -> None:
    """A store as version 2 wrote it: version 3's tiers, ``series`` without ``last`` (the column
    version 3 added at the end of the table, so dropping it gives version 2's table) and without
    the index on it, the five-minute buckets as rows of a ``five_minutes`` table shaped like
    ``minutes``."""
    version_3_store(path, rows)
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX series_by_host")
    conn.execute("ALTER TABLE series DROP COLUMN last")
    conn.execute("CREATE TABLE five_minutes" + metricsdb._ROLLUP)
    for sid, blob in conn.execute("SELECT series, data FROM five_minute_days").fetchall():
        buckets = chunkcodec.decode_buckets(blob).rows()
        conn.executemany(
            "INSERT INTO five_minutes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [(sid, *b) for b in buckets]
        )
    conn.execute("DROP TABLE five_minute_days")
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()


def indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    names = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    conn.close()
    return {name for name in names if not name.startswith("sqlite_autoindex")}


def test_a_version_3_store_gains_each_host_newest_sample_time(tmp_path):
    path = tmp_path / "m.db"
    rows = [
        ("cpu_usage_overall", "a", "", T0 + 5_000, 1.0),
        ("filesystem_used_percent", "a", "mount=/", T0 + 9_000, 2.0),  # a's newest is a filesystem's
        ("filesystem_used_percent", "a", "mount=/old", T0 + 1_000, 3.0),
        ("disk_read", "b", "", T0 + 2 * 86_400_000, 4.0),  # b's is sealed into its chunk
    ]
    version_3_store(path, [*rows, ("disk_read", "b", "", T0, 5.0)])
    assert indexes(path) == {"series_by_host"}
    before = stored(path)
    with pytest.raises(StoreUnavailable, match=r"older version \(schema 3, this code reads 4\)"):
        SQLiteStore(path).hosts()
    metricsdb.connect(path).close()
    assert stored(path) == before
    assert indexes(path) == {"series_newest"}
    assert SQLiteStore(path).hosts() == [HostSeen("a", T0 + 9_000), HostSeen("b", T0 + 2 * 86_400_000)]


def test_a_version_2_store_gains_each_series_newest_value_from_recent_or_its_chunk(tmp_path):
    path = tmp_path / "m.db"
    step_ms = 10_000
    live = [("cpu_usage_overall", "a", "", T0 + i * step_ms, round(i * 0.37 % 100, 2)) for i in range(1500)]
    gone = [("filesystem_used_percent", "b", "mount=/", T0 + i * step_ms, i / 4) for i in range(100)]
    version_2_store(path, [*live, *gone, ("memory_usage", "a", "", T0 + 1499 * step_ms, 12.5)])
    conn = sqlite3.connect(path)
    b = "SELECT count(*) FROM recent JOIN series ON series.id = recent.series WHERE host = 'b'"
    assert conn.execute(b).fetchone()[0] == 0  # b's newest sample is in its chunk
    conn.close()
    before = stored(path)
    five_minutes = sqlite3.connect(path).execute("SELECT * FROM five_minutes ORDER BY 1, 2").fetchall()
    assert len(five_minutes) > 2 * 24
    with pytest.raises(StoreUnavailable, match=r"older version \(schema 2, this code reads 4\)"):
        SQLiteStore(path).newest(["cpu_usage_overall"])
    metricsdb.connect(path).close()
    assert stored(path) == before
    conn = sqlite3.connect(path)
    packed = [
        (sid, *bucket)
        for sid, blob in conn.execute("SELECT series, data FROM five_minute_days ORDER BY series, day_ms")
        for bucket in chunkcodec.decode_buckets(blob).rows()
    ]
    assert packed == five_minutes  # every bucket of every series, as it was
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'five_minutes'").fetchone()[0] == 0
    conn.close()
    assert SQLiteStore(path).newest(["cpu_usage_overall", "memory_usage", "filesystem_used_percent"]) == [
        Newest("cpu_usage_overall", "a", (), T0 + 1499 * step_ms, live[-1][4]),
        Newest("filesystem_used_percent", "b", (("mount", "/"),), T0 + 99 * step_ms, 24.75),
        Newest("memory_usage", "a", (), T0 + 1499 * step_ms, 12.5),
    ]
    assert SQLiteStore(path).hosts() == [HostSeen("a", T0 + 1499 * step_ms), HostSeen("b", T0 + 99 * step_ms)]
    assert indexes(path) == {"series_newest"}
