"""Parameter parsing and the downsampling decision, as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.api.params import parse_query_string, wants_csv, window
from monitor.api.views import NICE_STEPS_MS, choose_step, max_buckets
from monitor.config import ApiConfig
from monitor.errors import ApiError
from monitor.formats import iso_ms as iso

NOW_MS = 1_700_000_000_000


@pytest.mark.parametrize(
    ("accept", "csv"),
    [
        ("", False),
        ("*/*", False),
        ("application/json", False),
        ("text/csv", True),
        ("text/csv, */*", True),
        ("application/json, text/csv", False),  # a tie goes to JSON, the default
        ("application/json;q=0.5, text/csv", True),
        ("text/csv;q=0.1, application/json", False),
        ("text/csv;q=bogus", False),
    ],
)
def test_accept_header_negotiation(accept, csv):
    assert wants_csv(accept) is csv


def test_minutes_back_become_a_half_open_window_in_ms():
    w = window({"start": "10", "end": "2.5"}, ApiConfig(), NOW_MS)
    assert (w.start_ms, w.end_ms) == (NOW_MS - 600_000, NOW_MS - 150_000)
    assert (w.start_minutes, w.end_minutes) == (10.0, 2.5)


@pytest.mark.parametrize("text", ["1e2", "100", "100.", ".5e3", " 100 ", "+100"])
def test_number_spellings(text):
    w = window({"start": text}, ApiConfig(), NOW_MS)
    assert w.start_minutes == float(text)


@pytest.mark.parametrize("text", ["0x10", "1_000", "\u0661\u0660", "10 minutes", "--1", "1e", "e5"])
def test_not_numbers(text):
    with pytest.raises(ApiError) as info:
        window({"start": text}, ApiConfig(), NOW_MS)
    assert info.value.status == 400 and info.value.parameter == "start"


def test_too_many_query_fields_is_a_400():
    with pytest.raises(ApiError):
        parse_query_string("&".join(f"k{i}=1" for i in range(100)), frozenset(f"k{i}" for i in range(100)))


def test_raw_when_under_the_cap_and_no_step_asked():
    assert choose_step(None, 10_000, 1, 3_600_000, 10_000) == (None, None)


def test_24h_of_one_second_samples_under_the_default_cap_gets_a_10s_step():
    step, reason = choose_step(None, 86_400, 1, 86_400_000, 10_000)
    assert step == 10_000
    assert reason == "86400 raw points exceed max_points=10000"


def test_auto_steps_are_round_numbers():
    step, _ = choose_step(None, 10**6, 3, 7 * 86_400_000, 1000)
    assert step in NICE_STEPS_MS or step % 86_400_000 == 0


@given(
    start=st.integers(-(10**12), 10**12),
    window_ms=st.integers(1, 31 * 86_400_000),
    step_ms=st.integers(1, 10**9),
)
def test_max_buckets_bounds_the_buckets_any_window_touches(start, window_ms, step_ms):
    first = start // step_ms
    last = (start + window_ms - 1) // step_ms
    assert last - first + 1 <= max_buckets(window_ms, step_ms)


@given(
    raw=st.integers(0, 10**8),
    hosts=st.integers(1, 50),
    window_ms=st.integers(1, 31 * 86_400_000),
    max_points=st.integers(100, 100_000),
    requested=st.none() | st.integers(1, 10**8),
)
def test_the_chosen_step_never_lets_points_exceed_the_cap(raw, hosts, window_ms, max_points, requested):
    step, reason = choose_step(requested, raw, hosts, window_ms, max_points)
    if step is None:
        assert raw <= max_points and requested is None and reason is None
    else:
        assert raw <= max_points or hosts * max_buckets(window_ms, step) <= max_points
        assert requested is None or step >= requested
        assert reason


def test_iso_timestamps_are_utc_with_milliseconds():
    assert iso(0) == "1970-01-01T00:00:00.000Z"
    assert iso(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert iso(-1) == "1969-12-31T23:59:59.999Z"
