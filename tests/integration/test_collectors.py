"""The real ``hostmon collect`` with every collector on, read back from InfluxDB 1.6.7.

One agent process samples this machine and ships to a fresh database; the tagged series come
back from their own measurements (``system_filesystem``, ``system_disk``, ``system_network``),
each tick's lines stamped like the host's, and the filesystem space of ``/`` agrees with
``os.statvfs`` computed the way df does.
"""

from __future__ import annotations

import os

import pytest

from monitor.collector import PsutilStats
from monitor.lineprotocol import decode
from tests import servers
from tests.integration.helpers import HOST, agent_settings, spool_rows, wait_for, write_config

pytestmark = pytest.mark.integration

ROOT_IS_A_DEVICE = any(m.mountpoint == "/" for m in PsutilStats().mounts())


def query(url: str, db: str, q: str) -> list[dict]:
    result = servers.influx_query(url, q, db)["results"][0]
    assert "error" not in result, result
    return result.get("series", [])


def df_used_percent(path: str) -> float:
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return used / (used + st.f_bavail * st.f_frsize) * 100.0


@pytest.mark.skipif(not ROOT_IS_A_DEVICE, reason="/ is not a device-backed filesystem here (overlay root)")
def test_the_agent_ships_filesystem_space_of_root_that_agrees_with_statvfs(
    tmp_path, state_dir, influxdb1, influx_db, start_agent
):
    every_collector = {"filesystem": True, "disk": True, "network": True}
    settings = agent_settings(state_dir, influxdb1.url, influx_db, collectors=every_collector)
    agent = start_agent(write_config(tmp_path / "hostmon.toml", settings))

    def root_points() -> list[list]:
        q = f'SELECT * FROM "system_filesystem" WHERE "host" = \'{HOST}\' AND "mount" = \'/\' ORDER BY time'
        series = query(influxdb1.url, influx_db, q)
        return series[0]["values"] if series and len(series[0]["values"]) >= 3 else []

    values = wait_for(root_points, "three points of system_filesystem for mount /", explain=agent.log)
    expected = df_used_percent("/")
    assert agent.terminate() == 0

    series = query(influxdb1.url, influx_db, 'SELECT * FROM "system_filesystem" WHERE "mount" = \'/\'')
    columns = series[0]["columns"]
    last = dict(zip(columns, values[-1], strict=True))
    assert last["host"] == HOST and last["mount"] == "/"
    # Other processes write to this disk meanwhile: a small tolerance, in percent points.
    assert last["filesystem_used_percent"] == pytest.approx(expected, abs=0.5)
    st = os.statvfs("/")
    assert last["filesystem_total_bytes"] == st.f_blocks * st.f_frsize
    assert last["filesystem_free_bytes"] == pytest.approx(st.f_bavail * st.f_frsize, rel=0.02)
    assert 0 < last["filesystem_inodes_used_percent"] < 100

    # Each tick's filesystem points carry the host point's timestamp.
    host_ts = {
        row[0] for row in query(influxdb1.url, influx_db, 'SELECT "load_1" FROM "system"')[0]["values"]
    }
    assert {row[0] for row in values} <= host_ts
    # Pseudo filesystems never arrive; every mount is a tag value of its own series.
    mounts = query(influxdb1.url, influx_db, 'SHOW TAG VALUES FROM "system_filesystem" WITH KEY = "mount"')
    names = {v[1] for v in mounts[0]["values"]}
    assert "/" in names and not names & {"/proc", "/sys", "/dev", "/dev/shm", "/sys/fs/cgroup", "/run"}
    # The host measurement keeps the original fields and gains load and swap.
    fields = query(influxdb1.url, influx_db, 'SHOW FIELD KEYS FROM "system"')[0]["values"]
    names = {f[0] for f in fields}
    original = {
        "cpu_usage_overall",
        "memory_usage",
        "disk_read",
        "disk_write",
        "network_sent",
        "network_recv",
    }
    assert original | {"load_1", "load_5", "load_15", "swap_used_percent", "swap_used_bytes"} <= names
    # Whole disks and real interfaces only: no partitions, no loop devices, no lo.
    disks = query(influxdb1.url, influx_db, 'SHOW TAG VALUES FROM "system_disk" WITH KEY = "device"')
    devices = {v[1] for v in disks[0]["values"]} if disks else set()
    whole = PsutilStats().whole_disks()
    assert devices <= whole and not any(d.startswith(("loop", "ram")) for d in devices)
    nics = query(influxdb1.url, influx_db, 'SHOW TAG VALUES FROM "system_network" WITH KEY = "interface"')
    assert "lo" not in ({v[1] for v in nics[0]["values"]} if nics else set())
    assert spool_rows(agent.config.spool.path) == []  # every tick delivered at the final flush


def test_a_tick_is_one_spool_row_with_the_host_line_first(tmp_path, state_dir, start_agent):
    # Nothing listens at the sink: the ticks stay spooled, where the test reads them.
    settings = agent_settings(
        state_dir, "http://127.0.0.1:9", "unused", collectors={"filesystem": True, "network": True}
    )
    agent = start_agent(write_config(tmp_path / "hostmon.toml", settings))
    agent.wait_status(lambda s: s.depth >= 2, "two ticks spooled")
    assert agent.terminate() == 0
    rows = spool_rows(agent.config.spool.path)
    for _, ts_ms, text in rows:
        decoded = [decode(line) for line in text.split("\n")]
        assert decoded[0][0] == "system" and decoded[0][1].tags == ()
        assert {sample.ts_ms for _, sample in decoded} == {ts_ms}
        assert all(m in ("system_filesystem", "system_network") for m, _ in decoded[1:])
    if ROOT_IS_A_DEVICE:
        assert any("system_filesystem,host=it-host,mount=/ " in text for _, _, text in rows)
