"""``hostmon api`` as a process: SIGHUP applies a new config, a broken one is refused, SIGTERM exits 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests import servers

pytestmark = pytest.mark.integration


def write_config(path: Path, state: Path, port: int, max_points: int) -> None:
    path.write_text(f'[agent]\nstate_dir = "{state}"\n\n[api]\nport = {port}\nmax_points = {max_points}\n')


def max_points_served(url: str, deadline_s: float = 20.0) -> int:
    end = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(f"{url}/metrics?start=1&end=0", timeout=2) as resp:
                return int(json.loads(resp.read())["max_points"])
        except (urllib.error.URLError, OSError):
            if time.monotonic() > end:
                raise
            time.sleep(0.1)


def test_sighup_reloads_the_api_config_and_sigterm_exits_cleanly(tmp_path):
    port = servers.free_port()
    cfg = tmp_path / "hostmon.toml"
    write_config(cfg, tmp_path / "state", port, 500)
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "api"], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert max_points_served(url) == 500
        write_config(cfg, tmp_path / "state", port, 700)
        proc.send_signal(signal.SIGHUP)
        end = time.monotonic() + 20
        while max_points_served(url) != 700:
            assert time.monotonic() < end, (tmp_path / "api.log").read_text()
            time.sleep(0.1)
        cfg.write_text("[api]\nport = -1\n")  # broken: refused, the running config stays
        proc.send_signal(signal.SIGHUP)
        end = time.monotonic() + 20
        while "reload refused" not in (tmp_path / "api.log").read_text():
            assert time.monotonic() < end, (tmp_path / "api.log").read_text()
            time.sleep(0.1)
        assert max_points_served(url) == 700
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert "api.port: must be 0 to 65535" in (tmp_path / "api.log").read_text()
