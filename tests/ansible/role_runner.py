"""Runs the influxdb role's provisioning (tests/ansible/provision/provision.yml) for a test.

One ``Deployer`` is one database host: a server URL, a token directory and base variables.
Each ``run`` is one real ``ansible-playbook`` run with overrides (``check=True``: in check
mode) and returns its exit code, output, ``changed`` count, published ``influxdb_connection``
and, with a recording fake server, the requests it sent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.ansible.helpers import REPO, ansible_playbook

PLAYBOOK = Path(__file__).resolve().parent / "provision" / "provision.yml"


class Recorder(Protocol):
    def mark(self) -> int: ...
    def calls(self, since: int = 0) -> list[str]: ...
    def writes(self, since: int = 0) -> list[str]: ...


@dataclass
class Run:
    rc: int
    output: str
    changed: int
    calls: list[str]
    writes: list[str]
    connection: dict[str, Any]


class Deployer:
    def __init__(
        self, url: str, work: Path, variables: dict[str, Any], recorder: Recorder | None = None
    ) -> None:
        self.url, self.work, self.variables, self.recorder = url, work, variables, recorder
        self.token_dir = work / "tokens"
        self.runs = 0

    def run(self, *, check: bool = False, **overrides: Any) -> Run:
        self.runs += 1
        out_file = self.work / f"connection-{self.runs}.json"
        extra = {
            "influxdb_api_url": self.url,
            "influxdb_client_url": "http://db.example:8086",
            "influxdb_token_dir": str(self.token_dir),
            "_influxdb_guard_dropin": str(self.work / "no-such-dropin.conf"),
            "out_file": str(out_file),
            **self.variables,
            **overrides,
        }
        env = {
            **os.environ,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_CONFIG": str(PLAYBOOK.parent / "ansible.cfg"),
            "ANSIBLE_ROLES_PATH": str(REPO / "roles"),
        }
        since = self.recorder.mark() if self.recorder else 0
        cmd = [ansible_playbook(), "-v", "-i", "localhost,", str(PLAYBOOK), "-e", json.dumps(extra)]
        cmd += ["--check"] if check else []
        done = subprocess.run(
            cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=300
        )
        output = done.stdout + done.stderr
        recap = re.search(r"localhost\s*:\s*ok=\d+\s+changed=(\d+)", output)
        return Run(
            done.returncode,
            output,
            int(recap.group(1)) if recap else -1,
            self.recorder.calls(since) if self.recorder else [],
            self.recorder.writes(since) if self.recorder else [],
            json.loads(out_file.read_text()) if out_file.exists() else {},
        )
