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


def ansible_env(**extra: str) -> dict[str, str]:
    """This process's environment for an ansible-playbook run of a test: no colour, the tests'
    ansible.cfg (the repository's roles and the collection path), plus EXTRA."""
    return {
        **os.environ,
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_CONFIG": str(RENDER_PLAYBOOK.parent / "ansible.cfg"),
        **extra,
    }


def render(out_file: Path, **extra_vars: Any) -> dict[str, str]:
    """Run render.yml with EXTRA_VARS; {rendered file name: text}."""
    env = ansible_env()
    cmd = [ansible_playbook(), "-i", "localhost,", str(RENDER_PLAYBOOK), "-e", f"out_file={out_file}"]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    assert done.returncode == 0, f"render.yml failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    return dict(json.loads(out_file.read_text()))


def ansible_galaxy() -> str:
    return str(Path(ansible_playbook()).with_name("ansible-galaxy"))


def isolated_ansible_env(tmp: Path, collections_path: Path) -> dict[str, str]:
    """An environment where Ansible finds roles and plugins only in COLLECTIONS_PATH.

    Its own ansible.cfg in TMP (so the repository's, with its roles_path and collections/ symlink,
    is never read), an empty roles path, and no collections of the user's.
    """
    cfg = tmp / "ansible.cfg"
    cfg.write_text("[defaults]\nretry_files_enabled = false\nnocolor = true\n")
    (tmp / "no-roles").mkdir(exist_ok=True)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")},
        "ANSIBLE_CONFIG": str(cfg),
        "ANSIBLE_COLLECTIONS_PATH": str(collections_path),
        "ANSIBLE_ROLES_PATH": str(tmp / "no-roles"),
        "ANSIBLE_NOCOLOR": "1",
    }


def build_collection(out_dir: Path) -> Path:
    """`ansible-galaxy collection build` of the repository into OUT_DIR; the tarball's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [ansible_galaxy(), "collection", "build", "--force", "--output-path", str(out_dir), str(REPO)],
        check=False, capture_output=True, text=True, cwd=out_dir, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"collection build failed:\n{done.stdout}\n{done.stderr}"
    (tarball,) = out_dir.glob("hostmon-hostmon-*.tar.gz")
    return tarball


def install_collection(tarball: Path, collections_path: Path) -> Path:
    """Install TARBALL into COLLECTIONS_PATH without Galaxy; the installed collection's root."""
    done = subprocess.run(
        [ansible_galaxy(), "collection", "install", "--offline", "--no-deps", "--force",
         "-p", str(collections_path), str(tarball)],
        check=False, capture_output=True, text=True, cwd=tarball.parent, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, f"collection install failed:\n{done.stdout}\n{done.stderr}"
    return collections_path / "ansible_collections" / "hostmon" / "hostmon"
