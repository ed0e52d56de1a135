"""The repository as the Ansible collection hostmon.hostmon: built, installed, used by full names only."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

from monitor import __version__
from tests.ansible.helpers import REPO, ansible_playbook, isolated_ansible_env

# What a user's playbook looks like: every role and filter by its fully qualified name.
FQCN_PLAYBOOK = """\
---
- name: Deploy InfluxDB from the installed collection
  hosts: influxdb
  roles:
    - role: hostmon.hostmon.influxdb
- name: Deploy Grafana from the installed collection
  hosts: grafana
  roles:
    - role: hostmon.hostmon.grafana
- name: Deploy the agents from the installed collection
  hosts: monitored
  roles:
    - role: hostmon.hostmon.monitor
- name: The collection's own site playbook, by its full name
  ansible.builtin.import_playbook: hostmon.hostmon.site
"""

FILTER_PLAYBOOK = """\
---
- name: Use the collection's filters by their full names
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Quote an identifier and parse a duration
      ansible.builtin.copy:
        content: >-
          {{ ['we"ird' | hostmon.hostmon.influxql_ident,
              30 | hostmon.hostmon.influxql_shown_duration] | to_json }}
        dest: "{{ out }}"
        mode: "0644"
"""

DEVELOPMENT_ONLY = {
    "tests", "molecule", "collections", ".venv", ".git", ".cache", ".ci", ".wheelhouse",
    ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "build", "dist",
}  # fmt: skip

INVENTORY = "[influxdb]\ndb\n[grafana]\ndb\n[monitored]\ndb\n"


def member_names(tarball: Path) -> list[str]:
    with tarfile.open(tarball) as tar:
        return tar.getnames()


def test_galaxy_version_is_the_package_version():
    galaxy = yaml.safe_load((REPO / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == ("hostmon", "hostmon")
    assert galaxy["version"] == __version__


def test_runtime_requires_the_ansible_core_the_deploy_extra_installs():
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    # pyproject's deploy extra: ansible >=10,<13 = ansible-core 2.17 .. 2.19.
    assert runtime["requires_ansible"] == ">=2.17.0"
    assert '"ansible>=10,<13"' in (REPO / "pyproject.toml").read_text()


def test_tarball_holds_no_tests_caches_or_virtualenvs(collection_tarball):
    names = member_names(collection_tarball)
    unwanted = [
        n for n in names
        if n.split("/")[0] in DEVELOPMENT_ONLY
        or "__pycache__" in n.split("/") or n.endswith(".pyc") or ".egg-info" in n
    ]  # fmt: skip
    assert unwanted == []
    for needed in [
        "MANIFEST.json",
        "meta/runtime.yml",
        "plugins/filter/influxql.py",
        "plugins/filter/influxdb_http.py",
        "plugins/filter/hostmon_firewall.py",
        "roles/influxdb/tasks/main.yml",
        "roles/monitor/files/build-wheelhouse.sh",
        "playbooks/site.yml",
        "files/dashboards/system-metrics.json",
        "monitor/__init__.py",
        "pyproject.toml",
    ]:
        assert needed in names, needed
    assert not [n for n in names if "/filter_plugins/" in n]


def test_roles_find_their_assets_in_the_installed_copy(installed_collection):
    root = installed_collection / "ansible_collections" / "hostmon" / "hostmon"
    # grafana_dashboards_src_dir and monitor_source_dir default to paths from role_path.
    grafana_defaults = yaml.safe_load((root / "roles/grafana/defaults/main.yml").read_text())
    assert grafana_defaults["grafana_dashboards_src_dir"] == "{{ role_path }}/../../files/dashboards"
    assert list((root / "roles/grafana/../../files/dashboards").glob("*.json"))
    monitor_defaults = yaml.safe_load((root / "roles/monitor/defaults/main.yml").read_text())
    assert monitor_defaults["monitor_source_dir"] == "{{ role_path }}/../.."
    assert (root / "roles/monitor/../../pyproject.toml").is_file()
    assert (root / "roles/monitor/../../monitor/cli.py").is_file()


def test_no_role_reaches_for_playbook_dir():
    found = [
        str(p.relative_to(REPO))
        for p in (REPO / "roles").rglob("*")
        if p.is_file() and "playbook_dir" in p.read_text()
    ]
    assert found == []


def test_a_playbook_with_full_names_only_passes_syntax_check_from_the_installed_copy(
    tmp_path, installed_collection
):
    (tmp_path / "site.yml").write_text(FQCN_PLAYBOOK)
    (tmp_path / "hosts.ini").write_text(INVENTORY)
    env = isolated_ansible_env(tmp_path, installed_collection)
    done = subprocess.run(
        [ansible_playbook(), "-i", "hosts.ini", "--syntax-check", "site.yml"],
        check=False, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_same_playbook_fails_without_the_installed_copy(tmp_path):
    # The control: nothing else (the repository's roles or collections/ symlink) can satisfy it.
    (tmp_path / "site.yml").write_text(FQCN_PLAYBOOK)
    (tmp_path / "hosts.ini").write_text(INVENTORY)
    (tmp_path / "empty").mkdir()
    env = isolated_ansible_env(tmp_path, tmp_path / "empty")
    done = subprocess.run(
        [ansible_playbook(), "-i", "hosts.ini", "--syntax-check", "site.yml"],
        check=False, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240,
    )  # fmt: skip
    assert done.returncode != 0
    assert "hostmon.hostmon.influxdb" in done.stdout + done.stderr


def test_the_installed_filters_answer_by_their_full_names(tmp_path, installed_collection):
    (tmp_path / "filters.yml").write_text(FILTER_PLAYBOOK)
    out = tmp_path / "out.json"
    env = isolated_ansible_env(tmp_path, installed_collection)
    done = subprocess.run(
        [ansible_playbook(), "-i", "localhost,", "-c", "local", "filters.yml", "-e", f"out={out}",
         "-e", f"ansible_python_interpreter={sys.executable}"],
        check=False, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(out.read_text()) == ['"we\\"ird"', "720h0m0s"]
