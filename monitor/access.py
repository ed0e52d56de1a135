"""Whether this process may write (or read) the files its command needs: else one AccessDenied.

Checked by trying, not by reading mode bits: root ignores the bits but not a read-only mount,
and ACLs or another owner show the same way. A probe changes nothing: a directory gets a
temporary file that is removed at once, an existing file is opened (for appending) and closed.
A directory where a file should be is left to the code that opens the file (the spool moves
it aside: :func:`monitor.spool.schema.open_spool`).
"""

from __future__ import annotations

import os
import pwd
import tempfile
from collections.abc import Iterable
from pathlib import Path

from monitor.config import Config
from monitor.errors import AccessDenied

SQLITE_COMPANIONS = ("-wal", "-shm")  # the files SQLite keeps beside a WAL-mode database


def user_name() -> str:
    """The name of the user this process acts as (its effective uid), else ``uid N``."""
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def denied(path: Path, action: str, exc: OSError, detail: str = "") -> AccessDenied:
    """EXC (an OSError met while trying to ACTION PATH) as the one-line AccessDenied."""
    reason = exc.strerror or str(exc)
    return AccessDenied(path, action, f"{reason}{detail}", user_name())


def require_writable(path: Path, companions: Iterable[str] = ()) -> None:
    """PATH can be created or written, beside it new files too; its missing directories are made.

    COMPANIONS are suffixes of files kept beside PATH (SQLite's ``-wal``, ``-shm``) that must be
    writable too when they exist.
    """
    directory = _make_directory(path.parent)
    try:
        fd, probe = tempfile.mkstemp(prefix=".hostmon-probe-", dir=directory)
    except OSError as exc:
        raise denied(path, "write", exc, f" (no new file can be made in {directory})") from exc
    os.close(fd)
    os.unlink(probe)
    for name in (path, *(path.with_name(path.name + suffix) for suffix in companions)):
        _open(name, os.O_WRONLY | os.O_APPEND, "write")


def require_readable(path: Path, companions: Iterable[str] = ()) -> None:
    """PATH, when it exists, can be read (and COMPANIONS beside it that exist)."""
    for name in (path, *(path.with_name(path.name + suffix) for suffix in companions)):
        _open(name, os.O_RDONLY, "read")


def check_agent(config: Config) -> None:
    """Every file the agent writes (``collect``, ``run``) can be written."""
    require_writable(config.spool.path, SQLITE_COMPANIONS)
    require_writable(config.alerts.log_path)
    if config.spool.overflow == "spill":
        require_writable(config.spool.spill_path)
    if config.sink.kind == "sqlite":
        require_writable(config.sink.path, SQLITE_COMPANIONS)


def check_api(config: Config) -> None:
    """Every file the API reads (``api``, ``run``) that exists can be read, and the alert log,
    the one file it writes (the silent-host rule's events), can be written."""
    require_readable(config.spool.path, SQLITE_COMPANIONS)
    if config.sink.kind == "sqlite":
        require_readable(config.sink.path, SQLITE_COMPANIONS)
    require_writable(config.alerts.log_path)


def _make_directory(directory: Path) -> Path:
    missing = directory
    while not _exists(missing.parent) and missing.parent != missing:
        missing = missing.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise denied(missing, "create", exc) from exc
    return directory


def _exists(path: Path) -> bool:
    try:
        os.stat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise denied(path, "read", exc) from exc
    return True


def _open(path: Path, flags: int, action: str) -> None:
    """Open PATH with FLAGS and close it; nothing when it does not exist or is a directory."""
    try:
        fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOCTTY)
    except (FileNotFoundError, IsADirectoryError):
        return
    except OSError as exc:
        raise denied(path, action, exc) from exc
    os.close(fd)
