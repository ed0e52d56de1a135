"""Session fixtures: real servers on free loopback ports, started once per test run.

Outside CI a missing server binary skips the integration tests that need it (with the
reason); in CI (``CI`` set) it is a failure, so a broken install can never pass as green.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import servers
from tests.helpers import ADMIN

_counter = itertools.count()


def _start_or_skip(factory, *args, **kwargs) -> servers.Server:  # type: ignore[no-untyped-def]
    try:
        return factory(*args, **kwargs)
    except FileNotFoundError as exc:
        if servers.IN_CI:
            pytest.fail(f"required server missing in CI: {exc}")
        pytest.skip(f"server not installed: {exc}")


@pytest.fixture(scope="session")
def influxdb1(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    """InfluxDB 1.x without auth."""
    server = _start_or_skip(servers.start_influxdb1, tmp_path_factory.mktemp("influxdb1"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxdb1_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    """InfluxDB 1.x with auth enabled and an admin user ``ADMIN``."""
    server = _start_or_skip(servers.start_influxdb1, tmp_path_factory.mktemp("influxdb1auth"), auth=True)
    servers.influx_query(server.url, f"CREATE USER {ADMIN[0]} WITH PASSWORD '{ADMIN[1]}' WITH ALL PRIVILEGES")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def victoriametrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    server = _start_or_skip(servers.start_victoriametrics, tmp_path_factory.mktemp("vm"))
    yield server
    server.stop()


@pytest.fixture
def influx_db(influxdb1: servers.Server) -> str:
    """A fresh, empty database on the shared InfluxDB 1.x server; its name."""
    name = f"test_{next(_counter)}"
    servers.influx_query(influxdb1.url, f'CREATE DATABASE "{name}"')
    return name


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path
