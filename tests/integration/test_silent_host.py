"""The silent-host rule end to end: a real agent and a real ``hostmon api`` on the embedded store.

The agent is stopped by its PID; the API, evaluating the fleet it reads from the store, writes
one ``host_silent`` FIRING line to alerts.log and POSTs it once to a real local webhook; the
agent started again, one RESOLVED line and one POST follow. Every wait is on the thing itself
(a line in a file, an evaluation in the API's log), with a deadline.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts.silent import RULE
from tests import servers
from tests.integration.helpers import (
    HOST,
    REPO,
    alert_events,
    wait_for,
    write_config,
)
from tests.integration.test_alert_webhook import _serve

pytestmark = pytest.mark.integration

SILENT_AFTER_S = 2.0
EVALUATED = "silent-host rule evaluated"


class ApiProcess:
    """``python -m monitor --config CFG --log-level DEBUG api``, its log in a file, ended by its PID."""

    def __init__(self, config_path: Path, log_path: Path, port: int) -> None:
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
                    "api",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO,
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

    def host(self) -> dict[str, Any] | None:
        body = self.get("/hosts")
        return next((h for h in body["hosts"] if h["host"] == HOST), None) if body else None


@pytest.fixture
def receiver() -> Iterator[tuple[str, queue.Queue[tuple[str, dict[str, str], bytes]]]]:
    """A real webhook receiver on 127.0.0.1 (test_alert_webhook.py's), answering 204."""
    yield from _serve(204)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Callable[[Path, int], ApiProcess]]:
    started: list[ApiProcess] = []

    def start(config_path: Path, port: int) -> ApiProcess:
        started.append(ApiProcess(config_path, tmp_path / "api.log", port))
        return started[-1]

    yield start
    for process in started:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait(10)
        print(f"----- api log (pid {process.proc.pid}, exit {process.proc.returncode}) -----")
        print(process.log()[-20000:])


def test_a_stopped_agent_fires_host_silent_once_and_resolves_once_when_it_runs_again(
    tmp_path, state_dir, start_agent, api, receiver
):
    url, received = receiver
    port = servers.free_port()
    config = write_config(
        tmp_path / "hostmon.toml",
        {
            "collectors": {"filesystem": False, "disk": False, "network": False},
            "agent": {"host": HOST, "interval_s": 0.2, "state_dir": str(state_dir)},
            "shipper": {"flush_interval_s": 0.1},
            "api": {"port": port, "silent_after_s": SILENT_AFTER_S, "silent_webhook": url},
        },
    )
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
