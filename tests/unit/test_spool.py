"""The durable spool on a real SQLite file: order, durability (also across SIGKILL), budgets, overflow."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monitor import metricsdb
from monitor.config import MiB, SpoolConfig
from monitor.lineprotocol import Sample, encode
from monitor.spool import CACHE_KIB, HEARTBEAT_EVERY_MS, Spool, _runs
from monitor.status import read_status

REPO = Path(__file__).resolve().parents[2]
NOW_S = 1_700_000_000.0


class Overflows:
    """Records on_overflow calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def __call__(self, policy: str, n: int) -> None:
        self.calls.append((policy, n))

    def total(self, policy: str) -> int:
        return sum(n for p, n in self.calls if p == policy)


SpoolFactory = Callable[..., Spool]


@pytest.fixture
def overflows() -> Overflows:
    return Overflows()


@pytest.fixture
def make_spool(tmp_path: Path, overflows: Overflows) -> Iterator[SpoolFactory]:
    opened: list[Spool] = []

    def make(**settings: object) -> Spool:
        config = SpoolConfig(path=tmp_path / "spool.db", spill_path=tmp_path / "spill.lp")
        spool = Spool(dataclasses.replace(config, **settings), clock=lambda: NOW_S, on_overflow=overflows)
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        spool.close()


def line(ts_ms: int, width: int = 4) -> str:
    fields = {f"cpu_usage_{i}": float(i) + ts_ms % 100 / 4 for i in range(1, width + 1)}
    return encode(Sample(ts_ms, "web-1", fields), "system")


def stored_ts(spool: Spool) -> list[int]:
    return [ts for _, ts, _ in spool.peek(10_000_000)]


def disk_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


# -- order and content -----------------------------------------------------------------------


def test_peek_returns_timestamp_order_even_when_appended_out_of_order(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    timestamps = list(range(1000, 1100))
    random.Random(7).shuffle(timestamps)
    for ts in timestamps:
        spool.append(ts, line(ts))

    assert [ts for _, ts, _ in spool.peek(30)] == list(range(1000, 1030))
    assert stored_ts(spool) == sorted(timestamps)


def test_peek_breaks_timestamp_ties_by_append_order(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    for text in ("b v=1 5", "a v=2 5", "c v=3 4"):
        spool.append(int(text.rsplit(" ", 1)[1]), text)

    assert [text for _, _, text in spool.peek(10)] == ["c v=3 4", "b v=1 5", "a v=2 5"]


def test_lines_come_back_byte_for_byte_as_appended(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    lines = [
        encode(Sample(1, r"db 1,rack=a\b", {"cpu_usage_overall": 12.5, "memory_usage": 1e-9}), "sys tem"),
        encode(Sample(2, "hôte-été", {"disk_read": 123456789.125}), "system"),
    ]
    for ts, text in enumerate(lines, start=1):
        spool.append(ts, text)

    assert [text for _, _, text in spool.peek(10)] == lines


@pytest.mark.parametrize("bad", ["", "a v=1 1\nb v=2 2", "a v=1 1\r"])
def test_append_refuses_anything_but_one_line(make_spool: SpoolFactory, bad: str) -> None:
    spool = make_spool()
    with pytest.raises(ValueError, match="one line"):
        spool.append(1, bad)
    assert spool.status().depth == 0


def test_ack_removes_exactly_the_given_rows_and_ignores_unknown_ones(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    for ts in range(10):
        spool.append(ts, line(ts))
    first = spool.peek(4)

    spool.ack([seq for seq, _, _ in first] + [999_999])
    spool.ack([])

    assert stored_ts(spool) == list(range(4, 10))
    assert spool.status().depth == 6


def keys(rows: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
    return [(ts, seq) for seq, ts, _ in rows]


def test_peek_after_a_row_continues_in_timestamp_then_append_order(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    for ts in (5, 3, 5, 4, 5, 6, 3):
        spool.append(ts, line(ts))
    everything = spool.peek(100)

    first = spool.peek(3)
    second = spool.peek(3, after=keys(first)[-1])  # (5, seq of the first 5): ties continue by seq
    third = spool.peek(3, after=keys(second)[-1])

    assert first + second + third == everything
    assert [ts for _, ts, _ in everything] == [3, 3, 4, 5, 5, 5, 6]
    assert (len(third), spool.peek(3, after=keys(everything)[-1])) == (1, [])
    assert spool.peek(0, after=(0, 0)) == []


def test_a_row_appended_later_with_an_older_timestamp_is_not_after_the_cursor_but_the_next_plain_peek_has_it(
    make_spool: SpoolFactory,
) -> None:
    spool = make_spool()
    for ts in range(100, 110):
        spool.append(ts, line(ts))
    in_flight = spool.peek(4)  # 100..103

    spool.append(101, "late v=1 101")  # the clock stepped back
    read_ahead = spool.peek(4, after=keys(in_flight)[-1])
    spool.ack([seq for seq, _, _ in in_flight])

    assert [ts for _, ts, _ in read_ahead] == [104, 105, 106, 107]
    assert spool.peek(1)[0][1:] == (101, "late v=1 101")
    assert spool.status().depth == 7


# -- durability --------------------------------------------------------------------------------


def test_samples_and_counters_survive_close_and_reopen(make_spool: SpoolFactory) -> None:
    spool = make_spool(buffer_size=100)
    for ts in range(105):
        spool.append(ts, line(ts))
    spool.add_rejected(3)
    spool.record_failure("influxdb: connection refused", reachable=False)
    before = spool.peek(1000)
    spool.close()

    reopened = make_spool(buffer_size=100)

    assert reopened.peek(1000) == before
    status = reopened.status()
    assert (status.depth, status.dropped_total, status.rejected_total) == (len(before), 5, 3)
    assert status.last_error == "influxdb: connection refused"
    assert status.sink_reachable is False
    reopened.append(1000, line(1000))  # the row count was restored: a full buffer overflows
    assert (reopened.status().depth, reopened.status().dropped_total) == (100, 6)


_CHILD = """
import sys
from pathlib import Path
from monitor.config import SpoolConfig
from monitor.spool import Spool

spool = Spool(SpoolConfig(path=Path(sys.argv[1]), spill_path=Path(sys.argv[1] + ".spill")))
ts = 0
while True:
    spool.append(ts, f"system,host=crash v={ts} {ts}")
    print(ts, flush=True)  # printed only once append has returned
    ts += 1
"""


def test_spool_keeps_every_returned_append_across_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    assert child.stdout is not None
    confirmed: list[int] = []
    try:
        for text in child.stdout:
            confirmed.append(int(text))
            if len(confirmed) == 300:
                child.send_signal(signal.SIGKILL)
                break
        confirmed.extend(int(text) for text in child.stdout)  # whatever it printed before dying
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert confirmed == list(range(len(confirmed))) and len(confirmed) >= 300

    spool = Spool(SpoolConfig(path=path, spill_path=tmp_path / "spill.lp"))
    try:
        stored = stored_ts(spool)
    finally:
        spool.close()
    # Everything append() confirmed is there; at most the one sample in flight is extra.
    assert stored[: len(confirmed)] == confirmed
    assert stored[len(confirmed) :] in ([], [len(confirmed)])


# -- deferred acks (a backlog draining) ---------------------------------------------------------


def seqs_of(rows: list[tuple[int, int, str]]) -> list[int]:
    return [seq for seq, _, _ in rows]


@pytest.mark.parametrize(
    ("seqs", "runs"),
    [
        ([5, 6, 7, 8], [(5, 8)]),
        ([8, 5, 7, 6], [(5, 8)]),
        ([1, 2, 3, 7, 8, 10], [(1, 3), (7, 8), (10, 10)]),
        ([4, 4, 5, 6], [(4, 6)]),  # a duplicate: still the right ranges
        ([3, 3, 5], [(3, 3), (5, 5)]),  # as many values as the span is long, but not a run
        ([42], [(42, 42)]),
    ],
)
def test_seqs_are_acked_as_runs_of_consecutive_integers(seqs: list[int], runs: list[tuple[int, int]]) -> None:
    assert _runs(seqs) == runs


def test_a_deferred_ack_takes_the_rows_out_of_depth_and_every_read_at_once(
    make_spool: SpoolFactory, tmp_path: Path
) -> None:
    spool = make_spool()
    for ts in range(10):
        spool.append(ts, line(ts))
    batch = spool.peek(4)

    spool.ack(seqs_of(batch), success_ms=123, defer=True)

    # Another process reading the file while the rows are only marked leaves them out too.
    other = read_status(tmp_path / "spool.db")
    assert other is not None
    assert (other.depth, other.oldest_ts_ms, other.newest_ts_ms) == (6, 4, 9)
    assert other.last_success_ms == 123
    assert stored_ts(spool) == list(range(4, 10))  # this peek also deletes them
    assert spool.status().depth == 6


def test_the_read_ahead_deletes_the_rows_of_a_deferred_ack(make_spool: SpoolFactory, tmp_path: Path) -> None:
    spool = make_spool()
    for ts in range(9):
        spool.append(ts, line(ts))
    first = spool.peek(3)
    second = spool.peek(3, after=keys(first)[-1])
    spool.ack(seqs_of(first), defer=True)

    third = spool.peek(3, after=keys(second)[-1])  # what the helper does while `second` is in flight

    assert [ts for _, ts, _ in third] == [6, 7, 8]
    assert count_rows(tmp_path / "spool.db") == 6  # really deleted, not only marked
    spool.ack(seqs_of(second), defer=True)
    spool.ack(seqs_of(third))  # the last, not full batch: deleted at once, with what was marked
    assert count_rows(tmp_path / "spool.db") == 0
    assert count_rows(tmp_path / "spool.db", "acked") == 0  # no marks left behind either
    assert spool.status().depth == 0


def count_rows(path: Path, table: str = "queue") -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_acking_the_same_rows_twice_counts_them_once(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    for ts in range(10):
        spool.append(ts, line(ts))
    batch = seqs_of(spool.peek(4))
    spool.ack(batch, defer=True)
    spool.ack([*batch[2:], batch[-1] + 1], defer=True)  # overlaps: only the one new row counts

    assert spool.status().depth == 5
    assert stored_ts(spool) == list(range(5, 10))


def test_drop_oldest_after_a_deferred_ack_drops_only_undelivered_samples(
    make_spool: SpoolFactory, overflows: Overflows
) -> None:
    spool = make_spool(buffer_size=100)  # chunk: 1 sample
    for ts in range(100):
        spool.append(ts, line(ts))
    spool.ack(seqs_of(spool.peek(10)), defer=True)  # 0..9 delivered, only marked

    for ts in range(100, 112):  # 90 waiting + 12: the two oldest undelivered ones go
        spool.append(ts, line(ts))

    status = spool.status()
    assert (status.depth, status.dropped_total) == (100, 2)
    assert stored_ts(spool)[:2] == [12, 13]


_DEFERRED_CHILD = """
import sys, time
from pathlib import Path
from monitor.config import SpoolConfig
from monitor.spool import Spool

spool = Spool(SpoolConfig(path=Path(sys.argv[1]), spill_path=Path(sys.argv[1] + ".spill")))
for ts in range(20):
    spool.append(ts, f"system,host=crash v={ts} {ts}")
batch = spool.peek(8)
spool.ack([seq for seq, _, _ in batch], defer=True)
print("acked", flush=True)
time.sleep(600)  # killed here: the rows are marked, not deleted
"""


def test_rows_of_a_deferred_ack_are_gone_after_sigkill_and_restart(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", _DEFERRED_CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "acked"
        assert count_rows(path) == 20  # marked only
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)

    before = read_status(path)
    assert before is not None and before.depth == 12
    spool = Spool(SpoolConfig(path=path, spill_path=tmp_path / "spill.lp"))
    try:
        assert spool.status().depth == 12
        assert stored_ts(spool) == list(range(8, 20))  # nothing delivered is sent again
    finally:
        spool.close()
    assert count_rows(path) == 12


# -- budgets and overflow ----------------------------------------------------------------------


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


def test_samples_dropped_from_two_batches_handed_out_are_uncounted_only_when_their_batch_is_acked(
    make_spool: SpoolFactory,
) -> None:
    spool = make_spool(buffer_size=10)  # each append past 10 drops the oldest sample
    for ts in range(10):
        spool.append(ts, line(ts))
    in_flight = spool.peek(3)  # 0..2
    read_ahead = spool.peek(3, after=keys(in_flight)[-1])  # 3..5

    for ts in range(10, 15):  # drops 0..4: all of the batch in flight, two of the read-ahead
        spool.append(ts, line(ts))
    assert spool.status().dropped_total == 5

    spool.ack([seq for seq, _, _ in in_flight])  # delivered after all
    assert spool.status().dropped_total == 2
    spool.ack([seq for seq, _, _ in read_ahead])
    assert spool.status().dropped_total == 0
    assert stored_ts(spool) == list(range(6, 15))


def test_a_plain_peek_forgets_a_dropped_read_ahead_that_was_never_sent(make_spool: SpoolFactory) -> None:
    spool = make_spool(buffer_size=10)
    for ts in range(10):
        spool.append(ts, line(ts))
    in_flight = spool.peek(3)
    spool.peek(3, after=keys(in_flight)[-1])  # 3..5, then dropped from the spool while read ahead
    for ts in range(10, 15):
        spool.append(ts, line(ts))

    retry = spool.peek(3)  # the batch in flight failed: start over from the oldest row
    spool.ack([seq for seq, _, _ in retry])
    spool.ack([seq for seq, _, _ in in_flight])  # a stale ack (its rows are gone) changes nothing

    assert [ts for _, ts, _ in retry] == [5, 6, 7]
    assert spool.status().dropped_total == 5  # 0..4 never reached the database


def test_spill_moves_the_oldest_lines_to_the_spill_file_unchanged(
    make_spool: SpoolFactory, overflows: Overflows, tmp_path: Path
) -> None:
    spool = make_spool(buffer_size=1000, overflow="spill")
    lines = [line(ts) for ts in range(1025)]
    for ts, text in enumerate(lines):
        spool.append(ts, text)

    assert overflows.calls == [("spill", 10)] * 3
    assert (tmp_path / "spill.lp").read_text(encoding="utf-8") == "".join(t + "\n" for t in lines[:30])
    status = spool.status()
    assert (status.depth, status.spilled_total, status.dropped_total) == (995, 30, 0)
    assert [text for _, _, text in spool.peek(2000)] == lines[30:]


def test_spill_takes_the_oldest_by_timestamp_not_by_arrival(make_spool: SpoolFactory, tmp_path: Path) -> None:
    spool = make_spool(buffer_size=100, overflow="spill")  # chunk: 1 sample
    for ts in [*range(1000, 1100), 5]:  # a late sample with the oldest timestamp arrives last
        spool.append(ts, line(ts))
    spool.append(2000, line(2000))

    assert (tmp_path / "spill.lp").read_text(encoding="utf-8").splitlines() == [line(1000), line(5)]


def test_spill_that_cannot_be_written_drops_instead_and_counts_it(
    make_spool: SpoolFactory, overflows: Overflows, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_file = tmp_path / "spill-dir"
    not_a_file.mkdir()
    spool = make_spool(buffer_size=100, overflow="spill", spill_path=not_a_file)

    with caplog.at_level(logging.ERROR, logger="monitor.spool"):
        for ts in range(102):
            spool.append(ts, line(ts))

    assert overflows.calls == [("drop_oldest", 1), ("drop_oldest", 1)]
    status = spool.status()
    assert (status.depth, status.dropped_total, status.spilled_total) == (100, 2, 0)
    assert "cannot spill" in caplog.text


def test_spill_cuts_a_partial_line_left_by_an_interrupted_spill(
    make_spool: SpoolFactory, tmp_path: Path
) -> None:
    spill = tmp_path / "spill.lp"
    spill.write_text(line(1) + "\n" + line(2)[:17], encoding="utf-8")  # a crash mid-write
    spool = make_spool(buffer_size=100, overflow="spill")
    for ts in range(100, 201):
        spool.append(ts, line(ts))

    assert spill.read_text(encoding="utf-8").splitlines() == [line(1), line(100)]


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


def test_reconfigure_keeps_the_open_file_when_the_path_changes(
    make_spool: SpoolFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = make_spool()
    spool.append(1, line(1))

    with caplog.at_level(logging.WARNING, logger="monitor.spool"):
        spool.reconfigure(SpoolConfig(path=tmp_path / "elsewhere.db", spill_path=tmp_path / "s.lp"))
    spool.append(2, line(2))

    assert "needs a restart" in caplog.text
    assert not (tmp_path / "elsewhere.db").exists()
    assert stored_ts(spool) == [1, 2]


# -- state and status --------------------------------------------------------------------------


def test_status_reports_depth_range_and_shipping_state(make_spool: SpoolFactory, tmp_path: Path) -> None:
    spool = make_spool()
    empty = spool.status()
    assert (empty.depth, empty.oldest_ts_ms, empty.last_success_ms, empty.sink_reachable) == (
        0,
        None,
        None,
        None,
    )
    for ts in (30, 10, 20):
        spool.append(ts, line(ts))

    spool.record_failure(
        "influx: HTTP 503: overloaded\nTraceback (most recent call last): ...", reachable=True
    )
    failed = spool.status()
    spool.record_success(1_700_000_123_456)
    spool.add_rejected(7)
    spool.add_rejected(2)

    assert (failed.last_error, failed.sink_reachable) == ("influx: HTTP 503: overloaded", True)
    status = spool.status()
    assert (status.depth, status.oldest_ts_ms, status.newest_ts_ms) == (3, 10, 30)
    assert (status.last_success_ms, status.last_error, status.sink_reachable) == (1_700_000_123_456, "", True)
    assert status.rejected_total == 9
    assert status.updated_ms == int(NOW_S * 1000)
    assert read_status(tmp_path / "spool.db") == status  # what the API process sees, while open


def test_record_failure_stores_one_bounded_line(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    spool.record_failure("x" * 5000, reachable=False)

    assert spool.status().last_error == "x" * 500
    assert spool.status().sink_reachable is False


def test_close_is_idempotent(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    spool.append(1, line(1))
    spool.close()
    spool.close()


# -- threads -----------------------------------------------------------------------------------


def test_append_and_peek_ack_from_two_threads_lose_and_duplicate_nothing(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    n = 600
    shipped: list[int] = []
    errors: list[BaseException] = []

    def collector() -> None:
        try:
            for ts in range(n):
                spool.append(ts, line(ts))
        except BaseException as exc:
            errors.append(exc)

    def shipper() -> None:
        try:
            while len(shipped) < n and not errors:
                rows = spool.peek(25)
                shipped.extend(ts for _, ts, _ in rows)
                spool.ack([seq for seq, _, _ in rows])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=collector), threading.Thread(target=shipper)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert shipped == list(range(n))
    assert spool.status().depth == 0


def test_append_refreshes_the_heartbeat_at_most_every_few_seconds_and_when_the_clock_goes_back(
    tmp_path: Path,
) -> None:
    now_s = [NOW_S]
    config = SpoolConfig(path=tmp_path / "spool.db", spill_path=tmp_path / "spill.lp")
    spool = Spool(config, clock=lambda: now_s[0])
    step_s = HEARTBEAT_EVERY_MS / 1000
    try:
        seen = []
        for i, offset_s in enumerate([0.0, 1.0, step_s - 0.001, step_s, step_s + 1.0, 2.0]):
            now_s[0] = NOW_S + offset_s
            spool.append(i, f"m,host=h v={i} {i}")
            seen.append(spool.status().updated_ms)
        assert seen == [
            int(NOW_S * 1000),
            int(NOW_S * 1000),
            int(NOW_S * 1000),
            int((NOW_S + step_s) * 1000),
            int((NOW_S + step_s) * 1000),
            int((NOW_S + 2.0) * 1000),  # the clock went back: written at once
        ]
        assert read_status(tmp_path / "spool.db") is not None
        assert [ts for _, ts, _ in spool.peek(10)] == [0, 1, 2, 3, 4, 5]  # every append committed
    finally:
        spool.close()


def test_the_agents_sqlite_connections_keep_a_small_page_cache(
    make_spool: SpoolFactory, tmp_path: Path
) -> None:
    """SQLite's default 2 MiB cache per connection grew the agent's RSS (bench_soak)."""
    spool = make_spool()
    assert spool._conn.execute("PRAGMA cache_size").fetchone()[0] == -CACHE_KIB
    writer = metricsdb.connect(tmp_path / "metrics.db")
    reader = metricsdb.connect(tmp_path / "metrics.db", readonly=True)
    try:
        assert writer.execute("PRAGMA cache_size").fetchone()[0] == -metricsdb.WRITER_CACHE_KIB
        assert reader.execute("PRAGMA cache_size").fetchone()[0] == -2000  # the API's reads: default
    finally:
        writer.close()
        reader.close()
