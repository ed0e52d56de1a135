"""The monitor role's wheelhouse is built for the hosts' platform, not the controller's."""

from __future__ import annotations

import platform
import subprocess
import sys
import tarfile

from tests.ansible.helpers import REPO

SCRIPT = REPO / "roles" / "monitor" / "files" / "build-wheelhouse.sh"


def build(out, *target):
    done = subprocess.run(
        ["bash", str(SCRIPT), sys.executable, str(REPO), str(out), *target],
        check=False, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    return done.stdout.strip()


def test_an_x86_64_controller_builds_the_aarch64_hosts_wheelhouse(tmp_path):
    assert platform.machine() != "aarch64"  # the point: the controller is not the hosts' platform
    out = tmp_path / "aarch64-cp311"
    wheel = build(out, "aarch64", "3.11")
    assert wheel.startswith("hostmon-") and wheel.endswith("-py3-none-any.whl")
    [psutil] = [p.name for p in out.glob("psutil-*.whl")]
    assert "aarch64" in psutil and "x86_64" not in psutil
    assert "-abi3-" in psutil or "-cp311-" in psutil  # a CPython 3.11 wheel, whatever the controller runs
    with tarfile.open(out / "wheelhouse.tar") as tar:
        assert f"./{psutil}" in tar.getnames()
        assert f"./{wheel}" in tar.getnames()
    # Every binary wheel in it is for aarch64; the rest are pure Python.
    for name in (p.name for p in out.glob("*.whl")):
        assert name.endswith("-none-any.whl") or "aarch64" in name, name


def test_arch_without_python_version_is_refused(tmp_path):
    done = subprocess.run(
        ["bash", str(SCRIPT), sys.executable, str(REPO), str(tmp_path / "w"), "aarch64"],
        check=False, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2
    assert "ARCH needs PYTHON_VERSION too" in done.stderr
