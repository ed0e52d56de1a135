"""``hostmon selftest`` against real stores: a pass, and a one-line reason for every failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor import config as config_mod
from monitor.selftest import run_selftest
from tests import servers
from tests.helpers import ADMIN

pytestmark = pytest.mark.integration


def v1_config(tmp_path: Path, url: str, db: str, extra: str = "") -> Path:
    cfg = tmp_path / "hostmon.toml"
    cfg.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n\n'
        f'[sink]\nkind = "influxdb_v1"\nurl = "{url}"\ndatabase = "{db}"\n{extra}\n'
        "[shipper]\ntimeout_s = 3.0\n\n[api]\nquery_timeout_s = 3.0\n"
    )
    return cfg


def selftest_cli(cfg: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "selftest"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **env},
    )


def test_selftest_passes_on_the_embedded_store_and_leaves_nothing_behind(tmp_path):
    cfg = tmp_path / "hostmon.toml"
    cfg.write_text(f'[agent]\nstate_dir = "{tmp_path}"\n')
    ok, lines = run_selftest(config_mod.load(cfg))
    assert ok, lines
    assert lines[-1].startswith("selftest: PASS")
    from tests.store_helpers import stored

    assert stored(tmp_path / "metrics.db") == []


def test_selftest_passes_against_influxdb_1x_and_exits_zero(tmp_path, influxdb1, influx_db):
    result = selftest_cli(v1_config(tmp_path, influxdb1.url, influx_db))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "selftest: PASS" in result.stdout
    rows = servers.influx_query(
        influxdb1.url, 'SELECT count("memory_usage") FROM "hostmon_selftest"', influx_db
    )
    assert rows["results"][0]["series"][0]["values"][0][1] == 3
    rows = servers.influx_query(influxdb1.url, "SHOW MEASUREMENTS", influx_db)
    assert rows["results"][0]["series"][0]["values"] == [["hostmon_selftest"]], "must not touch 'system'"


def test_selftest_fails_in_one_line_when_the_database_is_down(tmp_path):
    result = selftest_cli(v1_config(tmp_path, f"http://127.0.0.1:{servers.free_port()}", "metrics"))
    assert result.returncode == 1
    fail = [line for line in result.stdout.splitlines() if "FAIL" in line]
    assert len(fail) == 1 and "127.0.0.1" in fail[0], result.stdout + result.stderr


def test_selftest_fails_when_credentials_are_refused(tmp_path, influxdb1_auth):
    servers.influx_query(influxdb1_auth.url, 'CREATE DATABASE "selftest_auth"', auth=ADMIN)
    extra = 'username = "admin"\npassword_env = "PW"\n'
    result = selftest_cli(
        v1_config(tmp_path, influxdb1_auth.url, "selftest_auth", extra), PW="wrong-password"
    )
    assert result.returncode == 1
    assert "FAIL" in result.stdout and ("401" in result.stdout or "auth" in result.stdout.lower())
    assert "wrong-password" not in result.stdout + result.stderr


def test_selftest_passes_with_the_right_credentials(tmp_path, influxdb1_auth):
    servers.influx_query(influxdb1_auth.url, 'CREATE DATABASE "selftest_auth_ok"', auth=ADMIN)
    extra = f'username = "{ADMIN[0]}"\npassword_env = "PW"\n'
    result = selftest_cli(v1_config(tmp_path, influxdb1_auth.url, "selftest_auth_ok", extra), PW=ADMIN[1])
    assert result.returncode == 0, result.stdout + result.stderr


def test_selftest_with_a_bad_config_exits_2_naming_the_key(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[sink]\nkind = "influxdb_v1"\nurl = "http://127.0.0.1:1"\n')
    result = selftest_cli(cfg)
    assert result.returncode == 2
    assert "sink.database: is required for influxdb_v1" in result.stderr
