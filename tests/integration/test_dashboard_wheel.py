"""The dashboard's files ship in the wheel ``pip install .`` builds (package data, not only the tree)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from monitor.api import page

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_every_file_the_page_serves(tmp_path):
    source = tmp_path / "src"  # a clean copy: a stale build/ in the tree could hide a missing rule
    shutil.copytree(REPO / "monitor", source / "monitor", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    [wheel] = tmp_path.glob("hostmon-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {n.removeprefix("monitor/api/static/") for n in archive.namelist() if "/static/" in n}
    served = set(page.static_files())
    assert served and served <= shipped, sorted(served - shipped)
    assert {"index.html", "vendor/uPlot-1.6.32.iife.min.js", "vendor/uPlot-LICENSE"} <= shipped
