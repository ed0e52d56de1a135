"""InfluxQL quoting and result helpers for the influxdb role's 1.x provisioning.

Statements are sent as text to ``/query``, so every name and password that goes into one is
quoted here, in one place, instead of by ad-hoc ``replace`` chains in YAML.
"""

from __future__ import annotations

from typing import Any


def influxql_ident(name: str) -> str:
    """A double-quoted InfluxQL identifier: ``my "db"`` -> ``"my \\"db\\""``."""
    return '"' + str(name).replace("\\", "\\\\").replace('"', '\\"') + '"'


def influxql_string(value: str) -> str:
    """A single-quoted InfluxQL string literal (passwords): backslash and quote escaped."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def influxql_duration(days: int) -> str:
    """A retention duration for CREATE/ALTER RETENTION POLICY: ``30d``, or ``INF`` for 0."""
    days = int(days)
    return "INF" if days == 0 else f"{days}d"


def influxql_shown_duration(days: int) -> str:
    """The same duration as SHOW RETENTION POLICIES prints it: ``720h0m0s``, or ``0s``."""
    days = int(days)
    return "0s" if days == 0 else f"{days * 24}h0m0s"


def influxql_rows(response: Any, statement: int = 0) -> list[dict[str, Any]]:
    """The rows of one statement's first series as dicts (column -> value); [] when empty.

    Raises ValueError when the statement failed, so a task never mistakes an error for
    "nothing there yet".
    """
    results = (response or {}).get("results") or []
    if len(results) <= statement:
        raise ValueError(f"no result for statement {statement} in {response!r}")
    result = results[statement]
    if "error" in result:
        raise ValueError(f"InfluxQL error: {result['error']}")
    rows: list[dict[str, Any]] = []
    for series in result.get("series") or []:
        columns = series.get("columns") or []
        rows.extend(dict(zip(columns, values, strict=False)) for values in series.get("values") or [])
    return rows


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "influxql_ident": influxql_ident,
            "influxql_string": influxql_string,
            "influxql_duration": influxql_duration,
            "influxql_shown_duration": influxql_shown_duration,
            "influxql_rows": influxql_rows,
        }
