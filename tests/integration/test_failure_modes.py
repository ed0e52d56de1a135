"""What the agent does with each kind of failing database, through the fault proxy in front of a
real InfluxDB 1.6.7 (and real authentication on a second one).

The HTTP answer decides a batch's fate: 5xx and 429 (honouring Retry-After) and a slow server
are retried until they succeed; 401 alerts and keeps spooling; 400 drops exactly that batch,
counts it, and lets later samples through.
"""

from __future__ import annotations

import itertools
import signal
import time

import pytest

from monitor.status import read_status
from tests import servers
from tests.helpers import ADMIN
from tests.integration.helpers import (
    RecordingAgent,
    agent_settings,
    alert_events,
    alert_states,
    assert_arrived_exactly_once,
    expected_ticks_ms,
    load,
    point_of,
    request_lines,
    running,
    stored_points,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration


def _agent(tmp_path, state_dir, proxy, db, **settings) -> RecordingAgent:  # type: ignore[no-untyped-def]
    return RecordingAgent(
        load(agent_settings(state_dir, proxy.url, db, **settings), tmp_path / "hostmon.toml")
    )


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_for_a_while_then_every_sample_arrives_once(
    tmp_path, state_dir, influxdb1, influx_db, proxy, status
):
    proxy.set_mode("status", status=status, body=b'{"error":"engine overloaded"}')
    agent = _agent(tmp_path, state_dir, proxy, influx_db)
    with running(agent):
        wait_for(lambda: len(proxy.requests) >= 3 and len(agent.lines()) >= 8, "retries while failing")
        assert stored_points(influxdb1.url, influx_db) == []
        assert agent.status().depth >= 8
        proxy.set_mode("pass")
        wait_for(lambda: agent.status().depth == 0, "the spool to drain")
    assert_arrived_exactly_once(influxdb1.url, influx_db, agent.lines())
    assert alert_states(agent.config.alerts.log_path, "sink_unreachable") == ["FIRING", "RESOLVED"]
    assert f"HTTP {status}" in alert_events(agent.config.alerts.log_path, "sink_unreachable")[0]["message"]


def test_429_retry_after_is_honoured_before_the_next_attempt(
    tmp_path, state_dir, influxdb1, influx_db, proxy
):
    """backoff_max_s is 0.5 s, so without Retry-After the retries would come within 0.5 s."""
    retry_after_s = 1.0
    proxy.set_mode("status", status=429, headers={"Retry-After": "1"}, body=b"slow down")
    agent = _agent(tmp_path, state_dir, proxy, influx_db)
    with running(agent):
        wait_for(lambda: len(proxy.requests) >= 4, "four attempts against the 429 answers")
        proxy.set_mode("pass")
        wait_for(lambda: agent.status().depth == 0, "the spool to drain")
    # The proxy stamps each request once read, before it answers: the agent waited at least
    # this long after the answer, so each gap is at least retry_after_s whatever the scheduling.
    seen_at = [request.received_s for request in proxy.requests[:4]]
    gaps = [b - a for a, b in itertools.pairwise(seen_at)]
    assert all(gap >= retry_after_s for gap in gaps), gaps
    assert all(gap < retry_after_s + 1.0 for gap in gaps), gaps
    assert_arrived_exactly_once(influxdb1.url, influx_db, agent.lines())


def test_401_alerts_keeps_spooling_and_resolves_once_the_credentials_work(
    tmp_path, state_dir, influxdb1, influx_db, proxy
):
    proxy.set_mode("status", status=401, body=b'{"error":"authorization failed"}')
    agent = _agent(tmp_path, state_dir, proxy, influx_db)
    alerts_log = agent.config.alerts.log_path
    with running(agent):
        wait_for(lambda: "FIRING" in alert_states(alerts_log, "sink_auth_failed"), "sink_auth_failed")
        depth = agent.status().depth
        wait_for(lambda: agent.status().depth >= depth + 5, "spooling to go on while the credentials fail")
        assert agent.status().sink_reachable is True  # it answers: an auth problem, not an outage
        proxy.set_mode("pass")
        wait_for(lambda: agent.status().depth == 0, "the spool to drain")
        wait_for(lambda: "RESOLVED" in alert_states(alerts_log, "sink_auth_failed"), "the alert to resolve")
    assert alert_states(alerts_log, "sink_auth_failed") == ["FIRING", "RESOLVED"]
    assert alert_states(alerts_log, "sink_unreachable") == []
    assert_arrived_exactly_once(influxdb1.url, influx_db, agent.lines())


def test_a_400_drops_exactly_that_batch_counts_it_and_later_samples_still_arrive(
    tmp_path, state_dir, influxdb1, influx_db, proxy
):
    proxy.set_mode("refuse")  # a backlog first, so the rejected batch holds several samples
    agent = _agent(tmp_path, state_dir, proxy, influx_db)
    with running(agent):
        wait_for(lambda: agent.status().depth >= 5, "a backlog of five samples")
        proxy.hold(nth=1)  # the next write is answered 400 by the proxy, the later ones forwarded
        assert proxy.held.wait(20), "no write reached the proxy"
        rejected_lines = request_lines(proxy.held_request)
        assert proxy.release(status=400, body=b'{"error":"partial write: field type conflict"}') == 400
        last_rejected_ts = max(point_of(line)[0] for line in rejected_lines)
        n = len(agent.lines())
        wait_for(lambda: len(agent.lines()) >= n + 5, "five more ticks")
        wait_for(lambda: agent.status().depth == 0, "the spool to drain")
        status = agent.status()
    assert len(rejected_lines) >= 5
    assert status.rejected_total == len(rejected_lines)
    appended = agent.lines()
    assert set(rejected_lines) <= set(appended)
    delivered = [line for line in appended if line not in set(rejected_lines)]
    assert_arrived_exactly_once(influxdb1.url, influx_db, delivered)
    assert sum(1 for line in delivered if point_of(line)[0] > last_rejected_ts) >= 5


def test_a_server_slower_than_the_timeout_loses_nothing_once_it_recovers(
    tmp_path, state_dir, influxdb1, influx_db, proxy
):
    agent = _agent(tmp_path, state_dir, proxy, influx_db, shipper={"timeout_s": 0.5})
    with running(agent):
        wait_for(lambda: agent.status().last_success_ms, "a first successful write")
        proxy.set_mode("slow", delay_s=1.5)
        alerts_log = agent.config.alerts.log_path
        wait_for(lambda: "FIRING" in alert_states(alerts_log, "sink_unreachable"), "timeouts to alert")
        wait_for(lambda: agent.status().depth >= 8, "a backlog behind the slow server")
        proxy.set_mode("pass")
        wait_for(lambda: agent.status().depth == 0, "the spool to drain")
    assert "timed out" in alert_events(alerts_log, "sink_unreachable")[0]["message"]
    # A write that timed out on our side may still have reached InfluxDB, so a batch can be sent
    # twice; InfluxDB overwrites the same point, so what is stored is still each sample once.
    stored = stored_points(influxdb1.url, influx_db)
    expected = sorted(point_of(line) for line in agent.lines())
    assert sorted(stored) == expected


def test_a_missing_database_keeps_every_sample_until_it_is_created(tmp_path, state_dir, influxdb1, proxy):
    """InfluxDB answers 404 for an unknown database: a deployment problem, so nothing is dropped."""
    db = f"created_later_{time.monotonic_ns()}"
    agent = _agent(tmp_path, state_dir, proxy, db)
    alerts_log = agent.config.alerts.log_path
    with running(agent):
        wait_for(lambda: agent.status().depth >= 5, "five samples spooled while the database is missing")
        assert "404" in agent.status().last_error
        assert alert_states(alerts_log, "sink_unreachable") == ["FIRING"]
        servers.influx_query(influxdb1.url, f'CREATE DATABASE "{db}"')
        wait_for(lambda: agent.status().depth == 0, "the spool to drain into the new database")
    assert alert_states(alerts_log, "sink_unreachable") == ["FIRING", "RESOLVED"]
    final = read_status(agent.config.spool.path)
    assert final is not None and final.rejected_total == 0 and final.dropped_total == 0
    assert_arrived_exactly_once(influxdb1.url, db, agent.lines())


def test_wrong_password_alerts_then_fixing_the_file_and_sighup_ships_everything(
    tmp_path, state_dir, influxdb1_auth, start_agent
):
    url, db = influxdb1_auth.url, "agent_auth_db"
    servers.influx_query(url, f'CREATE DATABASE "{db}"', auth=ADMIN)
    servers.influx_query(url, "CREATE USER \"it_writer\" WITH PASSWORD 'right-password'", auth=ADMIN)
    servers.influx_query(url, f'GRANT WRITE ON "{db}" TO "it_writer"', auth=ADMIN)
    password_file = tmp_path / "sink-password"
    password_file.write_text("wrong-password\n")
    password_file.chmod(0o600)
    settings = agent_settings(
        state_dir, url, db, sink={"username": "it_writer", "password_file": str(password_file)}
    )
    cfg = write_config(tmp_path / "hostmon.toml", settings)
    agent = start_agent(cfg)
    alerts_log = agent.config.alerts.log_path
    wait_for(
        lambda: "FIRING" in alert_states(alerts_log, "sink_auth_failed"),
        "sink_auth_failed to fire",
        explain=lambda: agent.log()[-3000:],
    )
    fired = agent.wait_status(lambda s: s.depth >= 5, "samples spooled while the password is wrong")
    assert fired.sink_reachable is True and "401" in fired.last_error
    assert stored_points(url, db, auth=ADMIN) == []
    first_ts = fired.oldest_ts_ms

    password_file.write_text("right-password\n")
    agent.signal(signal.SIGHUP)
    agent.wait_status(lambda s: s.depth <= 1 and s.last_success_ms is not None, "the spool to drain")
    wait_for(lambda: "RESOLVED" in alert_states(alerts_log, "sink_auth_failed"), "the alert to resolve")
    assert agent.terminate() == 0
    assert alert_states(alerts_log, "sink_auth_failed") == ["FIRING", "RESOLVED"]
    assert "wrong-password" not in agent.log() and "right-password" not in agent.log()
    stored = stored_points(url, db, auth=ADMIN)
    ticks = expected_ticks_ms(
        first_ts, stored[-1][0], agent.config.agent.interval_s, agent.skipped_ticks_ms()
    )
    assert [ts for ts, _ in stored if ts >= first_ts] == ticks
    assert agent.status().depth == 0
