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
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from monitor.api import make_app
from monitor.api.stores.sqlite import SQLiteStore
from monitor.config import Config, parse
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


def _schema(config: Config, **settings: object) -> schemathesis.schemas.BaseSchema:
    app = make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)
    fuzz_config = SchemathesisConfig.from_dict({**SETTINGS, **settings})
    return schemathesis.openapi.from_wsgi("/openapi.json", app, config=fuzz_config)


schema = _schema(OPEN)
# The token goes through schemathesis' OpenAPI-aware auth, so its negative cases (no or a
# wrong Authorization header) really go out without it and must be refused.
secured = _schema(SECURED, auth={"openapi": {"bearer": {"bearer": TOKEN}}})


@pytest.fixture(scope="module", autouse=True)
def samples() -> Iterator[None]:
    for config in (OPEN, SECURED):
        write_samples(config.sink.path, minutes=30)
    yield
    shutil.rmtree(_WORK, ignore_errors=True)


SEEN: dict[str, Counter[int]] = {"open": Counter(), "secured": Counter()}  # status codes answered
FUZZED: dict[str, set[str]] = {"open": set(), "secured": set()}  # operations fuzzed, e.g. "GET /metrics"


def _call(label: str, case: schemathesis.Case) -> None:
    FUZZED[label].add(case.operation.label)
    SEEN[label][case.call_and_validate().status_code] += 1


@schema.parametrize()
def test_no_input_yields_a_server_error_and_every_answer_matches_the_document(case):
    _call("open", case)


@secured.parametrize()
def test_with_a_bearer_token_the_same_holds(case):
    _call("secured", case)


def test_the_fuzzing_reached_answers_and_refusals_not_just_one_kind():
    """Guards the two tests above (defined before it, so run before it) against going vacuous.

    It needs them to have fuzzed every operation of both documents first: selected without
    them (``-k``), it fails and says so instead of passing on nothing.
    """
    for label, fuzzed in (("open", schema), ("secured", secured)):
        operations = {result.ok().label for result in fuzzed.get_all_operations()}
        missing = sorted(operations - FUZZED[label])
        assert not missing, f"the {label} fuzz test did not run for {missing}: select this module whole"
    assert {200, 400} <= set(SEEN["open"]), SEEN
    assert {200, 400, 401} <= set(SEEN["secured"]), SEEN
    assert not [code for counts in SEEN.values() for code in counts if code >= 500], SEEN
