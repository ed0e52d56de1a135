"""The /metrics JSON written straight from the rows is the document json.dumps gives for dicts."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from monitor.api.params import Window
from monitor.api.stores import Series
from monitor.api.views import metrics_body, metrics_json
from monitor.formats import iso_ms

METRICS = ("cpu_usage_overall", "memory_usage", "disk_read")
values = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))
rows = st.lists(
    st.tuples(st.integers(0, 4_102_444_800_000), st.lists(values, min_size=3, max_size=3)), max_size=6
)
series = st.lists(
    st.builds(
        Series,
        st.text(max_size=8),
        rows,
        st.one_of(st.just(()), st.tuples(st.tuples(st.just("mount"), st.text(max_size=6)))),
    ),
    max_size=3,
)


def body_of(found: list[Series]) -> dict[str, Any]:
    window = Window(10, 0, 1_000, 2_000)
    return metrics_body(window, None, METRICS, found, step_ms=None, reason=None, raw_points=7, max_points=100)


def as_dicts(body: dict[str, Any]) -> dict[str, Any]:
    """The body with every point a dict, as the API wrote it before it rendered rows itself."""
    keys = ("time", "ts_ms", *body["metrics"])
    out_series = [
        {
            "host": s.host,
            "tags": dict(s.tags),
            "points": [dict(zip(keys, (iso_ms(ts), ts, *vals), strict=True)) for ts, vals in s.rows],
        }
        for s in body["series"]
    ]
    return {**body, "series": out_series}


@given(series)
def test_the_rendered_json_is_byte_for_byte_what_json_dumps_writes_for_per_point_dicts(found):
    body = body_of(found)
    want = json.dumps(as_dicts(body), separators=(",", ":"), allow_nan=False).encode()
    assert metrics_json(body) == want
