"""The silent-host rule end to end: a real agent and a real ``hostmon api`` on the embedded store.

The agent is stopped by its PID; the API, evaluating the fleet it reads from the store, writes
one ``host_silent`` FIRING line to alerts.log and POSTs it once to a real local webhook; the
agent started again, one RESOLVED line and one POST follow. Every wait is on the thing itself
(a line in a file, an evaluation in the API's log), with a deadline.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts.silent import RULE, check_interval_s
from tests import servers
from tests.integration.helpers import (
    HOST,
    REPO,
    alert_events,
    wait_for,
    write_config,
)
from tests.integration.test_alert_webhook import _serve
from tests.integration.test_clock_steps import LIBFAKETIME
from tests.servers import IN_CI
from tests.store_helpers import write_rows

pytestmark = pytest.mark.integration

SILENT_AFTER_S = 2.0
EVALUATED = "silent-host rule evaluated"


class ApiProcess:
    """``python -m monitor --config CFG --log-level DEBUG api`` (or ``run``), its log in a file,
    ended by its PID."""

    def __init__(
        self,
        config_path: Path,
        log_path: Path,
        port: int,
        command: str = "api",
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{port}"
        with log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "monitor",
                    "--config",
                    str(config_path),
                    "--log-level",
                    "DEBUG",
                    command,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                env={**os.environ, **(env or {})},
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get(self, path: str) -> Any:
        assert self.proc.poll() is None, f"the API exited:\n{self.log()[-4000:]}"
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            return None  # not listening yet

    def host(self, name: str = HOST) -> dict[str, Any] | None:
        body = self.get("/hosts")
        return next((h for h in body["hosts"] if h["host"] == name), None) if body else None


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue[tuple[str, dict[str, str], bytes]]]]:
    """A real webhook receiver on 127.0.0.1 (test_alert_webhook.py's), answering 204."""
    yield from _serve(204)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    started: list[ApiProcess] = []

    def start(
        config_path: Path, port: int, command: str = "api", env: dict[str, str] | None = None
    ) -> ApiProcess:
        started.append(ApiProcess(config_path, tmp_path / f"{command}.log", port, command, env))
        return started[-1]

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(10)
        print(f"----- {process.log_path.name} (pid {process.proc.pid}, exit {process.proc.returncode}) -----")
        print(process.log()[-20000:])


def settings(
    state_dir: Path, port: int, webhook: str, flush_s: float = 0.1, silent_s: float = SILENT_AFTER_S
) -> dict[str, dict[str, Any]]:
    return {
        "collectors": {"filesystem": False, "disk": False, "network": False},
        "agent": {"host": HOST, "interval_s": 0.2, "state_dir": str(state_dir)},
        "shipper": {"flush_interval_s": flush_s},
        "api": {"port": port, "silent_after_s": silent_s, "silent_webhook": webhook},
    }


def test_a_stopped_agent_fires_host_silent_once_and_resolves_once_when_it_runs_again(
    tmp_path, state_dir, start_agent, api, receiver
):
    url, received = receiver
    port = servers.free_port()
    config = write_config(tmp_path / "hostmon.toml", settings(state_dir, port, url))
    log_path = state_dir / "alerts.log"
    agent = start_agent(config)
    server = api(config, port)
    wait_for(
        lambda: (server.host() or {}).get("status") == "ok", "the agent's host in /hosts", explain=server.log
    )

    assert agent.terminate() == 0
    fired = wait_for(lambda: alert_events(log_path, RULE), "a host_silent line", explain=server.log)
    assert [(e["host"], e["state"]) for e in fired] == [(HOST, "FIRING")]
    assert float(fired[0]["value"]) >= SILENT_AFTER_S and fired[0]["threshold"] == "2"
    _, _, body = received.get(timeout=20)
    assert json.loads(body)["state"] == "FIRING" and json.loads(body)["host"] == HOST
    # Three more evaluations of the still silent host: no second line, no second POST.
    evaluations = server.log().count(EVALUATED)
    wait_for(lambda: server.log().count(EVALUATED) >= evaluations + 3, "three more evaluations")
    assert (server.host() or {})["status"] == "silent"
    firing = server.get("/alerts")["firing"]
    assert [(f["rule"], f["host"]) for f in firing] == [(RULE, HOST)]

    start_agent(config)
    resolved = wait_for(
        lambda: [e for e in alert_events(log_path, RULE) if e["state"] == "RESOLVED"],
        "a host_silent RESOLVED line",
        explain=server.log,
    )
    assert len(resolved) == 1
    assert [e["state"] for e in alert_events(log_path, RULE)] == ["FIRING", "RESOLVED"]
    _, _, body = received.get(timeout=20)
    assert json.loads(body)["state"] == "RESOLVED"
    assert server.get("/alerts")["firing"] == []
    assert server.get("/alerts?limit=1")["history"][0]["state"] == "resolve"

    server.proc.terminate()
    assert server.proc.wait(20) == 0
    assert received.empty()  # every queued delivery was made at shutdown: none was a duplicate
    assert [e["state"] for e in alert_events(log_path, RULE)] == ["FIRING", "RESOLVED"]


def test_hostmon_run_fires_for_another_host_of_its_store_that_went_silent(tmp_path, state_dir, api, receiver):
    """``make run``: the agent and the API in one process; a host that stopped writing to the same
    store (here its samples of an hour ago) fires, the running local host stays ok."""
    url, received = receiver
    gone_ms = int(time.time() * 1000) - 3_600_000
    write_rows(state_dir / "metrics.db", [("cpu_usage_overall", "gone", gone_ms, 1.0)])
    port = servers.free_port()
    server = api(write_config(tmp_path / "hostmon.toml", settings(state_dir, port, url)), port, "run")
    fired = wait_for(
        lambda: alert_events(state_dir / "alerts.log", RULE), "a host_silent line", explain=server.log
    )
    assert [(e["host"], e["state"]) for e in fired] == [("gone", "FIRING")]
    assert json.loads(received.get(timeout=20)[2])["host"] == "gone"
    wait_for(lambda: (server.host() or {}).get("status") == "ok", "the local host ok", explain=server.log)
    assert (server.host("gone") or {})["status"] == "silent"
    server.proc.terminate()
    assert server.proc.wait(20) == 0


def test_an_hour_step_of_the_apis_clock_fires_no_live_host_and_still_fires_a_dead_one(
    tmp_path, state_dir, start_agent, api, receiver
):
    """The API under libfaketime (its wall clock stepped when the test says, the monotonic clock
    real): an hour forward makes every sample look an hour old, yet nothing fires while the agent
    writes; stopped, the agent's host fires as before. The agent flushes once a second and the
    rule looks every 0.6 s, so most evaluations see no new sample: only the monotonic clock can
    tell them that the host is not silent."""
    if LIBFAKETIME is None:
        if IN_CI:
            pytest.fail("libfaketime is not installed (apt-get install faketime)")
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    url, received = receiver
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    env = {
        "LD_PRELOAD": LIBFAKETIME,
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }
    port = servers.free_port()
    silent_s = 3.0
    config = write_config(tmp_path / "hostmon.toml", settings(state_dir, port, url, 1.0, silent_s))
    agent = start_agent(config)
    server = api(config, port, "api", env)
    wait_for(
        lambda: (server.host() or {}).get("status") == "ok", "the agent's host in /hosts", explain=server.log
    )
    offset.write_text("+3600\n")
    wait_for(lambda: (server.host() or {}).get("age_s", 0) > 3000, "the API's clock an hour ahead")
    evaluations = server.log().count(EVALUATED)
    per_silent_time = int(silent_s / check_interval_s(silent_s))
    wait_for(
        lambda: server.log().count(EVALUATED) >= evaluations + 2 * per_silent_time,
        "evaluations over twice the silent time",
    )
    assert alert_events(state_dir / "alerts.log", RULE) == []
    assert (server.host() or {})["status"] == "silent"  # /hosts goes by the wall clock: an hour old

    assert agent.terminate() == 0
    fired = wait_for(
        lambda: alert_events(state_dir / "alerts.log", RULE), "a host_silent line", explain=server.log
    )
    assert [(e["host"], e["state"]) for e in fired] == [(HOST, "FIRING")]
    assert json.loads(received.get(timeout=20)[2])["state"] == "FIRING"
