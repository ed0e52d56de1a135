"""The OpenAPI document is valid OpenAPI 3 and documents exactly the parameters the API takes."""

from __future__ import annotations

import pytest
from openapi_spec_validator import validate

from monitor.api.openapi import document
from monitor.api.params import AGGREGATE_KEYS, METRICS_KEYS
from monitor.config import ApiConfig


@pytest.mark.parametrize("config", [ApiConfig(), ApiConfig(token="t", max_points=500, max_window_minutes=60)])
def test_the_document_is_valid_openapi_3(config):
    validate(document(config))


def params(doc, path):
    return {p["name"]: p for p in doc["paths"][path]["get"].get("parameters", [])}


def test_documented_parameters_are_exactly_the_accepted_ones():
    doc = document(ApiConfig())
    assert set(params(doc, "/metrics")) == METRICS_KEYS
    assert set(params(doc, "/metrics/aggregate")) == AGGREGATE_KEYS
    for path in ("/metrics/names", "/health", "/openapi.json"):
        assert params(doc, path) == {}


def test_limits_in_the_document_follow_the_configuration():
    doc = document(ApiConfig(max_points=500, max_window_minutes=60))
    metrics = params(doc, "/metrics")
    assert metrics["max_points"]["schema"]["maximum"] == 500
    assert metrics["max_points"]["schema"]["default"] == 500
    assert metrics["step"]["schema"]["maximum"] == 3600
    assert "at most 60 minutes" in metrics["end"]["description"]


def test_without_a_token_no_security_is_declared_and_no_401_documented():
    doc = document(ApiConfig())
    assert "security" not in doc
    assert "401" not in doc["paths"]["/metrics"]["get"]["responses"]
    assert "401" in document(ApiConfig(token="t"))["paths"]["/metrics"]["get"]["responses"]


def test_the_health_rules_are_documented():
    description = document(ApiConfig())["info"]["description"]
    assert "max(300 s, 3 * `agent.interval_s`)" in description
    assert "503" in description
