"""The influxdb role's 1.x provisioning, run with ansible-playbook against a real InfluxDB 1.6.7.

Debian's influxd runs here with auth on, on 127.0.0.1. The role asks it its version on /ping
and provisions it with InfluxQL; these tests change the admin password (SET PASSWORD, logged
in with influxdb_admin_old_password) and check the failure message when no old one is given.
"""

from __future__ import annotations

import base64
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers
from tests.ansible.role_runner import Deployer, Run

V1 = {
    "influxdb_flavour": "distro",
    "_influxdb_major": "1",
    "influxdb_admin_password": "admin-password-1",
    "influxdb_writer_password": "writer-password",
    "influxdb_reader_password": "reader-password",
}


@pytest.fixture
def influxdb(tmp_path: Path) -> Iterator[servers.Server]:
    try:
        server = servers.start_influxdb1(tmp_path / "influxdb", auth=True)
    except FileNotFoundError as exc:
        if servers.IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield server
    server.stop()


def logs_in(url: str, user: str, password: str) -> bool:
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{url}/query?q=SHOW+DATABASES", headers={"Authorization": f"Basic {basic}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except urllib.error.HTTPError:
        return False


def succeeded(run: Run) -> Run:
    assert run.rc == 0, run.output[-6000:]
    return run


def test_a_1x_server_is_provisioned_by_its_reported_version_even_with_the_official_flavour(
    influxdb, tmp_path
):
    run = succeeded(
        Deployer(influxdb.url, tmp_path, {**V1, "influxdb_flavour": "official", "_influxdb_major": "2"}).run()
    )
    assert "reports 1.6" in run.output, "the role says the server is not what the flavour installs"
    assert run.connection["api"] == "v1" and run.connection["write_username"] == "hostmon_writer"
    assert logs_in(influxdb.url, "admin", "admin-password-1")


def test_a_changed_admin_password_is_applied_with_the_old_one(influxdb, tmp_path):
    deployer = Deployer(influxdb.url, tmp_path, V1)
    succeeded(deployer.run())
    changed = succeeded(
        deployer.run(
            influxdb_admin_password="admin-password-2", influxdb_admin_old_password="admin-password-1"
        )
    )
    assert changed.changed >= 1
    assert logs_in(influxdb.url, "admin", "admin-password-2")
    assert not logs_in(influxdb.url, "admin", "admin-password-1")
    again = succeeded(deployer.run(influxdb_admin_password="admin-password-2"))
    assert again.changed == 0, again.output[-4000:]
    assert "admin-password-1" not in changed.output and "admin-password-2" not in changed.output


def test_a_changed_admin_password_without_the_old_one_says_what_to_do(influxdb, tmp_path):
    deployer = Deployer(influxdb.url, tmp_path, V1)
    succeeded(deployer.run())
    refused = deployer.run(influxdb_admin_password="admin-password-2")
    assert refused.rc != 0
    assert "influxdb_admin_old_password" in refused.output
    assert logs_in(influxdb.url, "admin", "admin-password-1"), "nothing was changed"
