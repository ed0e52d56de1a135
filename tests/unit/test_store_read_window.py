"""read_window: a store that reads a fitting window in one pass is asked nothing else; a window
its estimate puts over the cap is read at the estimate's step while it is counted (and again
only when the counts choose another step); any other store (and a window that does not fit) is
counted, then read at the chosen step."""

from __future__ import annotations

from typing import Any

from monitor.api import views
from monitor.api.stores import Counts, Query, RawWindow, Series, read_window

QUERY = Query(("cpu_usage_overall",), 0, 600_000)
ROWS = [Series("a", [(0, [1.0]), (1000, [2.0])])]
BUCKETS = [Series("a", [(0, [1.5])])]


class CountingStore:
    """counts() and rows() only, as the SQLite store; records what it was asked."""

    def __init__(self, counts: Counts) -> None:
        self._counts = counts
        self.asked: list[Any] = []

    def counts(self, query: Query) -> Counts:
        self.asked.append("counts")
        return self._counts

    def rows(self, query: Query, step_ms: int | None = None) -> list[Series]:
        self.asked.append(("rows", step_ms))
        return ROWS if step_ms is None else BUCKETS


class OnePassStore(CountingStore):
    """The InfluxQL store's shape: a one-pass raw read, an estimate (None: a short window),
    rows read while counting."""

    def __init__(self, counts: Counts, fits: bool, guess: Counts | None = None) -> None:
        super().__init__(counts)
        self._fits = fits
        self._guess = guess

    def raw_window(self, query: Query, max_points: int) -> tuple[Counts, list[Series]] | None:
        self.asked.append(("raw_window", max_points))
        return (self._counts, ROWS) if self._fits else None

    def estimate(self, query: Query, max_points: int) -> Counts | None:
        if self._guess is not None:
            self.asked.append("estimate")
        return self._guess

    def rows_while_counting(self, query: Query, step_ms: int) -> tuple[Counts, list[Series]]:
        self.asked.append(("rows_while_counting", step_ms))
        return self._counts, [Series("a", [(0, [float(step_ms)])])]


def rule(max_points: int, step_ms: int | None = None) -> Any:
    return lambda c: views.choose_step(step_ms, sum(c.values()), len(c), 600_000, max_points)


def test_a_store_without_a_one_pass_read_is_counted_then_read():
    store = CountingStore({("a", ()): 2})
    assert not isinstance(store, RawWindow)
    got = read_window(store, QUERY, 10, rule(10), raw_if_fits=True)
    assert got == ({("a", ()): 2}, ROWS, None, None)
    assert store.asked == ["counts", ("rows", None)]


def test_a_fitting_window_is_one_read_and_nothing_else():
    store = OnePassStore({("a", ()): 2}, fits=True)
    got = read_window(store, QUERY, 10, rule(10), raw_if_fits=True)
    assert got == ({("a", ()): 2}, ROWS, None, None)
    assert store.asked == [("raw_window", 10)]


def test_rows_over_the_cap_in_all_series_are_downsampled_with_the_counts_of_the_one_read():
    store = OnePassStore({("a", ()): 7, ("b", ()): 7}, fits=True)
    counts, series, step_ms, reason = read_window(store, QUERY, 10, rule(10), raw_if_fits=True)
    assert (counts, series, reason) == (
        {("a", ()): 7, ("b", ()): 7},
        BUCKETS,
        "14 raw points exceed max_points=10",
    )
    assert step_ms is not None and store.asked == [("raw_window", 10), ("rows", step_ms)]


def test_a_window_the_store_declines_is_counted_then_read():
    store = OnePassStore({("a", ()): 20}, fits=False)
    _, series, step_ms, _ = read_window(store, QUERY, 10, rule(10), raw_if_fits=True)
    assert series == BUCKETS and store.asked == [("raw_window", 10), "counts", ("rows", step_ms)]


def test_a_requested_step_skips_the_one_pass_read():
    store = OnePassStore({("a", ()): 2}, fits=True)
    got = read_window(store, QUERY, 10, rule(10, 60_000), raw_if_fits=False)
    assert got == ({("a", ()): 2}, BUCKETS, 60_000, "step requested")
    assert store.asked == ["counts", ("rows", 60_000)]


def test_no_metrics_asks_nothing_and_no_rows_ask_no_rows():
    store = OnePassStore({}, fits=True)
    assert read_window(store, Query((), 0, 1), 10, rule(10), raw_if_fits=True) == ({}, [], None, None)
    assert store.asked == []
    empty = CountingStore({})
    assert read_window(empty, QUERY, 10, rule(10), raw_if_fits=True) == ({}, [], None, None)
    assert empty.asked == ["counts"]


def test_a_window_estimated_over_the_cap_is_read_at_that_step_while_counted_and_nothing_else():
    store = OnePassStore({("a", ()): 20}, fits=True, guess={("a", ()): 19})
    counts, series, step_ms, reason = read_window(store, QUERY, 10, rule(10), raw_if_fits=True)
    assert step_ms is not None and store.asked == ["estimate", ("rows_while_counting", step_ms)]
    assert (counts, series, reason) == (
        {("a", ()): 20},
        [Series("a", [(0, [float(step_ms)])])],
        "20 raw points exceed max_points=10",
    )


def test_an_estimate_the_counts_prove_wrong_is_read_again_at_the_counted_step():
    two_hosts = {("a", ()): 20, ("b", ()): 20}  # the probe saw one: the counts need a coarser step
    store = OnePassStore(two_hosts, fits=True, guess={("a", ()): 19})
    counts, series, step_ms, _ = read_window(store, QUERY, 10, rule(10), raw_if_fits=True)
    guessed = views.choose_step(None, 19, 1, 600_000, 10)[0]
    assert step_ms != guessed and store.asked == [
        "estimate",
        ("rows_while_counting", guessed),
        ("rows", step_ms),
    ]
    assert (counts, series) == (two_hosts, BUCKETS)
    wrong = OnePassStore({("a", ()): 4}, fits=True, guess={("a", ()): 19})  # it fits after all
    assert read_window(wrong, QUERY, 10, rule(10), raw_if_fits=True) == ({("a", ()): 4}, ROWS, None, None)
    assert wrong.asked == ["estimate", ("rows_while_counting", guessed), ("rows", None)]


def test_a_window_estimated_to_fit_is_read_raw_and_counted_first_when_it_does_not():
    store = OnePassStore({("a", ()): 20}, fits=False, guess={("a", ()): 5})
    _, series, step_ms, _ = read_window(store, QUERY, 10, rule(10), raw_if_fits=True)
    assert series == BUCKETS and store.asked == ["estimate", ("raw_window", 10), "counts", ("rows", step_ms)]
