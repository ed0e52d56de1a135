"""The influxdb role's InfluxDB 2.x requests, checked against InfluxData's OpenAPI contract.

InfluxDB 2.x cannot run on these machines, so every request the role's 2.x provisioning sends
(roles/influxdb/tasks/provision_v2.yml and token_v2.yml: method, path, query, headers and the
body rendered by Ansible from templates/v2/) is validated with openapi-core against
tests/contracts/influxdb-oss-v2.yml, and every response field the role reads is looked up in the
contract's response schemas.

One correction to the contract, in memory: it declares TokenAuthentication for every operation,
including GET/POST /setup, but onboarding happens before any token exists and InfluxDB serves it
unauthenticated (that is what "initial setup" means); the two /setup operations get
``security: []``. Every other request must carry ``Authorization: Token ...``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
import yaml

from tests.ansible.helpers import REPO

openapi_core = pytest.importorskip("openapi_core")
from openapi_core.exceptions import OpenAPIError  # noqa: E402
from openapi_core.testing import MockRequest  # noqa: E402

CONTRACT = REPO / "tests" / "contracts" / "influxdb-oss-v2.yml"
TASK_FILES = ("provision_v2.yml", "password_v2.yml", "token_v2.yml")
SAMPLE_ID = "0a1b2c3d4e5f6071"


@dataclass(frozen=True)
class Call:
    """One ansible.builtin.uri task of the role."""

    name: str
    method: str
    url: str
    body_template: str | None
    has_headers: bool
    basic_auth: bool = False

    @property
    def path_and_query(self) -> tuple[str, dict[str, str]]:
        url = self.url.replace("{{ influxdb_api_url }}", "")
        url = re.sub(r"\{\{.*?\}\}", SAMPLE_ID, url)
        path, _, query = url.partition("?")
        return path, dict(parse_qsl(query))


def walk(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for task in tasks:
        out.append(task)
        for key in ("block", "rescue", "always"):
            out.extend(walk(task.get(key, [])))
    return out


def calls() -> list[Call]:
    found = []
    for name in TASK_FILES:
        tasks = yaml.safe_load((REPO / "roles" / "influxdb" / "tasks" / name).read_text())
        for task in walk(tasks):
            uri = task.get("ansible.builtin.uri")
            if uri is None:
                continue
            body = uri.get("body")
            template = re.search(r"'(v2/[\w.]+\.j2)'", body).group(1) if isinstance(body, str) else None
            found.append(
                Call(
                    task["name"],
                    uri.get("method", "GET"),
                    uri["url"],
                    template,
                    "headers" in uri,
                    "url_username" in uri,
                )
            )
    return found


CALLS = calls()


@functools.cache
def contract() -> dict[str, Any]:
    return dict(yaml.load(CONTRACT.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


@pytest.fixture(scope="module")
def api() -> Any:
    spec = copy.deepcopy(contract())
    for method in ("get", "post"):
        spec["paths"]["/setup"][method]["security"] = []
    return openapi_core.OpenAPI.from_dict(spec, config=openapi_core.Config(spec_validator_cls=None))


def bodies_for(call: Call, rendered: dict[str, str]) -> list[tuple[str, bytes]]:
    if call.body_template is None:
        return [("", b"")]
    stem = call.body_template.removesuffix(".json.j2")
    keys = [k for k in rendered if k == f"{stem}.json" or k.startswith(f"{stem}-")]
    assert keys, f"{call.body_template} was not rendered"
    return [(k, rendered[k].encode()) for k in sorted(keys)]


def request(call: Call, body: bytes, *, token: bool = True) -> MockRequest:
    path, query = call.path_and_query
    headers = {"Authorization": "Token t0k3n"} if call.has_headers and token else {}
    if call.basic_auth and token:
        headers = {"Authorization": "Basic YWRtaW46cGFzc3dvcmQ="}
    if body:
        headers["Content-Type"] = "application/json"
    return MockRequest(
        "http://127.0.0.1:8086",
        call.method.lower(),
        path,
        args=query,
        headers=headers,
        data=body or None,
        content_type="application/json" if body else None,
    )


def test_the_role_sends_every_kind_of_2x_request():
    assert {(c.method, c.path_and_query[0]) for c in CALLS} == {
        ("GET", "/api/v2/setup"),
        ("POST", "/api/v2/setup"),
        ("GET", "/api/v2/orgs"),
        ("POST", "/api/v2/orgs"),
        ("GET", "/api/v2/buckets"),
        ("POST", "/api/v2/buckets"),
        ("PATCH", f"/api/v2/buckets/{SAMPLE_ID}"),
        ("GET", "/api/v2/dbrps"),
        ("POST", "/api/v2/dbrps"),
        ("GET", "/api/v2/users"),
        ("POST", "/api/v2/signin"),
        ("POST", f"/api/v2/users/{SAMPLE_ID}/password"),
        ("GET", "/api/v2/authorizations"),
        ("POST", "/api/v2/authorizations"),
        ("DELETE", f"/api/v2/authorizations/{SAMPLE_ID}"),
    }


def test_every_request_after_setup_carries_the_operator_token():
    for call in CALLS:
        path = call.path_and_query[0]
        if path == "/api/v2/signin":  # the admin password check signs in with it (Basic)
            assert call.basic_auth and not call.has_headers, call.name
            continue
        assert call.has_headers != (path == "/api/v2/setup"), call.name


@pytest.mark.parametrize("call", CALLS, ids=[f"{c.method} {c.path_and_query[0]}" for c in CALLS])
def test_request_conforms_to_the_contract(api, rendered, call):
    for key, body in bodies_for(call, rendered):
        if body:
            json.loads(body)  # well-formed JSON first, for a clearer failure
        try:
            api.validate_request(request(call, body))
        except OpenAPIError as exc:
            pytest.fail(f"{call.name} ({key or 'no body'}): {exc!r} {getattr(exc, '__cause__', '')!r}")


def test_validation_can_fail_bucket_without_org_or_bad_retention(api, rendered):
    (post_bucket,) = [c for c in CALLS if c.method == "POST" and c.path_and_query[0] == "/api/v2/buckets"]
    body = json.loads(rendered["v2/bucket-local.json"])
    without_org = {k: v for k, v in body.items() if k != "orgID"}
    with pytest.raises(OpenAPIError):
        api.validate_request(request(post_bucket, json.dumps(without_org).encode()))
    negative = {**body, "retentionRules": [{"type": "expire", "everySeconds": -1}]}
    with pytest.raises(OpenAPIError):
        api.validate_request(request(post_bucket, json.dumps(negative).encode()))


def test_validation_can_fail_a_request_without_token(api):
    (get_buckets,) = [c for c in CALLS if c.method == "GET" and c.path_and_query[0] == "/api/v2/buckets"]
    with pytest.raises(OpenAPIError):
        api.validate_request(request(get_buckets, b"", token=False))


def test_tokens_are_least_privilege(rendered):
    writer = json.loads(rendered["v2/authorization-writer.json"])
    reader = json.loads(rendered["v2/authorization-reader.json"])
    assert [(p["action"], p["resource"]["type"], p["resource"]["id"]) for p in writer["permissions"]] == [
        ("write", "buckets", "1b2c3d4e5f607182")  # the agents' bucket only
    ]
    assert {p["action"] for p in reader["permissions"]} == {"read"}
    assert {p["resource"]["id"] for p in reader["permissions"]} == {"1b2c3d4e5f607182", "2c3d4e5f60718293"}


def test_setup_body_sets_retention_and_the_operator_token_only_when_given(rendered):
    plain = json.loads(rendered["v2/setup.json"])
    given = json.loads(rendered["v2/setup-with-token.json"])
    assert plain["retentionPeriodSeconds"] == 30 * 86400 and "token" not in plain
    assert given["token"] == "operator-token-from-the-vault"


# -- the response fields the role reads exist in the contract ---------------------------------

READS = [
    ("/setup", "get", "200", ["allowed"]),
    ("/setup", "post", "201", ["auth", "token"]),
    ("/orgs", "get", "200", ["orgs", "[]", "name"]),
    ("/orgs", "get", "200", ["orgs", "[]", "id"]),
    ("/orgs", "post", "201", ["id"]),
    ("/buckets", "get", "200", ["buckets", "[]", "name"]),
    ("/buckets", "get", "200", ["buckets", "[]", "id"]),
    ("/buckets", "get", "200", ["buckets", "[]", "retentionRules", "[]", "everySeconds"]),
    ("/buckets", "post", "201", ["id"]),
    ("/buckets", "post", "201", ["name"]),
    ("/dbrps", "get", "200", ["content", "[]", "database"]),
    ("/dbrps", "get", "200", ["content", "[]", "retention_policy"]),
    ("/dbrps", "get", "200", ["content", "[]", "virtual"]),
    ("/authorizations", "get", "200", ["authorizations", "[]", "description"]),
    ("/authorizations", "get", "200", ["authorizations", "[]", "id"]),
    ("/authorizations", "get", "200", ["authorizations", "[]", "permissions", "[]", "action"]),
    ("/authorizations", "get", "200", ["authorizations", "[]", "permissions", "[]", "resource", "id"]),
    ("/authorizations", "get", "200", ["authorizations", "[]", "status"]),
    ("/authorizations", "post", "201", ["token"]),
    ("/authorizations", "post", "201", ["id"]),
    ("/users", "get", "200", ["users", "[]", "id"]),
]


def resolve(doc: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        target: Any = doc
        for part in node["$ref"].lstrip("#/").split("/"):
            target = target[part]
        node = target
    return node


def schema_has(doc: dict[str, Any], schema: Any, path: list[str]) -> bool:
    schema = resolve(doc, schema)
    if not path:
        return True
    if not isinstance(schema, dict):
        return False
    for combo in ("allOf", "oneOf", "anyOf"):
        if any(schema_has(doc, sub, path) for sub in schema.get(combo, [])):
            return True
    head, rest = path[0], path[1:]
    if head == "[]":
        return "items" in schema and schema_has(doc, schema["items"], rest)
    props = schema.get("properties", {})
    return head in props and schema_has(doc, props[head], rest)


@pytest.mark.parametrize(
    ("path", "method", "status", "field"), READS, ids=[f"{m} {p} {'.'.join(f)}" for p, m, _, f in READS]
)
def test_fields_the_role_reads_are_in_the_contracts_responses(path, method, status, field):
    doc = contract()
    response = resolve(doc, doc["paths"][path][method]["responses"][status])
    schema = response["content"]["application/json"]["schema"]
    assert schema_has(doc, schema, field), f"{method.upper()} {path} {status} has no {'.'.join(field)}"


def test_the_contract_file_is_the_vendored_one():
    assert Path(CONTRACT).is_file(), f"{CONTRACT} missing (vendored from shared/contracts)"
