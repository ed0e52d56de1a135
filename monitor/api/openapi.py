"""The API's OpenAPI 3 document, built from the running configuration (limits, auth).

Served at ``GET /openapi.json``; the test suite fuzzes the API from it (schemathesis) and
checks every response against it, so the document and the behaviour cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from monitor import __version__
from monitor.api.params import (
    ALERTS_DEFAULT_LIMIT,
    ALERTS_MAX_LIMIT,
    DEFAULT_END_MINUTES,
    DEFAULT_START_MINUTES,
    MAX_HOST_CHARS,
    MAX_LOOKBACK_MINUTES,
    MAX_TAG_CHARS,
)
from monitor.api.stores import AGGREGATES
from monitor.catalog import FAMILIES, METRICS, TAG_KEY, Family
from monitor.config import ApiConfig

_METRIC = "(" + "|".join(m.name for m in METRICS) + "|cpu_usage_[1-9][0-9]{0,3})"
NUMBER_OR_NULL = {"type": "number", "nullable": True}
STRING_OR_NULL = {"type": "string", "nullable": True}

DESCRIPTION = """\
Read back what the hostmon agent collected: CPU, memory, disk and network totals, load and
swap per host, and filesystem space per mount, disk I/O per device and traffic per network
interface. `/metrics/names` lists every metric the store holds with its family, unit and tag
values.

**Families and tags.** Each metric belongs to one family: `host` (one series per host), or
`filesystem`, `disk`, `network` (one series per host and `mount`, `device` or `interface`). The
metrics of one request are of one family (`metrics=cpu_usage_overall,filesystem_used_percent`
is a 400 naming `metrics`). A tagged family's series are filtered exactly by the tag key as a
query parameter (`metrics=filesystem_used_percent&mount=/`); a tag parameter the asked metrics'
family does not have is a 400 naming it. Without `metrics=`, `/metrics` answers the host
family's metrics, as before tagged families existed.

Times are **minutes back from now**, decimals allowed, as in `start=10&end=2` (from ten to two
minutes ago). Omitted, `start` is 10 and `end` is 0: the last ten minutes. Windows are half-open
(`start <= t < end`) and at most `api.max_window_minutes` long.

Every error, whatever the endpoint or status, has one shape: `{"error": {"status", "title",
"parameter", "message"}}`; `parameter` names the query parameter at fault (or is null).
Unknown or repeated query parameters are errors. A database that is down or slower than
`api.query_timeout_s` gives 503 with the reason; a database that answers with an error, 502.

**Health** (`/health`) is 200 when every rule holds and 503 otherwise, listing the broken rules
in `problems`: (1) the store answers a query within `api.query_timeout_s` (an embedded SQLite
file or InfluxDB database that nothing has written yet counts as reachable and empty); and, when an agent
spool exists beside the API, (2) the agent's last write reached the database, or its last
successful write is younger than the grace period, max(300 s, 3 * `agent.interval_s`), and
(3) the agent's heartbeat is younger than the same grace period.
"""

AGGREGATE_DESCRIPTION = """\
With `host=`, the aggregate of that host's samples. Without it, **every host's samples are pooled**
into one value: `count` is the number of samples of all hosts together, `mean` the mean of all of
them (not the mean of per-host means; a host sampled more often weighs more), `min`/`max` the
extreme sample of any host and `last` the newest sample of any host (on a timestamp tie the larger
value). `hosts` says how many hosts went in, `pooled` whether that was more than one, and for
`min`, `max` and `last`, `value_host` names the host the value came from. Ask per host with
`host=` (the names are in the `series` of `/metrics`).

For a tagged metric (`filesystem_used_percent`), the tag filter (`mount=/`) picks one series per
host; without it every mount's series is pooled, and for `min`, `max` and `last` `value_tags`
names the series the value came from (`{"mount": "/var"}`).
"""


def _param(name: str, description: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "description": description, "schema": schema}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_STEP_S = "How far the wall clock moved: positive forward, negative back."
_AT = "The wall-clock time right after the step."


def _described(kind: str, description: str) -> dict[str, str]:
    return {"type": kind, "description": description}


def _object(properties: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
    }


def _window_params(config: ApiConfig) -> list[dict[str, Any]]:
    limit = {"type": "number", "minimum": 0, "maximum": MAX_LOOKBACK_MINUTES}
    return [
        _param(
            "start",
            f"Window start in minutes back from now; greater than `end`. Default {DEFAULT_START_MINUTES:g}.",
            {**limit, "default": DEFAULT_START_MINUTES},
        ),
        _param(
            "end",
            f"Window end in minutes back from now (0 = now). Default {DEFAULT_END_MINUTES:g}. "
            f"`start - end` is at most {config.max_window_minutes:g} minutes.",
            {**limit, "default": DEFAULT_END_MINUTES},
        ),
        _param(
            "host",
            "Only this host (exact match). Default: every host.",
            {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_HOST_CHARS,
                "pattern": "^[^\\x00-\\x1f\\x7f]+$",
            },
        ),
    ]


def _tag_params(families: tuple[Family, ...] = FAMILIES) -> list[dict[str, Any]]:
    """One exact-match filter per tag key (``mount``, ``device``, ``interface``)."""
    out = []
    for family in families:
        key = TAG_KEY[family]
        if key is None:
            continue
        out.append(
            _param(
                key,
                f"Only the series of this {key} (exact match); for metrics of the `{family}` family only "
                f"(otherwise a 400 naming `{key}`). Default: every {key}.",
                {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_TAG_CHARS,
                    "pattern": "^[^\\x00-\\x1f\\x7f]+$",
                },
            )
        )
    return out


def _schemas() -> dict[str, Any]:
    window = _object(
        {
            "start": {"type": "string", "format": "date-time"},
            "end": {"type": "string", "format": "date-time"},
            "start_ms": {"type": "integer"},
            "end_ms": {"type": "integer"},
            "start_minutes": {"type": "number"},
            "end_minutes": {"type": "number"},
        }
    )
    point = {
        "type": "object",
        "description": "One timestamp of one host: `time`, `ts_ms` and one key per requested metric "
        "(null where that metric has no value at that time).",
        "properties": {"time": {"type": "string", "format": "date-time"}, "ts_ms": {"type": "integer"}},
        "required": ["time", "ts_ms"],
        "additionalProperties": NUMBER_OR_NULL,
    }
    tags = {
        "type": "object",
        "description": 'The series\' tags besides host (`{"mount": "/"}`); `{}` for the host family.',
        "additionalProperties": {"type": "string"},
    }
    series = _object({"host": {"type": "string"}, "tags": tags, "points": {"type": "array", "items": point}})
    error = _object(
        {
            "error": _object(
                {
                    "status": {"type": "integer"},
                    "title": {"type": "string"},
                    "parameter": STRING_OR_NULL,
                    "message": {"type": "string"},
                }
            )
        }
    )
    metrics = _object(
        {
            "window": _ref("Window"),
            "host": STRING_OR_NULL,
            "metrics": {"type": "array", "items": {"type": "string"}},
            "step_s": {**NUMBER_OR_NULL, "description": "Bucket width in seconds; null when raw."},
            "downsampled": {"type": "boolean"},
            "downsample_reason": STRING_OR_NULL,
            "raw_samples": {"type": "integer", "description": "Raw points in the window."},
            "points": {"type": "integer", "description": "Points returned, at most max_points."},
            "max_points": {"type": "integer"},
            "series": {"type": "array", "items": _ref("Series")},
        }
    )
    aggregate = _object(
        {
            "metric": {"type": "string"},
            "fn": {"type": "string", "enum": list(AGGREGATES)},
            "host": STRING_OR_NULL,
            "tags": {**tags, "description": "The tag filters asked for (`{}`: every series pooled)."},
            "window": _ref("Window"),
            "value": {**NUMBER_OR_NULL, "description": "Null when the window holds no sample (see reason)."},
            "samples": {
                "type": "integer",
                "description": "Samples that went into value (every pooled host's).",
            },
            "hosts": {"type": "integer", "description": "Hosts whose samples went into value."},
            "pooled": {
                "type": "boolean",
                "description": "True when samples of more than one host were pooled.",
            },
            "value_host": {
                **STRING_OR_NULL,
                "description": "For min, max and last: the host of the sample picked; null for mean, count.",
            },
            "value_tags": {
                **tags,
                "nullable": True,
                "description": "For min, max and last: the tags of the series picked (`{}` for the host "
                "family); null for mean, count.",
            },
            "reason": STRING_OR_NULL,
        }
    )
    detail = _object(
        {
            "name": {"type": "string"},
            "family": {"type": "string", "enum": list(FAMILIES)},
            "unit": {"type": "string", "description": "`percent`, `bytes`, `bytes/s`, `1/s` or `load`."},
            "description": {"type": "string"},
            "tag_key": {**STRING_OR_NULL, "description": "The family's tag key; null for the host family."},
            "tags": {
                "type": "object",
                "description": "Tag key to the sorted values the store holds (`{}` for the host family).",
                "additionalProperties": {"type": "array", "items": {"type": "string"}},
            },
        }
    )
    names = _object(
        {
            "metrics": {"type": "array", "items": {"type": "string"}},
            "store": {"type": "string"},
            "details": {"type": "array", "items": detail},
        }
    )
    agent = {
        **_object(
            {
                "spool_depth": {"type": "integer"},
                "oldest_unsent": STRING_OR_NULL,
                "last_success": STRING_OR_NULL,
                "last_success_age_s": NUMBER_OR_NULL,
                "heartbeat_age_s": NUMBER_OR_NULL,
                "sink_reachable": {"type": "boolean", "nullable": True},
                "last_error": {"type": "string"},
                "dropped_total": {"type": "integer"},
                "spilled_total": {"type": "integer"},
                "rejected_total": {"type": "integer"},
                "last_clock_step": {
                    **_object({"step_s": _described("number", _STEP_S), "at": _described("string", _AT)}),
                    "nullable": True,
                    "description": "The last wall-clock step the agent saw (null: none). Sampling goes on"
                    " across a step; it is informational, never a health problem.",
                },
            }
        ),
        "nullable": True,
    }
    store = _object(
        {
            "kind": {"type": "string"},
            "name": {"type": "string"},
            "reachable": {"type": "boolean"},
            "detail": {"type": "string"},
        }
    )
    health = _object(
        {
            "status": {"type": "string", "enum": ["ok", "unhealthy"]},
            "time": {"type": "string", "format": "date-time"},
            "problems": {"type": "array", "items": {"type": "string"}},
            "store": store,
            "agent": agent,
            "error": error["properties"]["error"],
        },
        required=["status", "time", "problems", "store", "agent"],
    )
    return {
        "Window": window,
        "Series": series,
        "Error": error,
        "Metrics": metrics,
        "Aggregate": aggregate,
        "Names": names,
        "Health": health,
        **_fleet_schemas(tags),
    }


FLEET_DESCRIPTION = """\
`status` is `silent` when the host's newest sample is older than `silent_after_s`
(`api.silent_after_s`; default the largest of 30 s, 3 * `agent.interval_s` and
2 * (`agent.interval_s` + `shipper.flush_interval_s`)), else `alerting` when a rule
fires for the host in the alert log, else `ok`. `now` holds the host's newest CPU and memory
values and its fullest filesystem, read within `silent_after_s` before its newest sample (for a
silent host: its last known values); null where the store has none.
"""

ALERTS_DESCRIPTION = """\
Read from the alert log (`alerts.log_path`) and its rotated files; a missing log is empty lists.
`firing`: every (rule, host, tags) whose last event is a fire, with the time of the fire that
started it (`since`). `history`: the newest `limit` events, newest first. The API's own rule
`host_silent` fires once when a host's newest sample has not advanced for `api.silent_after_s`
(its `value`: the silence in seconds) and resolves once when samples come back.
"""


def _fleet_schemas(tags: dict[str, Any]) -> dict[str, Any]:
    now = _object(
        {
            "cpu_usage_overall": NUMBER_OR_NULL,
            "memory_usage": NUMBER_OR_NULL,
            "filesystem_used_percent": NUMBER_OR_NULL,
            "filesystem_mount": STRING_OR_NULL,
        }
    )
    host_seen = _object(
        {
            "host": {"type": "string"},
            "last_sample": {"type": "string", "format": "date-time"},
            "last_sample_ms": {"type": "integer"},
            "age_s": _described("number", "Seconds from the newest sample to the API's clock."),
            "status": {"type": "string", "enum": ["ok", "alerting", "silent"]},
            "silent_after_s": {"type": "number"},
            "firing": {"type": "array", "items": {"type": "string"}},
            "now": now,
        }
    )
    hosts = _object(
        {
            "store": {"type": "string"},
            "time": {"type": "string", "format": "date-time"},
            "silent_after_s": {"type": "number"},
            "hosts": {"type": "array", "items": host_seen},
        }
    )
    common = {
        "rule": {"type": "string"},
        "host": {"type": "string"},
        "tags": tags,
        "value": NUMBER_OR_NULL,
        "message": {"type": "string"},
    }
    fire = _object(
        {**common, "since": {"type": "string", "format": "date-time"}, "since_ms": {"type": "integer"}}
    )
    event = _object(
        {
            "time": {"type": "string", "format": "date-time"},
            "time_ms": {"type": "integer"},
            "state": {"type": "string", "enum": ["fire", "resolve"]},
            **common,
        }
    )
    alerts = _object(
        {
            "time": {"type": "string", "format": "date-time"},
            "firing": {"type": "array", "items": fire},
            "history": {"type": "array", "items": event},
        }
    )
    return {"Hosts": hosts, "Alerts": alerts}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "A bad parameter (named in error.parameter).",
        401: "Missing or wrong bearer token.",
        502: "The database answered the query with an error.",
        503: "The database is unreachable or did not answer within api.query_timeout_s.",
    }
    return {str(code): _json(_ref("Error"), text[code]) for code in codes}


def document(config: ApiConfig) -> dict[str, Any]:
    """The OpenAPI 3.0 document for an API running with CONFIG."""
    auth = (401,) if config.token else ()
    header_names = {
        "X-Hostmon-Raw-Samples": ("integer", "Raw points in the window."),
        "X-Hostmon-Points": ("integer", "Points returned."),
        "X-Hostmon-Step-S": ("string", "Bucket width in seconds, or `raw`."),
        "X-Hostmon-Downsampled": ("string", "`true` or `false`."),
    }
    headers = {k: {"description": d, "schema": {"type": t}} for k, (t, d) in header_names.items()}
    metrics_ok = {
        "description": "Points per host. With `Accept: text/csv` or `format=csv`: CSV with a header row "
        "`host,time,ts_ms,<metric>...` (a tagged family: `host,<tag key>,time,ts_ms,<metric>...`) and "
        "the same metadata in X-Hostmon-* headers.",
        "headers": headers,
        "content": {
            "application/json": {"schema": _ref("Metrics")},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
    metric_pattern = f"^{_METRIC}$"
    metrics_params = [
        *_window_params(config),
        _param(
            "metrics",
            "Comma-separated metric names, all of one family. Default: every host-family metric the store "
            "holds.",
            {"type": "string", "pattern": f"^{_METRIC}(,{_METRIC})*$"},
        ),
        _param(
            "step",
            "Mean per bucket of this many seconds (buckets aligned to the epoch). Raised automatically "
            "(and said so) when the buckets would exceed max_points. Default: raw samples.",
            {"type": "number", "minimum": 0.001, "maximum": config.max_window_minutes * 60},
        ),
        _param(
            "max_points",
            f"Cap on returned points (a point: one timestamp of one host). Beyond it the answer is "
            f"downsampled, never truncated. Default and maximum {config.max_points} (api.max_points).",
            {"type": "integer", "minimum": 1, "maximum": config.max_points, "default": config.max_points},
        ),
        _param(
            "format",
            "`csv` or `json`; overrides the Accept header.",
            {"type": "string", "enum": ["json", "csv"]},
        ),
        *_tag_params(),
    ]
    aggregate_params = [
        *_window_params(config),
        _param(
            "metric", "The metric to aggregate.", {"type": "string", "pattern": metric_pattern}, required=True
        ),
        _param(
            "fn",
            "Aggregate function. Default mean.",
            {"type": "string", "enum": list(AGGREGATES), "default": "mean"},
        ),
        *_tag_params(),
    ]
    paths: dict[str, Any] = {
        "/metrics": {
            "get": {
                "summary": "Samples in a window, per host, capped at max_points (downsampled beyond it)",
                "operationId": "getMetrics",
                "parameters": metrics_params,
                "responses": {"200": metrics_ok, **_errors(400, *auth, 502, 503)},
            }
        },
        "/metrics/aggregate": {
            "get": {
                "summary": "One aggregate (mean, min, max, last, count) of one metric over a window",
                "description": AGGREGATE_DESCRIPTION,
                "operationId": "getAggregate",
                "parameters": aggregate_params,
                "responses": {
                    "200": _json(_ref("Aggregate"), "The aggregate."),
                    **_errors(400, *auth, 502, 503),
                },
            }
        },
        "/metrics/names": {
            "get": {
                "summary": "Every metric the store holds: family, unit, tag key and tag values",
                "operationId": "getMetricNames",
                "responses": {"200": _json(_ref("Names"), "Metric names."), **_errors(400, *auth, 502, 503)},
            }
        },
        "/hosts": {
            "get": {
                "summary": "Every host the store holds: its newest sample, status and newest values",
                "description": FLEET_DESCRIPTION,
                "operationId": "getHosts",
                "responses": {
                    "200": _json(_ref("Hosts"), "Hosts in name order."),
                    **_errors(400, *auth, 502, 503),
                },
            }
        },
        "/alerts": {
            "get": {
                "summary": "The alerts firing now and the recent alert history",
                "description": ALERTS_DESCRIPTION,
                "operationId": "getAlerts",
                "parameters": [
                    _param(
                        "limit",
                        f"History events to return, newest first. Default {ALERTS_DEFAULT_LIMIT}.",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": ALERTS_MAX_LIMIT,
                            "default": ALERTS_DEFAULT_LIMIT,
                        },
                    )
                ],
                "responses": {"200": _json(_ref("Alerts"), "Alerts."), **_errors(400, *auth)},
            }
        },
        "/health": {
            "get": {
                "summary": "Liveness, the store's reachability and the agent's spool state",
                "operationId": "getHealth",
                "responses": {
                    "200": _json(_ref("Health"), "Healthy."),
                    "503": _json(_ref("Health"), "Unhealthy: see problems (and error)."),
                    **_errors(400, *auth),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "getOpenApi",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3 document.",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    **_errors(400),
                },
            }
        },
    }
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "hostmon API", "version": __version__, "description": DESCRIPTION},
        "paths": paths,
        "components": {"schemas": _schemas()},
    }
    if config.token:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        doc["security"] = [{"bearer": []}]
    return doc
