"""The /metrics JSON (orjson, from the rows) is the document the API wrote with json for per-point dicts."""

from __future__ import annotations

import json
from array import array
from itertools import pairwise
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from monitor.api.params import Window
from monitor.api.stores import ColumnRows, Series
from monitor.api.views import RenderedPoints, metrics_body, metrics_json
from monitor.formats import iso_ms, iso_ms_each

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
def test_the_rendered_json_holds_exactly_the_document_json_writes_for_per_point_dicts(found):
    body = body_of(found)
    want = json.dumps(as_dicts(body), separators=(",", ":"), allow_nan=False)
    got = metrics_json(body)
    assert json.loads(got) == json.loads(want)  # every float read back bit for bit
    assert list(json.loads(got)) == list(json.loads(want))  # the keys in the same order


def test_the_rendered_json_is_compact_utf8_with_times_to_the_millisecond():
    rows = [(1_714_564_805_007, [72.5, None, 1e-7]), (-1, [0.1, 2.0, 104857600.0])]
    text = metrics_json(body_of([Series("wéb", rows, (("mount", "/"),))])).decode()
    assert '"host":"wéb","tags":{"mount":"/"},"points":[' in text
    assert '{"time":"2024-05-01T12:00:05.007Z","ts_ms":1714564805007,"cpu_usage_overall":72.5,' in text
    assert '"memory_usage":null,"disk_read":1e-7}' in text
    assert '{"time":"1969-12-31T23:59:59.999Z","ts_ms":-1,' in text
    assert '"disk_read":104857600.0}' in text


@given(st.lists(st.tuples(st.floats(allow_nan=False, allow_infinity=False), st.booleans()), max_size=8))
def test_rows_held_as_columns_read_and_render_as_the_same_rows(cells):
    stamps = array("q", [1_714_564_805_000 + 10_000 * i for i in range(len(cells))])
    columns = [array("d", [v for v, _ in cells]), None, [v if keep else None for v, keep in cells]]
    held = ColumnRows(stamps, columns)
    rows = [(ts, [v, None, v if keep else None]) for ts, (v, keep) in zip(stamps, cells, strict=True)]
    assert held == rows and rows == held and len(held) == len(rows)
    assert list(held) == rows and held[-1:] == rows[-1:]
    if rows:
        assert held[0] == rows[0]
    assert Series("h", held) == Series("h", rows)
    assert metrics_json(body_of([Series("h", held)])) == metrics_json(body_of([Series("h", rows)]))


@given(
    st.lists(st.integers(-(10**13), 10**13), max_size=50), st.lists(st.integers(0, 3_600_000), max_size=50)
)
def test_times_written_in_bulk_are_iso_ms_of_each(anywhere, within_an_hour):
    stamps = anywhere + [1_714_564_800_000 + ms for ms in within_an_hour]  # many share an hour's prefix
    assert iso_ms_each(stamps) == [iso_ms(ts) for ts in stamps]


@given(st.integers(0, 12), st.lists(st.integers(0, 12), max_size=6))
def test_rows_written_from_kept_segments_are_the_rows_written_fresh(n, cuts):
    stamps = array("q", [1_714_564_805_000 + 10_000 * i for i in range(n)])
    columns = [array("d", [i / 4 for i in range(n)]), None, [None if i % 3 else i * 1.5 for i in range(n)]]
    bounds = sorted({min(c, n) for c in cuts} | {0, n})
    segments = [((n, a, b), a, b) for a, b in pairwise(bounds) if a < b][::2]  # every other run kept
    plain = metrics_json(body_of([Series("h", ColumnRows(stamps, columns))]))
    for _ in range(2):  # written, then read from what was kept
        assert metrics_json(body_of([Series("h", ColumnRows(stamps, columns, segments))])) == plain


def test_kept_segments_are_bounded_least_recently_used_first_out():
    kept = RenderedPoints(max_bytes=10)
    assert kept.get("a", lambda: b"12345") == b"12345"
    assert kept.get("a", lambda: b"other") == b"12345"  # kept: not written again
    kept.get("b", lambda: b"12345")
    kept.get("a", lambda: b"x")  # a used last
    kept.get("c", lambda: b"12345")  # 15 bytes: b, the least recently used, goes
    assert kept.get("b", lambda: b"again") == b"again"
    assert kept.get("c", lambda: b"no") == b"12345"
