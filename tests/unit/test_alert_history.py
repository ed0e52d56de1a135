"""alerts.log read back across rotations: what fires now, since when, and the newest events."""

from __future__ import annotations

import gzip
import os
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.alerts import FIRING, RESOLVED, AlertEvent, AlertLog
from monitor.alerts.history import MAX_RECENT, AlertHistory, parse_record
from monitor.alerts.log import format_line

T0_MS = 1_700_000_000_000


def event(n: int, host: str = "web1", state: str = FIRING, rule: str = "cpu_high", tags=()) -> AlertEvent:
    return AlertEvent(T0_MS + n * 1000, host, rule, "warning", state, 95.0, ">", 90.0, f"event {n}", tags)


def append(path: Path, *events: AlertEvent) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.writelines(format_line(e) + "\n" for e in events)


def summary(history: AlertHistory) -> list[tuple[str, str, int, int]]:
    return [(f.last.host, f.last.rule, f.since.time_ms, f.last.time_ms) for f in history.firing()]


def test_a_record_reads_back_every_field_of_its_line_tags_included():
    line = format_line(event(3, tags=(("mount", "/var lib"),)))
    record = parse_record(line)
    assert record is not None
    assert (record.time_ms, record.host, record.rule, record.state, record.value) == (
        T0_MS + 3000,
        "web1",
        "cpu_high",
        FIRING,
        95.0,
    )
    assert (record.tags, record.message, record.severity) == ((("mount", "/var lib"),), "event 3", "warning")


text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@given(host=text, rule=text, mount=text, message=text)
def test_property_any_event_reads_back_as_written(host: str, rule: str, mount: str, message: str) -> None:
    written = AlertEvent(
        T0_MS, host, rule, "critical", RESOLVED, 1.5, "<=", 2.0, message, (("mount", mount),)
    )
    record = parse_record(format_line(written))
    assert record is not None
    assert (record.host, record.rule, record.tags, record.message) == (
        host,
        rule,
        (("mount", mount),),
        message,
    )
    assert (record.time_ms, record.state, record.value, record.severity) == (T0_MS, RESOLVED, 1.5, "critical")


@pytest.mark.parametrize("host", ["a message=b", 'say "hi"', "tab\there", ""])
def test_a_quoted_field_that_looks_like_the_message_key_is_not_the_message(host):
    record = parse_record(format_line(event(1, host=host)))
    assert record is not None and (record.host, record.message) == (host, "event 1")


def test_a_run_of_fires_begun_in_a_rotated_file_is_firing_since_its_first_fire(tmp_path):
    log = tmp_path / "alerts.log"
    append(Path(f"{log}.2"), event(1, state=RESOLVED), event(2))  # the oldest backup
    append(Path(f"{log}.1"), event(3), event(4, host="web2"))
    append(log, event(5), event(6, host="web2", state=RESOLVED))
    for order, name in enumerate([f"{log}.2", f"{log}.1", str(log)]):
        os.utime(name, ns=(0, (order + 1) * 10**9))  # modification times: oldest first
    history = AlertHistory(log)
    assert summary(history) == [("web1", "cpu_high", T0_MS + 2000, T0_MS + 5000)]
    assert [r.time_ms for r in history.recent(3)] == [T0_MS + 4000, T0_MS + 5000, T0_MS + 6000]


def test_a_resolve_in_the_live_file_ends_a_run_from_a_backup_and_a_new_fire_starts_afresh(tmp_path):
    log = tmp_path / "alerts.log"
    append(Path(f"{log}.1"), event(1))
    os.utime(f"{log}.1", ns=(0, 10**9))
    append(log, event(2, state=RESOLVED))
    history = AlertHistory(log)
    assert history.firing() == []
    append(log, event(3), event(4))
    assert summary(history) == [("web1", "cpu_high", T0_MS + 3000, T0_MS + 4000)]


def test_a_rotation_keeps_the_answer_and_new_lines_after_it_are_read(tmp_path):
    path = tmp_path / "alerts.log"
    writer = AlertLog(path, 1024, 5)
    history = AlertHistory(path)
    for n in range(12):
        writer.write(event(n, host=f"h{n}"))
        assert [r.host for r in history.recent()] == [f"h{i}" for i in range(n + 1)]
    assert Path(f"{path}.1").exists()  # the writer rotated on the way
    writer.write(event(12, host="h0", state=RESOLVED))
    writer.close()
    assert "h0" not in {f.last.host for f in history.firing()}
    assert len(history.firing()) == 11


def test_logrotates_dated_and_gzipped_files_are_read_too(tmp_path):
    log = tmp_path / "alerts.log"
    with gzip.open(tmp_path / "alerts.log-20231113-1699900000.gz", "wt", encoding="utf-8") as fh:
        fh.write(format_line(event(1, host="old")) + "\n")
    os.utime(tmp_path / "alerts.log-20231113-1699900000.gz", ns=(0, 10**9))
    append(Path(f"{log}-20231114-1700000000"), event(2, host="mid"))
    os.utime(f"{log}-20231114-1700000000", ns=(0, 2 * 10**9))
    append(log, event(3, host="new"))
    (tmp_path / "other.log").write_text(format_line(event(4, host="not ours")) + "\n")
    history = AlertHistory(log)
    assert [r.host for r in history.recent()] == ["old", "mid", "new"]
    assert [f.last.host for f in history.firing()] == ["mid", "new", "old"]


def test_no_log_is_no_events_and_no_directory_either(tmp_path):
    assert AlertHistory(tmp_path / "alerts.log").recent() == []
    assert AlertHistory(tmp_path / "missing" / "alerts.log").firing() == []


def test_memory_is_bounded_the_history_keeps_the_newest_events_of_each_file(tmp_path):
    log = tmp_path / "alerts.log"
    append(log, *(event(n, host=f"h{n % 7}") for n in range(MAX_RECENT + 500)))
    history = AlertHistory(log)
    recent = history.recent(MAX_RECENT)
    assert len(recent) == MAX_RECENT and recent[-1].time_ms == T0_MS + (MAX_RECENT + 499) * 1000
    assert len(history.firing()) == 7


def test_readers_on_many_threads_while_the_log_grows_see_every_event_once(tmp_path):
    log = tmp_path / "alerts.log"
    history = AlertHistory(log)
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(50):
                history.firing()
                times = [r.time_ms for r in history.recent()]
                assert len(times) == len(set(times))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(4)]
    for reader in readers:
        reader.start()
    for n in range(300):
        append(log, event(n, host=f"h{n % 3}"))
    for reader in readers:
        reader.join()
    assert errors == []
    assert len(history.recent()) == 300
