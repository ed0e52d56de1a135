"""/health: 200 when the store answers and the agent (if any) ships; 503 with the reasons if not."""

from __future__ import annotations

import pytest

from monitor.api import make_app
from monitor.api.stores.sqlite import SQLiteStore
from monitor.errors import StoreUnavailable
from monitor.spool import Spool
from monitor.status import SpoolStatus
from tests.unit.test_api import NOW_MS, NOW_S, call, make_config
from tests.unit.test_api_errors import FailingStore

GRACE_MS = 300_000  # max(300 s, 3 x agent.interval_s) with the default 10 s interval


def status(**changes: object) -> SpoolStatus:
    base = {
        "depth": 0,
        "oldest_ts_ms": None,
        "newest_ts_ms": None,
        "dropped_total": 0,
        "spilled_total": 0,
        "rejected_total": 0,
        "last_success_ms": NOW_MS - 1000,
        "last_error": "",
        "sink_reachable": True,
        "updated_ms": NOW_MS - 1000,
    }
    return SpoolStatus(**{**base, **changes})  # type: ignore[arg-type]


def health(tmp_path, spool: SpoolStatus | None, store=None):
    config = make_config(tmp_path)
    app = make_app(
        config, store or SQLiteStore(config.sink.path), clock=lambda: NOW_S, spool_status=lambda: spool
    )
    response = call(app, "/health")
    return response.status, response.json()


def test_healthy_without_an_agent_reports_agent_null(tmp_path):
    code, body = health(tmp_path, None)
    assert code == 200
    assert body["status"] == "ok" and body["problems"] == [] and body["agent"] is None
    assert body["store"]["reachable"] is True and body["store"]["kind"] == "sqlite"
    assert "error" not in body


def test_store_unreachable_is_503_with_the_reason_in_the_error_shape(tmp_path):
    code, body = health(tmp_path, None, FailingStore(StoreUnavailable("influx:8086", "connection refused")))
    assert code == 503 and body["status"] == "unhealthy"
    assert body["store"]["reachable"] is False
    assert "connection refused" in body["store"]["detail"]
    assert body["error"]["status"] == 503 and "connection refused" in body["error"]["message"]
    assert body["error"]["parameter"] is None


def test_agent_state_is_reported(tmp_path):
    spool = status(depth=42, oldest_ts_ms=NOW_MS - 60_000, dropped_total=3, spilled_total=4, rejected_total=5)
    code, body = health(tmp_path, spool)
    assert code == 200
    assert body["agent"] == {
        "spool_depth": 42,
        "oldest_unsent": "2023-11-14T22:12:20.000Z",
        "last_success": "2023-11-14T22:13:19.000Z",
        "last_success_age_s": 1.0,
        "heartbeat_age_s": 1.0,
        "sink_reachable": True,
        "last_error": "",
        "dropped_total": 3,
        "spilled_total": 4,
        "rejected_total": 5,
        "last_clock_step": None,
    }


def test_the_last_clock_step_shows_and_is_no_health_problem(tmp_path):
    spool = status(clock_step_ms=-3_600_000, clock_step_at_ms=NOW_MS - 60_000)
    code, body = health(tmp_path, spool)
    assert code == 200 and body["problems"] == []
    assert body["agent"]["last_clock_step"] == {"step_s": -3600.0, "at": "2023-11-14T22:12:20.000Z"}


def test_an_agent_heartbeat_from_a_clock_a_day_ahead_is_not_a_problem(tmp_path):
    spool = status(updated_ms=NOW_MS + 86_400_000, clock_step_ms=86_400_000, clock_step_at_ms=NOW_MS)
    code, body = health(tmp_path, spool)
    assert code == 200 and body["problems"] == []


@pytest.mark.parametrize(
    ("spool", "healthy"),
    [
        (status(), True),
        (status(sink_reachable=None, last_success_ms=None), True),  # just started
        (status(sink_reachable=False, last_success_ms=NOW_MS - GRACE_MS + 1000), True),  # short outage
        (status(sink_reachable=False, last_success_ms=NOW_MS - GRACE_MS - 1000), False),
        (status(sink_reachable=False, last_success_ms=None), False),
        (status(sink_reachable=True, last_success_ms=NOW_MS - 10 * GRACE_MS), True),  # reached it last time
        (status(updated_ms=NOW_MS - GRACE_MS - 1000), False),  # agent stopped
        (status(updated_ms=None), True),
    ],
)
def test_agent_rules(tmp_path, spool, healthy):
    code, body = health(tmp_path, spool)
    assert (code, body["status"], body["problems"] == []) == (
        (200, "ok", True) if healthy else (503, "unhealthy", False)
    )


def test_an_agent_that_cannot_write_names_the_last_error(tmp_path):
    spool = status(sink_reachable=False, last_success_ms=None, last_error="HTTP 401: authorization failed")
    _, body = health(tmp_path, spool)
    assert "HTTP 401: authorization failed" in body["problems"][0]
    assert "last success: never" in body["problems"][0]


def test_an_unreadable_spool_is_503_not_500(tmp_path):
    config = make_config(tmp_path)

    def broken() -> SpoolStatus:
        raise OSError("permission denied")

    app = make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S, spool_status=broken)
    response = call(app, "/health")
    assert response.status == 503
    assert "agent spool unreadable: permission denied" in response.json()["problems"]


def test_health_reads_the_real_spool_beside_it_by_default(tmp_path):
    config = make_config(tmp_path)
    spool = Spool(config.spool, clock=lambda: NOW_S - 400)
    spool.append(NOW_MS - 400_000, "system,host=web1 memory_usage=1 1699999600000")
    spool.record_failure("connection refused", reachable=False)
    spool.close()
    app = make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)
    response = call(app, "/health")
    body = response.json()
    assert response.status == 503
    assert body["agent"]["spool_depth"] == 1 and body["agent"]["sink_reachable"] is False
    assert any("connection refused" in p for p in body["problems"])


def test_a_damaged_spool_beside_it_is_503_naming_the_file(tmp_path):
    config = make_config(tmp_path)
    config.spool.path.parent.mkdir(parents=True, exist_ok=True)
    config.spool.path.write_bytes(b"not a database " * 300)
    app = make_app(config, SQLiteStore(config.sink.path), clock=lambda: NOW_S)
    response = call(app, "/health")
    assert response.status == 503
    expected = f"agent spool unreadable: {config.spool.path} is damaged: file is not a database"
    assert expected in response.json()["problems"]
