"""Request headers and paths carrying any bytes at all: a 4xx in the API's error shape, never a 5xx.

PEP 3333 hands a header's bytes to the application as a latin-1 string, so every byte value
0-255 reaches the app; these tests build the environ exactly so (the raw-socket version of
the same property, against the real server, is in tests/integration/test_api_clients.py).
"""

from __future__ import annotations

from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.api import make_app
from monitor.api.stores.sqlite import SQLiteStore
from monitor.config import parse
from tests.unit.test_api import NOW_S, Response, call, write_samples
from tests.unit.test_api_errors import assert_error

TOKEN = "header-fuzz-token"
HEADERS = (
    "Authorization",
    "Accept",
    "Accept-Encoding",
    "Host",
    "User-Agent",
    "Content-Type",
    "Content-Length",
    "Cookie",
    "If-None-Match",
    "X-Forwarded-For",
    "X-Anything",
)
PATHS = ("/metrics", "/metrics/aggregate", "/metrics/names", "/health", "/openapi.json")


@pytest.fixture(scope="module", params=["open", "secured"])
def app(request, tmp_path_factory):
    state = tmp_path_factory.mktemp(request.param)
    api = {"token_env": "T"} if request.param == "secured" else {}
    config = parse({"agent": {"state_dir": str(state), "host": "web1"}, "api": api}, environ={"T": TOKEN})
    write_samples(config.sink.path, minutes=5)
    return make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)


def latin1(raw: bytes) -> str:
    return raw.decode("latin-1")


def test_an_authorization_header_that_is_not_utf8_is_a_400_naming_it(tmp_path):
    config = parse({"agent": {"state_dir": str(tmp_path)}, "api": {"token_env": "T"}}, environ={"T": TOKEN})
    app = make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)
    response = call(app, "/metrics", headers={"Authorization": latin1(b"Bearer \xff" + TOKEN.encode())})
    assert "Authorization header is not valid UTF-8" in assert_error(response, 400)["message"]


def test_an_accept_header_that_is_not_utf8_is_a_400_naming_it(tmp_path):
    config = parse({"agent": {"state_dir": str(tmp_path)}}, environ={})
    app = make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)
    response = call(app, "/metrics", headers={"Accept": latin1(b"text/csv;q=\xe9")})
    assert "Accept header is not valid UTF-8" in assert_error(response, 400)["message"]


def test_utf8_beyond_ascii_in_accept_is_read_not_refused(tmp_path):
    config = parse({"agent": {"state_dir": str(tmp_path)}}, environ={})
    app = make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)
    response = call(app, "/metrics", headers={"Accept": latin1("text/csv, é/x;q=0.1".encode())})
    assert response.status == 200 and response.headers["content-type"].startswith("text/csv")


@settings(max_examples=150, deadline=None)
@given(
    path=st.sampled_from(PATHS),
    headers=st.dictionaries(st.sampled_from(HEADERS), st.binary(max_size=48), max_size=4),
)
def test_no_header_bytes_yield_a_server_error(app, path, headers):
    response = call(app, path, headers={k: latin1(v) for k, v in headers.items()})
    assert response.status < 500, response.body
    if response.status >= 400:
        assert_error(response, response.status, response.json()["error"]["parameter"])


def call_raw(app, path: bytes, query: bytes) -> Response:
    """One GET with PATH_INFO and QUERY_STRING holding these exact bytes (as latin-1 strings)."""
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(REQUEST_METHOD="GET", PATH_INFO=latin1(path), QUERY_STRING=latin1(query))
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen.update(status=status, headers=headers)

    body = b"".join(app(environ, start_response))
    return Response(seen["status"], seen["headers"], body)


@settings(max_examples=100, deadline=None)
@given(
    path=st.one_of(st.sampled_from([p.encode() for p in PATHS]), st.binary(max_size=40).map(b"/".__add__)),
    query=st.binary(max_size=40),
)
def test_no_path_or_query_bytes_yield_a_server_error(app, path, query):
    response = call_raw(app, path, query)
    assert response.status < 500, response.body
    if response.status >= 400:
        assert_error(response, response.status, response.json()["error"]["parameter"])
