"""The real ``hostmon collect`` process: signals, reloads, the CLI around it, and what it samples.

Each test starts ``python -m monitor --config CFG collect`` as a child process, talks to it only
through signals, files and InfluxDB 1.6.7 (behind the fault proxy where an outage is needed), and
ends it by its PID.
"""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from tests.integration.helpers import (
    HOST,
    INTERVAL_S,
    AgentProcess,
    agent_settings,
    alert_events,
    alert_states,
    expected_ticks_ms,
    hostmon,
    point_of,
    skipped_ticks_ms,
    spool_rows,
    stored_points,
    toml_text,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration

FIELDS = ("cpu_usage_overall", "memory_usage", "disk_read", "disk_write", "network_sent", "network_recv")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_flushes_what_is_spooled_and_exits_zero(
    tmp_path, state_dir, influxdb1, influx_db, start_agent, signum
):
    # A long flush interval keeps samples in the spool although the database is up.
    settings = agent_settings(state_dir, influxdb1.url, influx_db, shipper={"flush_interval_s": 60.0})
    agent = start_agent(write_config(tmp_path / "hostmon.toml", settings))
    before = agent.wait_status(lambda s: s.depth >= 5, "five samples spooled")
    # The shipper's first attempt, at start, may have met the first sample (if the first tick
    # came first); after it, the shipper sleeps for 60 s.
    shipped_at_start = stored_points(influxdb1.url, influx_db)
    assert len(shipped_at_start) <= 1
    started = time.monotonic()
    agent.signal(signum)
    assert agent.proc.wait(20) == 0
    assert time.monotonic() - started < 5.0  # the shipper's 60 s sleep was cut short
    after = agent.status()
    assert after is not None and after.depth == 0
    stored = stored_points(influxdb1.url, influx_db)
    flushed = re.search(r"final flush sent (\d+) samples", agent.log())
    assert flushed, agent.log()[-3000:]
    assert int(flushed[1]) == len(stored) - len(shipped_at_start) >= before.depth
    first, last = stored[0][0], stored[-1][0]
    ticks = expected_ticks_ms(first, last, INTERVAL_S, agent.skipped_ticks_ms())
    assert [ts for ts, _ in stored] == ticks
    assert before.oldest_ts_ms == stored[len(shipped_at_start)][0]


def test_sigterm_between_long_ticks_exits_at_once(tmp_path, state_dir, influxdb1, influx_db, start_agent):
    settings = agent_settings(state_dir, influxdb1.url, influx_db, interval_s=3600.0)
    agent = start_agent(write_config(tmp_path / "hostmon.toml", settings))
    wait_for(lambda: "shipping to" in agent.log(), "the agent to start", explain=agent.log)
    started = time.monotonic()
    assert agent.terminate() == 0
    assert time.monotonic() - started < 3.0
    status = agent.status()
    assert status is not None and status.depth == 0


def test_sigterm_while_the_database_hangs_exits_in_bounded_time_and_keeps_the_samples(
    tmp_path, state_dir, influxdb1, influx_db, proxy, start_agent
):
    settings = agent_settings(state_dir, proxy.url, influx_db, shipper={"timeout_s": 1.0})
    cfg = write_config(tmp_path / "hostmon.toml", settings)
    proxy.set_mode("hang")  # accepts, reads, never answers: every write runs into timeout_s
    agent = start_agent(cfg)
    before = agent.wait_status(lambda s: s.depth >= 5, "five samples spooled")
    started = time.monotonic()
    agent.signal(signal.SIGTERM)
    assert agent.proc.wait(20) == 0
    timeout_s = agent.config.shipper.timeout_s
    # the write in flight, then the final flush's one attempt, each bounded by timeout_s
    assert time.monotonic() - started < 2 * timeout_s + 2.0
    left = spool_rows(agent.config.spool.path)
    assert len(left) >= before.depth
    proxy.set_mode("pass")
    restarted = start_agent(cfg)
    wanted = {point_of(line) for _, _, line in left}
    wait_for(
        lambda: wanted <= set(stored_points(influxdb1.url, influx_db)),
        "the samples kept through the hang to arrive after a restart",
        explain=lambda: restarted.log()[-3000:],
    )
    assert restarted.terminate() == 0


def test_sighup_applies_a_new_rule_and_interval_without_losing_spooled_samples(
    tmp_path, state_dir, influxdb1, influx_db, proxy, start_agent
):
    cfg = tmp_path / "hostmon.toml"
    write_config(cfg, agent_settings(state_dir, proxy.url, influx_db))
    proxy.set_mode("refuse")  # samples stay spooled across the reload
    agent = start_agent(cfg)
    agent.wait_status(lambda s: s.depth >= 5, "five samples spooled")
    new_interval_s = 0.3
    rule = {"name": "memory_seen", "metric": "memory_usage", "op": ">=", "threshold": 0, "severity": "info"}
    write_config(
        cfg, agent_settings(state_dir, proxy.url, influx_db, interval_s=new_interval_s, rules=[rule])
    )
    spooled_before = spool_rows(agent.config.spool.path)
    hup_ms = int(time.time() * 1000)
    agent.signal(signal.SIGHUP)
    alerts_log = agent.config.alerts.log_path
    wait_for(
        lambda: "FIRING" in alert_states(alerts_log, "memory_seen"),
        "the new rule to fire",
        explain=lambda: agent.log()[-3000:],
    )
    event = alert_events(alerts_log, "memory_seen")[0]
    assert event["host"] == HOST and event["op"] == ">=" and float(event["value"]) >= 0
    wait_for(
        lambda: len(_split_at_reload(agent, new_interval_s)[1]) >= 5,
        "five ticks on the new interval",
        explain=lambda: agent.log()[-3000:],
    )
    proxy.set_mode("pass")
    agent.wait_status(lambda s: s.depth <= 1 and s.last_success_ms is not None, "the spool to drain")
    assert agent.terminate() == 0
    assert "configuration reloaded" in agent.log()

    stored = set(stored_points(influxdb1.url, influx_db))
    assert {point_of(line) for _, _, line in spooled_before} <= stored, "a spooled sample was lost"
    # The reload applies after the first tick that follows SIGHUP: up to it, ticks on the old
    # interval's multiples, one after the other; from the next one on, on the new interval's.
    old, new = _split_at_reload(agent, new_interval_s, [ts for ts, _ in sorted(stored)])
    skipped_old = skipped_ticks_ms(agent.log().partition("configuration reloaded")[0], INTERVAL_S)
    assert old == expected_ticks_ms(old[0], old[-1], INTERVAL_S, skipped_old)
    assert old[0] == spooled_before[0][1]
    assert len(new) >= 5 and new[0] > hup_ms


def _split_at_reload(
    agent: AgentProcess, new_interval_s: float, stamps: list[int] | None = None
) -> tuple[list[int], list[int]]:
    """STAMPS (by default the spool's) split into the old interval's ticks and the longest tail
    of consecutive ticks on the new interval (ticks the agent logged as skipped since the reload
    left out)."""
    if stamps is None:
        stamps = [ts for _, ts, _ in spool_rows(agent.config.spool.path)]
    step = round(new_interval_s * 1000)
    _, reloaded, since = agent.log().partition("configuration reloaded")
    skipped = skipped_ticks_ms(since, new_interval_s) if reloaded else set()
    start = len(stamps)
    while start > 0 and stamps[start - 1] % step == 0:
        if start < len(stamps):
            between = range(stamps[start - 1] + step, stamps[start], step)
            if not set(between) <= skipped:
                break
        start -= 1
    return stamps[:start], stamps[start:]


def test_sighup_with_a_broken_config_names_the_key_and_keeps_the_running_config(
    tmp_path, state_dir, influxdb1, influx_db, start_agent
):
    cfg = tmp_path / "hostmon.toml"
    write_config(cfg, agent_settings(state_dir, influxdb1.url, influx_db))
    agent = start_agent(cfg)
    agent.wait_status(lambda s: s.last_success_ms is not None, "a first successful write")
    broken = {"buffer_size": "many", "overflow": "bogus"}
    cfg.write_text(
        toml_text(agent_settings(state_dir, influxdb1.url, influx_db, interval_s=1.0, spool=broken))
    )
    agent.signal(signal.SIGHUP)
    wait_for(
        lambda: "reload refused" in agent.log(),
        "the reload to be refused",
        explain=lambda: agent.log()[-3000:],
    )
    log_text = agent.log()
    assert f"{cfg}: spool.buffer_size: expected an integer" in log_text
    assert f"{cfg}: spool.overflow: must be one of" in log_text
    assert str(cfg) in log_text
    assert agent.alive()
    n = len(stored_points(influxdb1.url, influx_db))
    wait_for(lambda: len(stored_points(influxdb1.url, influx_db)) >= n + 5, "five more samples shipped")
    assert agent.terminate() == 0
    stamps = [ts for ts, _ in stored_points(influxdb1.url, influx_db)]
    step = round(INTERVAL_S * 1000)
    assert all(ts % step == 0 for ts in stamps)  # still the old interval
    assert stamps == expected_ticks_ms(stamps[0], stamps[-1], INTERVAL_S, agent.skipped_ticks_ms())


def test_check_config_exits_2_and_names_every_bad_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        "[agent]\ninterval_s = 0\nstate_dir = " + f'"{tmp_path}"' + "\n"
        '[spool]\noverflow = "bogus"\nbuffer_size = 0\n'
        '[sink]\nkind = "influxdb_v1"\nurl = "ftp://x"\npassword = "inline"\n'
        "[shipper]\nbackoff_initial_s = 2.0\nbackoff_max_s = 1.0\nflush_every = 3\n"
    )
    result = hostmon(cfg, "check-config")
    assert result.returncode == 2, result.stdout + result.stderr
    errors = result.stderr.splitlines()
    for key in (
        "agent.interval_s",
        "spool.overflow",
        "spool.buffer_size",
        "sink.url",
        "sink.database",
        "sink.password",
        "shipper.backoff_max_s",
        "shipper.flush_every",
    ):
        assert any(f"{cfg}: {key}:" in line for line in errors), (key, errors)
    assert "inline" not in result.stderr  # the misplaced secret is named, never echoed

    good = tmp_path / "good.toml"
    good.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n')
    ok = hostmon(good, "check-config")
    assert ok.returncode == 0 and "OK" in ok.stdout, ok.stdout + ok.stderr


def test_spool_command_prints_depth_and_counters(tmp_path, state_dir, influx_db, proxy, start_agent):
    settings = agent_settings(state_dir, proxy.url, influx_db, interval_s=0.1, spool={"buffer_size": 10})
    cfg = write_config(tmp_path / "hostmon.toml", settings)
    proxy.set_mode("refuse")
    agent = start_agent(cfg)
    agent.wait_status(lambda s: s.dropped_total >= 3, "three samples dropped")
    live = hostmon(cfg, "spool")  # read-only beside the running agent
    assert live.returncode == 0, live.stderr
    assert re.search(r"^depth \(samples\)\s+([1-9]|10)$", live.stdout, re.MULTILINE), live.stdout
    assert agent.terminate() == 0
    final = agent.status()
    assert final is not None
    result = hostmon(cfg, "spool")
    assert result.returncode == 0, result.stderr
    out = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in result.stdout.splitlines())
    assert int(out["depth (samples)"]) == final.depth == 10
    assert int(out["dropped (total)"]) == final.dropped_total
    assert int(out["spilled (total)"]) == 0
    assert out["database reachable"] == "no"
    assert "connection refused (is the database running?)" in out["last error"]
    assert out["oldest sample"].startswith("20") and out["newest sample"] > out["oldest sample"]


def test_alerts_log_deleted_while_running_is_recreated_with_the_next_event(
    tmp_path, state_dir, influx_db, proxy, start_agent
):
    cfg = write_config(tmp_path / "hostmon.toml", agent_settings(state_dir, proxy.url, influx_db))
    proxy.set_mode("refuse")
    agent = start_agent(cfg)
    alerts_log = agent.config.alerts.log_path
    wait_for(lambda: alert_states(alerts_log, "sink_unreachable") == ["FIRING"], "sink_unreachable to fire")
    alerts_log.unlink()
    proxy.set_mode("pass")
    wait_for(
        lambda: alert_states(alerts_log, "sink_unreachable") == ["RESOLVED"],
        "the RESOLVED event in a re-created alerts.log",
        explain=lambda: agent.log()[-3000:],
    )
    assert agent.alive()
    assert agent.terminate() == 0


def test_real_samples_have_every_original_field_in_range_on_aligned_timestamps(
    tmp_path, state_dir, influxdb1, influx_db, start_agent
):
    cfg = write_config(tmp_path / "hostmon.toml", agent_settings(state_dir, influxdb1.url, influx_db))
    agent = start_agent(cfg)
    agent.wait_status(lambda s: s.last_success_ms is not None, "a first write")
    wait_for(lambda: len(stored_points(influxdb1.url, influx_db)) >= 8, "eight samples in InfluxDB")
    assert agent.terminate() == 0
    cores = os.cpu_count() or 1
    load_and_swap = {"load_1", "load_5", "load_15", "swap_used_percent", "swap_used_bytes"}
    expected_fields = {*FIELDS, *(f"cpu_usage_{i}" for i in range(1, cores + 1)), *load_and_swap}
    stored = stored_points(influxdb1.url, influx_db)
    step = round(INTERVAL_S * 1000)
    for ts, fields in stored:
        values = dict(fields)
        assert set(values) == expected_fields, sorted(values)
        assert ts % step == 0
        for name, value in values.items():
            if name.startswith(("cpu_usage", "memory_usage", "swap_used_percent")):
                assert 0.0 <= value <= 100.0, (name, value)
            else:
                assert value >= 0.0, (name, value)
    assert any(dict(f)["memory_usage"] > 0 for _, f in stored)
