"""The dashboard's files: served from the package at / and /static/, public, never beyond the folder."""

from __future__ import annotations

import re

import pytest

from monitor.api import make_app, page
from monitor.api.stores.sqlite import SQLiteStore
from monitor.config import parse
from tests.unit.test_api import NOW_S, call
from tests.unit.test_api_errors import assert_error

TOKEN = "page-token"


@pytest.fixture
def secured_app(tmp_path):
    config = parse({"agent": {"state_dir": str(tmp_path)}, "api": {"token_env": "T"}}, environ={"T": TOKEN})
    return make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)


def test_the_page_and_its_files_are_public_while_the_data_needs_the_token(secured_app):
    index = call(secured_app, "/")
    assert index.status == 200 and index.headers["content-type"] == "text/html; charset=utf-8"
    assert b"<title>hostmon</title>" in index.body
    assert "script-src 'self'" in index.headers["content-security-policy"]
    assert "connect-src 'self'" in index.headers["content-security-policy"]
    assert index.headers["x-content-type-options"] == "nosniff"
    for ref in re.findall(rb'(?:src|href)="(static/[^"]+)"', index.body):
        asset = call(secured_app, "/" + ref.decode())
        assert asset.status == 200, ref
    assert call(secured_app, "/static/js/main.js").headers["content-type"].startswith("text/javascript")
    assert_error(call(secured_app, "/hosts"), 401)


def test_every_script_the_page_imports_is_in_the_package():
    files = page.static_files()
    for name, file in files.items():
        if name.endswith(".js") and not name.startswith("vendor/"):
            for imported in re.findall(rb'from "\./([^"]+)"', file.body):
                assert f"js/{imported.decode()}" in files, (name, imported)
    assert "vendor/uPlot-1.6.32.iife.min.js" in files and "VENDORED.md" in files


def test_an_etag_that_matches_is_a_304_without_a_body(secured_app):
    first = call(secured_app, "/static/dashboard.css")
    again = call(secured_app, "/static/dashboard.css", headers={"If-None-Match": first.headers["etag"]})
    assert again.status == 304 and again.body == b"" and again.headers["etag"] == first.headers["etag"]
    other = call(secured_app, "/static/dashboard.css", headers={"If-None-Match": '"something-else"'})
    assert other.status == 200 and other.body == first.body


@pytest.mark.parametrize(
    "path",
    [
        "/static/../page.py",
        "/static/%2e%2e/page.py",
        "/static/__init__.py",
        "/static//etc/passwd",
        "/static/vendor/uPlot-LICENSE",  # no suffix: in the package (the licence), not served
        "/static/missing.js",
        "/static/",
    ],
)
def test_names_outside_the_served_files_are_404_in_the_api_shape(secured_app, path):
    assert_error(call(secured_app, path), 404)


def test_a_query_string_on_the_page_is_ignored(secured_app):
    assert call(secured_app, "/?from=bookmark").body == call(secured_app, "/").body
