"""The API's query parameters: parsed strictly, every problem a 400 that names the parameter.

Times are minutes back from now, as in the original setup guide's calls (``start=10&end=2``:
from ten to two minutes ago; decimals allowed). Omitted, ``start`` is 10 and ``end`` is 0
(the last ten minutes). The window is half-open, ``start <= t < end``, no longer than
``api.max_window_minutes`` and no further back than a hundred years. Unknown or repeated
keys are refused, so a typo (``strat=10``) is an error instead of a silently different answer.

Tag filters are named by the tag key (``mount=/``, ``device=sda``, ``interface=eth0``) and
apply only to metrics of the family that has that key (``monitor/catalog.py``); the metrics of
one request are of one family.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar, get_args

from monitor import catalog
from monitor.api.stores import AGGREGATES, Aggregation, Tags
from monitor.config import ApiConfig
from monitor.errors import ApiError

DEFAULT_START_MINUTES = 10.0
DEFAULT_END_MINUTES = 0.0
MAX_LOOKBACK_MINUTES = 100 * 365 * 24 * 60.0
MAX_METRICS = 256
MAX_HOST_CHARS = 255
MAX_TAG_CHARS = 255
MAX_QUERY_FIELDS = 32
Format = Literal["json", "csv"]
FORMATS: tuple[Format, ...] = get_args(Format)
S = TypeVar("S", bound=str)
_NUMBER = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"\+?[0-9]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

METRICS_KEYS = frozenset(
    {"start", "end", "metrics", "host", "step", "max_points", "format", *catalog.TAG_KEYS}
)
AGGREGATE_KEYS = frozenset({"start", "end", "metric", "fn", "host", *catalog.TAG_KEYS})


def bad(parameter: str, message: str) -> ApiError:
    return ApiError(400, f"{parameter}: {message}", parameter)


@dataclass(frozen=True)
class Window:
    start_minutes: float
    end_minutes: float
    start_ms: int
    end_ms: int


@dataclass(frozen=True)
class MetricsParams:
    window: Window
    metrics: tuple[str, ...] | None  # None: every host-family metric the store holds
    host: str | None
    tags: Tags  # exact-match filters on the metrics' family's tag key
    step_ms: int | None
    max_points: int
    format: Format | None  # None: decided by the Accept header


@dataclass(frozen=True)
class AggregateParams:
    window: Window
    metric: str
    fn: Aggregation
    host: str | None
    tags: Tags = ()


def parse_query_string(query_string: str, allowed: frozenset[str]) -> dict[str, str]:
    """The query string as a dict, refusing unknown, repeated and too many keys."""
    try:
        pairs = urllib.parse.parse_qsl(
            query_string, keep_blank_values=True, max_num_fields=MAX_QUERY_FIELDS, errors="strict"
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"unreadable query string: {exc}") from exc
    out: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise bad(key, f"unknown query parameter (this endpoint takes: {known})")
        if key in out:
            raise bad(key, "given more than once")
        out[key] = value
    return out


def number(params: Mapping[str, str], key: str, default: float, *, maximum: float) -> float:
    """A non-negative decimal number (``10``, ``2.5``, ``1e3``) no larger than MAXIMUM."""
    text = params.get(key)
    if text is None:
        return default
    if not _NUMBER.fullmatch(text.strip()):
        raise bad(key, f"expected a number, got {text!r}")
    value = float(text)
    if not math.isfinite(value):
        raise bad(key, f"expected a finite number, got {text!r}")
    if value < 0:
        raise bad(key, f"must not be negative, got {text!r}")
    if value > maximum:
        raise bad(key, f"must be at most {maximum:g}, got {text!r}")
    return value


def window(params: Mapping[str, str], config: ApiConfig, now_ms: int) -> Window:
    start = number(params, "start", DEFAULT_START_MINUTES, maximum=MAX_LOOKBACK_MINUTES)
    end = number(params, "end", DEFAULT_END_MINUTES, maximum=MAX_LOOKBACK_MINUTES)
    if start <= end:
        raise bad("start", f"must be greater than end (minutes back from now): start={start:g}, end={end:g}")
    if start - end > config.max_window_minutes:
        raise bad(
            "start",
            f"window of {start - end:g} minutes is longer than the maximum of "
            f"{config.max_window_minutes:g} minutes (api.max_window_minutes)",
        )
    start_ms = now_ms - round(start * 60_000)
    end_ms = now_ms - round(end * 60_000)
    if start_ms >= end_ms:
        raise bad("start", "window shorter than one millisecond")
    return Window(start, end, start_ms, end_ms)


def host(params: Mapping[str, str]) -> str | None:
    value = params.get("host")
    if value is None:
        return None
    if not value or len(value) > MAX_HOST_CHARS or _CONTROL.search(value):
        raise bad("host", f"expected a host name of 1 to {MAX_HOST_CHARS} printable characters")
    return value


def metric(params: Mapping[str, str], key: str = "metric") -> str:
    value = params.get(key)
    if value is None:
        raise bad(key, "required (see /metrics/names)")
    if not catalog.is_metric(value):
        raise bad(key, f"unknown metric {value[:64]!r} (see /metrics/names)")
    return value


def metric_list(params: Mapping[str, str]) -> tuple[str, ...] | None:
    text = params.get("metrics")
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if len(names) > MAX_METRICS:
        raise bad("metrics", f"at most {MAX_METRICS} metrics per request")
    families: dict[str, str] = {}
    for name in names:
        family = catalog.family_of(name)
        if family is None:
            raise bad("metrics", f"unknown metric {name[:64]!r} (a comma list; see /metrics/names)")
        families.setdefault(family, name)
    if len(families) > 1:
        mix = ", ".join(f"{name} ({family})" for family, name in families.items())
        raise bad("metrics", f"metrics of one family per request, got {mix} (see /metrics/names)")
    return tuple(dict.fromkeys(names))


def tags(params: Mapping[str, str], family: catalog.Family) -> Tags:
    """The tag filters among PARAMS, each on FAMILY's tag key, as ``((key, value), ...)``."""
    wanted = catalog.TAG_KEY[family]
    out: list[tuple[str, str]] = []
    for key in catalog.TAG_KEYS:
        value = params.get(key)
        if value is None:
            continue
        if key != wanted:
            owner = next(f for f, k in catalog.TAG_KEY.items() if k == key)
            raise bad(
                key,
                f"filters metrics of the {owner} family only; the {family} family's metrics "
                + (f"are filtered by {wanted}=" if wanted else "have no tags")
                + " (see /metrics/names)",
            )
        if not value or len(value) > MAX_TAG_CHARS or _CONTROL.search(value):
            raise bad(key, f"expected a {key} of 1 to {MAX_TAG_CHARS} printable characters")
        out.append((key, value))
    return tuple(out)


def step_ms(params: Mapping[str, str], config: ApiConfig) -> int | None:
    if "step" not in params:
        return None
    seconds = number(params, "step", 0.0, maximum=config.max_window_minutes * 60)
    value = round(seconds * 1000)
    if value < 1:
        raise bad("step", f"expected seconds per bucket of at least 0.001, got {params['step']!r}")
    return value


def max_points(params: Mapping[str, str], config: ApiConfig) -> int:
    text = params.get("max_points")
    if text is None:
        return config.max_points
    if not _INTEGER.fullmatch(text.strip()):
        raise bad("max_points", f"expected a whole number, got {text!r}")
    value = int(text)
    if not 1 <= value <= config.max_points:
        raise bad("max_points", f"must be 1 to {config.max_points} (api.max_points), got {text!r}")
    return value


def choice(params: Mapping[str, str], key: str, allowed: tuple[S, ...]) -> S | None:
    """One of ALLOWED, or None when KEY is not given."""
    value = params.get(key)
    if value is None:
        return None
    if value not in allowed:
        raise bad(key, f"expected one of {', '.join(allowed)}, got {value[:64]!r}")
    return allowed[allowed.index(value)]  # typed as one of ALLOWED


def metrics_params(query_string: str, config: ApiConfig, now_ms: int) -> MetricsParams:
    params = parse_query_string(query_string, METRICS_KEYS)
    span = window(params, config, now_ms)
    metrics = metric_list(params)
    family = catalog.family_of(metrics[0]) if metrics else "host"
    return MetricsParams(
        window=span,
        metrics=metrics,
        host=host(params),
        tags=tags(params, family or "host"),
        step_ms=step_ms(params, config),
        max_points=max_points(params, config),
        format=choice(params, "format", FORMATS),
    )


def aggregate_params(query_string: str, config: ApiConfig, now_ms: int) -> AggregateParams:
    params = parse_query_string(query_string, AGGREGATE_KEYS)
    fn = choice(params, "fn", AGGREGATES) or "mean"
    span = window(params, config, now_ms)
    name = metric(params)
    family = catalog.family_of(name) or "host"
    return AggregateParams(span, name, fn, host(params), tags(params, family))


ALERTS_DEFAULT_LIMIT = 100
ALERTS_MAX_LIMIT = 1000


def alerts_limit(query_string: str) -> int:
    """/alerts' ``limit``: how many history events, 1 to ALERTS_MAX_LIMIT (default 100)."""
    params = parse_query_string(query_string, frozenset({"limit"}))
    text = params.get("limit")
    if text is None:
        return ALERTS_DEFAULT_LIMIT
    if not _INTEGER.fullmatch(text.strip()):
        raise bad("limit", f"expected a whole number, got {text!r}")
    value = int(text)
    if not 1 <= value <= ALERTS_MAX_LIMIT:
        raise bad("limit", f"must be 1 to {ALERTS_MAX_LIMIT}, got {text!r}")
    return value


def no_params(query_string: str) -> None:
    parse_query_string(query_string, frozenset())


def wants_csv(accept: str) -> bool:
    """True when the Accept header ranks text/csv above application/json."""
    best: dict[str, float] = {}
    for part in accept.split(","):
        media, _, rest = part.strip().partition(";")
        q = 1.0
        for param in rest.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        best[media.strip().lower()] = max(q, best.get(media.strip().lower(), 0.0))
    csv_q = best.get("text/csv", 0.0)
    json_q = max(best.get("application/json", 0.0), best.get("*/*", 0.0) * 0.99)
    return csv_q > json_q
