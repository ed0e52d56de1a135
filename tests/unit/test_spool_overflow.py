"""The overflow policies on a real spool: drop_oldest and spill, counted; drops delivered after all."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.unit.spool_helpers import (
    Overflows,
    SpoolFactory,
    keys,
    line,
    stored_ts,
)


def test_samples_dropped_from_two_batches_handed_out_are_uncounted_only_when_their_batch_is_acked(
    make_spool: SpoolFactory,
) -> None:
    spool = make_spool(buffer_size=10)  # each append past 10 drops the oldest sample
    for ts in range(10):
        spool.append(ts, line(ts))
    in_flight = spool.peek(3)  # 0..2
    read_ahead = spool.peek(3, after=keys(in_flight)[-1])  # 3..5

    for ts in range(10, 15):  # drops 0..4: all of the batch in flight, two of the read-ahead
        spool.append(ts, line(ts))
    assert spool.status().dropped_total == 5

    spool.ack([seq for seq, _, _ in in_flight])  # delivered after all
    assert spool.status().dropped_total == 2
    spool.ack([seq for seq, _, _ in read_ahead])
    assert spool.status().dropped_total == 0
    assert stored_ts(spool) == list(range(6, 15))


def test_a_plain_peek_forgets_a_dropped_read_ahead_that_was_never_sent(make_spool: SpoolFactory) -> None:
    spool = make_spool(buffer_size=10)
    for ts in range(10):
        spool.append(ts, line(ts))
    in_flight = spool.peek(3)
    spool.peek(3, after=keys(in_flight)[-1])  # 3..5, then dropped from the spool while read ahead
    for ts in range(10, 15):
        spool.append(ts, line(ts))

    retry = spool.peek(3)  # the batch in flight failed: start over from the oldest row
    spool.ack([seq for seq, _, _ in retry])
    spool.ack([seq for seq, _, _ in in_flight])  # a stale ack (its rows are gone) changes nothing

    assert [ts for _, ts, _ in retry] == [5, 6, 7]
    assert spool.status().dropped_total == 5  # 0..4 never reached the database


def test_spill_moves_the_oldest_lines_to_the_spill_file_unchanged(
    make_spool: SpoolFactory, overflows: Overflows, tmp_path: Path
) -> None:
    spool = make_spool(buffer_size=1000, overflow="spill")
    lines = [line(ts) for ts in range(1025)]
    for ts, text in enumerate(lines):
        spool.append(ts, text)

    assert overflows.calls == [("spill", 10)] * 3
    assert (tmp_path / "spill.lp").read_text(encoding="utf-8") == "".join(t + "\n" for t in lines[:30])
    status = spool.status()
    assert (status.depth, status.spilled_total, status.dropped_total) == (995, 30, 0)
    assert [text for _, _, text in spool.peek(2000)] == lines[30:]


def test_spill_takes_the_oldest_by_timestamp_not_by_arrival(make_spool: SpoolFactory, tmp_path: Path) -> None:
    spool = make_spool(buffer_size=100, overflow="spill")  # chunk: 1 sample
    for ts in [*range(1000, 1100), 5]:  # a late sample with the oldest timestamp arrives last
        spool.append(ts, line(ts))
    spool.append(2000, line(2000))

    assert (tmp_path / "spill.lp").read_text(encoding="utf-8").splitlines() == [line(1000), line(5)]


def test_spill_that_cannot_be_written_drops_instead_and_counts_it(
    make_spool: SpoolFactory, overflows: Overflows, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    not_a_file = tmp_path / "spill-dir"
    not_a_file.mkdir()
    spool = make_spool(buffer_size=100, overflow="spill", spill_path=not_a_file)

    with caplog.at_level(logging.ERROR, logger="monitor.spool.overflow"):
        for ts in range(102):
            spool.append(ts, line(ts))

    assert overflows.calls == [("drop_oldest", 1), ("drop_oldest", 1)]
    status = spool.status()
    assert (status.depth, status.dropped_total, status.spilled_total) == (100, 2, 0)
    assert "cannot spill" in caplog.text


def test_spill_cuts_a_partial_line_left_by_an_interrupted_spill(
    make_spool: SpoolFactory, tmp_path: Path
) -> None:
    spill = tmp_path / "spill.lp"
    spill.write_text(line(1) + "\n" + line(2)[:17], encoding="utf-8")  # a crash mid-write
    spool = make_spool(buffer_size=100, overflow="spill")
    for ts in range(100, 201):
        spool.append(ts, line(ts))

    assert spill.read_text(encoding="utf-8").splitlines() == [line(1), line(100)]
