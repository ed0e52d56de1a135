"""SQLite plumbing shared by the spool, the embedded store's sink and its reader.

One way to open a file for writing (WAL, a page cache of a given size, a busy timeout), one
way to open it read-only (another process's file: never created, never written), one
measure of how many bytes of a file hold data, and what a damaged file is and where it goes:
:func:`damage` tells a damaged file from other failures, :func:`move_aside` renames it and
its ``-wal``/``-shm`` out of the way (never deleting anything) so a fresh file can start.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from monitor.access import denied, user_name
from monitor.errors import AccessDenied

log = logging.getLogger(__name__)

# SQLite's primary result codes for "this is not (or no longer) a database" ...
_DAMAGE_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
# ... and for "this process may not open or write it" (a mode, an owner, a read-only mount).
_ACCESS_CODES = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM}
_COMPANIONS = ("-wal", "-shm", "-journal")  # moved with the database file they belong to
_CHECK_ROWS = 3  # quick_check lines kept for the log


@dataclasses.dataclass(frozen=True)
class MovedAside:
    """A damaged file (and its companions) renamed out of the way: where to and why."""

    original: Path
    moved_to: Path
    reason: str
    companions: tuple[Path, ...] = ()
    was_directory: bool = False


def connect_readonly(path: Path, *, timeout_s: float = 10.0) -> sqlite3.Connection:
    """PATH opened read-only (``mode=ro``): never created, never written; usable from any thread.

    Raises ``sqlite3.OperationalError`` when the file cannot be opened.
    """
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout_s, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return conn


def connect_writer(
    path: Path,
    *,
    synchronous: str,
    cache_kib: int,
    timeout_s: float = 10.0,
    isolation_level: Literal["DEFERRED", "EXCLUSIVE", "IMMEDIATE"] | None = "DEFERRED",
    auto_vacuum: str | None = None,
) -> sqlite3.Connection:
    """PATH opened for writing (created with its directory when missing) in WAL mode.

    ``synchronous`` is SQLite's setting (``FULL``, ``NORMAL``); ``cache_kib`` the page cache.
    ``isolation_level=None`` is autocommit: the caller opens its own transactions.
    ``auto_vacuum`` (e.g. ``INCREMENTAL``) takes effect only on a new file: SQLite needs it
    before the switch to WAL.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=isolation_level, check_same_thread=False)
    try:
        if auto_vacuum is not None:
            conn.execute(f"PRAGMA auto_vacuum={auto_vacuum}")
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            log.warning("%s: WAL mode unavailable (journal_mode=%s)", path, mode)
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
        conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    except BaseException:
        conn.close()  # a damaged file must not stay open while it is moved aside
        raise
    return conn


def live_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the file's pages that hold data (free pages excluded: inserts reuse them)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)


def damage(exc: sqlite3.Error) -> bool:
    """Whether EXC says the file is not a database or is corrupt (not locked, not full, not denied)."""
    return _primary_code(exc) in _DAMAGE_CODES


def access_denied(exc: sqlite3.Error, path: Path, action: str = "write") -> AccessDenied | None:
    """EXC as an AccessDenied for PATH when it is about permissions or a read-only mount, else None."""
    if _primary_code(exc) not in _ACCESS_CODES:
        return None
    return AccessDenied(path, action, str(exc), user_name())


def damage_at(path: Path, *, quick_check: bool = False) -> str | None:
    """Why the file at PATH is damaged, or None (also when there is no file yet).

    Read-only (a read-write connection closed on a damaged file can delete its WAL, which may
    hold the newest data): a directory in its place, a file that is not a database, one whose
    schema cannot be read, or with QUICK_CHECK one that fails :func:`integrity_problem`.
    AccessDenied when this user cannot read it; other failures (a lock) raise as they are.
    """
    if path.is_dir():
        return "a directory is in its place"
    if not path.exists():
        return None
    try:
        conn = connect_readonly(path)
    except sqlite3.Error as exc:
        raise access_denied(exc, path, "read") or exc from exc
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        problem = integrity_problem(conn) if quick_check else None
    except sqlite3.DatabaseError as exc:
        if damage(exc):
            return str(exc)
        raise access_denied(exc, path, "read") or exc from exc
    finally:
        conn.close()
    return None if problem is None else f"integrity check failed: {problem}"


def integrity_problem(conn: sqlite3.Connection) -> str | None:
    """The first lines of ``PRAGMA quick_check`` when it finds damage, else None.

    quick_check reads every page (about a second per few hundred MB) but skips the
    index-against-table comparison of ``integrity_check``.
    """
    rows = [str(row[0]) for row in conn.execute("PRAGMA quick_check").fetchmany(_CHECK_ROWS)]
    if rows == ["ok"]:
        return None
    lines = [line for row in rows for line in row.splitlines() if not line.startswith("***")]
    return "; ".join(lines[:_CHECK_ROWS]) or "quick_check failed"


def move_aside(path: Path, reason: str, *, clock: Callable[[], float] = time.time) -> MovedAside:
    """Rename PATH (a file or a directory) and its ``-wal``/``-shm`` to ``PATH.damaged-<UTC time>``.

    The companions go first, so a fresh file at PATH never meets an old WAL. Nothing is
    deleted; the directory is fsync'd. AccessDenied when the renames are not allowed.
    """
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(clock()))
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while any(os.path.lexists(f"{target}{suffix}") for suffix in ("", *_COMPANIONS)):
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    was_directory = path.is_dir()
    moved: list[Path] = []
    try:
        for suffix in _COMPANIONS:
            companion = path.with_name(path.name + suffix)
            if os.path.lexists(companion):
                companion.rename(f"{target}{suffix}")
                moved.append(Path(f"{target}{suffix}"))
        path.rename(target)
        _fsync_directory(path.parent)
    except OSError as exc:
        raise denied(path, "move aside", exc) from exc
    return MovedAside(path, target, reason, tuple(moved), was_directory)


def _primary_code(exc: sqlite3.Error) -> int:
    """SQLite's primary result code of EXC (its extended code's low byte); 0 when it has none."""
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
