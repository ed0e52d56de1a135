"""A stateful fake of the InfluxDB 2.x HTTP API, checked against InfluxData's OpenAPI contract.

InfluxDB 2.x cannot run on these machines. This server keeps the state the influxdb role
provisions (setup, users, orgs, buckets, DBRP mappings, authorizations) on 127.0.0.1, validates
every request it receives AND every response it sends with openapi-core against
tests/contracts/influxdb-oss-v2.yml, and records them, so tests can assert the sequence of
requests a real ``ansible-playbook`` run sends. A request the contract rejects is answered 400
and recorded in ``violations``; a response that breaks it is recorded there too.

Contract corrections, in memory only (what InfluxDB serves, where the document says otherwise):
GET/POST /setup and GET /ping need no token (onboarding happens before any token exists), and
``X-Influxdb-Version`` is a string such as ``v2.7.11`` (the document types it as an integer).
"""

from __future__ import annotations

import base64
import copy
import functools
import itertools
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

CONTRACT = Path(__file__).resolve().parents[1] / "contracts" / "influxdb-oss-v2.yml"
VERSION = "v2.7.11"


@functools.cache
def contract() -> dict[str, Any]:
    """The contract document with the corrections the module docstring names."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = copy.deepcopy(yaml.load(CONTRACT.read_text(), Loader=loader))
    for method in ("get", "post"):
        spec["paths"]["/setup"][method]["security"] = []
    spec["paths"]["/ping"]["get"]["security"] = []
    spec["paths"]["/ping"]["get"]["responses"]["204"]["headers"]["X-Influxdb-Version"]["schema"] = {
        "type": "string"
    }
    return dict(spec)


@functools.cache
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(contract(), config=Config(spec_validator_cls=None))


@dataclass
class Exchange:
    """One request and the answer the fake gave."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    status: int
    auth: str  # "token", "basic" or ""

    @property
    def call(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class State:
    """What InfluxDB would hold; IDs are 16 hex digits like InfluxDB's."""

    operator_token: str = ""
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    orgs: dict[str, str] = field(default_factory=dict)  # id -> name
    buckets: dict[str, dict[str, Any]] = field(default_factory=dict)
    dbrps: dict[str, dict[str, Any]] = field(default_factory=dict)
    authorizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    ids: itertools.count = field(default_factory=lambda: itertools.count(0x0A00000000000001))

    def new_id(self) -> str:
        return f"{next(self.ids):016x}"

    @property
    def set_up(self) -> bool:
        return bool(self.users)


class FakeInfluxDB2:
    """Start with ``start()``, point the role at ``url``, read ``exchanges`` and ``violations``."""

    def __init__(self, version: str = VERSION) -> None:
        self.version = version
        self.state = State()
        self.exchanges: list[Exchange] = []
        self.violations: list[str] = []
        self.fail_next: dict[str, tuple[int, dict[str, Any]]] = {}  # "POST /api/v2/buckets" -> answer
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeInfluxDB2:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def set_up_by_someone_else(self, token: str) -> None:
        """The state after another party ran the initial setup with its own token."""
        self._setup(
            {"username": "someone", "password": "their-password", "org": "theirs", "bucket": "b"}, token
        )

    def mark(self) -> int:
        """Where the next run's exchanges start."""
        return len(self.exchanges)

    def calls(self, since: int = 0) -> list[str]:
        return [e.call for e in self.exchanges[since:]]

    def writes(self, since: int = 0) -> list[str]:
        return [e.call for e in self.exchanges[since:] if e.method != "GET" and e.path != "/api/v2/signin"]

    # -- HTTP plumbing -------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body, headers = fake._exchange(
                    self.command, self.path, dict(self.headers.items()), raw
                )
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                if data:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815 (http.server's names)

        return Handler

    def _exchange(
        self, method: str, target: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(target)
        query = dict(parse_qsl(parts.query))
        content_type = headers.get("Content-Type", "application/json").split(";")[0]
        request = MockRequest(
            "http://127.0.0.1",
            method.lower(),
            parts.path,
            args=query,
            headers=headers,
            data=raw or None,
            content_type=content_type,
        )
        auth = headers.get("Authorization", "")
        kind = "token" if auth.startswith("Token ") else "basic" if auth.startswith("Basic ") else ""
        body = json.loads(raw) if raw and content_type == "application/json" else None
        with self._lock:
            try:
                openapi().validate_request(request)
            except Exception as exc:  # openapi-core raises several unrelated classes
                self.violations.append(f"request {method} {parts.path}: {exc!r} {exc.__cause__!r}")
                rejected = True
                status, answer = 400, {"code": "invalid", "message": "request breaks the contract"}
            else:
                rejected = False
                status, answer = self._answer(method, parts.path, query, auth, body)
            self.exchanges.append(Exchange(method, parts.path, query, body, status, kind))
            headers_out = {"X-Influxdb-Version": self.version, "X-Influxdb-Build": "OSS"}
            data = b"" if answer is None else json.dumps(answer).encode()
            response = MockResponse(
                data, status_code=status, headers=headers_out, content_type="application/json"
            )
            if not rejected:
                try:
                    openapi().validate_response(request, response)
                except Exception as exc:
                    self.violations.append(
                        f"response {method} {parts.path} {status}: {exc!r} {exc.__cause__!r}"
                    )
        return status, answer, headers_out

    # -- the API -------------------------------------------------------------------------------

    def _answer(self, method: str, path: str, query: dict[str, str], auth: str, body: Any) -> tuple[int, Any]:
        call = f"{method} {path}"
        if call in self.fail_next:
            status, answer = self.fail_next.pop(call)
            return status, answer
        if call == "GET /ping":
            return 204, None
        if call == "GET /api/v2/setup":
            return 200, {"allowed": not self.state.set_up}
        if call == "POST /api/v2/setup":
            if self.state.set_up:
                return 422, {"code": "conflict", "message": "onboarding has already been completed"}
            return 201, self._setup(body, body.get("token") or "generated-" + self.state.new_id())
        if call == "POST /api/v2/signin":
            return (
                (204, None)
                if self._signin(auth)
                else (401, {"code": "unauthorized", "message": "wrong password"})
            )
        if auth != f"Token {self.state.operator_token}" or not self.state.set_up:
            return 401, {"code": "unauthorized", "message": "unauthorized access"}
        return self._authorized(method, path, query, body)

    def _setup(self, body: dict[str, Any], token: str) -> dict[str, Any]:
        state = self.state
        state.operator_token = token
        user_id, org_id = state.new_id(), state.new_id()
        state.users[user_id] = {"name": body["username"], "password": body.get("password", "")}
        state.orgs[org_id] = body["org"]
        bucket = self._bucket(org_id, body["bucket"], int(body.get("retentionPeriodSeconds") or 0))
        auth = {
            "id": state.new_id(),
            "token": token,
            "status": "active",
            "description": f"{body['username']}'s Token",
            "orgID": org_id,
            "userID": user_id,
            "permissions": [{"action": a, "resource": {"type": "orgs"}} for a in ("read", "write")],
        }
        state.authorizations[auth["id"]] = auth
        user = {"id": user_id, "name": body["username"], "status": "active"}
        return {"user": user, "org": {"id": org_id, "name": body["org"]}, "bucket": bucket, "auth": auth}

    def _signin(self, auth: str) -> bool:
        try:
            name, _, password = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        except ValueError:
            return False
        return any(u["name"] == name and u["password"] == password for u in self.state.users.values())

    def _bucket(self, org_id: str, name: str, every_s: int) -> dict[str, Any]:
        bucket = {
            "id": self.state.new_id(),
            "orgID": org_id,
            "name": name,
            "type": "user",
            "retentionRules": [{"type": "expire", "everySeconds": every_s}],
        }
        self.state.buckets[bucket["id"]] = bucket
        return bucket

    def _authorized(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        state = self.state
        segments = path.removeprefix("/api/v2/").split("/")
        resource, item = segments[0], (segments[1] if len(segments) > 1 else "")
        not_found = (404, {"code": "not found", "message": f"{resource} not found"})
        if (method, resource, item) == ("GET", "orgs", ""):
            orgs = [{"id": i, "name": n} for i, n in state.orgs.items() if n == query.get("org", n)]
            return (200, {"orgs": orgs}) if orgs else (404, {"code": "not found", "message": "org not found"})
        if (method, resource, item) == ("POST", "orgs", ""):
            org_id = state.new_id()
            state.orgs[org_id] = body["name"]
            return 201, {"id": org_id, "name": body["name"]}
        if (method, resource, item) == ("GET", "buckets", ""):
            return 200, {"buckets": [b for b in state.buckets.values() if b["orgID"] == query.get("orgID")]}
        if (method, resource, item) == ("POST", "buckets", ""):
            rules = body.get("retentionRules") or [{"everySeconds": 0}]
            return 201, self._bucket(body["orgID"], body["name"], rules[0]["everySeconds"])
        if (method, resource) == ("PATCH", "buckets"):
            if item not in state.buckets:
                return not_found
            state.buckets[item]["retentionRules"] = body["retentionRules"]
            return 200, state.buckets[item]
        if (method, resource, item) == ("GET", "dbrps", ""):
            return 200, {"content": [d for d in state.dbrps.values() if d["orgID"] == query.get("orgID")]}
        if (method, resource, item) == ("POST", "dbrps", ""):
            dbrp = {"id": state.new_id(), "default": False, "virtual": False, **body}
            state.dbrps[dbrp["id"]] = dbrp
            return 201, dbrp
        if (method, resource, item) == ("GET", "users", ""):
            users = [{"id": i, "name": u["name"], "status": "active"} for i, u in state.users.items()]
            return 200, {"users": [u for u in users if u["name"] == query.get("name", u["name"])]}
        if method == "POST" and resource == "users" and segments[2:] == ["password"]:
            if item not in state.users:
                return not_found
            state.users[item]["password"] = body["password"]
            return 204, None
        if (method, resource, item) == ("GET", "authorizations", ""):
            found = [a for a in state.authorizations.values() if a["orgID"] == query.get("orgID", a["orgID"])]
            return 200, {"authorizations": found}
        if (method, resource, item) == ("POST", "authorizations", ""):
            auth = {"id": state.new_id(), "token": "tok-" + state.new_id(), "status": "active", **body}
            state.authorizations[auth["id"]] = auth
            return 201, auth
        if (method, resource) == ("DELETE", "authorizations"):
            return (204, None) if state.authorizations.pop(item, None) else not_found
        return 404, {"code": "not found", "message": f"the fake does not serve {method} {path}"}
