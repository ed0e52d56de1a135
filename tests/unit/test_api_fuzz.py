"""Fuzz the API from its own OpenAPI document (schemathesis, in-process over WSGI).

Proves: no generated input, valid or not, ever yields a 5xx; every response's status,
content type, headers and JSON body match the document; invalid inputs are rejected with a
4xx. ``positive_data_acceptance`` is off: one rule of the API, ``start > end``, relates two
parameters and cannot be written in OpenAPI, so some schema-valid requests are rightly 400.
Bounded (``max-examples``) so the suite stays fast.

The schemas are loaded at import (schemathesis parametrizes at collection time), so the
apps' SQLite files live in a temporary directory that a module fixture fills and removes.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from monitor.api import make_app
from monitor.config import Config, parse
from monitor.stores.sqlite import SQLiteStore
from tests.unit.test_api import NOW_S, write_samples

TOKEN = "fuzz-token"
SETTINGS = {
    "generation": {"max-examples": 25},
    "checks": {"positive_data_acceptance": {"enabled": False}},
}
_WORK = Path(tempfile.mkdtemp(prefix="hostmon-fuzz-"))


def _config(name: str, api: dict[str, str], environ: dict[str, str]) -> Config:
    return parse({"agent": {"state_dir": str(_WORK / name), "host": "web1"}, "api": api}, environ=environ)


OPEN = _config("open", {}, {})
SECURED = _config("secured", {"token_env": "T"}, {"T": TOKEN})


def _schema(config: Config) -> schemathesis.schemas.BaseSchema:
    app = make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=SchemathesisConfig.from_dict(SETTINGS))


schema = _schema(OPEN)
secured = _schema(SECURED)


@pytest.fixture(scope="module", autouse=True)
def samples() -> Iterator[None]:
    for config in (OPEN, SECURED):
        write_samples(config.sink.path, minutes=30)
    yield
    shutil.rmtree(_WORK, ignore_errors=True)


@schema.parametrize()
def test_no_input_yields_a_server_error_and_every_answer_matches_the_document(case):
    case.call_and_validate()


@secured.parametrize()
def test_with_a_bearer_token_the_same_holds(case):
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
