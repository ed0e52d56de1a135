"""Wall-clock steps on the real ``collect`` process (libfaketime), the monotonic clock left real.

Each test rewrites the file libfaketime reads on every call (FAKETIME_TIMESTAMP_FILE with
FAKETIME_NO_CACHE), so the step happens when the test says; every wait is for what the agent
wrote (its log, its SQLite store, its spool state), never for a duration.
"""

from __future__ import annotations

import glob
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor import sqlitedb, tiers
from monitor.status import read_status
from tests.integration.helpers import HOST, AgentProcess, alert_states, wait_for, write_config
from tests.servers import IN_CI

pytestmark = pytest.mark.integration
LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))), None)
DAY_S = 86_400
INTERVAL_S = 0.2


@pytest.fixture
def faketime_agent(tmp_path: Path) -> Iterator[tuple[AgentProcess, Path]]:
    """The agent on the SQLite sink under libfaketime; the offset file starts at +0."""
    if LIBFAKETIME is None:
        if IN_CI:
            pytest.fail("libfaketime is not installed (apt-get install faketime)")
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    state = tmp_path / "state"
    settings = {
        "agent": {"host": HOST, "interval_s": INTERVAL_S, "state_dir": str(state)},
        "shipper": {"flush_interval_s": INTERVAL_S},
        "sink": {"kind": "sqlite", "retention_days": 30.0},
    }
    env = {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    agent = AgentProcess(write_config(tmp_path / "hostmon.toml", settings), tmp_path / "agent.log", env)
    try:
        yield agent, offset
    finally:
        if agent.alive():
            agent.kill()
        print(agent.log()[-20000:])


def stamps(agent: AgentProcess) -> list[int]:
    """The timestamps the SQLite sink stored (one per sample), in time order."""
    path = agent.config.sink.path
    if not path.exists():
        return []
    conn = sqlitedb.connect_readonly(path, timeout_s=5)
    try:
        return sorted({row[3] for row in tiers.read_all(conn) if row[0] == "memory_usage"})
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def samples_between(agent: AgentProcess, lo_s: float, hi_s: float, n: int) -> list[int]:
    """Wait until the store holds at least N samples stamped in [LO_S, HI_S); those stamps."""

    def found() -> list[int]:
        inside = [ts for ts in stamps(agent) if lo_s * 1000 <= ts < hi_s * 1000]
        return inside if len(inside) >= n else []

    return wait_for(
        found, f"{n} samples stamped in [{lo_s:.0f}, {hi_s:.0f})", 30, lambda: agent.log()[-3000:]
    )


def step(agent: AgentProcess, offset: Path, seconds: int, logged: str) -> None:
    offset.write_text(f"{seconds:+d}\n")
    wait_for(lambda: logged in agent.log(), f"the agent to log {logged!r}", 30, lambda: agent.log()[-3000:])


def test_a_step_back_of_an_hour_never_stops_sampling(faketime_agent):
    agent, offset = faketime_agent
    now_s = time.time()
    samples_between(agent, now_s - 60, now_s + 60, 5)
    step(agent, offset, -3600, "wall clock stepped back by 3600")
    back = samples_between(agent, now_s - 3660, now_s - 3000, 5)  # sampling went on, stamped 1 h back
    step(agent, offset, 0, "wall clock stepped forward by 3600")
    samples_between(agent, time.time(), time.time() + 60, 5)
    status = read_status(agent.config.spool.path)
    assert status is not None and status.clock_step_ms is not None
    assert abs(status.clock_step_ms - 3_600_000) < 1000  # the last step: forward again
    assert alert_states(agent.config.alerts.log_path, "clock_step")[0] == "FIRING"
    assert back, "no sample stamped in the hour the clock went back to"
    assert agent.terminate() == 0


def test_a_day_forward_and_back_stamps_a_few_samples_ahead_and_then_samples_on(faketime_agent):
    agent, offset = faketime_agent
    now_s = time.time()
    samples_between(agent, now_s - 60, now_s + 60, 5)
    step(agent, offset, DAY_S, "wall clock stepped forward by 86400")
    ahead = samples_between(agent, now_s + DAY_S - 60, now_s + DAY_S + 600, 3)
    step(agent, offset, 0, "wall clock stepped back by 86400")
    resumed_s = time.time()
    samples_between(agent, resumed_s, resumed_s + 600, 10)  # not 24 hours later: now
    status = read_status(agent.config.spool.path)
    assert status is not None and status.clock_step_ms is not None
    assert abs(status.clock_step_ms + DAY_S * 1000) < 1000  # the last step: back by a day
    assert ahead, "no sample stamped by the clock a day ahead"
    assert agent.terminate() == 0


def test_a_month_forward_with_the_sqlite_sink_deletes_no_real_sample(faketime_agent):
    agent, offset = faketime_agent
    now_s = time.time()
    real = samples_between(agent, now_s - 60, now_s + 60, 10)
    step(agent, offset, 31 * DAY_S, "wall clock stepped forward by 2678400")
    samples_between(agent, now_s + 31 * DAY_S - 60, now_s + 31 * DAY_S + 600, 3)
    # The next retention pass (once a minute on the monotonic clock) is held back, and says so.
    wait_for(
        lambda: "retention: the wall clock asks to delete data" in agent.log(),
        "a retention pass after the jump",
        150,
        lambda: agent.log()[-3000:],
    )
    assert set(real) <= set(stamps(agent)), "retention deleted real samples after the clock jumped"
    assert agent.terminate() == 0
