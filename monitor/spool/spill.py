"""The spill file: where the ``spill`` overflow policy appends the samples it takes off the spool.

The agent appends (:func:`append_lines`); ``hostmon spool replay`` takes the file over
(:func:`claim`) before it sends it (:mod:`monitor.replay`). Both sides hold an exclusive
``flock`` while they touch the file, and the writer checks after locking that the path still
names the file it opened — so a spill racing with a replay lands either in the claimed file
before it is read, or in a fresh file at the original path, never in a file already read and
deleted.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_SCAN_BYTES = 64 * 1024


@contextmanager
def _locked_append(path: Path) -> Iterator[IO[bytes]]:
    """PATH opened for appending under an exclusive lock, re-opened if it was renamed away."""
    while True:
        fh = path.open("a+b")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            if current is not None and current.st_ino == os.fstat(fh.fileno()).st_ino:
                yield fh
                return
        finally:
            fh.close()  # closing releases the lock
        log.debug("spill file %s was claimed while we waited; re-opening", path)


def append_lines(path: Path, lines: Sequence[str]) -> None:
    """Append LINES to the line-protocol file PATH and fsync it (and its directory when new).

    Raises OSError if they cannot all be written (e.g. ENOSPC); the file is then cut back to
    where it ended, so it never keeps a part of them.
    """
    if not lines:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    with _locked_append(path) as fh:
        _cut_partial_line(fh, path)
        fd = fh.fileno()  # written unbuffered: nothing is left to flush after a failure
        end = os.fstat(fd).st_size
        try:
            data = memoryview(("\n".join(lines) + "\n").encode())
            while data:
                data = data[os.write(fd, data) :]  # O_APPEND: at the end of the file
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, end)  # gives the space back too
            raise
    if created:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def _cut_partial_line(fh: IO[bytes], path: Path) -> None:
    """Drop a partial last line left by a spill that was interrupted (its rows are still spooled)."""
    end = fh.seek(0, os.SEEK_END)
    pos = end
    while pos > 0:
        start = max(0, pos - _SCAN_BYTES)
        fh.seek(start)
        newline = fh.read(pos - start).rfind(b"\n")
        if newline >= 0:
            pos = start + newline + 1
            break
        pos = start
    if pos < end:
        log.warning("spill file %s ended in a partial line; cut %d bytes", path, end - pos)
        fh.truncate(pos)


def claim(path: Path, suffix: str) -> Path:
    """Move PATH aside to ``PATH.<suffix>`` and wait out any append in progress; the new path.

    Afterwards the agent spills into a fresh file at PATH, and the claimed file is complete.
    """
    claimed = path.with_name(f"{path.name}.{suffix}")
    path.rename(claimed)
    with claimed.open("rb") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # a writer that opened PATH before the rename is done
    return claimed
