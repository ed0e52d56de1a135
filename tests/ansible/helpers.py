"""Helpers for the Ansible tests: the repository root and the roles' templates rendered by Ansible itself."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests import servers

REPO = Path(__file__).resolve().parents[2]
RENDER_PLAYBOOK = Path(__file__).resolve().parent / "render" / "render.yml"


def ansible_playbook() -> str:
    exe = Path(sys.executable).parent / "ansible-playbook"
    found = str(exe) if exe.exists() else shutil.which("ansible-playbook")
    if found is None:
        if servers.IN_CI:
            pytest.fail("ansible-playbook is not installed (pip install -e '.[deploy]')")
        pytest.skip("ansible-playbook is not installed")
    return found


def render(out_file: Path, **extra_vars: Any) -> dict[str, str]:
    """Run render.yml with EXTRA_VARS; {rendered file name: text}."""
    env = {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONFIG": str(RENDER_PLAYBOOK.parent / "ansible.cfg"),
    }
    cmd = [ansible_playbook(), "-i", "localhost,", str(RENDER_PLAYBOOK), "-e", f"out_file={out_file}"]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert done.returncode == 0, f"render.yml failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    return dict(json.loads(out_file.read_text()))
