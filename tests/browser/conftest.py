"""Fixtures for the dashboard's browser tests: Debian's Chromium driven by Selenium, and a real
``hostmon api`` process over a SQLite store loaded with a small fleet (tests/browser/fleet.py).

Only /usr/bin/chromium and /usr/bin/chromedriver are used (never a downloaded browser); the
browser talks to 127.0.0.1 only. Outside CI a missing browser, driver or Selenium skips these
tests with the reason; in CI (``CI`` set) it is a failure, as for the other servers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor import config as config_mod
from tests import servers
from tests.browser import fleet

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
)
TOKEN = "browser-test-token"
SILENT_AFTER_S = 3600
Api = servers.Server  # a hostmon process: its URL, log and stop() (by its PID)


def _missing(reason: str) -> None:
    if servers.IN_CI:
        pytest.fail(f"required for the browser tests in CI: {reason}")
    pytest.skip(reason)


def start_api(workdir: Path, *, token: str = "") -> Api:
    """``hostmon api`` on a free loopback port over a store loaded with the test fleet."""
    port = servers.free_port()
    cfg = workdir / "hostmon.toml"
    # The loaded samples stop at load time: web1 and web2 must stay "ok" for the whole module
    # (old1, hours old, is silent anyway).
    api = f"port = {port}\nsilent_after_s = {SILENT_AFTER_S}\n"
    api += 'token_env = "HOSTMON_TEST_API_TOKEN"\n' if token else ""
    cfg.write_text(f'[agent]\nstate_dir = "{workdir / "state"}"\n\n[api]\n{api}')
    env = {**os.environ, "HOSTMON_TEST_API_TOKEN": token}
    config = config_mod.load(cfg, environ=env)
    fleet.load(config.sink.path, config.alerts.log_path, int(time.time() * 1000))
    return _start(cfg, "api", port, env, workdir / "api.log")


def start_run(workdir: Path, host: str, interval_s: float) -> Api:
    """``hostmon run`` (the agent and the API, as ``make run``) on a fresh state directory."""
    port = servers.free_port()
    cfg = workdir / "hostmon.toml"
    agent = f'state_dir = "{workdir / "state"}"\nhost = "{host}"\ninterval_s = {interval_s}\n'
    cfg.write_text(f"[agent]\n{agent}\n[api]\nport = {port}\n")
    return _start(cfg, "run", port, dict(os.environ), workdir / "run.log")


def _start(cfg: Path, command: str, port: int, env: dict[str, str], log_path: Path) -> Api:
    """``python -m monitor --config CFG COMMAND``, waited for (with a deadline) until it answers."""
    args = [sys.executable, "-m", "monitor", "--config", str(cfg), command]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = Api(f"hostmon {command}", f"http://127.0.0.1:{port}", port, cfg.parent, proc, log_path, args)
    servers.wait_ready(server, "/openapi.json", 30)
    return server


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = start_api(tmp_path_factory.mktemp("dash-api"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    server = start_api(tmp_path_factory.mktemp("dash-api-token"), token=TOKEN)
    yield server
    server.stop()


def make_driver(user_data_dir: Path, width_px: int = 1280, height_px: int = 800) -> Any:
    """A headless Chromium at WIDTH_PX x HEIGHT_PX whose console log the test can read."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            _missing(f"{path} not installed (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    options.add_argument(f"--window-size={width_px},{height_px}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(user_data_dir.parent / "chromedriver.log"))
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    driver = make_driver(tmp_path / "chromium")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path | None:
    """Where the run writes its PNGs: only when HOSTMON_SCREENSHOTS names a directory."""
    target = os.environ.get("HOSTMON_SCREENSHOTS")
    if not target:
        return None
    path = Path(target)
    path.mkdir(parents=True, exist_ok=True)
    return path
