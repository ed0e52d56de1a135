"""alerts.log: the line format, re-creation after deletion, rotation by size."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from monitor.alerts import Alerts
from monitor.alerts.log import AlertEvent, AlertLog, format_line, parse_line
from monitor.config import AlertRule, AlertsConfig
from monitor.lineprotocol import Sample

T0 = 1_700_000_000_000


def event(n: int = 0, message: str = "cpu_usage_overall is 95, > 90") -> AlertEvent:
    return AlertEvent(T0 + n, "web1", "cpu_high", "warning", "FIRING", 95.25, ">=", 90.0, message)


def test_line_format_is_fixed_order_key_value_with_iso_utc_ms_time() -> None:
    assert format_line(event(7)) == (
        "time=2023-11-14T22:13:20.007Z host=web1 rule=cpu_high severity=warning state=FIRING"
        ' value=95.25 op=>= threshold=90 message="cpu_usage_overall is 95, > 90"'
    )


def test_system_condition_line_has_dashes_for_value_op_threshold() -> None:
    e = AlertEvent(T0, "web1", "sink_unreachable", "critical", "RESOLVED", None, "", None, "back")
    assert format_line(e) == (
        "time=2023-11-14T22:13:20.000Z host=web1 rule=sink_unreachable severity=critical"
        " state=RESOLVED value=- op=- threshold=- message=back"
    )


def test_values_with_quotes_backslashes_and_newlines_stay_on_one_line() -> None:
    line = format_line(event(message='refused: "401"\nC:\\path\there'))
    assert "\n" not in line
    assert line.endswith(r'message="refused: \"401\"\nC:\\path\there"')
    assert parse_line(line)["message"] == 'refused: "401"\nC:\\path\there'


def test_grep_and_awk_read_the_fields(tmp_path: Path) -> None:
    log = AlertLog(tmp_path / "alerts.log", 10_000, 1)
    log.write(event(1))
    log.write(AlertEvent(T0 + 2, "web1", "cpu_high", "warning", "RESOLVED", 80.0, ">=", 90.0, "ok now"))
    log.close()
    path = str(tmp_path / "alerts.log")
    grep = subprocess.run(["grep", "-c", "state=FIRING", path], capture_output=True, text=True, check=True)
    assert grep.stdout.strip() == "1"
    awk = subprocess.run(
        ["awk", '{v=$6; sub(/^[^=]*=/, "", v); o=$7; sub(/^[^=]*=/, "", o); print $5, v, o}', path],
        capture_output=True,
        text=True,
        check=True,
    )
    assert awk.stdout.splitlines() == ["state=FIRING 95.25 >=", "state=RESOLVED 80 >="]


text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


@given(rule=text, host=text, message=text)
def test_property_any_text_round_trips_through_one_line(rule: str, host: str, message: str) -> None:
    e = AlertEvent(T0, host, rule, "info", "FIRING", 1.5, "<", 2.0, message)
    line = format_line(e)
    assert "\n" not in line
    assert "\r" not in line
    parsed = parse_line(line)
    assert list(parsed) == [
        "time",
        "host",
        "rule",
        "severity",
        "state",
        "value",
        "op",
        "threshold",
        "message",
    ]
    assert (parsed["host"], parsed["rule"], parsed["message"]) == (host, rule, message)


def _alerts(tmp_path: Path, **kw: object) -> Alerts:
    rules = (AlertRule("cpu_high", "cpu_usage_overall", ">", 90.0),)
    return Alerts(AlertsConfig(log_path=tmp_path / "logs" / "alerts.log", rules=rules, **kw), "web1")  # type: ignore[arg-type]


def _flip(alerts: Alerts, n: int) -> None:
    """n events: alternately above and below the threshold."""
    for i in range(n):
        alerts.observe(Sample(T0 + i * 1000, "web1", {"cpu_usage_overall": 95.0 if i % 2 == 0 else 50.0}))


def test_log_deleted_while_running_is_recreated_on_the_next_event(tmp_path: Path) -> None:
    alerts = _alerts(tmp_path)
    path = tmp_path / "logs" / "alerts.log"
    _flip(alerts, 1)
    path.unlink()
    alerts.set_condition("sink_unreachable", True, "critical", "down")
    assert path.exists()
    assert "rule=sink_unreachable" in path.read_text()
    assert "rule=cpu_high" not in path.read_text()
    alerts.close()


def test_log_directory_deleted_while_running_is_recreated(tmp_path: Path) -> None:
    alerts = _alerts(tmp_path)
    _flip(alerts, 1)
    shutil.rmtree(tmp_path / "logs")
    alerts.set_condition("spool_overflow", True, "warning", "full")
    alerts.close()
    assert "rule=spool_overflow" in (tmp_path / "logs" / "alerts.log").read_text()


def test_log_moved_away_by_an_external_logrotate_gets_a_new_file(tmp_path: Path) -> None:
    alerts = _alerts(tmp_path)
    path = tmp_path / "logs" / "alerts.log"
    _flip(alerts, 1)
    os.rename(path, tmp_path / "logs" / "alerts.log-20240101")
    _flip(alerts, 2)
    alerts.close()
    assert (tmp_path / "logs" / "alerts.log-20240101").read_text().count("\n") == 1
    assert [parse_line(line)["state"] for line in path.read_text().splitlines()] == ["RESOLVED"]


def test_log_rotates_by_size_keeping_backup_count_files(tmp_path: Path) -> None:
    alerts = _alerts(tmp_path, max_bytes=1024, backup_count=2)
    _flip(alerts, 60)  # about 9 KB of lines
    alerts.close()
    logs = tmp_path / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["alerts.log", "alerts.log.1", "alerts.log.2"]
    for p in logs.iterdir():
        assert 0 < p.stat().st_size <= 1024
        for line in p.read_text().splitlines():
            assert parse_line(line)["rule"] == "cpu_high"
    last = parse_line((logs / "alerts.log").read_text().splitlines()[-1])
    assert last["time"] == "2023-11-14T22:14:19.000Z"  # the 60th event is in the current file


def test_a_second_writer_after_rotation_writes_to_the_new_file_not_the_backup(tmp_path: Path) -> None:
    alerts = _alerts(tmp_path, max_bytes=1024, backup_count=1)
    _flip(alerts, 8)
    alerts.close()
    before = (tmp_path / "logs" / "alerts.log.1").read_text()
    alerts = _alerts(tmp_path, max_bytes=1024, backup_count=1)
    alerts.set_condition("x", True, "info", "after restart")
    alerts.close()
    assert (tmp_path / "logs" / "alerts.log.1").read_text() == before
    assert "rule=x" in (tmp_path / "logs" / "alerts.log").read_text()
