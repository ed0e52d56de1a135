"""Damaged files on real disks: a spool or store that is garbage, truncated or a directory is moved
aside (never deleted) and a fresh one started; the CLI says what is wrong in one line.

Every file here is real: garbage bytes, a truncated copy of a real spool, a directory. The
permission cases need another user or a read-only mount and run the real process
(tests/integration/test_damaged_files.py).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from monitor import cli, sqlitedb
from monitor.config import ShipperConfig, SinkConfig, SpoolConfig
from monitor.errors import FileDamaged, Unavailable
from monitor.sinks.sqlite import SQLiteSink
from monitor.spool import Spool, salvage
from monitor.status import read_status
from tests.store_helpers import stored
from tests.unit.spool_helpers import NOW_S, line

GARBAGE = bytes(range(256)) * 32  # 8 KiB that no SQLite header starts with
STAMP = "20231114T221320Z"  # NOW_S in UTC, as move_aside names the file


def write_spool(path: Path, n: int) -> list[str]:
    """A real spool at PATH holding N samples, closed; the lines it holds, in order."""
    spool = Spool(SpoolConfig(path=path, spill_path=path.with_name("spill.lp")), clock=lambda: NOW_S)
    lines = [line(1000 * i, width=8) for i in range(n)]
    for i, text in enumerate(lines):
        spool.append(1000 * i, text)
    spool.close()
    return lines


def truncated_copy(source: Path, target: Path, fraction: float) -> None:
    data = source.read_bytes()
    target.write_bytes(data[: int(len(data) * fraction)])


def open_spool(path: Path) -> Spool:
    return Spool(SpoolConfig(path=path, spill_path=path.with_name("spill.lp")), clock=lambda: NOW_S)


def aside(path: Path) -> Path:
    return path.with_name(f"{path.name}.damaged-{STAMP}")


# -- the spool's open path -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_spool(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A real spool of 3000 samples (about 60 pages), made once; tests copy it, never change it."""
    source = tmp_path_factory.mktemp("source") / "spool.db"
    return source, write_spool(source, 3000)


def damaged(kind: str, path: Path, real_spool: tuple[Path, list[str]]) -> None:
    """Put a damaged spool of KIND at PATH."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "garbage":
        path.write_bytes(GARBAGE)
    elif kind == "truncated_half":  # the file ends in the middle of its pages: reads fail
        truncated_copy(real_spool[0], path, 0.5)
    elif kind == "truncated_tail":  # only the last pages are gone: reads succeed, quick_check fails
        truncated_copy(real_spool[0], path, 0.99)
    elif kind == "directory":
        path.mkdir()
        (path / "something").write_text("kept")


@pytest.mark.parametrize("kind", ["garbage", "truncated_half", "truncated_tail", "directory"])
def test_a_damaged_spool_is_moved_aside_untouched_and_a_fresh_one_takes_samples(tmp_path, real_spool, kind):
    path = tmp_path / "state" / "spool.db"
    damaged(kind, path, real_spool)
    before = None if kind == "directory" else path.read_bytes()
    spool = open_spool(path)
    try:
        moved = spool.moved_aside
        assert moved is not None
        assert moved.original == path and moved.moved_to == aside(path)
        assert moved.was_directory == (kind == "directory")
        if before is None:
            assert (moved.moved_to / "something").read_text() == "kept"
        else:
            assert moved.moved_to.read_bytes() == before  # renamed, not rewritten
        spool.append(5000, line(5000))
        assert [ts for _, ts, _ in spool.peek(10)] == [5000]
    finally:
        spool.close()
    assert read_status(path) is not None and read_status(path).depth == 1  # type: ignore[union-attr]


def test_the_wal_beside_a_damaged_spool_goes_with_it_so_the_fresh_spool_never_reads_it(tmp_path):
    path = tmp_path / "spool.db"
    path.write_bytes(GARBAGE)
    wal = path.with_name("spool.db-wal")
    wal.write_bytes(b"an old write-ahead log")
    spool = open_spool(path)
    spool.close()
    assert spool.moved_aside is not None
    assert Path(f"{aside(path)}-wal") in spool.moved_aside.companions
    assert Path(f"{aside(path)}-wal").read_bytes() == b"an old write-ahead log"
    assert not wal.exists() or wal.read_bytes() != b"an old write-ahead log"


def test_a_sound_spool_is_kept_with_everything_it_holds(tmp_path):
    path = tmp_path / "spool.db"
    lines = write_spool(path, 50)
    spool = open_spool(path)
    try:
        assert spool.moved_aside is None
        assert [text for _, _, text in spool.peek(100)] == lines
    finally:
        spool.close()
    assert list(tmp_path.glob("*.damaged-*")) == []


def test_a_second_damaged_spool_in_the_same_second_gets_its_own_name(tmp_path):
    path = tmp_path / "spool.db"
    for content in (b"first", b"second"):
        path.unlink(missing_ok=True)
        path.write_bytes(content * 100)
        open_spool(path).close()
    assert aside(path).read_bytes() == b"first" * 100
    assert path.with_name(f"spool.db.damaged-{STAMP}-2").read_bytes() == b"second" * 100


def test_the_alert_text_names_the_file_and_the_commands_that_recover_it(tmp_path):
    path = tmp_path / "spool.db"
    path.write_bytes(GARBAGE)
    spool = open_spool(path)
    spool.close()
    assert spool.moved_aside is not None
    text = salvage.describe(spool.moved_aside)
    moved = aside(path)
    assert f"spool {path} was damaged (file is not a database); moved aside to {moved}" in text
    assert f"hostmon spool export {moved} > {moved}.lp && hostmon spool replay {moved}.lp" in text


# -- reading what a damaged spool still holds --------------------------------------------------------


def test_export_reads_the_samples_on_both_sides_of_a_damaged_page_in_order(tmp_path, real_spool):
    source, lines = real_spool
    data = bytearray(source.read_bytes())
    middle = len(data) // 4096 // 2 * 4096
    data[middle : middle + 4096] = b"\xa5" * 4096  # one page of the queue overwritten
    damaged_copy = tmp_path / "damaged.db"
    damaged_copy.write_bytes(data)
    with pytest.raises(sqlite3.DatabaseError):  # what a plain read of this file does
        sqlite3.connect(damaged_copy).execute("SELECT line FROM queue ORDER BY seq").fetchall()
    got: list[str] = []
    result = salvage.export_lines(damaged_copy, got.append)
    assert result.gap is not None
    after, before = result.gap
    assert got == lines[:after] + lines[before - 1 :]  # seq n holds lines[n - 1]
    assert 0 < before - after - 1 < 200  # one page of samples lost, no more
    assert result.lines == len(got)


def test_export_reads_a_spool_cut_in_the_middle_up_to_the_cut(tmp_path, real_spool):
    source, lines = real_spool
    cut = tmp_path / "cut.db"
    truncated_copy(source, cut, 0.5)
    got: list[str] = []
    result = salvage.export_lines(cut, got.append)
    assert result.gap is not None
    assert got == lines[: result.gap[0]] and len(got) > len(lines) / 3


def test_export_of_a_sound_spool_is_every_waiting_sample_in_order(tmp_path):
    path = tmp_path / "spool.db"
    lines = write_spool(path, 20)
    got: list[str] = []
    result = salvage.export_lines(path, got.append)
    assert got == lines and result.gap is None and result.skipped_delivered == 0


def test_export_leaves_out_samples_the_database_already_accepted(tmp_path):
    path = tmp_path / "spool.db"
    spool = open_spool(path)
    for ts in range(10):
        spool.append(1000 * ts, line(1000 * ts))
    spool.ack_deferred([seq for seq, _, _ in spool.peek(4)])
    got: list[str] = []
    result = salvage.export_lines(path, got.append)  # while the agent has it open
    spool.close()
    assert got == [line(1000 * ts) for ts in range(4, 10)] and result.skipped_delivered == 4


@pytest.mark.parametrize("kind", ["garbage", "directory"])
def test_export_of_something_that_holds_no_spool_raises_file_damaged(tmp_path, kind):
    path = tmp_path / "x.db"
    if kind == "garbage":
        path.write_bytes(GARBAGE)
    else:
        path.mkdir()
    with pytest.raises(FileDamaged, match=str(path)):
        salvage.export_lines(path, print)


# -- the embedded store's file ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["garbage", "directory"])
def test_a_damaged_store_is_moved_aside_and_the_retry_writes_to_a_fresh_one(tmp_path, kind):
    path = tmp_path / "metrics.db"
    if kind == "garbage":
        path.write_bytes(GARBAGE)
    else:
        path.mkdir()
    sink = SQLiteSink(SinkConfig(path=path), ShipperConfig(), clock=lambda: NOW_S)
    batch = [line(int(NOW_S * 1000))]  # within the retention
    try:
        with pytest.raises(Unavailable) as failed:
            sink.write(batch)
        assert f"moved aside to {aside(path)}" in str(failed.value)
        assert aside(path).exists()
        sink.write(batch)  # the retry: a fresh store
    finally:
        sink.close()
    if kind == "garbage":
        assert aside(path).read_bytes() == GARBAGE
    assert len(stored(path)) == 4


def test_a_store_that_is_only_locked_is_never_moved_aside(tmp_path):
    path = tmp_path / "metrics.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held
    sink = SQLiteSink(SinkConfig(path=path), ShipperConfig(timeout_s=0.01))
    try:
        with pytest.raises(Unavailable, match="locked"):
            sink.write([line(1000)])
    finally:
        sink.close()
        holder.execute("ROLLBACK")
        holder.close()
    assert list(tmp_path.glob("*.damaged-*")) == []


def test_move_aside_never_deletes_and_keeps_companions_together(tmp_path):
    path = tmp_path / "a.db"
    for suffix, data in (("", b"main"), ("-wal", b"wal"), ("-shm", b"shm")):
        Path(f"{path}{suffix}").write_bytes(data)
    moved = sqlitedb.move_aside(path, "test", clock=lambda: NOW_S)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"a.db.damaged-{STAMP}",
        f"a.db.damaged-{STAMP}-shm",
        f"a.db.damaged-{STAMP}-wal",
    ]
    assert [Path(f"{moved.moved_to}{s}").read_bytes() for s in ("", "-wal", "-shm")] == [
        b"main",
        b"wal",
        b"shm",
    ]


# -- the command line ---------------------------------------------------------------------------------


def config_file(tmp_path: Path, **spool: str) -> Path:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    lines = ["[agent]", 'host = "unit"', f'state_dir = "{state}"']
    lines += ["[sink]", "retention_days = 100000", "[spool]"]  # the samples here are from 1970
    lines += [f'{key} = "{value}"' for key, value in spool.items()]
    path = tmp_path / "hostmon.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_config_file_that_is_not_utf8_is_a_config_error_naming_the_file(tmp_path, capsys):
    path = tmp_path / "hostmon.toml"
    path.write_bytes(b'[agent]\nhost = "caf\xe9"\n')
    code, _, err = run_cli(capsys, "--config", str(path), "check-config")
    assert code == 2
    assert (
        err
        == f"config error: {path}: not valid TOML: not UTF-8 text (invalid continuation byte at byte 20)\n"
    )


def test_a_secret_file_that_is_not_utf8_is_a_config_error_naming_key_and_file(tmp_path, capsys):
    secret = tmp_path / "token"
    secret.write_bytes(b"\xff\xfetoken")
    path = tmp_path / "hostmon.toml"
    path.write_text(f'[api]\ntoken_file = "{secret}"\n')
    code, _, err = run_cli(capsys, "--config", str(path), "check-config")
    assert code == 2
    where = "not UTF-8 text (invalid start byte at byte 1)"
    assert err == f"config error: {path}: api.token_file: cannot read {secret}: {where}\n"


@pytest.mark.parametrize("kind", ["garbage", "truncated_half", "directory"])
def test_hostmon_spool_on_a_damaged_spool_is_one_line_and_exit_1(tmp_path, capsys, real_spool, kind):
    config = config_file(tmp_path)
    path = tmp_path / "state" / "spool.db"
    damaged(kind, path, real_spool)
    code, out, err = run_cli(capsys, "--config", str(config), "spool")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"hostmon spool: {path} is damaged: ")
    assert err.endswith("(the agent moves a damaged spool aside when it starts)\n")


def test_hostmon_spool_lists_spools_moved_aside(tmp_path, capsys):
    config = config_file(tmp_path)
    path = tmp_path / "state" / "spool.db"
    path.write_bytes(GARBAGE)
    Path(f"{path}-wal").write_bytes(b"wal")
    open_spool(path).close()
    code, out, _ = run_cli(capsys, "--config", str(config), "spool")
    assert code == 0
    rows = [row for row in out.splitlines() if row.startswith("moved aside")]
    assert rows == [
        f"moved aside (damaged)             {aside(path)} (its samples: hostmon spool export FILE)"
    ]


def test_hostmon_spool_export_writes_line_protocol_that_replay_sends(tmp_path, capsys, real_spool):
    config = config_file(tmp_path)
    cut = tmp_path / "state" / "spool.db.damaged-x"
    truncated_copy(real_spool[0], cut, 0.5)
    code, out, err = run_cli(capsys, "--config", str(config), "spool", "export", str(cut))
    assert code == 0
    exported = out.splitlines()
    assert exported and set(exported) <= set(real_spool[1])
    assert err.startswith(
        f"exported {len(exported)} samples from {cut}; damaged pages: the samples after seq "
    )
    lp = tmp_path / "recovered.lp"
    lp.write_text(out)
    code, out, _ = run_cli(capsys, "--config", str(config), "spool", "replay", str(lp))
    assert code == 0 and out.startswith(f"replayed {len(exported)} lines from {lp} to sqlite ")
    assert len({row[3] for row in stored(tmp_path / "state" / "metrics.db")}) == len(exported)


def test_hostmon_spool_export_of_garbage_is_one_line_and_exit_1(tmp_path, capsys):
    config = config_file(tmp_path)
    path = tmp_path / "garbage.db"
    path.write_bytes(GARBAGE)
    code, out, err = run_cli(capsys, "--config", str(config), "spool", "export", str(path))
    assert (code, out) == (1, "")
    assert err == f"hostmon spool export: {path} is damaged: file is not a database\n"


def test_replay_of_a_spill_file_that_is_not_utf8_stops_in_one_line_and_keeps_the_file(tmp_path, capsys):
    config = config_file(tmp_path)
    spill = tmp_path / "state" / "spill.lp"
    spill.write_bytes(f"{line(1000)}\n{line(2000)}\n".encode() + b"system,host=x cpu=1 \xff\n")
    code, out, err = run_cli(capsys, "--config", str(config), "spool", "replay", str(spill))
    claimed = spill.with_name(f"spill.lp.replaying-{os.getpid()}")
    assert (code, out) == (1, "")
    assert err == (
        f"hostmon spool replay: stopped: {claimed}: stopped after 0 lines were sent: line 3 is not UTF-8"
        f" text (invalid start byte at byte 21); the rest is still in {claimed}\n"
    )
    assert claimed.read_bytes().endswith(b"\xff\n")


def test_replay_of_a_directory_is_one_line_and_exit_2(tmp_path, capsys):
    config = config_file(tmp_path)
    spill = tmp_path / "state" / "spill.lp"
    spill.mkdir()
    code, _, err = run_cli(capsys, "--config", str(config), "spool", "replay", str(spill))
    assert code == 2
    assert err == f"hostmon spool replay: {spill}: a directory, not a spill file\n"


def test_export_writes_every_line_of_multi_line_ticks_and_refuses_a_row_with_a_bad_line(tmp_path):
    path = tmp_path / "spool.db"
    spool = open_spool(path)
    rows = [
        f"{line(1000 * ts)}\nsystem_filesystem,host=h,mount=/ filesystem_used_percent=1 {1000 * ts}"
        for ts in range(5)
    ]
    for ts, row in enumerate(rows):
        spool.append(1000 * ts, row)
    spool.append(9000, f"{line(9000)}\nnot line protocol")
    spool.close()
    got: list[str] = []
    result = salvage.export_lines(path, got.append)
    assert got == rows
    assert (result.lines, result.unreadable) == (5, 1)
