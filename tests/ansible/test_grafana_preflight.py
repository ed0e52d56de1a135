"""The grafana role's preflight, run by the real ansible-playbook on this machine.

Each case hands the role's own preflight tasks a set of variables (and, for the checks that
look at an existing installation, a grafana.ini and a grafana.db of a "previous run" in a
temporary directory) and asserts that the play passes, or stops with the message that says
what to do. No Grafana runs here: the login probe of the rename check meets a closed port.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests import servers
from tests.ansible.helpers import REPO, ansible_playbook

PLAYBOOK = Path(__file__).resolve().parent / "render" / "grafana_preflight.yml"
GOOD_KEY = "c2f1e0d9b8a7968574635241302f1e0d9c8b7a69"
PUBLIC_DEFAULT_KEY = "SW2YcwTIb9zpOOhoPsMm"


def run_preflight(tmp_path: Path, **overrides: Any) -> subprocess.CompletedProcess[str]:
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    variables: dict[str, Any] = {
        "grafana_admin_password": "a-long-vault-password",
        "grafana_secret_key": GOOD_KEY,
        "grafana_influxdb_host": "",
        "grafana_datasource_url": "http://db.example:8086",
        "grafana_datasource_database": "local",
        "grafana_port": servers.free_port(),  # nothing listens there
        "grafana_ini": {"paths": {"data": str(data_dir)}},
        "_grafana_ini_path": str(tmp_path / "grafana.ini"),
    }
    variables.update(overrides)
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONFIG": str(PLAYBOOK.parent / "ansible.cfg"),
    }
    cmd = [ansible_playbook(), "-i", "localhost,", str(PLAYBOOK), "-e", json.dumps(variables)]
    return subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=240)


def previous_run(tmp_path: Path, ini: str, *, database: bool = True) -> None:
    """What an earlier run left on the host: its grafana.ini and (or not) Grafana's database."""
    (tmp_path / "grafana.ini").write_text(ini)
    if database:
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / "grafana.db").write_bytes(b"SQLite format 3\x00")


def assert_refused(done: subprocess.CompletedProcess[str], *phrases: str) -> None:
    out = done.stdout + done.stderr
    assert done.returncode != 0, f"preflight passed, expected a refusal:\n{out[-3000:]}"
    flat = " ".join(out.split())
    for phrase in phrases:
        assert phrase in flat, f"{phrase!r} not in the refusal:\n{out[-3000:]}"


def assert_passed(done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == 0, f"preflight refused:\n{(done.stdout + done.stderr)[-3000:]}"


def test_complete_settings_pass_on_a_fresh_host(tmp_path):
    assert_passed(run_preflight(tmp_path))


@pytest.mark.parametrize(
    ("key", "phrase"),
    [
        (PUBLIC_DEFAULT_KEY, "is public, so it is refused"),
        ("short-key-0123456789", "at least 32 characters"),
        (GOOD_KEY + "${HOME}", "none of ${...}"),
    ],
    ids=["grafana-public-default", "too-short", "expanded-by-grafana"],
)
def test_a_weak_or_mangled_secret_key_is_refused(tmp_path, key, phrase):
    done = run_preflight(tmp_path, grafana_secret_key=key)
    assert_refused(done, "grafana_secret_key must come from the vault", phrase)


def test_a_missing_secret_key_is_refused(tmp_path):
    # Overriding with an undefined value is not possible from -e; an empty one is what a
    # missing vault entry templates to.
    done = run_preflight(tmp_path, grafana_secret_key="")
    assert_refused(done, "grafana_secret_key must come from the vault")


def test_an_admin_password_grafana_would_expand_is_refused(tmp_path):
    done = run_preflight(tmp_path, grafana_admin_password="long-enough-$__file{/etc/shadow}")
    assert_refused(done, "grafana_admin_password must come from the vault", "no way to escape them")


def test_flux_is_refused_with_the_reason(tmp_path):
    done = run_preflight(tmp_path, grafana_datasource_query_language="Flux")
    assert_refused(done, "Flux is refused", "every panel of the System Metrics dashboard", "Keep InfluxQL")


def test_a_certificate_without_its_key_is_refused(tmp_path):
    cert = tmp_path / "grafana.crt"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    assert_refused(run_preflight(tmp_path, grafana_tls_cert=str(cert)), "go together")


def test_grafana_ini_may_not_set_what_the_role_manages(tmp_path):
    ini = {
        "paths": {"data": str(tmp_path / "data")},
        "security": {"secret_key": "x" * 40, "disable_gravatar": False},
        "server": {"http_port": 8443},
    }
    assert_refused(run_preflight(tmp_path, grafana_ini=ini), "security.secret_key", "server.http_port")


def test_grafana_ini_may_override_the_roles_defaults(tmp_path):
    ini = {"paths": {"data": str(tmp_path / "data")}, "users": {"allow_sign_up": True}}
    assert_passed(run_preflight(tmp_path, grafana_ini=ini))


def test_a_renamed_admin_on_an_existing_database_is_refused(tmp_path):
    previous_run(tmp_path, f'[security]\nadmin_user = admin\nsecret_key = """{GOOD_KEY}"""\n')
    done = run_preflight(tmp_path, grafana_admin_user="ops")
    assert_refused(
        done,
        "Grafana's database was created with the admin 'admin'",
        "set grafana_admin_user back to 'admin'",
        "rename the user in Grafana first",
    )


def test_a_renamed_admin_before_grafana_created_its_database_passes(tmp_path):
    previous_run(tmp_path, f'[security]\nadmin_user = admin\nsecret_key = """{GOOD_KEY}"""\n', database=False)
    assert_passed(run_preflight(tmp_path, grafana_admin_user="ops"))


def test_the_same_admin_and_key_as_the_previous_run_pass(tmp_path):
    previous_run(tmp_path, f'[security]\nadmin_user = ops\nsecret_key = """{GOOD_KEY}"""\n')
    assert_passed(run_preflight(tmp_path, grafana_admin_user="ops"))


def test_a_new_secret_key_on_a_database_made_with_grafanas_default_is_refused(tmp_path):
    # What earlier versions of the role wrote: an admin_user, no secret_key (Grafana's default).
    previous_run(tmp_path, '[security]\nadmin_user = admin\nadmin_password = """old-pw"""\n')
    assert_refused(
        run_preflight(tmp_path),
        "was set up with another secret_key",
        "set grafana_secret_key_replace=true",
    )


def test_replacing_the_secret_key_is_allowed_when_asked_for(tmp_path):
    previous_run(tmp_path, "[security]\nadmin_user = admin\n;secret_key = commented-out\n")
    assert_passed(run_preflight(tmp_path, grafana_secret_key_replace=True))
