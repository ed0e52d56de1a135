"""The agent's guarantees (issue 2, "Spool and shipper"), end to end against a real InfluxDB 1.6.7.

- The database down for a while, then back: every sample arrives exactly once, with its
  original timestamp and values, and the spool shrinks back to empty.
- The agent SIGKILLed while the database is down, then restarted: nothing lost but at most the
  sample in flight.
- The budget reached: the configured policy applies (drop the oldest, or spill them to a file that
  ``hostmon spool replay`` sends later), every sample counted, alerted, and the agent keeps going;
  ``spool.buffer_size`` still means "samples held before the overflow policy applies".
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from monitor.status import read_status
from tests.integration.helpers import (
    HOST,
    INTERVAL_S,
    RecordingAgent,
    agent_settings,
    alert_states,
    assert_arrived_exactly_once,
    delivered_rows,
    expected_ticks_ms,
    hostmon,
    load,
    point_of,
    points_written,
    prefill_spool,
    request_lines,
    running,
    skipped_ticks_ms,
    spool_rows,
    stored_points,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def test_outage_then_recovery_delivers_every_sample_exactly_once_with_its_values(
    tmp_path, state_dir, influxdb1, influx_db, proxy, caplog
):
    config = load(agent_settings(state_dir, proxy.url, influx_db), tmp_path / "hostmon.toml")
    alerts_log = config.alerts.log_path
    agent = RecordingAgent(config)
    with caplog.at_level(logging.WARNING, logger="monitor.collector"), running(agent):
        wait_for(lambda: agent.status().last_success_ms, "a first successful write")
        proxy.set_mode("refuse")  # the database goes away
        outage_started = len(agent.lines())
        # a write failed since the refusal, and none can succeed before it ends
        wait_for(lambda: alert_states(alerts_log, "sink_unreachable") == ["FIRING"], "sink_unreachable")
        peak = wait_for(
            lambda: (s := agent.status()).depth >= 15 and s,
            "samples to pile up in the spool during the outage",
        )
        assert peak.sink_reachable is False
        proxy.set_mode("pass")  # ... and comes back
        wait_for(lambda: len(agent.lines()) > outage_started + peak.depth + 2, "ticks after the outage")
        wait_for(lambda: agent.status().depth == 0, "the spool to drain")
    assert peak.depth >= 15
    lines = agent.lines()
    assert_arrived_exactly_once(influxdb1.url, influx_db, lines)
    # the ticks are consecutive (but for ticks the agent logged as skipped, late on a loaded
    # machine): no sample was lost between tick and spool either
    stamps = [point_of(line)[0] for line in lines]
    skipped = skipped_ticks_ms(caplog.text, INTERVAL_S)
    assert stamps == expected_ticks_ms(stamps[0], stamps[-1], INTERVAL_S, skipped)
    assert alert_states(alerts_log, "sink_unreachable") == ["FIRING", "RESOLVED"]
    assert spool_rows(config.spool.path) == []


def test_sigkill_while_the_database_is_down_loses_nothing_but_the_sample_in_flight(
    tmp_path, state_dir, influxdb1, influx_db, proxy, start_agent
):
    """The agent is frozen (SIGSTOP) once the test saw a new sample durable, wherever its threads
    are at that moment, and killed while frozen: what the spool had committed then is exactly
    what is left; only a sample being appended at that moment (in flight) can be missing."""
    interval_s = 0.4
    cfg = write_config(
        tmp_path / "hostmon.toml", agent_settings(state_dir, proxy.url, influx_db, interval_s=interval_s)
    )
    proxy.set_mode("refuse")
    agent = start_agent(cfg)
    five = agent.wait_status(lambda s: s.depth >= 5, "five samples spooled while the database is down")
    seen = agent.wait_status(lambda s: s.newest_ts_ms > five.newest_ts_ms, "the next sample spooled")
    agent.signal(signal.SIGSTOP)
    committed = spool_rows(agent.config.spool.path)
    agent.kill()
    assert agent.proc.returncode == -9
    rows = spool_rows(agent.config.spool.path)
    assert rows == committed, "the kill lost a sample the spool had committed"
    spooled = [line for _, _, line in rows]
    last_ts = rows[-1][1]
    assert last_ts >= seen.newest_ts_ms
    ticks = expected_ticks_ms(rows[0][1], last_ts, interval_s, agent.skipped_ticks_ms())
    assert [ts for _, ts, _ in rows] == ticks
    assert stored_points(influxdb1.url, influx_db) == []

    proxy.set_mode("pass")
    restarted = start_agent(cfg)
    wanted = {point_of(line) for line in spooled}
    wait_for(
        lambda: wanted <= set(stored_points(influxdb1.url, influx_db)),
        "every sample spooled before the kill to arrive",
        explain=lambda: restarted.log()[-3000:],
    )
    assert restarted.terminate() == 0
    stored = stored_points(influxdb1.url, influx_db)
    assert Counter(stored) == Counter(set(stored)), "a sample is stored twice"
    assert points_written(influxdb1.url, influx_db) == len(stored), "a sample was written twice"
    after = [p for p in stored if p[0] > last_ts]
    assert len(stored) == len(spooled) + len(after)
    assert spool_rows(agent.config.spool.path) == []


def test_sigkill_while_a_backlog_drains_loses_nothing_and_resends_at_most_one_batch(
    tmp_path, state_dir, influxdb1, influx_db, proxy, start_agent
):
    """Killed mid-drain, with batch 4 in flight (the proxy holds it) and batches 1-3 delivered: the
    spool may still hold delivered rows, only marked (deferred acks), but nothing delivered is
    waiting. The held batch then reaches InfluxDB, as a write whose answer came too late would,
    so the restarted agent re-sends exactly that one batch."""
    batch, delivered = 5, 3
    # timeout_s: the held write must still be waiting for its answer when the agent is killed
    settings = agent_settings(state_dir, proxy.url, influx_db, shipper={"batch_size": batch, "timeout_s": 60})
    cfg = write_config(tmp_path / "hostmon.toml", settings)
    proxy.set_mode("refuse")
    agent = start_agent(cfg)
    agent.wait_status(lambda s: s.depth >= 8 * batch, "a backlog of eight batches")
    proxy.hold(nth=delivered + 1)  # back: the drain starts, and its fourth write is held
    assert proxy.held.wait(20), f"no fourth write reached the proxy:\n{agent.log()[-3000:]}"
    held = {point_of(line) for line in request_lines(proxy.held_request)}
    agent.kill()
    assert agent.proc.returncode == -9
    waiting = spool_rows(agent.config.spool.path)
    marked = delivered_rows(agent.config.spool.path)
    stored_at_kill = set(stored_points(influxdb1.url, influx_db))
    assert len(stored_at_kill) == delivered * batch
    assert len(waiting) >= batch, "the kill came after the drain ended; nothing tested"
    in_flight = {point_of(line) for _, _, line in waiting[:batch]}
    assert in_flight == held, "the oldest waiting samples are not the batch in flight"
    delivered_but_waiting = {point_of(line) for _, _, line in waiting} & stored_at_kill
    assert not delivered_but_waiting, "a sample delivered before the batch in flight is still waiting"
    assert {point_of(line) for _, _, line in marked} <= stored_at_kill, "a marked sample was not delivered"

    assert proxy.release() == 204  # the batch in flight arrives after all; its ack never happened
    assert set(stored_points(influxdb1.url, influx_db)) == stored_at_kill | in_flight
    proxy.set_mode("pass")
    restarted = start_agent(cfg)
    wanted = stored_at_kill | {point_of(line) for _, _, line in waiting}
    wait_for(
        lambda: wanted <= set(stored_points(influxdb1.url, influx_db)),
        "every sample spooled or stored before the kill to be stored",
        explain=lambda: restarted.log()[-3000:],
    )
    restarted.wait_status(lambda s: s.depth == 0, "the spool to drain")
    assert restarted.terminate() == 0
    stored = stored_points(influxdb1.url, influx_db)
    assert Counter(stored) == Counter(set(stored)), "a sample is stored twice"
    # InfluxDB's own write counter: the batch in flight at the kill was written twice, nothing else
    assert points_written(influxdb1.url, influx_db) - len(stored) == batch, "not exactly one batch re-sent"


def test_buffer_size_full_drops_the_oldest_counts_them_alerts_and_keeps_sampling(
    tmp_path, state_dir, influx_db, proxy
):
    buffer_size = 20
    config = load(
        agent_settings(
            state_dir,
            proxy.url,
            influx_db,
            interval_s=0.1,
            spool={"buffer_size": buffer_size, "overflow": "drop_oldest"},
        ),
        tmp_path / "hostmon.toml",
    )
    proxy.set_mode("refuse")
    agent = RecordingAgent(config)
    depths: list[int] = []
    with running(agent):

        def dropped_enough() -> bool:
            status = agent.status()
            depths.append(status.depth)
            return status.dropped_total >= 10

        wait_for(dropped_enough, "ten samples dropped")
        newest = agent.status().newest_ts_ms
        assert newest is not None
        wait_for(lambda: (agent.status().newest_ts_ms or 0) >= newest + 500, "ticks after the overflow")
    assert max(depths) <= buffer_size
    rows = spool_rows(config.spool.path)
    assert len(rows) == buffer_size
    kept = {line for _, _, line in rows}
    appended = agent.lines()
    missing = [line for line in appended if line not in kept]
    final = read_status(config.spool.path)
    assert final is not None
    assert final.dropped_total == len(missing) > 0
    assert missing == appended[: len(missing)], "what was dropped is not the oldest samples"
    assert [line for _, _, line in rows] == appended[len(missing) :]
    states = alert_states(config.alerts.log_path, "spool_overflow")
    assert states == ["FIRING"]


def test_dropped_total_counts_only_samples_that_never_arrived_when_the_batch_in_flight_is_dropped(
    tmp_path, state_dir, influxdb1, influx_db, proxy
):
    """The spool is full when the database comes back: while a write is in flight (the proxy
    holds it) the next ticks drop the oldest samples, which are that very batch; it then arrives
    after all, and dropped_total forgets them again."""
    config = load(
        agent_settings(
            state_dir,
            proxy.url,
            influx_db,
            interval_s=0.1,
            spool={"buffer_size": 20},
            shipper={"timeout_s": 60},
        ),
        tmp_path / "hostmon.toml",
    )
    proxy.set_mode("refuse")
    agent = RecordingAgent(config)
    with running(agent):
        wait_for(
            lambda: agent.status().dropped_total >= 3, "three samples dropped while the database is down"
        )
        proxy.hold(nth=1)  # back, but the first write waits in the proxy
        assert proxy.held.wait(20), "no write reached the proxy"
        in_flight = request_lines(proxy.held_request)
        dropped_before = agent.status().dropped_total
        wait_for(
            lambda: agent.status().dropped_total >= dropped_before + 3, "ticks to drop the oldest in flight"
        )
        waiting = {line for _, _, line in spool_rows(config.spool.path)}
        dropped_in_flight = [line for line in in_flight if line not in waiting]
        assert len(dropped_in_flight) >= 3 and dropped_in_flight == in_flight[: len(dropped_in_flight)]
        assert proxy.release() == 204  # ... and it arrives after all
        wait_for(lambda: agent.status().depth == 0, "the spool to drain")
    stored = set(stored_points(influxdb1.url, influx_db))
    assert {point_of(line) for line in in_flight} <= stored
    appended = agent.lines()
    missing = [line for line in appended if point_of(line) not in stored]
    final = read_status(config.spool.path)
    assert final is not None
    assert final.dropped_total == len(missing) > 0
    assert missing == appended[: len(missing)], "what was lost is not the oldest samples"
    assert points_written(influxdb1.url, influx_db) == len(appended) - len(missing)


def test_spill_policy_writes_exactly_the_spilled_samples_and_replay_fills_the_gap(
    tmp_path, state_dir, influxdb1, influx_db, proxy, start_agent
):
    interval_s, buffer_size = 0.1, 20
    cfg = write_config(
        tmp_path / "hostmon.toml",
        agent_settings(
            state_dir,
            proxy.url,
            influx_db,
            interval_s=interval_s,
            spool={"buffer_size": buffer_size, "overflow": "spill"},
        ),
    )
    proxy.set_mode("refuse")
    agent = start_agent(cfg)
    spill_path = agent.config.spool.spill_path
    alerts_log = agent.config.alerts.log_path
    status = agent.wait_status(lambda s: s.spilled_total >= 10, "ten samples spilled")
    assert status.depth <= buffer_size
    assert alert_states(alerts_log, "spool_overflow") == ["FIRING"]

    # A replay while the database is still down fails, and says which file keeps the lines;
    # the agent goes on spilling into a fresh spill file meanwhile.
    failed = hostmon(cfg, "spool", "replay", str(spill_path))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    kept = re.search(r"the rest is still in (\S+)", failed.stderr)
    assert kept, failed.stderr
    first_file = Path(kept[1])
    agent.wait_status(lambda s: s.spilled_total >= status.spilled_total + 5, "spilling to go on")
    assert spill_path.exists() and agent.alive()

    proxy.set_mode("pass")
    drained = agent.wait_status(lambda s: s.depth <= 1 and s.last_success_ms, "the spool to drain")
    spilled = first_file.read_text().splitlines() + spill_path.read_text().splitlines()
    assert len(spilled) == drained.spilled_total
    assert all(line.startswith(f"system,host={HOST} ") for line in spilled)
    spilled_ts = [point_of(line)[0] for line in spilled]
    assert spilled_ts == sorted(spilled_ts) and len(set(spilled_ts)) == len(spilled_ts)

    for path in (first_file, spill_path):
        n = len(path.read_text().splitlines())
        result = hostmon(cfg, "spool", "replay", str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"replayed {n} lines" in result.stdout
        assert not path.exists()
    wait_for(lambda: "RESOLVED" in alert_states(alerts_log, "spool_overflow"), "spool_overflow to resolve")
    assert alert_states(alerts_log, "spool_overflow") == ["FIRING", "RESOLVED"]
    assert agent.terminate() == 0

    stored = stored_points(influxdb1.url, influx_db)
    stored_set = set(stored)
    assert {point_of(line) for line in spilled} <= stored_set, "a spilled sample did not arrive"
    per_ts = Counter(ts for ts, _ in stored)
    ticks = expected_ticks_ms(min(spilled_ts), max(per_ts), interval_s, agent.skipped_ticks_ms())
    assert [per_ts[ts] for ts in ticks] == [1] * len(ticks), "a tick is missing or stored twice"
    assert sorted(per_ts) == ticks


def test_byte_budget_reached_drops_the_oldest_and_the_spool_stays_within_max_spool_bytes(
    tmp_path, state_dir, influx_db, proxy, start_agent
):
    """The smallest byte budget is 1 MiB (~3,500 samples): the spool is pre-filled with a day-old
    backlog up to 90% of it, so the real agent reaches the budget within its first ticks."""
    budget = MiB
    settings = agent_settings(state_dir, proxy.url, influx_db, spool={"max_spool_bytes": budget})
    cfg = write_config(tmp_path / "hostmon.toml", settings)
    spool_path = state_dir / "spool.db"
    backlog = prefill_spool(spool_path, int(0.9 * budget), os.cpu_count() or 1)
    proxy.set_mode("refuse")
    agent = start_agent(cfg)
    agent.wait_status(lambda s: s.dropped_total > 0, "the byte budget to drop samples")
    alerts_log = agent.config.alerts.log_path
    wait_for(lambda: alert_states(alerts_log, "spool_overflow")[:1] == ["FIRING"], "spool_overflow")
    dropped_at_ms = int(time.time() * 1000)
    agent.wait_status(lambda s: s.newest_ts_ms >= dropped_at_ms + 1000, "ticks after the overflow")
    assert agent.alive()
    sizes = {p.name: p.stat().st_size for p in state_dir.glob("spool.db*")}
    assert sizes["spool.db"] + sizes.get("spool.db-wal", 0) <= budget, sizes
    assert agent.terminate() == 0
    # spool_overflow resolves after 30 ticks without an overflow and fires again at the next one
    # (the budget drops 1% of it at a time): it fired first, then alternated, however many ticks
    states = alert_states(alerts_log, "spool_overflow")
    assert states[:1] == ["FIRING"] and all(a != b for a, b in itertools.pairwise(states)), states

    rows = spool_rows(spool_path)
    final = agent.status()
    assert final is not None
    kept_backlog = [line for _, _, line in rows if line in set(backlog)]
    n_dropped = len(backlog) - len(kept_backlog)
    assert final.dropped_total == n_dropped > 0
    assert kept_backlog == backlog[n_dropped:], "the byte budget did not drop the oldest samples"
    assert len(rows) > len(kept_backlog), "no new samples were spooled after the overflow"
