"""Damaged files and permission problems, met by the real ``hostmon`` processes.

A damaged spool (garbage, a truncated copy of a real one, a directory) is moved aside and the
real ``collect`` keeps sampling on a fresh one, with the ``spool_damaged`` alert naming where the
old one went. Permission problems (a state directory that belongs to someone else, a spool
file another user owns, a read-only directory, a read-only mount) are one line on stderr naming
the path and the user, and exit 2. CI runs as root, which ignores permission bits, so those
processes run as ``nobody`` (``setpriv``); the read-only mount is a real tmpfs remounted ``ro``.
Outside CI, without root, the permission tests skip.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor import tiers
from monitor.config import SpoolConfig
from monitor.spool import Spool
from tests import servers
from tests.integration.helpers import (
    FAST_SHIPPER,
    HOST,
    INTERVAL_S,
    REPO,
    alert_events,
    hostmon,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.integration

AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")
GARBAGE = bytes(range(256)) * 32


def need_root() -> None:
    if os.geteuid() == 0:
        return
    if servers.IN_CI:
        pytest.fail("the permission tests need root in CI (to run processes as nobody, to mount)")
    pytest.skip("not root: cannot run a process as another user or mount a file system")


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="hostmon-damaged-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def settings(state_dir: Path) -> dict[str, dict[str, object]]:
    """An agent on the embedded SQLite store (the default sink), fast ticks."""
    return {
        "agent": {"host": HOST, "interval_s": INTERVAL_S, "state_dir": str(state_dir)},
        "shipper": dict(FAST_SHIPPER),
        "sink": {"kind": "sqlite"},
    }


def config_for(directory: Path, state_dir: Path) -> Path:
    path = write_config(directory / "hostmon.toml", settings(state_dir))
    path.chmod(0o644)
    return path


def real_spool(path: Path, n: int) -> list[str]:
    """A spool written by the real Spool, N samples, closed; its lines."""
    spool = Spool(SpoolConfig(path=path, spill_path=path.with_name("spill.lp")))
    lines = [f"system,host=old cpu_usage_overall={i}.5 {i * 1000}" for i in range(n)]
    for i, text in enumerate(lines):
        spool.append(i * 1000, text)
    spool.close()
    return lines


def run_as(prefix: tuple[str, ...], config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``hostmon --config CONFIG ARGS`` as the user PREFIX switches to; ended by the timeout if it runs on."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "monitor", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"},
    )


def points_stored(metrics_db: Path) -> int:
    if not metrics_db.exists():
        return 0
    conn = sqlite3.connect(f"file:{metrics_db}?mode=ro", uri=True, timeout=5)
    try:
        return len({row[3] for row in tiers.read_all(conn)})
    except sqlite3.OperationalError:
        return 0  # the sink has not created its table yet
    finally:
        conn.close()


# -- a damaged spool ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["garbage", "truncated", "directory"])
def test_collect_moves_a_damaged_spool_aside_alerts_and_keeps_sampling(
    tmp_path, state_dir, start_agent, kind
):
    spool_db = state_dir / "spool.db"
    old_lines: list[str] = []
    if kind == "garbage":
        spool_db.write_bytes(GARBAGE)
    elif kind == "truncated":
        source = tmp_path / "source.db"
        old_lines = real_spool(source, 2000)
        data = source.read_bytes()
        spool_db.write_bytes(data[: len(data) // 2])
    else:
        spool_db.mkdir()
        (spool_db / "note").write_text("kept")
    before = None if kind == "directory" else spool_db.read_bytes()

    agent = start_agent(config_for(tmp_path, state_dir))
    alerts_log = state_dir / "alerts.log"
    fired = wait_for(
        lambda: alert_events(alerts_log, "spool_damaged"), "the spool_damaged alert", 20, agent.log
    )
    wait_for(lambda: points_stored(state_dir / "metrics.db") >= 5, "new samples stored", 20, agent.log)
    assert agent.alive()
    assert [e["state"] for e in fired] == ["FIRING"] and fired[0]["severity"] == "critical"
    moved = [p for p in state_dir.glob("spool.db.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert len(moved) == 1, sorted(state_dir.iterdir())
    assert f"moved aside to {moved[0]}" in fired[0]["message"]
    assert f"moved aside to {moved[0]}" in agent.log()  # the agent's own log says it too
    if before is None:
        assert (moved[0] / "note").read_text() == "kept"
    else:
        assert moved[0].read_bytes() == before  # never deleted, never written
        assert f"hostmon spool export {moved[0]}" in fired[0]["message"]
    assert agent.terminate() == 0

    if kind == "truncated":  # what the alert says to do brings the old samples back
        exported = hostmon(agent.config_path, "spool", "export", str(moved[0]))
        assert exported.returncode == 0, exported.stderr
        lines = exported.stdout.splitlines()
        assert lines and set(lines) <= set(old_lines)
        assert "damaged pages" in exported.stderr


def test_hostmon_spool_on_a_damaged_spool_says_so_in_one_line(tmp_path, state_dir):
    (state_dir / "spool.db").write_bytes(GARBAGE)
    result = hostmon(config_for(tmp_path, state_dir), "spool")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"hostmon spool: {state_dir}/spool.db is damaged: file is not a database"
        " (the agent moves a damaged spool aside when it starts)\n"
    )


def test_a_config_file_that_is_not_utf8_exits_2_naming_the_file(tmp_path):
    config = tmp_path / "hostmon.toml"
    config.write_bytes(b'[agent]\nhost = "\xff"\n')
    result = hostmon(config, "collect")
    assert result.returncode == 2
    assert (
        result.stderr
        == f"config error: {config}: not valid TOML: not UTF-8 text (invalid start byte at byte 17)\n"
    )


# -- permission problems --------------------------------------------------------------------------


def foreign_state_dir(shared_dir: Path) -> Path:
    """A state directory root owns (mode 0755): nobody can enter it, not create files in it."""
    state = shared_dir / "state"
    state.mkdir(mode=0o755)
    return state


@pytest.mark.parametrize("command", ["collect", "run"])
def test_a_state_directory_owned_by_another_user_is_one_line_and_exit_2(shared_dir, command):
    need_root()
    state = foreign_state_dir(shared_dir)
    result = run_as(AS_NOBODY, config_for(shared_dir, state), command)
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"hostmon {command}: cannot write {state}/spool.db as user nobody: Permission denied"
        f" (no new file can be made in {state})\n"
    )
    assert list(state.iterdir()) == []


def test_a_read_only_state_directory_is_one_line_and_exit_2(shared_dir):
    need_root()
    state = shared_dir / "state"
    state.mkdir()
    real_spool(state / "spool.db", 10)
    os.chown(state, 65534, 65534)  # nobody's own directory ...
    state.chmod(0o555)  # ... made read-only
    before = (state / "spool.db").read_bytes()
    result = run_as(AS_NOBODY, config_for(shared_dir, state), "collect")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"hostmon collect: cannot write {state}/spool.db as user nobody: ")
    assert result.stderr.count("\n") == 1
    assert (state / "spool.db").read_bytes() == before


def test_a_spool_file_owned_by_another_user_is_one_line_and_exit_2_and_stays_untouched(shared_dir):
    need_root()
    state = shared_dir / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)  # nobody may create files here, but spool.db is root's (0644)
    real_spool(state / "spool.db", 10)
    before = (state / "spool.db").read_bytes()
    result = run_as(AS_NOBODY, config_for(shared_dir, state), "collect")
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr == f"hostmon collect: cannot write {state}/spool.db as user nobody: Permission denied\n"
    )
    assert (state / "spool.db").read_bytes() == before
    assert list(state.glob("spool.db.damaged-*")) == []  # a permission problem is not damage


@pytest.mark.parametrize("command", ["api", "run"])
def test_a_store_the_api_cannot_read_is_one_line_and_exit_2(shared_dir, command):
    need_root()
    state = shared_dir / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    store = state / "metrics.db"
    sqlite3.connect(store).close()
    store.chmod(0o600)  # root's
    config = write_config(
        shared_dir / "hostmon.toml", {**settings(state), "api": {"host": "127.0.0.1", "port": 0}}
    )
    config.chmod(0o644)
    result = run_as(AS_NOBODY, config, command)
    assert result.returncode == 2, result.stderr
    verb = "read" if command == "api" else "write"  # run checks the agent's files first
    assert result.stderr == f"hostmon {command}: cannot {verb} {store} as user nobody: Permission denied\n"


def test_an_alert_log_the_api_cannot_write_is_one_line_and_exit_2(shared_dir):
    """The API writes the silent-host rule's events to alerts.log: it checks it can, as the agent does."""
    need_root()
    state = shared_dir / "state"
    state.mkdir(mode=0o777)
    state.chmod(0o777)
    logs = shared_dir / "logs"
    logs.mkdir(mode=0o755)  # root's
    config = write_config(
        shared_dir / "hostmon.toml",
        {
            **settings(state),
            "api": {"host": "127.0.0.1", "port": 0},
            "alerts": {"log_path": str(logs / "alerts.log")},
        },
    )
    config.chmod(0o644)
    result = run_as(AS_NOBODY, config, "api")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"hostmon api: cannot write {logs}/alerts.log as user nobody: Permission denied"
        f" (no new file can be made in {logs})\n"
    )


@pytest.fixture
def read_only_mount(shared_dir: Path) -> Iterator[Path]:
    """A real tmpfs holding a spool, remounted read-only; unmounted at the end."""
    need_root()
    state = shared_dir / "state"
    state.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(state)], check=False)
    if mounted.returncode != 0:
        if servers.IN_CI:
            pytest.fail("cannot mount a tmpfs in CI")
        pytest.skip("cannot mount a tmpfs here")
    try:
        real_spool(state / "spool.db", 10)
        subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
        yield state
    finally:
        subprocess.run(["umount", str(state)], check=True)


def test_a_read_only_mount_is_one_line_and_exit_2_even_for_root(shared_dir, read_only_mount):
    state = read_only_mount
    before = (state / "spool.db").read_bytes()
    result = run_as((), config_for(shared_dir, state), "collect")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        f"hostmon collect: cannot write {state}/spool.db as user root: Read-only file system"
        f" (no new file can be made in {state})\n"
    )
    assert (state / "spool.db").read_bytes() == before
