"""Tests' way into the embedded store's file: write samples through its write path, read them all back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from monitor import metricsdb, tiers


def write_rows(path: Path, rows: Iterable[Sequence[object]]) -> None:
    """Store ROWS, each (metric, host, ts_ms, value) or (metric, host, tags, ts_ms, value), in one
    transaction through :func:`monitor.tiers.store` (as the sink does)."""
    full = [tuple(row) if len(row) == 5 else (row[0], row[1], "", row[2], row[3]) for row in rows]
    conn = metricsdb.connect(path)
    with conn:
        tiers.store(conn, full, {})  # type: ignore[arg-type]
    conn.close()


def stored(path: Path) -> list[tiers.Row]:
    """Every raw sample in the store at PATH, ordered by (metric, host, tags, ts_ms)."""
    conn = sqlite3.connect(path)
    try:
        return tiers.read_all(conn)
    finally:
        conn.close()
