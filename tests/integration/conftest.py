"""Fixtures for the integration tests: ``start_agent`` (real ``collect`` processes, ended by their
PID, their logs printed) and ``proxy`` (a FaultProxy in front of the shared InfluxDB 1.x).
Helpers the tests call are in helpers.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import servers
from tests.faultproxy import FaultProxy
from tests.integration.helpers import AgentProcess


@pytest.fixture
def start_agent(tmp_path: Path) -> Iterator[Callable[[Path], AgentProcess]]:
    """Starts ``collect`` processes; kills the ones still running at the end and prints every log."""
    started: list[AgentProcess] = []

    def start(config_path: Path) -> AgentProcess:
        agent = AgentProcess(config_path, tmp_path / f"agent-{len(started)}.log")
        started.append(agent)
        return agent

    yield start
    for agent in started:
        if agent.alive():
            agent.kill()
        print(f"----- agent log ({agent.log_path}, pid {agent.pid}, exit {agent.proc.returncode}) -----")
        print(agent.log()[-20000:])


@pytest.fixture
def proxy(influxdb1: servers.Server) -> Iterator[FaultProxy]:
    with FaultProxy(influxdb1.url) as p:
        yield p
