"""What the API's endpoints answer: downsampling decisions, response bodies, health rules.

Pure functions of the store's results and the clock, so the HTTP layer (monitor/api/app.py)
stays a thin shell and these rules are tested without a server.
"""

from __future__ import annotations

import csv
import functools
import io
import math
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

import orjson

from monitor import catalog
from monitor.api.cache import BoundedCache
from monitor.api.params import Window
from monitor.api.stores import Aggregate, Aggregation, ColumnRows, MetricInfo, Row, Series, Store, Tags
from monitor.errors import ApiError, StoreError
from monitor.formats import DAY_MS, iso_ms, iso_ms_each
from monitor.status import SpoolStatus

# Bucket widths the API picks when it must downsample: round numbers a person can read.
NICE_STEPS_MS = (
    *(1, 2, 5, 10, 20, 50, 100, 200, 500),
    *(1_000, 2_000, 5_000, 10_000, 15_000, 30_000),
    *(60_000, 120_000, 300_000, 600_000, 900_000, 1_800_000),
    *(3_600_000, 7_200_000, 10_800_000, 21_600_000, 43_200_000, 86_400_000),
)
HEALTH_GRACE_MIN_S = 300.0


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def max_buckets(window_ms: int, step_ms: int) -> int:
    """Most epoch-aligned buckets a window can touch (a partial one at each end)."""
    return -(-window_ms // step_ms) + 1


def choose_step(
    requested_ms: int | None, raw_points: int, hosts: int, window_ms: int, max_points: int
) -> tuple[int | None, str | None]:
    """(step in ms or None for raw, why the answer is downsampled) so points <= MAX_POINTS."""
    hosts = max(hosts, 1)
    if requested_ms is None and raw_points <= max_points:
        return None, None
    if requested_ms is not None and (
        raw_points <= max_points or hosts * max_buckets(window_ms, requested_ms) <= max_points
    ):
        return requested_ms, "step requested"
    per_host = max_points // hosts
    if per_host < 2:
        raise ApiError(
            400,
            f"max_points: {max_points} is too small to downsample {hosts} hosts' data "
            f"(at least 2 points per host); raise it or filter with host=",
            "max_points",
        )
    least = max(-(-window_ms // (per_host - 1)), requested_ms or 1)
    step = next((s for s in NICE_STEPS_MS if s >= least), -(-least // DAY_MS) * DAY_MS)
    if requested_ms is None:
        reason = f"{raw_points} raw points exceed max_points={max_points}"
    else:
        reason = f"step={requested_ms / 1000:g}s would exceed max_points={max_points}"
    return step, reason


def window_body(window: Window) -> dict[str, Any]:
    return {
        "start": iso_ms(window.start_ms),
        "end": iso_ms(window.end_ms),
        "start_ms": window.start_ms,
        "end_ms": window.end_ms,
        "start_minutes": window.start_minutes,
        "end_minutes": window.end_minutes,
    }


def metrics_body(
    window: Window,
    host: str | None,
    metrics: Sequence[str],
    series: Sequence[Series],
    *,
    step_ms: int | None,
    reason: str | None,
    raw_points: int,
    max_points: int,
) -> dict[str, Any]:
    """The /metrics answer; ``series`` holds the stores' Series as they are (their rows are
    not copied into per-point objects): :func:`metrics_json` and :func:`metrics_csv` render it."""
    return {
        "window": window_body(window),
        "host": host,
        "metrics": list(metrics),
        "step_s": None if step_ms is None else step_ms / 1000,
        "downsampled": step_ms is not None,
        "downsample_reason": reason,
        "raw_samples": raw_points,
        "points": sum(len(s.rows) for s in series),
        "max_points": max_points,
        "series": list(series),
    }


def metrics_json(body: dict[str, Any]) -> bytes:
    """:func:`metrics_body` as compact JSON: each series ``{"host", "tags", "points"}``, each
    point ``{"time", "ts_ms", <metric>...}`` (null where a metric has no value). orjson writes
    it: a 24-hour answer is over 100 000 floats, which it turns into text about ten times as
    fast as ``json`` (the same numbers; an exponent is written ``1e-7``, not ``1e-07``)."""
    keys = ("time", "ts_ms", *body["metrics"])
    series = [{"host": s.host, "tags": dict(s.tags), "points": _points(keys, s.rows)} for s in body["series"]]
    return orjson.dumps({**body, "series": series})


def _points(keys: tuple[str, ...], rows: Sequence[Row]) -> list[dict[str, Any]] | orjson.Fragment:
    """One dict per row (rows held as columns are read column by column, not made into rows;
    their segments are written once and kept: :data:`RENDERED`)."""
    if isinstance(rows, ColumnRows):
        if rows.segments:
            return _segmented(keys, rows)
        return _column_points(keys, rows, 0, len(rows))
    return [
        dict(zip(keys, (text, ts_ms, *row), strict=True))
        for text, (ts_ms, row) in zip(iso_ms_each([ts for ts, _ in rows]), rows, strict=True)
    ]


def _column_points(keys: tuple[str, ...], rows: ColumnRows, start: int, end: int) -> list[dict[str, Any]]:
    stamps = rows.stamps[start:end]
    columns = [c[start:end] for c in rows.value_columns()]
    return [
        dict(zip(keys, point, strict=True))
        for point in zip(iso_ms_each(stamps), stamps, *columns, strict=True)
    ]


def _segmented(keys: tuple[str, ...], rows: ColumnRows) -> orjson.Fragment:
    """The points array, each segment's text from :data:`RENDERED` (written on a miss), the rows
    between segments written as usual."""

    def text(start: int, end: int) -> bytes:
        return orjson.dumps(_column_points(keys, rows, start, end))[1:-1]  # the points, no brackets

    parts: list[bytes] = []
    done = 0
    for key, start, end in rows.segments:
        if done < start:
            parts.append(text(done, start))
        parts.append(RENDERED.get((keys, key), functools.partial(text, start, end)))
        done = end
    if done < len(rows):
        parts.append(text(done, len(rows)))
    return orjson.Fragment(b"[" + b",".join(parts) + b"]")


class RenderedPoints(BoundedCache[bytes]):
    """The JSON text of the points of segments of rows that cannot change (sealed chunks),
    keyed by the metric names and the segment's key, up to MAX_BYTES in all (least recently
    used first out). A dashboard asking for the same day again writes only its newest part."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024) -> None:
        super().__init__(max_bytes, size=len)


RENDERED = RenderedPoints()
"""The process's cache of written segments (32 MB: about eleven host-days of /metrics points)."""


def metrics_headers(body: dict[str, Any]) -> dict[str, str]:
    return {
        "X-Hostmon-Raw-Samples": str(body["raw_samples"]),
        "X-Hostmon-Points": str(body["points"]),
        "X-Hostmon-Step-S": "raw" if body["step_s"] is None else f"{body['step_s']:g}",
        "X-Hostmon-Downsampled": "true" if body["downsampled"] else "false",
    }


def tag_key(metrics: Sequence[str]) -> str | None:
    """The tag key of METRICS' family (one family per request), None for the host family."""
    family = catalog.family_of(metrics[0]) if metrics else None
    return None if family is None else catalog.TAG_KEY[family]


def metrics_csv(body: dict[str, Any]) -> str:
    """``host,time,ts_ms,<metric>...``, one row per point, empty cells for missing values; a
    tagged family has its tag key as a column after ``host`` (``host,mount,time,...``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    names = body["metrics"]
    key = tag_key(names)
    tag_columns = [] if key is None else [key]
    writer.writerow(["host", *tag_columns, "time", "ts_ms", *names])
    for s in body["series"]:
        tags = dict(s.tags)
        prefix = [s.host, *(tags.get(k, "") for k in tag_columns)]
        for ts_ms, values in s.rows:
            cells = ["" if v is None else repr(v) for v in values]
            writer.writerow([*prefix, iso_ms(ts_ms), ts_ms, *cells])
    return out.getvalue()


def aggregate_body(
    window: Window, metric: str, fn: Aggregation, host: str | None, result: Aggregate, *, tags: Tags = ()
) -> dict[str, Any]:
    value: float | int | None = finite(result.value)
    reason = None
    if result.samples == 0 and fn != "count":
        where = f" of host {host!r}" if host is not None else ""
        where += "".join(f" with {k} {v!r}" for k, v in tags)
        reason = f"no samples of {metric}{where} in the window"
    elif value is None and result.value is not None:
        reason = "the result is not a finite number"
    if fn == "count" and value is not None:
        value = int(value)
    return {
        "metric": metric,
        "fn": fn,
        "host": host,
        "tags": dict(tags),
        "window": window_body(window),
        "value": value,
        "samples": result.samples,
        "hosts": result.hosts,
        "pooled": result.hosts > 1,
        "value_host": result.value_host,
        "value_tags": None if result.value_host is None else dict(result.value_tags),
        "reason": reason,
    }


def names_body(kind: str, described: Sequence[MetricInfo]) -> dict[str, Any]:
    """/metrics/names: the names (as before) and, per metric, its family, unit and tag values."""
    details = []
    for info in described:
        known = catalog.BY_NAME.get(info.name)
        details.append(
            {
                "name": info.name,
                "family": info.family,
                "unit": known.unit if known else "percent",  # cpu_usage_N: a core's busy percent
                "description": known.description if known else "CPU busy, one core",
                "tag_key": next((k for f, k in catalog.TAG_KEY.items() if f == info.family), None),
                "tags": {k: list(v) for k, v in info.tags.items()},
            }
        )
    return {"metrics": [d["name"] for d in details], "store": kind, "details": details}


def error_body(status: int, message: str, parameter: str | None = None) -> dict[str, Any]:
    """The API's one error shape."""
    title = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return {"error": {"status": status, "title": title, "parameter": parameter, "message": message}}


def health(
    store: Store, spool_status: Callable[[], SpoolStatus | None], now_ms: int, interval_s: float
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of /health: 200 when every rule holds, 503 listing the broken ones."""
    problems: list[str] = []
    store_body = {"kind": store.kind, "name": store.name, "reachable": True, "detail": ""}
    try:
        store_body["detail"] = store.ping()
    except StoreError as exc:
        store_body.update(reachable=False, detail=str(exc))
        problems.append(f"store unreachable: {exc}")
    agent = None
    try:
        status = spool_status()
    except Exception as exc:  # a damaged spool file must not break the health check
        problems.append(f"agent spool unreadable: {exc}")
        status = None
    if status is not None:
        agent = agent_body(status, now_ms)
        problems += agent_problems(status, now_ms, interval_s)
    body: dict[str, Any] = {
        "status": "unhealthy" if problems else "ok",
        "time": iso_ms(now_ms),
        "problems": problems,
        "store": store_body,
        "agent": agent,
    }
    if problems:
        body.update(error_body(503, "; ".join(problems)))
    return (503 if problems else 200), body


def grace_s(interval_s: float) -> float:
    """How stale the agent's last success or heartbeat may be before /health fails."""
    return max(HEALTH_GRACE_MIN_S, 3 * interval_s)


def agent_body(status: SpoolStatus, now_ms: int) -> dict[str, Any]:
    def age_s(ts_ms: int | None) -> float | None:
        return None if ts_ms is None else round((now_ms - ts_ms) / 1000, 3)

    return {
        "spool_depth": status.depth,
        "oldest_unsent": None if status.oldest_ts_ms is None else iso_ms(status.oldest_ts_ms),
        "last_success": None if status.last_success_ms is None else iso_ms(status.last_success_ms),
        "last_success_age_s": age_s(status.last_success_ms),
        "heartbeat_age_s": age_s(status.updated_ms),
        "sink_reachable": status.sink_reachable,
        "last_error": status.last_error,
        "dropped_total": status.dropped_total,
        "spilled_total": status.spilled_total,
        "rejected_total": status.rejected_total,
        "last_clock_step": _clock_step(status),
    }


def _clock_step(status: SpoolStatus) -> dict[str, Any] | None:
    if status.clock_step_ms is None or status.clock_step_at_ms is None:
        return None
    return {"step_s": status.clock_step_ms / 1000, "at": iso_ms(status.clock_step_at_ms)}


def agent_problems(status: SpoolStatus, now_ms: int, interval_s: float) -> list[str]:
    """The health rules about the agent (see the OpenAPI description)."""
    grace_ms = grace_s(interval_s) * 1000
    problems = []
    last = status.last_success_ms
    if status.sink_reachable is False and (last is None or now_ms - last > grace_ms):
        since = "never" if last is None else f"{(now_ms - last) / 1000:.0f} s ago"
        detail = status.last_error or "database unreachable"
        problems.append(f"agent cannot write to the database (last success: {since}): {detail}")
    if status.updated_ms is not None and now_ms - status.updated_ms > grace_ms:
        problems.append(
            f"agent heartbeat is {(now_ms - status.updated_ms) / 1000:.0f} s old (is the agent running?)"
        )
    return problems
