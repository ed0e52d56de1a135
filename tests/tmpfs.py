"""A real small file system for tests and benchmarks: a tmpfs mounted on a directory (root only).

    with small_filesystem(tmp_path / "state", size_bytes=3 * MiB) as state_dir:
        filler = fill(state_dir, leave_free_bytes=2 * MiB)   # the disk is nearly full
        ...
        filler.unlink()                                      # space comes back

The mount is undone when the block ends, whatever happens inside it. Outside CI a test that
cannot mount (not root) skips; in CI (``CI`` set) it fails, as the servers' fixtures do.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

FILLER_NAME = "filler.bin"


def can_mount() -> bool:
    return os.geteuid() == 0


def skip_unless_mountable() -> None:
    """Skip (outside CI) or fail (in CI) when this process cannot mount a tmpfs."""
    if can_mount():
        return
    if os.environ.get("CI"):
        pytest.fail("mounting a tmpfs needs root; CI runs as root")
    pytest.skip("mounting a tmpfs needs root")


@contextmanager
def small_filesystem(path: Path, size_bytes: int) -> Iterator[Path]:
    """A tmpfs of SIZE_BYTES mounted on PATH (created) for the block; unmounted afterwards."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes},mode=0755", "tmpfs", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True, timeout=30)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave_free_bytes: int, name: str = FILLER_NAME) -> Path:
    """Write a file into directory PATH so that about LEAVE_FREE_BYTES stay free; the file."""
    filler = path / name
    size = max(0, free_bytes(path) - leave_free_bytes)
    with filler.open("ab") as fh:
        fh.write(b"\0" * size)  # tmpfs has no holes to cheat with: zeros take real pages
    return filler
