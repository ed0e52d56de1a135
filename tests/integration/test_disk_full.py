"""A full disk (issue 9): the spool and the agent on a real, small, nearly full file system.

The state directory is a 3 MiB tmpfs (mounted by the test, CI runs as root) with a filler file
taking most of it. What must hold: the agent never dies of it; it keeps the newest samples
that fit, counts every one it cannot keep, raises one ``disk_full`` alert naming the path and
the free space, ships without re-sending a batch while the disk is still full, and recovers
by itself (the alert resolves once) when part of the space returns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import MiB, SpoolConfig
from monitor.spool import Overflowed, Spool
from monitor.spool.budget import DISK_RESERVE_BYTES
from tests.integration.helpers import (
    HOST,
    RecordingAgent,
    agent_settings,
    alert_events,
    alert_states,
    expected_ticks_ms,
    hostmon,
    load,
    point_of,
    points_written,
    prefill_spool,
    running,
    spool_rows,
    stored_points,
    wait_for,
    write_config,
)
from tests.tmpfs import fill, free_bytes, skip_unless_mountable, small_filesystem

pytestmark = pytest.mark.integration

FS_BYTES = 3 * MiB


@pytest.fixture
def small_state_dir(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs as the state directory; unmounted afterwards."""
    skip_unless_mountable()
    with small_filesystem(tmp_path / "state", FS_BYTES) as path:
        yield path


def _files_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def _sample(ts_ms: int) -> str:
    return f"system,host={HOST} cpu_usage_overall={ts_ms % 1000 / 10},memory_usage=42.5 {ts_ms}"


@pytest.mark.parametrize("overflow", ["drop_oldest", "spill"])
@pytest.mark.parametrize("max_spool_bytes", [256 * MiB, MiB], ids=["default-budget", "1MiB-budget"])
def test_a_spool_on_a_full_tmpfs_never_raises_and_keeps_or_counts_every_sample(
    small_state_dir, overflow, max_spool_bytes
):
    fill(small_state_dir, leave_free_bytes=768 * 1024)  # less than either budget
    events: list[Overflowed] = []
    config = SpoolConfig(
        path=small_state_dir / "spool.db",
        spill_path=small_state_dir / "spill.lp",
        max_spool_bytes=max_spool_bytes,
        overflow=overflow,
    )
    spool = Spool(config, on_overflow=events.append)
    taken = 15_000  # ~1.5 MiB of rows: more than the disk has free
    try:
        for i in range(taken):
            spool.append(1_700_000_000_000 + i * 1000, _sample(i * 1000))
        status = spool.status()
        kept = [ts for _, ts, _ in spool.peek(taken)]
    finally:
        spool.close()

    spilled = config.spill_path.read_text().splitlines() if config.spill_path.exists() else []
    assert status.depth + status.dropped_total + status.spilled_total == taken
    assert status.dropped_total > 0  # the disk ran out (for spill: the spill file too)
    assert len(spilled) == status.spilled_total
    assert (status.spilled_total > 0) == (overflow == "spill")
    assert kept == sorted(kept) and kept[-1] == 1_700_000_000_000 + (taken - 1) * 1000  # the newest kept
    assert all(e.disk_full for e in events)
    assert f"bytes free on {small_state_dir}" in events[0].reason
    assert free_bytes(small_state_dir) > 0


def test_an_ack_the_full_disk_cannot_write_is_never_handed_out_again(small_state_dir):
    config = SpoolConfig(path=small_state_dir / "spool.db", spill_path=small_state_dir / "spill.lp")
    spool = Spool(config)
    for i in range(3000):
        spool.append(i, _sample(i))
    spool.close()  # its WAL is checkpointed away: a delete needs new space for its WAL
    spool = Spool(config)
    try:
        filler = fill(small_state_dir, leave_free_bytes=0)
        assert free_bytes(small_state_dir) < 4096
        batch = spool.peek(2000)

        written = spool.ack([seq for seq, _, _ in batch])  # the delete cannot be written

        assert written is False
        assert spool.peek(100) == []  # nothing more is shipped while the ack is only in memory
        assert spool.status().depth == 1000  # as far as this process knows, the batch is gone
        filler.unlink()  # space returns
        after = spool.peek(100)
        assert [ts for _, ts, _ in after] == list(range(2000, 2100))  # never the acked batch again
        assert len(spool_rows(config.path)) == 1000  # the delete is on disk now
    finally:
        spool.close()


def _fill_the_disk(state_dir: Path, backlog_bytes: int, free_left: int) -> list[str]:
    backlog = prefill_spool(state_dir / "spool.db", backlog_bytes, os.cpu_count() or 1)
    fill(state_dir, leave_free_bytes=free_left)
    return backlog


def test_collect_on_a_full_disk_drops_the_oldest_alerts_once_ships_once_and_recovers(
    tmp_path, small_state_dir, influxdb1, influx_db, proxy, start_agent
):
    """The real ``collect`` process. The sink is down and the disk full; the sink comes back
    while the disk is still full (every batch acked, none sent twice); then a file smaller than
    the spool is deleted, and disk_full resolves once."""
    settings = agent_settings(small_state_dir, proxy.url, influx_db, interval_s=0.1)
    cfg = write_config(tmp_path / "hostmon.toml", settings)
    backlog = _fill_the_disk(small_state_dir, backlog_bytes=3 * MiB // 2, free_left=320 * 1024)
    filler = small_state_dir / "filler.bin"
    assert filler.stat().st_size < (small_state_dir / "spool.db").stat().st_size
    proxy.set_mode("refuse")
    agent = start_agent(cfg)
    alerts_log = agent.config.alerts.log_path
    agent.wait_status(lambda s: s.dropped_total > 0, "the full disk to drop samples")
    dropped_at_ms = int(time.time() * 1000)
    agent.wait_status(lambda s: (s.newest_ts_ms or 0) >= dropped_at_ms + 1000, "ticks after the first drop")
    assert _files_bytes(small_state_dir) <= FS_BYTES - DISK_RESERVE_BYTES // 2
    assert alert_states(alerts_log, "disk_full") == ["FIRING"]
    message = alert_events(alerts_log, "disk_full")[0]["message"]
    assert f"bytes free on {small_state_dir}" in message and "dropped (oldest first)" in message
    assert alert_states(alerts_log, "spool_overflow") == []

    proxy.set_mode("pass")  # the database is back; the disk is still full
    agent.wait_status(lambda s: s.depth <= 2 and s.last_success_ms, "the backlog to drain on a full disk")
    filler.unlink()  # less space comes back than the spool held
    wait_for(
        lambda: alert_states(alerts_log, "disk_full") == ["FIRING", "RESOLVED"],
        "disk_full to resolve",
        explain=lambda: agent.log()[-3000:],
    )
    assert agent.terminate() == 0

    final = agent.status()
    assert final is not None and final.depth == 0
    stored = stored_points(influxdb1.url, influx_db)
    assert points_written(influxdb1.url, influx_db) == len(stored), "a batch was sent twice"
    backlog_points = [point_of(line) for line in backlog]
    first_new_ms = backlog_points[-1][0] + 1
    stored_backlog = [p for p in stored if p[0] < first_new_ms]
    old_dropped = len(backlog) - len(stored_backlog)
    assert 0 < old_dropped < len(backlog)
    assert stored_backlog == backlog_points[old_dropped:], "not exactly the oldest were dropped"
    new_ticks = [ts for ts, _ in stored if ts >= first_new_ms]
    expected = expected_ticks_ms(new_ticks[0], new_ticks[-1], 0.1, agent.skipped_ticks_ms())
    lost = sorted(set(expected) - set(new_ticks))
    assert set(new_ticks) <= set(expected) and len(new_ticks) == len(set(new_ticks))
    # A new sample may be lost when not even the oldest could be evicted ("could not be stored
    # (counted as dropped)"): every sample is stored or counted, none both, none neither.
    assert final.dropped_total == old_dropped + len(lost), (old_dropped, lost, final.dropped_total)
    assert "Traceback" not in agent.log()


def test_spill_on_a_full_disk_spills_what_fits_drops_the_rest_counted_and_all_else_arrives(
    tmp_path, small_state_dir, influxdb1, influx_db, proxy
):
    """In-process agent (it records every sample it took): spill policy, sink down, disk full;
    then part of the space returns and the sink comes back; the spill file is replayed.
    Arrived + counted drops == taken, each arrived once."""
    settings = agent_settings(
        small_state_dir, proxy.url, influx_db, interval_s=0.1, spool={"overflow": "spill"}
    )
    config = load(settings, tmp_path / "hostmon.toml")
    backlog = _fill_the_disk(small_state_dir, backlog_bytes=5 * MiB // 4, free_left=448 * 1024)
    proxy.set_mode("refuse")
    agent = RecordingAgent(config)
    with running(agent):
        wait_for(lambda: agent.status().dropped_total > 0, "the spill file to run out of room too", 60)
        assert agent.status().spilled_total > 0
        (small_state_dir / "filler.bin").unlink()
        proxy.set_mode("pass")
        wait_for(lambda: agent.status().depth == 0, "the spool to drain", 60)
        wait_for(
            lambda: alert_states(config.alerts.log_path, "disk_full") == ["FIRING", "RESOLVED"],
            "disk_full to resolve",
        )
        final = agent.status()
    replay = hostmon(tmp_path / "hostmon.toml", "spool", "replay", str(config.spool.spill_path))
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert f"replayed {final.spilled_total} lines" in replay.stdout

    taken = backlog + agent.lines()
    stored = stored_points(influxdb1.url, influx_db)
    assert len(set(stored)) == len(stored)
    assert {point_of(line) for line in taken} >= set(stored)
    assert len(stored) + final.dropped_total == len(taken), "a sample is neither stored nor counted"
    assert alert_states(config.alerts.log_path, "spool_overflow") == []
