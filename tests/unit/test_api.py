"""The HTTP API in-process (WSGI calls, no sockets) over a real SQLite store and a fixed clock."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from monitor.api import make_app
from monitor.api.stores.sqlite import SQLiteStore
from monitor.config import Config, parse
from tests.store_helpers import write_rows

NOW_S = 1_700_000_000.0
NOW_MS = int(NOW_S * 1000)
MINUTE_MS = 60_000
INTERVAL_MS = 10_000
METRICS = ("cpu_usage_overall", "cpu_usage_1", "cpu_usage_2", "memory_usage", "disk_read")


class Response:
    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = int(status.split(maxsplit=1)[0])
        self.headers = {k.lower(): v for k, v in headers}
        self.body = body

    def json(self) -> Any:
        assert self.headers["content-type"].startswith("application/json"), self.headers
        return json.loads(self.body)


def call(app: Any, target: str, *, method: str = "GET", headers: dict[str, str] | None = None) -> Response:
    """One request through the WSGI app, as waitress would hand it over (PEP 3333 latin-1 strings)."""
    path, _, query = target.partition("?")
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(
        REQUEST_METHOD=method,
        PATH_INFO=path.encode().decode("latin-1"),
        QUERY_STRING=query.encode().decode("latin-1"),
    )
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    seen: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen.update(status=status, headers=response_headers)

    body = b"".join(app(environ, start_response))
    return Response(seen["status"], seen["headers"], body)


def value(host: str, metric: str, ts_ms: int) -> float:
    """Deterministic, distinct sample values."""
    return round(
        (ts_ms // INTERVAL_MS) % 97 + METRICS.index(metric) * 100 + (0.5 if host == "web2" else 0), 3
    )


def write_samples(path: Path, hosts: tuple[str, ...] = ("web1", "web2"), minutes: int = 30) -> None:
    rows = [
        (metric, host, ts, value(host, metric, ts))
        for host in hosts
        for ts in range(NOW_MS - minutes * MINUTE_MS, NOW_MS, INTERVAL_MS)
        for metric in METRICS
    ]
    write_rows(path, rows)


def make_config(tmp_path: Path, **api: Any) -> Config:
    return parse({"agent": {"state_dir": str(tmp_path), "host": "web1"}, "api": api}, environ={})


@pytest.fixture
def config(tmp_path: Path) -> Config:
    cfg = make_config(tmp_path)
    write_samples(cfg.sink.path)
    return cfg


@pytest.fixture
def app(config: Config) -> Any:
    return make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)


def expected_ts(start_min: float, end_min: float) -> list[int]:
    lo, hi = NOW_MS - round(start_min * MINUTE_MS), NOW_MS - round(end_min * MINUTE_MS)
    return [ts for ts in range(NOW_MS - 30 * MINUTE_MS, NOW_MS, INTERVAL_MS) if lo <= ts < hi]


# -- the original setup guide's two calls ------------------------------------------------------------------


def test_original_metrics_call_returns_every_sample_from_10_to_2_minutes_ago(app):
    body = call(app, "/metrics?start=10&end=2").json()
    want = expected_ts(10, 2)
    assert body["downsampled"] is False and body["step_s"] is None
    assert body["raw_samples"] == body["points"] == 2 * len(want)
    assert body["metrics"] == list(METRICS)
    assert body["window"]["start_ms"] == NOW_MS - 10 * MINUTE_MS
    assert body["window"]["end_ms"] == NOW_MS - 2 * MINUTE_MS
    assert body["window"]["start"] == "2023-11-14T22:03:20.000Z"
    assert [s["host"] for s in body["series"]] == ["web1", "web2"]
    web1 = body["series"][0]["points"]
    assert [p["ts_ms"] for p in web1] == want
    assert web1[0] == {
        "time": "2023-11-14T22:03:20.000Z",
        "ts_ms": want[0],
        **{m: value("web1", m, want[0]) for m in METRICS},
    }


def test_original_aggregate_call_returns_the_mean_of_the_window(app):
    body = call(app, "/metrics/aggregate?metric=cpu_usage_overall&start=10&end=2").json()
    values = [value(h, "cpu_usage_overall", ts) for h in ("web1", "web2") for ts in expected_ts(10, 2)]
    assert body["metric"] == "cpu_usage_overall" and body["fn"] == "mean" and body["host"] is None
    assert body["value"] == pytest.approx(statistics.fmean(values), rel=1e-12)
    assert body["samples"] == len(values)
    assert body["reason"] is None


def test_without_start_and_end_the_window_is_the_last_ten_minutes(app):
    body = call(app, "/metrics").json()
    assert body["window"]["start_minutes"] == 10 and body["window"]["end_minutes"] == 0
    assert body["window"]["end_ms"] == NOW_MS
    assert body["raw_samples"] == 2 * len(expected_ts(10, 0))


def test_decimal_minutes_are_accepted(app):
    body = call(app, "/metrics?start=0.5&end=0.25&host=web1").json()
    assert [p["ts_ms"] for p in body["series"][0]["points"]] == expected_ts(0.5, 0.25)


# -- limits and downsampling ---------------------------------------------------------------


def test_over_the_cap_the_answer_is_downsampled_and_says_so_never_truncated(app):
    body = call(app, "/metrics?start=30&max_points=20").json()
    assert body["downsampled"] is True
    assert body["raw_samples"] == 2 * 180
    assert "exceed max_points=20" in body["downsample_reason"]
    assert body["points"] <= 20 and body["max_points"] == 20
    step_ms = round(body["step_s"] * 1000)
    for series in body["series"]:
        times = [p["ts_ms"] for p in series["points"]]
        assert all(t % step_ms == 0 for t in times)  # epoch-aligned buckets
        assert times[0] <= body["window"]["start_ms"] < times[0] + step_ms  # covers the start ...
        assert times[-1] + step_ms >= body["window"]["end_ms"] - INTERVAL_MS  # ... and the end


def test_bucket_means_are_the_means_of_the_raw_samples_in_each_bucket(app):
    body = call(app, "/metrics?start=10&end=2&step=60&host=web2&metrics=disk_read").json()
    assert body["step_s"] == 60 and body["downsample_reason"] == "step requested"
    for point in body["series"][0]["points"]:
        raw = [
            value("web2", "disk_read", ts)
            for ts in expected_ts(10, 2)
            if point["ts_ms"] <= ts < point["ts_ms"] + 60_000
        ]
        assert point["disk_read"] == pytest.approx(statistics.fmean(raw))


def test_a_requested_step_too_fine_for_the_cap_is_raised_and_reported(app):
    body = call(app, "/metrics?start=30&step=10&max_points=12").json()
    assert body["step_s"] > 10 and body["points"] <= 12
    assert "step=10s would exceed max_points=12" in body["downsample_reason"]


def test_metrics_and_host_filters(app):
    body = call(app, "/metrics?metrics=memory_usage,cpu_usage_2&host=web2").json()
    assert body["host"] == "web2" and body["metrics"] == ["memory_usage", "cpu_usage_2"]
    assert [s["host"] for s in body["series"]] == ["web2"]
    assert set(body["series"][0]["points"][0]) == {"time", "ts_ms", "memory_usage", "cpu_usage_2"}


def test_an_allowed_metric_the_host_does_not_have_gives_no_points_not_an_error(app):
    body = call(app, "/metrics?metrics=cpu_usage_64").json()
    assert body["series"] == [] and body["raw_samples"] == 0


# -- CSV -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "headers"),
    [
        ("/metrics?start=1", {"Accept": "text/csv"}),
        ("/metrics?start=1&format=csv", {"Accept": "application/json"}),
    ],
)
def test_csv_when_asked_by_accept_or_format(app, target, headers):
    response = call(app, target, headers=headers)
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.body.decode().splitlines()
    assert lines[0] == "host,time,ts_ms," + ",".join(METRICS)
    assert len(lines) == 1 + 2 * len(expected_ts(1, 0))
    host, time, ts_ms, *cells = lines[1].split(",")
    assert host == "web1" and time.endswith("Z")
    assert [float(c) for c in cells] == [value("web1", m, int(ts_ms)) for m in METRICS]
    assert response.headers["x-hostmon-downsampled"] == "false"
    assert response.headers["x-hostmon-raw-samples"] == str(len(lines) - 1)


def test_format_json_overrides_an_accept_header_asking_for_csv(app):
    assert call(app, "/metrics?format=json", headers={"Accept": "text/csv"}).json()["points"] > 0


# -- aggregate and names -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fn", "reduce"), [("min", min), ("max", max), ("count", len), ("last", lambda v: v[-1])]
)
def test_aggregate_functions_for_one_host(app, fn, reduce):
    body = call(app, f"/metrics/aggregate?metric=memory_usage&start=10&end=2&fn={fn}&host=web1").json()
    values = [value("web1", "memory_usage", ts) for ts in expected_ts(10, 2)]
    assert body["value"] == reduce(values) and body["samples"] == len(values)


def test_aggregate_without_host_pools_every_host_and_says_so(app):
    per_host = len(expected_ts(10, 2))
    count = call(app, "/metrics/aggregate?metric=memory_usage&start=10&end=2&fn=count").json()
    assert count["value"] == count["samples"] == 2 * per_host
    assert (count["hosts"], count["pooled"], count["value_host"]) == (2, True, None)
    # web2's values are web1's + 0.5 at the same timestamps: the newest and the largest are web2's.
    last = call(app, "/metrics/aggregate?metric=memory_usage&start=10&end=2&fn=last").json()
    assert last["value_host"] == "web2" and last["pooled"] is True
    lowest = call(app, "/metrics/aggregate?metric=memory_usage&start=10&end=2&fn=min").json()
    assert lowest["value_host"] == "web1"
    one = call(app, "/metrics/aggregate?metric=memory_usage&start=10&end=2&fn=last&host=web2").json()
    assert (one["hosts"], one["pooled"], one["value_host"], one["samples"]) == (1, False, "web2", per_host)
    assert one["value"] == last["value"]


def test_aggregate_of_an_empty_window_is_null_with_a_reason(app):
    body = call(app, "/metrics/aggregate?metric=disk_read&host=nobody").json()
    assert body["value"] is None and body["samples"] == 0
    assert body["reason"] == "no samples of disk_read of host 'nobody' in the window"
    count = call(app, "/metrics/aggregate?metric=disk_read&host=nobody&fn=count").json()
    assert count["value"] == 0 and count["reason"] is None


def test_names_lists_what_the_store_holds(app):
    body = call(app, "/metrics/names").json()
    assert (body["metrics"], body["store"]) == (list(METRICS), "sqlite")
    assert [d["name"] for d in body["details"]] == list(METRICS)
    assert body["details"][0] == {
        "name": "cpu_usage_overall",
        "family": "host",
        "unit": "percent",
        "description": "CPU busy, all cores",
        "tag_key": None,
        "tags": {},
    }


def test_hosts_lists_every_host_with_its_newest_sample_and_its_age(app):
    body = call(app, "/hosts").json()
    newest = max(range(NOW_MS - 30 * MINUTE_MS, NOW_MS, INTERVAL_MS))
    assert [h["host"] for h in body["hosts"]] == ["web1", "web2"]
    assert {h["last_sample_ms"] for h in body["hosts"]} == {newest}
    assert body["hosts"][0]["age_s"] == (NOW_MS - newest) / 1000
    assert body["hosts"][0]["last_sample"].endswith("Z")
    assert call(app, "/hosts?x=1").status == 400


def test_a_store_with_no_file_yet_answers_empty_not_500(tmp_path):
    cfg = make_config(tmp_path)
    app = make_app(cfg, SQLiteStore(cfg.sink.path), clock=lambda: NOW_S)
    assert call(app, "/metrics?start=10&end=2").json()["series"] == []
    assert call(app, "/metrics/aggregate?metric=cpu_usage_overall").json()["value"] is None
    assert call(app, "/metrics/names").json()["metrics"] == []
    assert call(app, "/hosts").json()["hosts"] == []
    assert call(app, "/health").status == 200


@pytest.mark.parametrize(
    ("start", "end"), [(10, 2), (30, 0), (0.75, 0.5), (7.33, 7.1), (29.99, 29.9), (1, 0)]
)
def test_aggregate_mean_equals_the_mean_of_the_raw_samples_metrics_returns(app, start, end):
    raw = call(app, f"/metrics?start={start}&end={end}&metrics=cpu_usage_1").json()
    values = [p["cpu_usage_1"] for s in raw["series"] for p in s["points"]]
    agg = call(app, f"/metrics/aggregate?metric=cpu_usage_1&start={start}&end={end}").json()
    if not values:
        assert agg["value"] is None
    else:
        assert agg["value"] == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert agg["samples"] == len(values)
