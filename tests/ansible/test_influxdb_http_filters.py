"""The influxdb role's HTTP helpers (plugins/filter/influxdb_http.py)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.ansible.helpers import REPO


def load() -> ModuleType:
    path = REPO / "plugins" / "filter" / "influxdb_http.py"
    spec = importlib.util.spec_from_file_location("influxdb_http_filters", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


http = load()
WRITE_LOCAL = [{"action": "write", "resource": {"type": "buckets", "id": "b1", "orgID": "o1"}}]
WANTED = {"orgID": "o1", "description": "hostmon agents: write local", "permissions": WRITE_LOCAL}


def auth(id_: str, description: str = "hostmon agents: write local", **extra: object) -> dict[str, object]:
    server_side = [
        {"action": "write", "resource": {"type": "buckets", "id": "b1", "orgID": "o1", "name": "local"}}
    ]
    return {"id": id_, "description": description, "status": "active", "permissions": server_side, **extra}


def test_a_failure_shows_status_and_body_with_secrets_blanked():
    result = {
        "status": 500,
        "url": "http://x/api/v2/authorizations",
        "json": {"message": "boom", "token": "t0k"},
    }
    (message,) = http.influxdb_http_failures(result, [201], "POST /api/v2/authorizations")
    assert "HTTP 500" in message and "boom" in message and "t0k" not in message


def test_skipped_and_expected_results_are_not_failures():
    loop = {
        "results": [
            {"skipped": True},
            {"status": 201},
            {"status": 400, "content": "bad", "item": {"name": "b"}},
        ]
    }
    assert http.influxdb_http_failures(loop, [201], "POST") == ["POST (b): HTTP 400 (expected [201]): bad"]


def test_no_answer_reports_uri_s_message():
    (message,) = http.influxdb_http_failures({"status": -1, "msg": "Connection refused"}, [200], "GET /ping")
    assert "no answer: Connection refused" in message


def test_a_1x_statement_error_in_a_200_is_a_failure():
    result = {"status": 200, "json": {"results": [{"error": "user not found"}]}}
    assert http.influxdb_v1_failures(result, "SET PASSWORD") == ["SET PASSWORD: user not found"]


def test_major_version_from_the_ping_header():
    assert [http.influxdb_major(v) for v in ("v2.7.11", "1.6.7~rc0", "3.0.1", "", None)] == [
        "2",
        "1",
        "3",
        "",
        "",
    ]


def test_a_matching_token_is_kept_and_duplicates_deleted():
    plan = http.influxdb_v2_token_plan([auth("a1"), auth("a2")], WANTED, "a1", True)
    assert plan == {"keep": "a1", "create": False, "delete": ["a2"], "reason": "unchanged"}


def test_changed_permissions_replace_the_stored_token_whatever_its_description():
    plan = http.influxdb_v2_token_plan([auth("a1", "hostmon agents: write old")], WANTED, "a1", True)
    assert plan["create"] and plan["delete"] == ["a1"]


def test_a_lost_value_or_an_inactive_token_is_replaced():
    assert http.influxdb_v2_token_plan([auth("a1")], WANTED, "a1", False)["delete"] == ["a1"]
    assert http.influxdb_v2_token_plan([auth("a1", status="inactive")], WANTED, "a1", True)["create"]


def test_without_a_stored_id_the_only_token_of_that_description_is_adopted():
    assert http.influxdb_v2_token_plan([auth("a1")], WANTED, "", True)["keep"] == "a1"
    twice = http.influxdb_v2_token_plan([auth("a1"), auth("a2")], WANTED, "", True)
    assert twice["create"] and twice["delete"] == ["a1", "a2"]
