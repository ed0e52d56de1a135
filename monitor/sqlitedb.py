"""SQLite plumbing shared by the spool, the embedded store's sink and its reader.

One way to open a file for writing (WAL, a page cache of a given size, a busy timeout), one
way to open it read-only (another process's file: never created, never written), and one
measure of how many bytes of a file hold data.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import Literal

log = logging.getLogger(__name__)


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
    if auto_vacuum is not None:
        conn.execute(f"PRAGMA auto_vacuum={auto_vacuum}")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode != "wal":
        log.warning("%s: WAL mode unavailable (journal_mode=%s)", path, mode)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA cache_size=-{int(cache_kib)}")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return conn


def live_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the file's pages that hold data (free pages excluded: inserts reuse them)."""
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return int((pages - free) * page_size)
