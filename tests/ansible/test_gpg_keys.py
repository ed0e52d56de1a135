"""Pinned signing keys (plugins/filter/gpg_keys.py, roles/hostmon_signing_key) against real keys
made by gpg for the test.

The case rpm_key gets wrong: a key file that gained a signing subkey under the same primary key.
And the grafana role's key tasks run for real on this machine: a key with the pinned fingerprint
reaches the host's keyring path (fetched once on the controller, or by the host), an impostor
with the same name is refused.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.ansible.helpers import REPO, ansible_env, ansible_playbook


def load() -> ModuleType:
    path = REPO / "plugins" / "filter" / "gpg_keys.py"
    spec = importlib.util.spec_from_file_location("gpg_keys_filters", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gpg_keys = load()

# No passphrase and no questions ("a key for this user id exists already: create anyway?").
GPG = ["gpg", "--batch", "--yes", "--pinentry-mode", "loopback", "--passphrase", ""]


class Keyring:
    def __init__(self, home: Path) -> None:
        self.home = home
        home.mkdir(mode=0o700)

    def gpg(self, *args: str) -> str:
        done = subprocess.run(
            [*GPG, "--homedir", str(self.home), *args],
            check=True, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return done.stdout

    def new_key(self, uid: str) -> str:
        self.gpg("--quick-gen-key", uid, "ed25519", "sign", "never")
        return self.fingerprints()[-1]

    def add_signing_subkey(self, primary: str) -> None:
        self.gpg("--quick-add-key", primary, "ed25519", "sign", "never")

    def fingerprints(self) -> list[str]:
        out = self.gpg("--list-keys", "--with-colons")
        return [line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:")]

    def export(self, path: Path, *keys: str) -> Path:
        path.write_text(self.gpg("--armor", "--export", *keys))
        return path


def show(path: Path) -> str:
    """What the role runs on the key file (and on rpm's imported keys)."""
    done = subprocess.run(
        ["gpg", "--batch", "--show-keys", "--with-colons", str(path)],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return done.stdout


@pytest.fixture
def keyring(tmp_path):
    if shutil.which("gpg") is None:
        pytest.fail("gpg is not installed (Debian: gnupg)")
    ring = Keyring(tmp_path / "gnupg")
    yield ring
    # gpg starts a gpg-agent daemon per home directory; it would outlive the test run.
    subprocess.run(["gpgconf", "--homedir", str(ring.home), "--kill", "gpg-agent"], check=False, timeout=30)


def test_fingerprints_of_a_key_file_are_the_primary_then_its_subkeys(tmp_path, keyring):
    primary = keyring.new_key("Vendor Signing <sign@vendor.example>")
    keyring.add_signing_subkey(primary)
    keys = keyring.fingerprints()
    assert len(keys) == 2 and keys[0] == primary
    assert gpg_keys.gpg_fingerprints(show(keyring.export(tmp_path / "v1.asc", primary))) == keys


def test_a_rotated_subkey_under_the_same_primary_is_found_missing(tmp_path, keyring):
    primary = keyring.new_key("Vendor Signing <sign@vendor.example>")
    keyring.add_signing_subkey(primary)
    imported = gpg_keys.gpg_fingerprints(show(keyring.export(tmp_path / "v1.asc", primary)))
    keyring.add_signing_subkey(primary)  # the vendor rotates: same primary key, new signing subkey
    key_file = gpg_keys.gpg_fingerprints(show(keyring.export(tmp_path / "v2.asc", primary)))
    assert key_file[0] == imported[0] == primary  # what rpm_key compares: "already imported"
    [new_subkey] = [k for k in key_file if k not in imported]
    assert gpg_keys.gpg_missing_fingerprints(key_file, imported) == [new_subkey]  # so the role imports again
    assert gpg_keys.gpg_missing_fingerprints(key_file, key_file) == []  # and afterwards not again


def test_a_key_file_without_the_pinned_fingerprints_is_refused(tmp_path, keyring):
    genuine = keyring.new_key("Vendor Signing <sign@vendor.example>")
    impostor = keyring.new_key("Vendor Signing <sign@vendor.example>")  # same name, another key
    pinned = [genuine.lower(), " ".join(genuine[i : i + 4] for i in range(0, 40, 4))]  # any case, spaces
    in_file = gpg_keys.gpg_fingerprints(show(keyring.export(tmp_path / "impostor.asc", impostor)))
    assert gpg_keys.gpg_missing_fingerprints(pinned, in_file) == [genuine, genuine]
    assert gpg_keys.gpg_missing_fingerprints(pinned, [genuine]) == []


def test_every_key_of_several_armored_blocks_is_listed(tmp_path, keyring):
    # rpm -qa gpg-pubkey --qf '%{DESCRIPTION}' prints one armored block per imported key.
    first = keyring.new_key("First <a@vendor.example>")
    second = keyring.new_key("Second <b@vendor.example>")
    both = tmp_path / "both.asc"
    both.write_text(
        keyring.export(tmp_path / "a.asc", first).read_text()
        + keyring.export(tmp_path / "b.asc", second).read_text()
    )
    assert gpg_keys.gpg_fingerprints(show(both)) == [first, second]


def test_no_key_gives_no_fingerprints():
    assert gpg_keys.gpg_fingerprints("") == []
    assert gpg_keys.gpg_missing_fingerprints(["AB" * 20], []) == ["AB" * 20]


def run_grafana_key_tasks(
    tmp_path: Path, key_url: str, pinned: list[str], source: str
) -> tuple[int, str, Path]:
    """The grafana role's key tasks on this machine: (exit code, output, where the host's key went)."""
    host_key = tmp_path / "host" / "etc" / "apt" / "keyrings" / "grafana.asc"
    extra = {
        "_grafana_gpg_key_url": key_url,
        "_grafana_gpg_key_path": str(host_key),
        "_grafana_gpg_key_rpm_import": False,
        "grafana_key_source": source,
        "grafana_artifacts_dir": str(tmp_path / "controller-artifacts"),
        "grafana_gpg_key_fingerprints": pinned,
        "ansible_python_interpreter": sys.executable,
    }
    env = ansible_env()
    play = Path(__file__).resolve().parent / "signing_key" / "grafana_key.yml"
    cmd = [ansible_playbook(), "-i", "localhost,", str(play), "-e", json.dumps(extra)]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=240)
    return done.returncode, done.stdout + done.stderr, host_key


@pytest.mark.parametrize("source", ["controller", "download"])
def test_grafana_key_with_the_pinned_fingerprint_is_brought_to_the_host(tmp_path, keyring, source):
    genuine = keyring.new_key("Grafana Labs <engineering@grafana.example>")
    published = keyring.export(tmp_path / "gpg.key", genuine)
    rc, out, host_key = run_grafana_key_tasks(tmp_path, published.as_uri(), [genuine], source)
    assert rc == 0, out[-3000:]
    assert host_key.read_text() == published.read_text()
    fetched_once = tmp_path / "controller-artifacts" / "gpg.key"
    assert fetched_once.exists() == (source == "controller")


def test_grafana_key_without_the_pinned_fingerprint_is_refused_naming_both(tmp_path, keyring):
    genuine = keyring.new_key("Grafana Labs <engineering@grafana.example>")
    impostor = keyring.new_key("Grafana Labs <engineering@grafana.example>")  # same name, another key
    served = keyring.export(tmp_path / "gpg.key", impostor)
    rc, out, _ = run_grafana_key_tasks(tmp_path, served.as_uri(), [genuine], "controller")
    assert rc != 0
    assert f"lacks the pinned fingerprint(s) {genuine}" in out and impostor in out
    assert "grafana_gpg_key_fingerprints" in out and "Refusing to trust it" in out


def test_grafana_default_pin_is_grafana_labs_current_key():
    # The key apt.grafana.com and rpm.grafana.com sign with since the 2023 rotation.
    defaults = yaml.safe_load((REPO / "roles" / "grafana" / "defaults" / "main.yml").read_text())
    assert defaults["grafana_gpg_key_fingerprints"] == ["B53AE77BADB630A683046005963FA27710458545"]
