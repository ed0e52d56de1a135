"""The durable spool on a real SQLite file: order, durability (also across SIGKILL), state, threads."""

from __future__ import annotations

import logging
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from monitor import metricsdb
from monitor.config import SpoolConfig
from monitor.lineprotocol import Sample, encode
from monitor.spool import CACHE_KIB, HEARTBEAT_EVERY_MS, Spool
from monitor.status import read_status
from tests.unit.spool_helpers import (
    NOW_S,
    REPO,
    SpoolFactory,
    keys,
    line,
    stored_ts,
)

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


@pytest.mark.parametrize("bad", ["", "a v=1 1\r", "a v=1 1\n", "\na v=1 1", "a v=1 1\n\nb v=2 1"])
def test_append_refuses_anything_but_non_empty_lines(make_spool: SpoolFactory, bad: str) -> None:
    spool = make_spool()
    with pytest.raises(ValueError, match="one or more non-empty lines"):
        spool.append(1, bad)
    assert spool.status().depth == 0


def test_a_tick_of_several_lines_is_one_row_and_counts_as_one_sample(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    tick = "system,host=a v=1 1\nsystem_disk,device=sda,host=a disk_busy_percent=2 1"
    spool.append(1, tick)
    assert spool.status().depth == 1
    assert [text for _, _, text in spool.peek(10)] == [tick]


def test_ack_removes_exactly_the_given_rows_and_ignores_unknown_ones(make_spool: SpoolFactory) -> None:
    spool = make_spool()
    for ts in range(10):
        spool.append(ts, line(ts))
    first = spool.peek(4)

    spool.ack([seq for seq, _, _ in first] + [999_999])
    spool.ack([])

    assert stored_ts(spool) == list(range(4, 10))
    assert spool.status().depth == 6


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


def test_reconfigure_keeps_the_open_file_when_the_path_changes(
    make_spool: SpoolFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = make_spool()
    spool.append(1, line(1))

    with caplog.at_level(logging.WARNING, logger="monitor.spool.queue"):
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
