"""The retention cut: bounded by the time that really passed, not fooled by NTP's slewing."""

from __future__ import annotations

import logging

import pytest

from monitor.retention import SLACK_MS, RetentionCut

DAY_MS = 86_400_000
NOW_MS = 1_800_000_000_000


class Clocks:
    def __init__(self) -> None:
        self.mono_s = 1000.0

    def monotonic(self) -> float:
        return self.mono_s


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def test_a_wall_clock_slewed_ahead_of_the_monotonic_one_cuts_where_it_asks_and_says_nothing(clocks, caplog):
    cut = RetentionCut(DAY_MS, monotonic=clocks.monotonic)
    caplog.set_level(logging.WARNING, logger="monitor.retention")
    assert cut.cutoff_ms(NOW_MS, None) == NOW_MS - DAY_MS
    now_ms = NOW_MS
    for _ in range(60):  # an hour of passes a minute apart, the wall clock 500 ppm fast
        clocks.mono_s += 60
        now_ms += 60_030
        assert cut.cutoff_ms(now_ms, None) == now_ms - DAY_MS
    assert caplog.records == []


def test_a_step_forward_is_held_back_to_the_time_that_passed_and_said_once(clocks, caplog):
    cut = RetentionCut(DAY_MS, monotonic=clocks.monotonic)
    caplog.set_level(logging.WARNING, logger="monitor.retention")
    first = cut.cutoff_ms(NOW_MS, None)
    clocks.mono_s += 60
    stepped_ms = NOW_MS + 60_000 + 31 * DAY_MS  # a minute passed, the clock says a month and a minute
    held = cut.cutoff_ms(stepped_ms, None)
    assert first + 60_000 <= held <= first + 60_000 + 60 + SLACK_MS
    clocks.mono_s += 60
    assert cut.cutoff_ms(stepped_ms + 60_000, None) <= held + 60_000 + 60 + SLACK_MS
    (record,) = caplog.records  # once per jump, not once per pass
    assert "further than time has passed (a clock step?)" in record.getMessage()


def test_the_first_cut_stops_at_the_newest_stored_sample_and_names_both_causes(clocks, caplog):
    cut = RetentionCut(DAY_MS, monotonic=clocks.monotonic)
    caplog.set_level(logging.WARNING, logger="monitor.retention")
    newest_ms = NOW_MS - 3_600_000  # stopped for an hour, or the clock is an hour ahead
    assert cut.cutoff_ms(NOW_MS, newest_ms) == newest_ms - DAY_MS
    (record,) = caplog.records
    assert "3600 s further than the newest stored sample (the agent was stopped" in record.getMessage()
