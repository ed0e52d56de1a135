"""TLS from the roles: InfluxDB serves https from the files the user gives, the agents verify.

The configs the influxdb role renders turn https on (1.x ``[http] https-*``, 2.x ``tls-*``) and
the real influxd 1.x serves verified https with them and refuses plain http; hostmon.toml names
the CA the monitor role copies; and the role's checks of the certificate, key and names run for
real (Ansible, check mode, one inventory host per case) and stop the play with a message that
says what is wrong.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests import servers
from tests.ansible.helpers import REPO, ansible_env, ansible_playbook, render
from tests.ansible.test_role_templates import load_hostmon_config

CHECKS_PLAYBOOK = Path(__file__).resolve().parent / "tls" / "checks.yml"
TEST_CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


# -- a test PKI -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        """NAME.crt and NAME.key (PEM) in DIRECTORY."""
        cert, key = directory / f"{name}.crt", directory / f"{name}.key"
        cert.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        return cert, key


def make_ca(name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def make_server_cert(ca: Issued, names: list[str], *, expired: bool = False) -> Issued:
    """A certificate CA signs for NAMES (addresses become IP entries, the rest DNS entries)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    not_after = now - datetime.timedelta(hours=1) if expired else now + datetime.timedelta(days=2)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=3))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(key, cert)


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


# -- rendered configuration files -------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered_tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return render(
        tmp_path_factory.mktemp("rendered-tls") / "rendered.json",
        influxdb_test_tls_cert="/controller/pki/influxdb.crt",
        monitor_test_ca_pem=TEST_CA_PEM,
        monitor_test_ca_file="/etc/ssl/certs/other-bundle.pem",
    )


def test_influxdb_configs_without_a_certificate_serve_plain_http(rendered):
    v1 = tomllib.loads(rendered["influxdb/influxdb.conf"])
    assert v1["http"]["https-enabled"] is False
    assert "https-certificate" not in v1["http"] and "https-private-key" not in v1["http"]
    v2 = tomllib.loads(rendered["influxdb/config.toml"])
    assert "tls-cert" not in v2 and "tls-key" not in v2


def test_influxdb_configs_with_a_certificate_serve_https_from_the_copied_files(rendered_tls):
    v1 = tomllib.loads(rendered_tls["influxdb/influxdb.conf"])["http"]
    assert (v1["https-enabled"], v1["https-certificate"], v1["https-private-key"]) == (
        True,
        "/etc/influxdb/tls/cert.pem",
        "/etc/influxdb/tls/key.pem",
    )
    assert v1["auth-enabled"] is True
    v2 = tomllib.loads(rendered_tls["influxdb/config.toml"])
    assert (v2["tls-cert"], v2["tls-key"]) == ("/etc/influxdb/tls/cert.pem", "/etc/influxdb/tls/key.pem")


@pytest.mark.parametrize("case", ["v1", "v2"])
def test_hostmon_toml_verifies_against_the_copied_ca_before_a_bundle_on_the_host(
    rendered_tls, case, tmp_path
):
    secrets = json.loads(rendered_tls[f"monitor-{case}/secrets.json"])
    config = load_hostmon_config(rendered_tls[f"monitor-{case}/hostmon.toml"], secrets, tmp_path)
    assert config.sink.verify_tls is True
    # The copy's name carries the CA's hash: a new CA changes sink.ca_file, so a reload applies it.
    digest = hashlib.sha256(TEST_CA_PEM.encode()).hexdigest()[:16]
    assert config.sink.ca_file == Path(f"/etc/hostmon/sink-ca-{digest}.pem")


def test_hostmon_toml_for_sqlite_names_no_ca(rendered_tls, tmp_path):
    config = load_hostmon_config(rendered_tls["monitor-sqlite/hostmon.toml"], {}, tmp_path)
    assert config.sink.ca_file is None


def test_hostmon_toml_without_a_ca_to_copy_names_none(rendered, tmp_path):
    secrets = json.loads(rendered["monitor-v2/secrets.json"])
    config = load_hostmon_config(rendered["monitor-v2/hostmon.toml"], secrets, tmp_path)
    assert config.sink.ca_file is None and config.sink.verify_tls is True


# -- the real influxd 1.x with the rendered TLS configuration ---------------------------------


@pytest.mark.integration
def test_rendered_1x_config_serves_verified_https_and_refuses_plain_http(tmp_path):
    exe = servers.binary("influxd")
    if exe is None:
        if servers.IN_CI:
            pytest.fail("influxd missing in CI")
        pytest.skip("influxd not installed")
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    ca, stranger = make_ca("hostmon test CA"), make_ca("some other CA")
    make_server_cert(ca, ["127.0.0.1"]).write(tls_dir, "server")
    (tls_dir / "server.crt").rename(tls_dir / "cert.pem")
    (tls_dir / "server.key").rename(tls_dir / "key.pem")
    ca_file, _ = ca.write(tmp_path, "ca")
    stranger_file, _ = stranger.write(tmp_path, "stranger")
    port, rpc_port = servers.free_port(), servers.free_port()
    files = render(
        tmp_path / "rendered.json",
        influxdb_test_data_dir=str(tmp_path / "data"),
        influxdb_test_bind_address="127.0.0.1",
        influxdb_test_port=port,
        influxdb_test_tls_cert="/controller/influxdb.crt",
        influxdb_test_tls_dir=str(tls_dir),
    )
    conf = files["influxdb/influxdb.conf"].replace("127.0.0.1:8088", f"127.0.0.1:{rpc_port}")
    (tmp_path / "influxdb.conf").write_text(conf)
    log_path = tmp_path / "influxd.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [exe, "-config", str(tmp_path / "influxdb.conf")], stdout=log, stderr=subprocess.STDOUT
        )
    url = f"https://127.0.0.1:{port}/ping"
    try:
        trusted = ssl.create_default_context(cafile=str(ca_file))
        status, version = _wait_for_https(url, trusted, proc, log_path, timeout_s=30)
        assert status == 204 and version.startswith("1.")

        with pytest.raises(urllib.error.URLError) as refused:
            untrusted = ssl.create_default_context(cafile=str(stranger_file))
            urllib.request.urlopen(url, context=untrusted, timeout=5)
        assert isinstance(refused.value.reason, ssl.SSLCertVerificationError)

        with pytest.raises(urllib.error.HTTPError) as plain:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5)
        assert plain.value.code == 400
        assert b"HTTP request to an HTTPS server" in plain.value.read()
    finally:
        proc.terminate()
        proc.wait(10)


def _wait_for_https(
    url: str, context: ssl.SSLContext, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float
) -> tuple[int, str]:
    """(status, X-Influxdb-Version) of the first answer; the server's log when none comes."""
    deadline, last = time.monotonic() + timeout_s, ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, context=context, timeout=2) as resp:
                return resp.status, resp.headers.get("X-Influxdb-Version", "")
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ssl.SSLError):
                raise  # the server is up, and its certificate does not verify
            last = str(exc)
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    log = log_path.read_text(errors="replace")[-4000:]
    raise AssertionError(f"influxd gave no https answer ({last}):\n{log}")


# -- the role's checks of the TLS files, run by Ansible ---------------------------------------


@dataclass(frozen=True)
class Case:
    expect_ok: bool
    message: str = ""  # a fragment of the failure message


CASES: dict[str, Case] = {
    "no_tls": Case(True),
    "named_by_ip_and_name": Case(True),
    "named_by_wildcard": Case(True),
    "cert_without_key": Case(False, "influxdb_tls_cert and influxdb_tls_key go together"),
    "key_without_cert": Case(False, "influxdb_tls_cert and influxdb_tls_key go together"),
    "key_of_another_cert": Case(False, "is not the key of this certificate"),
    "expired": Case(False, "it expired on"),
    "client_host_not_named": Case(False, "does not name db.example.com (the host of influxdb_client_url)"),
    "api_host_not_named": Case(False, "does not name 127.0.0.1 (the host of influxdb_api_url)"),
    "wildcard_one_label_only": Case(
        False, "does not name a.db.example.com (the host of influxdb_client_url)"
    ),
}


def case_vars(pki: Path) -> dict[str, dict[str, str]]:
    """influxdb_* variables per case, with the files they name written under PKI."""
    ca = make_ca("hostmon test CA")
    ca_file, _ = ca.write(pki, "ca")
    good_cert, good_key = make_server_cert(ca, ["db.example.com", "127.0.0.1"]).write(pki, "good")
    wild_cert, wild_key = make_server_cert(ca, ["*.example.com", "127.0.0.1"]).write(pki, "wild")
    _, other_key = make_server_cert(ca, ["db.example.com", "127.0.0.1"]).write(pki, "other")
    old_cert, old_key = make_server_cert(ca, ["db.example.com", "127.0.0.1"], expired=True).write(pki, "old")
    ip_cert, ip_key = make_server_cert(ca, ["127.0.0.1"]).write(pki, "ip-only")
    name_cert, name_key = make_server_cert(ca, ["db.example.com"]).write(pki, "name-only")

    def tls(cert: Path | str, key: Path | str, host: str = "db.example.com") -> dict[str, str]:
        return {
            "influxdb_tls_cert": str(cert),
            "influxdb_tls_key": str(key),
            "influxdb_tls_ca": str(ca_file),
            "influxdb_client_host": host,
        }

    return {
        "no_tls": {"influxdb_client_host": "db.example.com"},
        "named_by_ip_and_name": tls(good_cert, good_key),
        "named_by_wildcard": tls(wild_cert, wild_key),
        "cert_without_key": tls(good_cert, ""),
        "key_without_cert": tls("", good_key),
        "key_of_another_cert": tls(good_cert, other_key),
        "expired": tls(old_cert, old_key),
        "client_host_not_named": tls(ip_cert, ip_key),
        "api_host_not_named": tls(name_cert, name_key),
        "wildcard_one_label_only": tls(wild_cert, wild_key, host="a.db.example.com"),
    }


@pytest.fixture(scope="module")
def tls_checks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """{case: {"failed": bool, "msg": str}} from one check-mode run of tasks/tls.yml, and its TLS dir."""
    work = tmp_path_factory.mktemp("tls-checks")
    (work / "pki").mkdir()
    (work / "out").mkdir()
    tls_dir = work / "never-written"
    inventory = {
        "all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": sys.executable,
                "influxdb_tls_dir": str(tls_dir),
            },
            "hosts": case_vars(work / "pki"),
        }
    }
    (work / "inventory.yml").write_text(yaml.safe_dump(inventory))
    env = ansible_env(ANSIBLE_ROLES_PATH=str(REPO / "roles"))
    cmd = [ansible_playbook(), "-i", str(work / "inventory.yml"), str(CHECKS_PLAYBOOK), "--check"]
    cmd += ["-e", json.dumps({"out_dir": str(work / "out")})]
    done = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert done.returncode == 0, f"checks.yml failed:\n{done.stdout[-4000:]}\n{done.stderr[-2000:]}"
    outcomes = {path.stem: json.loads(path.read_text()) for path in (work / "out").glob("*.json")}
    return {"outcomes": outcomes, "tls_dir": tls_dir, "log": done.stdout}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_roles_tls_checks_pass_or_say_what_is_wrong(tls_checks, name):
    case, outcome = CASES[name], tls_checks["outcomes"][name]
    if case.expect_ok:
        assert outcome == {"failed": False, "msg": ""}
    else:
        assert outcome["failed"] is True
        assert case.message in outcome["msg"], outcome["msg"]


def test_check_mode_writes_no_tls_file(tls_checks):
    assert not tls_checks["tls_dir"].exists()
    # ...and it did get as far as the copies for the good certificate.
    assert "Copy the private key" in tls_checks["log"]
