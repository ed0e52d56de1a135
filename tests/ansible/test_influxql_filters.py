"""The influxdb role's InfluxQL quoting and result helpers (plugins/filter/influxql.py)."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from tests.ansible.helpers import REPO


def load() -> ModuleType:
    path = REPO / "plugins" / "filter" / "influxql.py"
    spec = importlib.util.spec_from_file_location("influxql_filters", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


influxql = load()


def test_identifiers_and_strings_escape_quotes_and_backslashes():
    assert influxql.influxql_ident('my "db"') == '"my \\"db\\""'
    assert influxql.influxql_string("it's \\ here") == "'it\\'s \\\\ here'"


def test_durations_as_written_and_as_shown():
    assert influxql.influxql_duration(30) == "30d"
    assert influxql.influxql_duration(0) == "INF"
    assert influxql.influxql_shown_duration(30) == "720h0m0s"
    assert influxql.influxql_shown_duration(0) == "0s"


def test_rows_turn_series_into_dicts_and_empty_results_into_nothing():
    response = {
        "results": [
            {
                "statement_id": 0,
                "series": [{"columns": ["user", "admin"], "values": [["a", True], ["b", False]]}],
            }
        ]
    }
    assert influxql.influxql_rows(response) == [{"user": "a", "admin": True}, {"user": "b", "admin": False}]
    assert influxql.influxql_rows({"results": [{"statement_id": 0}]}) == []


def test_rows_raise_on_an_error_so_it_is_never_taken_for_empty():
    with pytest.raises(ValueError, match="database not found"):
        influxql.influxql_rows({"results": [{"statement_id": 0, "error": "database not found: x"}]})


def test_filter_module_exposes_every_filter():
    assert set(influxql.FilterModule().filters()) == {
        "influxql_ident",
        "influxql_string",
        "influxql_duration",
        "influxql_shown_duration",
        "influxql_rows",
    }


@pytest.mark.integration
def test_quoted_password_round_trips_through_real_influxdb(influxdb1_auth):
    from tests import servers
    from tests.helpers import ADMIN

    password = "p'a\\ss\"word"
    user = 'odd "user"'
    servers.influx_query(
        influxdb1_auth.url,
        f"CREATE USER {influxql.influxql_ident(user)} WITH PASSWORD {influxql.influxql_string(password)}",
        auth=ADMIN,
    )
    shown = servers.influx_query(influxdb1_auth.url, "SHOW DATABASES", auth=(user, password))
    assert "error" not in shown["results"][0]
