"""The influxdb role's 2.x provisioning, run for real against a contract-checked fake InfluxDB.

``ansible-playbook`` runs the role's provisioning (tasks_from: provision, then connection) on
the controller against tests/ansible/fake_influxdb2.py, which validates every request and
response against InfluxData's OpenAPI contract and records them. The tests assert the recorded
request sequence of each case: first run, unchanged second run, a bucket added, the agents'
bucket changed, the admin password changed; a server set up by someone else; a failed request.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import servers

pytest.importorskip("openapi_core")
from tests.ansible.fake_influxdb2 import FakeInfluxDB2
from tests.ansible.role_runner import Deployer, Run

OPERATOR_TOKEN = "operator-token-from-the-vault-0123456789abcdef"
BUCKETS = [{"name": "local", "retention_days": 30}, {"name": "rhtest", "retention_days": 30}]

FIRST_RUN = [
    "GET /ping",
    "GET /api/v2/setup",
    "POST /api/v2/setup",
    "GET /api/v2/orgs",
    "GET /api/v2/buckets",
    "POST /api/v2/buckets",  # rhtest (setup created local)
    "GET /api/v2/dbrps",
    "POST /api/v2/dbrps",
    "POST /api/v2/dbrps",
    "GET /api/v2/users",
    "POST /api/v2/signin",
    "GET /api/v2/authorizations",
    "POST /api/v2/authorizations",  # writer
    "POST /api/v2/authorizations",  # reader
]
READS = [c for c in FIRST_RUN if c.startswith("GET ")]
READS.insert(READS.index("GET /api/v2/users") + 1, "POST /api/v2/signin")


@pytest.fixture(scope="module", autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        if servers.IN_CI:
            pytest.fail("the token files are root:root 0600: these tests run as root")
        pytest.skip("the role writes root:root token files: run as root")


def succeeded(run: Run) -> Run:
    assert run.rc == 0, run.output[-6000:]
    return run


def v2_deployer(fake: FakeInfluxDB2, work: Path) -> Deployer:
    return Deployer(
        fake.url,
        work,
        {
            "influxdb_flavour": "official",
            "_influxdb_major": "2",
            "influxdb_admin_password": "admin-password-1",
            "influxdb_operator_token": OPERATOR_TOKEN,
            "influxdb_buckets": BUCKETS,
            "influxdb_agent_bucket": "local",
        },
        recorder=fake,
    )


@pytest.fixture
def fake() -> Iterator[FakeInfluxDB2]:
    server = FakeInfluxDB2().start()
    yield server
    server.stop()
    assert server.violations == [], "requests or responses broke the contract:\n" + "\n".join(
        server.violations
    )


@pytest.fixture
def deployer(fake: FakeInfluxDB2, tmp_path: Path) -> Deployer:
    return v2_deployer(fake, tmp_path)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One server through the four cases of the contract, in order, plus a password change."""
    server = FakeInfluxDB2().start()
    deployer = v2_deployer(server, tmp_path_factory.mktemp("history"))
    runs: dict[str, Any] = {"fake": server, "deployer": deployer}
    runs["first"] = succeeded(deployer.run())
    runs["after_first"] = snapshot(server, deployer)
    runs["unchanged"] = succeeded(deployer.run())
    added = [*BUCKETS, {"name": "extra", "retention_days": 7}]
    runs["bucket_added"] = succeeded(deployer.run(influxdb_buckets=added))
    runs["after_bucket_added"] = snapshot(server, deployer)
    runs["agent_bucket_changed"] = succeeded(
        deployer.run(influxdb_buckets=added, influxdb_agent_bucket="rhtest")
    )
    runs["after_agent_bucket_changed"] = snapshot(server, deployer)
    yield runs
    server.stop()
    assert server.violations == [], "requests or responses broke the contract:\n" + "\n".join(
        server.violations
    )


def snapshot(fake: FakeInfluxDB2, deployer: Deployer) -> dict[str, Any]:
    """The role's tokens as InfluxDB holds them and as the token files say."""
    files = {p.name: p.read_text() for p in sorted(deployer.token_dir.iterdir())}
    ids = {key: files[f"{key}.id"] for key in ("writer", "reader")}
    auths = fake.state.authorizations
    buckets = {b["id"]: b["name"] for b in fake.state.buckets.values()}
    return {
        "files": files,
        "modes": {p.name: p.stat().st_mode & 0o777 for p in deployer.token_dir.iterdir()},
        "ids": ids,
        "token": {key: auths[ids[key]]["token"] for key in ids},
        "grants": {
            key: sorted((p["action"], buckets[p["resource"]["id"]]) for p in auths[ids[key]]["permissions"])
            for key in ids
        },
        "auth_ids": set(auths),
    }


# -- the four cases ------------------------------------------------------------------------------


def test_first_run_sets_up_creates_buckets_mappings_and_two_tokens(history):
    first, state = history["first"], history["after_first"]
    assert first.calls == FIRST_RUN
    assert state["grants"] == {
        "writer": [("write", "local")],
        "reader": [("read", "local"), ("read", "rhtest")],
    }
    assert first.connection["write_token"] == state["token"]["writer"] == state["files"]["writer.token"]
    assert first.connection["read_token"] == state["token"]["reader"] == state["files"]["reader.token"]
    assert set(state["modes"].values()) == {0o600}
    assert "operator.token" not in state["files"], "the operator token lives in the vault only"


def test_first_run_sets_the_vault_operator_token_at_setup(history):
    (setup,) = [e for e in history["fake"].exchanges if e.call == "POST /api/v2/setup"]
    assert setup.body["token"] == OPERATOR_TOKEN
    assert history["fake"].state.operator_token == OPERATOR_TOKEN


def test_every_request_after_setup_carries_the_operator_token(history):
    for exchange in history["fake"].exchanges:
        expected = {
            "GET /ping": "",
            "GET /api/v2/setup": "",
            "POST /api/v2/setup": "",
            "POST /api/v2/signin": "basic",
        }
        assert exchange.auth == expected.get(exchange.call, "token"), exchange.call


def test_unchanged_second_run_only_reads_and_changes_nothing(history):
    unchanged = history["unchanged"]
    assert unchanged.calls == READS
    assert unchanged.writes == []
    assert unchanged.changed == 0, unchanged.output[-4000:]


def test_a_bucket_added_replaces_the_reader_token_and_deletes_the_old_one(history):
    run, before, after = history["bucket_added"], history["after_first"], history["after_bucket_added"]
    assert run.writes == [
        "POST /api/v2/buckets",
        "POST /api/v2/dbrps",
        "POST /api/v2/authorizations",
        f"DELETE /api/v2/authorizations/{before['ids']['reader']}",
    ]
    assert after["grants"]["reader"] == [("read", "extra"), ("read", "local"), ("read", "rhtest")]
    assert before["ids"]["reader"] not in after["auth_ids"]
    assert after["ids"]["writer"] == before["ids"]["writer"], "the writer token stays"
    assert run.connection["read_token"] == after["token"]["reader"] != before["token"]["reader"]
    assert run.connection["write_token"] == before["token"]["writer"]


def test_a_changed_agent_bucket_replaces_the_writer_token_and_deletes_the_old_one(history):
    run, before = history["agent_bucket_changed"], history["after_bucket_added"]
    after = history["after_agent_bucket_changed"]
    assert run.writes == [
        "POST /api/v2/authorizations",
        f"DELETE /api/v2/authorizations/{before['ids']['writer']}",
    ]
    assert after["grants"]["writer"] == [("write", "rhtest")]
    assert before["ids"]["writer"] not in after["auth_ids"]
    assert after["ids"]["reader"] == before["ids"]["reader"]
    assert run.connection["write_token"] == after["token"]["writer"] != before["token"]["writer"]
    assert run.connection["bucket"] == "rhtest"


def test_no_run_prints_a_token_or_password(history):
    tokens = {OPERATOR_TOKEN, "admin-password-1"} | {
        a["token"] for a in history["fake"].state.authorizations.values()
    }
    tokens |= set(history["after_first"]["token"].values()) | set(
        history["after_bucket_added"]["token"].values()
    )
    for name in ("first", "unchanged", "bucket_added", "agent_bucket_changed"):
        leaked = [t for t in tokens if t in history[name].output]
        assert leaked == [], f"{name} printed a secret"


# -- more cases, each on a fresh server ----------------------------------------------------------


def test_a_changed_admin_password_is_set_through_the_users_password_endpoint(fake, deployer):
    succeeded(deployer.run())
    (user_id,) = fake.state.users
    changed = succeeded(deployer.run(influxdb_admin_password="admin-password-2"))
    assert changed.writes == [f"POST /api/v2/users/{user_id}/password"]
    assert fake.state.users[user_id]["password"] == "admin-password-2"
    again = succeeded(deployer.run(influxdb_admin_password="admin-password-2"))
    assert again.writes == [] and again.changed == 0


def test_a_server_set_up_by_someone_else_stops_the_play_with_what_to_do(fake, deployer):
    fake.set_up_by_someone_else("their-own-token")
    run = deployer.run()
    assert run.rc != 0
    assert "is not one of its operator tokens" in run.output
    assert "influxdb_operator_token" in run.output
    assert run.calls == ["GET /ping", "GET /api/v2/setup", "GET /api/v2/orgs"]
    assert not deployer.token_dir.exists() or not any(deployer.token_dir.iterdir())


def test_a_failed_request_shows_status_and_body_but_no_token(fake, deployer):
    fake.fail_next["POST /api/v2/buckets"] = (
        500,
        {"code": "internal error", "message": "disk quota exceeded"},
    )
    run = deployer.run()
    assert run.rc != 0
    assert "POST /api/v2/buckets" in run.output
    assert "HTTP 500" in run.output and "disk quota exceeded" in run.output
    assert OPERATOR_TOKEN not in run.output


def test_the_version_the_server_reports_decides_the_provisioning(fake, deployer):
    fake.version = "1.8.10"
    run = deployer.run(
        influxdb_admin_user="admin", influxdb_writer_password="w" * 8, influxdb_reader_password="r" * 8
    )
    assert run.calls[:2] == ["GET /ping", "POST /query"], "a 1.x server is provisioned with InfluxQL"
    fake.violations.clear()  # /query is the 1.x API, not in the 2.x contract


def test_check_mode_on_a_fresh_server_and_after_a_change_sends_no_write_and_does_not_fail(fake, deployer):
    fresh = succeeded(deployer.run(check=True))
    assert fresh.writes == [] and fresh.calls == ["GET /ping", "GET /api/v2/setup"]
    assert fresh.connection["write_token"] == "not-created-yet-in-check-mode"
    succeeded(deployer.run())
    added = [*BUCKETS, {"name": "extra", "retention_days": 7}]
    preview = succeeded(deployer.run(check=True, influxdb_buckets=added, influxdb_agent_bucket="extra"))
    assert preview.writes == []
    assert (
        "The writer token is replaced" in preview.output and "The reader token is replaced" in preview.output
    )
