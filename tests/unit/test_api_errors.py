"""One JSON error shape for every error path: bad parameters, auth, routing, the store, bugs."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from monitor.api import make_app
from monitor.api.stores import Aggregate, HostSeen, MetricInfo, Query, Series, Tags
from monitor.api.stores.sqlite import SQLiteStore
from monitor.config import parse
from monitor.errors import QueryFailed, StoreUnavailable
from tests.unit.test_api import NOW_S, call, make_config, write_samples

TOKEN = "s3cret-token-value"


def assert_error(response: Any, status: int, parameter: str | None = None) -> dict[str, Any]:
    """The error shape: {"error": {"status", "title", "parameter", "message"}} and nothing else."""
    assert response.status == status
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"status", "title", "parameter", "message"}
    assert error["status"] == status
    assert error["parameter"] == parameter
    assert isinstance(error["title"], str) and error["title"]
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.fixture
def app(tmp_path):
    config = make_config(tmp_path)
    write_samples(config.sink.path, minutes=5)
    return make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)


BAD = [
    ("/metrics?start=abc", "start", "expected a number"),
    ("/metrics?start=-5", "start", "must not be negative"),
    ("/metrics?start=nan", "start", "expected a number"),
    ("/metrics?start=inf", "start", "expected a number"),
    ("/metrics?start=1e999", "start", "finite"),
    ("/metrics?start=", "start", "expected a number"),
    ("/metrics?start=1&end=2", "start", "greater than end"),
    ("/metrics?start=5&end=5", "start", "greater than end"),
    ("/metrics?start=50000", "start", "longer than the maximum of 44640 minutes"),
    ("/metrics?start=99999999999&end=99999999990", "start", "at most"),
    ("/metrics?start=0.000001", "start", "shorter than one millisecond"),
    ("/metrics?end=x", "end", "expected a number"),
    ("/metrics?metrics=foo", "metrics", "unknown metric 'foo'"),
    ("/metrics?metrics=cpu_usage_overall,", "metrics", "unknown metric ''"),
    ('/metrics?metrics=cpu_usage_overall"; DROP MEASUREMENT system', "metrics", "unknown metric"),
    ("/metrics?metrics=cpu_usage_0", "metrics", "unknown metric"),
    ("/metrics?step=0", "step", "at least 0.001"),
    ("/metrics?step=-1", "step", "must not be negative"),
    ("/metrics?step=ten", "step", "expected a number"),
    ("/metrics?step=99999999", "step", "at most"),
    ("/metrics?max_points=0", "max_points", "must be 1 to 10000"),
    ("/metrics?max_points=10001", "max_points", "must be 1 to 10000"),
    ("/metrics?max_points=1.5", "max_points", "whole number"),
    ("/metrics?max_points=1", "max_points", "too small to downsample"),
    ("/metrics?format=xml", "format", "expected one of json, csv"),
    ("/metrics?strat=10", "strat", "unknown query parameter"),
    ("/metrics?start=1&start=2", "start", "given more than once"),
    ("/metrics?host=", "host", "printable"),
    ("/metrics?host=a%0Ab", "host", "printable"),
    ("/metrics?host=" + "x" * 256, "host", "printable"),
    ("/metrics/aggregate", "metric", "required"),
    ("/metrics/aggregate?metric=bogus", "metric", "unknown metric 'bogus'"),
    (
        "/metrics/aggregate?metric=cpu_usage_overall&fn=median",
        "fn",
        "expected one of mean, min, max, last, count",
    ),
    ("/metrics/aggregate?metric=cpu_usage_overall&step=10", "step", "unknown query parameter"),
    ("/metrics/names?host=a", "host", "unknown query parameter"),
    ("/health?verbose=1", "verbose", "unknown query parameter"),
]


@pytest.mark.parametrize(("target", "parameter", "message"), BAD)
def test_every_bad_parameter_is_a_400_naming_it(app, target, parameter, message):
    error = assert_error(call(app, target), 400, parameter)
    assert message in error["message"]


def test_a_query_string_that_is_not_utf8_is_a_400(app):
    assert_error(call(app, "/metrics?host=%ff%fe"), 400)


def test_unknown_path_is_a_json_404(app):
    error = assert_error(call(app, "/metrics/everything"), 404)
    assert "/metrics/everything" in error["message"]


def test_wrong_method_is_a_json_405_with_allow(app):
    response = call(app, "/metrics", method="POST")
    assert_error(response, 405)
    assert "GET" in response.headers["allow"]


class FailingStore:
    """A Store whose every call raises ERROR (the store seam, not a database stand-in)."""

    kind = "sqlite"
    name = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def names(self) -> list[str]:
        raise self.error

    def describe(self) -> list[MetricInfo]:
        raise self.error

    def hosts(self) -> list[HostSeen]:
        raise self.error

    def counts(self, query: Query) -> dict[tuple[str, Tags], int]:
        raise self.error

    def rows(self, query: Query, step_ms: int | None = None) -> list[Series]:
        raise self.error

    def aggregate(
        self, metric: str, fn: str, start_ms: int, end_ms: int, host: str | None, *, tags: Tags = ()
    ) -> Aggregate:
        raise self.error

    def ping(self) -> str:
        raise self.error

    def close(self) -> None:
        pass


ENDPOINTS = ["/metrics?start=10&end=2", "/metrics/aggregate?metric=cpu_usage_overall", "/metrics/names"]


@pytest.mark.parametrize("target", ENDPOINTS)
def test_store_unavailable_is_a_503_with_the_reason(tmp_path, target):
    app = make_app(make_config(tmp_path), FailingStore(StoreUnavailable("db:8086", "connection refused")))
    error = assert_error(call(app, target), 503)
    assert "connection refused" in error["message"]


@pytest.mark.parametrize("target", ENDPOINTS)
def test_store_query_error_is_a_502_with_the_reason(tmp_path, target):
    app = make_app(make_config(tmp_path), FailingStore(QueryFailed("db", "error parsing query")))
    error = assert_error(call(app, target), 502)
    assert "error parsing query" in error["message"]


@pytest.mark.parametrize("target", ENDPOINTS)
def test_a_bug_is_a_json_500_logged_with_its_traceback(tmp_path, caplog, target):
    app = make_app(make_config(tmp_path), FailingStore(ZeroDivisionError("oops")))
    with caplog.at_level(logging.ERROR, logger="monitor.api"):
        error = assert_error(call(app, target), 500)
    assert "bug" in error["message"] and "oops" not in error["message"]
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)


# -- bearer token --------------------------------------------------------------------------


@pytest.fixture
def secured(tmp_path):
    config = parse(
        {"agent": {"state_dir": str(tmp_path), "host": "web1"}, "api": {"token_env": "API_TOKEN"}},
        environ={"API_TOKEN": TOKEN},
    )
    write_samples(config.sink.path, minutes=5)
    return make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)


@pytest.mark.parametrize(
    "target", ["/metrics", "/metrics/aggregate?metric=disk_read", "/metrics/names", "/health"]
)
@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer"])
def test_without_the_right_bearer_token_every_endpoint_is_a_401(secured, target, header):
    response = call(secured, target, headers={"Authorization": header} if header else {})
    error = assert_error(response, 401)
    assert TOKEN not in error["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "target", ["/metrics", "/metrics/aggregate?metric=disk_read", "/metrics/names", "/health"]
)
def test_with_the_bearer_token_every_endpoint_answers(secured, target):
    assert call(secured, target, headers={"Authorization": f"Bearer {TOKEN}"}).status == 200


def test_the_openapi_document_is_public_and_declares_the_bearer_scheme(secured):
    doc = call(secured, "/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearer": []}]


def test_a_bad_parameter_without_a_token_is_still_a_401_not_a_400(secured):
    assert_error(call(secured, "/metrics?start=abc"), 401)


def test_the_token_never_appears_in_logs(secured, caplog):
    with caplog.at_level(logging.DEBUG):
        call(secured, "/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        call(secured, "/metrics", headers={"Authorization": f"Bearer {TOKEN}-wrong"})
    assert caplog.records  # the request log lines were written ...
    assert all(TOKEN not in r.getMessage() for r in caplog.records)  # ... without the token
