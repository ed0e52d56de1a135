"""Least privilege and honest platforms, decided by the roles' own preflight tasks.

``ansible-playbook`` runs the monitor role's preflight for an inventory of local hosts and the
test reads which secrets each host would get: the read token (it reads every bucket) only where
the hostmon API runs, the write token everywhere. The influxdb and monitor preflights refuse a
platform the roles do not support, naming it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ansible.helpers import REPO, ansible_env, ansible_playbook

PLAYBOOK = Path(__file__).resolve().parent / "plumbing" / "plumbing.yml"
DEBIAN_12 = {
    "distribution": "Debian",
    "distribution_major_version": "12",
    "distribution_version": "12.7",
    "os_family": "Debian",
}


def run(tmp_path: Path, groups: dict[str, list[str]], facts: dict[str, str] = DEBIAN_12, **extra: Any):
    inventory = {"all": {"children": {g: {"hosts": {h: {} for h in hosts}} for g, hosts in groups.items()}}}
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump(inventory))
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    env = ansible_env(ANSIBLE_ROLES_PATH=str(REPO / "roles"))
    variables = {"ansible_facts": facts, "out_dir": str(out_dir), **extra}
    cmd = [
        ansible_playbook(),
        "-i",
        str(tmp_path / "inventory.yml"),
        str(PLAYBOOK),
        "-e",
        json.dumps(variables),
    ]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    hosts = {p.stem: json.loads(p.read_text()) for p in out_dir.glob("*.json")}
    return done, hosts


def test_only_api_hosts_get_the_read_token_agents_hold_the_write_token_only(tmp_path):
    done, hosts = run(
        tmp_path, {"influxdb": ["db"], "hostmon_api": ["api1"], "monitored": ["db", "api1", "agent1"]}
    )
    assert done.returncode == 0, done.stdout[-4000:]
    assert hosts["api1"]["secrets"] == {"sink_token": "the-write-token", "store_token": "the-read-token"}
    assert hosts["agent1"]["secrets"] == {"sink_token": "the-write-token"}
    assert hosts["db"]["secrets"] == {"sink_token": "the-write-token"}
    assert hosts["api1"]["units"] == ["hostmon-collector", "hostmon-api"]
    assert hosts["agent1"]["units"] == hosts["db"]["units"] == ["hostmon-collector"]


def test_without_a_hostmon_api_group_the_database_host_runs_the_api(tmp_path):
    done, hosts = run(tmp_path, {"influxdb": ["db"], "monitored": ["db", "agent1"]})
    assert done.returncode == 0, done.stdout[-4000:]
    assert hosts["db"]["secrets"] == {"sink_token": "the-write-token", "store_token": "the-read-token"}
    assert hosts["agent1"]["secrets"] == {"sink_token": "the-write-token"}


def test_monitor_api_enabled_decides_per_host(tmp_path):
    done, hosts = run(tmp_path, {"influxdb": ["db"], "monitored": ["db", "agent1"]}, monitor_api_enabled=True)
    assert done.returncode == 0, done.stdout[-4000:]
    assert hosts["agent1"]["secrets"]["store_token"] == "the-read-token"
    assert hosts["agent1"]["units"] == ["hostmon-collector", "hostmon-api"]


def test_with_the_embedded_store_every_host_runs_its_api_without_database_credentials(tmp_path):
    done, hosts = run(tmp_path, {"monitored": ["web1", "web2"]})
    assert done.returncode == 0, done.stdout[-4000:]
    assert hosts["web1"] == hosts["web2"] == {"secrets": {}, "units": ["hostmon-collector", "hostmon-api"]}


@pytest.mark.parametrize(
    "facts",
    [
        {
            "distribution": "Rocky",
            "distribution_major_version": "8",
            "distribution_version": "8.9",
            "os_family": "RedHat",
        },
        {
            "distribution": "Ubuntu",
            "distribution_major_version": "24",
            "distribution_version": "24.04",
            "os_family": "Debian",
        },
    ],
    ids=["el8", "ubuntu"],
)
@pytest.mark.parametrize("role", ["influxdb", "monitor"])
def test_an_unsupported_platform_is_refused_by_name(tmp_path, facts, role):
    groups = {"influxdb": ["db"], "monitored": ["web1"]}
    extra = {"influxdb_preflight": role == "influxdb", "influxdb_admin_password": "a-good-admin-pw"}
    done, _ = run(tmp_path, groups, facts, **extra)
    assert done.returncode != 0
    assert f"runs {facts['distribution']} {facts['distribution_version']}" in done.stdout
    assert "Supported: Debian 12 and EL 9" in done.stdout


@pytest.mark.parametrize("architecture", ["x86_64", "aarch64"])
def test_el9_passes_the_influxdb_preflight(tmp_path, architecture):
    facts = {
        "distribution": "Rocky",
        "distribution_major_version": "9",
        "distribution_version": "9.4",
        "os_family": "RedHat",
        "architecture": architecture,
    }
    extra = {
        "influxdb_preflight": True,
        "influxdb_admin_password": "a-good-admin-pw",
        "influxdb_operator_token": "o" * 40,
        "influxdb_official_package_checksum": "sha256:" + "0" * 64,
    }
    done, hosts = run(tmp_path, {"influxdb": ["db"], "monitored": ["web1"]}, facts, **extra)
    assert done.returncode == 0, done.stdout[-4000:]
    assert hosts["web1"]["secrets"] == {"sink_token": "the-write-token"}


def test_a_cpu_influxdata_builds_no_package_for_is_refused_by_name(tmp_path):
    facts = {
        "distribution": "Rocky",
        "distribution_major_version": "9",
        "distribution_version": "9.4",
        "os_family": "RedHat",
        "architecture": "ppc64le",
    }
    extra = {
        "influxdb_preflight": True,
        "influxdb_admin_password": "a-good-admin-pw",
        "influxdb_operator_token": "o" * 40,
        "influxdb_official_package_checksum": "sha256:" + "0" * 64,
    }
    done, _ = run(tmp_path, {"influxdb": ["db"], "monitored": ["web1"]}, facts, **extra)
    assert done.returncode != 0
    assert (
        "db is ppc64le; InfluxData's packages (the official flavour) exist for x86_64 and aarch64"
        in done.stdout
    )
