"""The spool's row and byte budgets on a real SQLite file: bounded, in chunks, space reused and returned."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from monitor.config import MiB, SpoolConfig
from tests.unit.spool_helpers import (
    Overflows,
    SpoolFactory,
    disk_bytes,
    line,
    stored_ts,
)


def test_buffer_size_holds_at_most_that_many_samples_dropping_the_oldest_in_chunks(
    make_spool: SpoolFactory, overflows: Overflows
) -> None:
    spool = make_spool(buffer_size=1000)  # chunk: 1% = 10 samples
    for ts in range(1000):
        spool.append(ts, line(ts))
    assert overflows.calls == []

    for ts in range(1000, 1025):
        spool.append(ts, line(ts))

    # Overflow ran at appends 1001, 1011 and 1021, each time dropping the 10 oldest.
    assert overflows.calls == [("drop_oldest", 10)] * 3
    status = spool.status()
    assert (status.depth, status.dropped_total, status.spilled_total) == (995, 30, 0)
    assert (status.oldest_ts_ms, status.newest_ts_ms) == (30, 1024)
    assert stored_ts(spool) == list(range(30, 1025))


def test_byte_budget_bounds_the_files_on_disk_and_drops_the_oldest_in_chunks(
    make_spool: SpoolFactory, overflows: Overflows, tmp_path: Path
) -> None:
    budget = MiB
    spool = make_spool(max_spool_bytes=budget)
    texts = [line(ts, width=60) for ts in range(3000)]  # ~1.4 kB each, ~4x the budget in all
    largest = 0
    for ts, text in enumerate(texts):
        spool.append(ts, text)
        largest = max(largest, disk_bytes(tmp_path / "spool.db"))

    status = spool.status()
    assert largest <= budget
    assert status.dropped_total == overflows.total("drop_oldest") > 2 * len(texts) // 3
    assert status.depth + status.dropped_total == len(texts)
    assert stored_ts(spool) == list(range(status.dropped_total, len(texts)))  # the newest survive
    assert status.depth * len(texts[0]) > budget // 2  # the budget is used, not wasted
    # Chunks of ~1% of the budget, not one by one (a row takes a bit more room on disk than its text).
    chunk_rows = 0.01 * budget / len(texts[0])
    assert all(n >= chunk_rows / 2 for _, n in overflows.calls)
    assert len(overflows.calls) <= status.dropped_total / (chunk_rows / 2)


def test_byte_budget_counts_used_pages_so_space_freed_by_shipping_is_reused(
    make_spool: SpoolFactory, overflows: Overflows
) -> None:
    spool = make_spool(max_spool_bytes=MiB)
    for ts in range(1200):
        spool.append(ts, line(ts, width=60))
    dropped = spool.status().dropped_total
    assert dropped > 0
    while rows := spool.peek(500):
        spool.ack([seq for seq, _, _ in rows])

    for ts in range(1200, 1500):  # ~0.4 MiB: fits again once the backlog is shipped
        spool.append(ts, line(ts, width=60))

    assert spool.status().dropped_total == dropped
    assert spool.status().depth == 300


def test_spool_file_shrinks_after_a_backlog_is_shipped(make_spool: SpoolFactory, tmp_path: Path) -> None:
    spool = make_spool(max_spool_bytes=4 * MiB)
    for ts in range(2000):
        spool.append(ts, line(ts, width=60))
    full = disk_bytes(tmp_path / "spool.db")
    while rows := spool.peek(500):
        spool.ack([seq for seq, _, _ in rows])
    spool.close()

    assert disk_bytes(tmp_path / "spool.db") < full // 10


def test_full_disk_applies_the_overflow_policy_and_keeps_the_new_sample(
    make_spool: SpoolFactory, overflows: Overflows
) -> None:
    spool = make_spool()
    for ts in range(200):
        spool.append(ts, line(ts, width=60))
    # Simulate a full file system: SQLite answers SQLITE_FULL once the file would grow.
    pages = spool._conn.execute("PRAGMA page_count").fetchone()[0]
    spool._conn.execute(f"PRAGMA max_page_count={pages}")

    for ts in range(200, 400):
        spool.append(ts, line(ts, width=60))

    status = spool.status()
    assert status.newest_ts_ms == 399
    assert status.dropped_total == overflows.total("drop_oldest") > 0
    assert status.depth + status.dropped_total == 400


def test_spool_keeps_working_after_overflow(make_spool: SpoolFactory) -> None:
    spool = make_spool(buffer_size=100)
    for ts in range(150):
        spool.append(ts, line(ts))
    rows = spool.peek(40)
    spool.ack([seq for seq, _, _ in rows])
    for ts in range(150, 160):
        spool.append(ts, line(ts))

    assert stored_ts(spool) == list(range(90, 160))


def test_reconfigure_applies_a_smaller_buffer_on_the_next_append_without_losing_rows(
    make_spool: SpoolFactory, overflows: Overflows, tmp_path: Path
) -> None:
    spool = make_spool(buffer_size=1000)
    for ts in range(500):
        spool.append(ts, line(ts))
    old = SpoolConfig(path=tmp_path / "spool.db", spill_path=tmp_path / "spill.lp")

    spool.reconfigure(dataclasses.replace(old, buffer_size=200, overflow="spill"))
    assert spool.status().depth == 500  # nothing lost by the reload itself
    spool.append(500, line(500))

    assert overflows.calls == [("spill", 301)]
    assert stored_ts(spool) == list(range(301, 501))
