"""Pinned signing keys (plugins/filter/gpg_keys.py) against real keys made by gpg for the test.

The case rpm_key gets wrong: a key file that gained a signing subkey under the same primary key.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

from tests.ansible.helpers import REPO


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
