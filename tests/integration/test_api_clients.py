"""The API's real server under hostile clients, over plain HTTP and TLS, and its refusal to be exposed.

Everything on loopback: the hostile connections come from 127.0.0.2 (tests/hostile.py), the
test's own requests from 127.0.0.1, so the per-address cap can tell them apart. Each normal
request is asserted with a bound (5 s) that only starvation can break: before the limits,
every one of them timed out (waitress's 100 connections were all taken and idle for 120 s).
"""

from __future__ import annotations

import http.client
import resource
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.config import Config
from tests import servers
from tests.hostile import HostileClients
from tests.integration.helpers import hostmon
from tests.integration.test_api_serve import NOW_S, TOKEN, serving, sqlite_config
from tests.tlscerts import Issued, make_ca_and_server_cert

pytestmark = pytest.mark.integration

HOSTILE = 500
NORMAL_REQUESTS = 15
STARVED_S = 5.0  # far above a normal answer (milliseconds), far below the old 120 s idle timeout
REPO = Path(__file__).resolve().parents[2]


def fixed_now() -> float:
    """The API's clock: the stores hold 15 minutes up to NOW_S (fixed at import), so a window
    of "the last 15 minutes" holds all of them however long the suite ran before this test."""
    return NOW_S


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors() -> Iterator[None]:
    """500 hostile sockets and their server ends live in this one process."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * HOSTILE + 1024
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    return make_ca_and_server_cert(tmp_path_factory.mktemp("tls"))


def tls_config(tmp_path: Path, certs: Issued, **api: Any) -> Config:
    return sqlite_config(
        tmp_path, tls_cert_file=str(certs.cert_file), tls_key_file=str(certs.key_file), **api
    )


def client_context(certs: Issued) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs.ca_file))


def connection(
    url: str, context: ssl.SSLContext | None, source: str = "127.0.0.1"
) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or 0
    if parts.scheme == "https":
        return http.client.HTTPSConnection(
            host, port, timeout=STARVED_S, context=context, source_address=(source, 0)
        )
    return http.client.HTTPConnection(host, port, timeout=STARVED_S, source_address=(source, 0))


def timed_get(url: str, path: str, context: ssl.SSLContext | None) -> tuple[int, float]:
    """(status, seconds) of one GET on a fresh connection from 127.0.0.1."""
    started = time.monotonic()
    conn = connection(url, context)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    finally:
        conn.close()


def assert_answers_while_attacked(url: str, context: ssl.SSLContext | None, attack: HostileClients) -> None:
    assert attack.wait_ready(60), "the hostile clients did not get their connections out"
    for i in range(NORMAL_REQUESTS):
        status, seconds = timed_get(url, "/health", context)  # raises TimeoutError when starved
        assert status == 200 and seconds < STARVED_S, (i, status, seconds, attack.counts)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_hundreds_of_idle_and_slow_connections_from_one_client_do_not_starve_the_others(
    tmp_path, certs, scheme
):
    config = tls_config(tmp_path, certs) if scheme == "https" else sqlite_config(tmp_path)
    context = client_context(certs) if scheme == "https" else None
    with serving(config, clock=fixed_now) as url:
        port = int(url.rsplit(":", 1)[1])
        with HostileClients(port, idle=HOSTILE // 2, slow=HOSTILE // 2, max_seconds=90) as attack:
            assert_answers_while_attacked(url, context, attack)
            counts = attack.counts
    assert counts.opened >= HOSTILE and counts.closed_by_server > 0, counts  # the attack was real
    if scheme == "http":
        assert any(a.startswith(b"HTTP/1.1 503") for a in counts.answers), counts.answers


def test_without_a_per_client_cap_the_limits_and_the_request_deadline_still_hold(tmp_path):
    config = sqlite_config(tmp_path, max_connections_per_client=0, request_timeout_s=2.0)
    with serving(config, clock=fixed_now) as url:
        port = int(url.rsplit(":", 1)[1])
        with HostileClients(port, idle=HOSTILE // 2, slow=HOSTILE // 2, max_seconds=90) as attack:
            assert_answers_while_attacked(url, None, attack)
            # Every slow client sends a header line a second, so only the deadline closes them.
            deadline = time.monotonic() + 30
            while attack.counts.closed_by_server < HOSTILE // 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            counts = attack.counts
    assert counts.peak_held >= HOSTILE, counts  # no cap: all 500 were held at once
    assert counts.closed_by_server >= HOSTILE // 2, counts


def test_a_client_over_its_cap_gets_a_503_in_the_error_shape_and_the_others_are_kept(tmp_path):
    with serving(sqlite_config(tmp_path, max_connections_per_client=3), clock=fixed_now) as url:
        held = [connection(url, None, source="127.0.0.2") for _ in range(3)]
        try:
            for conn in held:  # keep-alive: each stays open after its answer
                conn.request("GET", "/health")
                assert conn.getresponse().read() and conn.sock is not None
            over = connection(url, None, source="127.0.0.2")
            over.request("GET", "/health")
            refused = over.getresponse()
            body = refused.read().decode()
            assert refused.status == 503 and refused.getheader("Content-Type") == "application/json"
            assert '"message":"too many connections from this address' in body
            assert timed_get(url, "/health", None)[0] == 200  # another address is not affected
            for conn in held:
                conn.request("GET", "/health")
                assert conn.getresponse().status == 200
        finally:
            for conn in held:
                conn.close()


# -- TLS ------------------------------------------------------------------------------------


def test_tls_handshake_verified_against_the_test_ca_and_keep_alive_with_large_answers(tmp_path, certs):
    config = tls_config(tmp_path, certs, token_env="API_TOKEN")
    with serving(config, clock=fixed_now) as url:
        assert url.startswith("https://127.0.0.1:")
        conn = connection(url, client_context(certs))
        try:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            for _ in range(3):  # one connection, one handshake, several answers of ~100 KB
                conn.request("GET", "/metrics?start=15", headers=auth)
                response = conn.getresponse()
                body = response.read()
                assert response.status == 200 and len(body) > 64 * 1024 and body.endswith(b"}")
            assert conn.sock.version() in ("TLSv1.2", "TLSv1.3")
            assert conn.sock.getpeercert()["subjectAltName"][0] == ("IP Address", "127.0.0.1")
        finally:
            conn.close()
        with pytest.raises(ssl.SSLCertVerificationError):  # a client that trusts another CA
            timed_get(url, "/health", ssl.create_default_context())
        assert plain_http_to(url) == b""  # plain HTTP to the TLS port: closed, no answer
        assert timed_get(url, "/openapi.json", client_context(certs))[0] == 200  # still serving


def plain_http_to(url: str) -> bytes:
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=STARVED_S) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            return sock.recv(1024)
        except ConnectionResetError:
            return b""


def test_unreadable_tls_files_are_a_config_error_naming_the_key(tmp_path, certs):
    broken = tmp_path / "not-a-cert.pem"
    broken.write_text("nonsense")
    cfg = write_api_config(tmp_path, tls_cert_file=str(broken), tls_key_file=str(certs.key_file))
    result = hostmon(cfg, "api")
    assert result.returncode == 2, result
    assert result.stderr.startswith("config error: ") and "api.tls_cert_file: cannot load" in result.stderr


# -- refusing to be exposed -----------------------------------------------------------------


def write_api_config(tmp_path: Path, **api: Any) -> Path:
    lines = ["[agent]", f'state_dir = "{tmp_path}"', "", "[api]", f"port = {servers.free_port()}"]
    lines += [f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v)}" for k, v in api.items()]
    cfg = tmp_path / "hostmon.toml"
    cfg.write_text("\n".join(lines).replace("'", '"') + "\n")
    return cfg


@pytest.mark.parametrize("command", ["api", "run", "check-config"])
def test_beyond_loopback_without_token_and_tls_is_refused_in_one_line_exit_2(tmp_path, command):
    cfg = write_api_config(tmp_path, host="0.0.0.0")
    result = hostmon(cfg, command)
    assert result.returncode == 2, result
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"config error: {cfg}: api.host: '0.0.0.0' is reachable from other machines")
    assert (
        "has no token (api.token_file) and no TLS (api.tls_cert_file)" in line
        and "api.allow_insecure" in line
    )


def test_allow_insecure_serves_beyond_loopback_and_says_so(tmp_path):
    cfg = write_api_config(tmp_path, host="0.0.0.0", allow_insecure=True)
    port = parse_port(cfg)
    log = (tmp_path / "api.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(cfg), "api"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert timed_get(f"http://127.0.0.1:{port}", "/health", None)[0] == 200
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "api.log").read_text()
                time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(20)
    assert "without a token and TLS (api.allow_insecure)" in (tmp_path / "api.log").read_text()


def parse_port(cfg: Path) -> int:
    return next(int(line.split("=")[1]) for line in cfg.read_text().splitlines() if line.startswith("port"))


# -- raw header bytes on a real socket -------------------------------------------------------


@contextmanager
def served(tmp_path: Path, **api: Any) -> Iterator[int]:
    with serving(sqlite_config(tmp_path, **api), clock=fixed_now) as url:
        yield int(url.rsplit(":", 1)[1])


@pytest.fixture(scope="module")
def raw_port(tmp_path_factory) -> Iterator[int]:
    with served(tmp_path_factory.mktemp("raw"), token_env="API_TOKEN") as port:
        yield port


def status_of(port: int, request: bytes) -> int | None:
    """The status a raw REQUEST gets, None when the server closes without an answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=STARVED_S) as sock:
        sock.sendall(request)
        head = b""
        while b"\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                return None
            head += chunk
    return int(head.split(b" ", 2)[1])


header_bytes = st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from(
        [b"Authorization", b"Accept", b"Host", b"X-Anything", b"Cookie", b"Accept-Encoding"]
    ),
    value=header_bytes,
    path=st.sampled_from([b"/metrics", b"/metrics/aggregate?metric=cpu_usage_overall", b"/health"]),
)
def test_no_raw_header_bytes_yield_a_server_error(raw_port, name, value, path):
    request = (
        b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n" + name + b": " + value + b"\r\nConnection: close\r\n\r\n"
    )
    status = status_of(raw_port, request)
    assert status is None or status < 500, (name, value, status)


def test_the_raw_non_utf8_authorization_that_was_a_500_is_a_400(raw_port):
    request = (
        b"GET /metrics HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer \xff\xfe\r\nConnection: close\r\n\r\n"
    )
    assert status_of(raw_port, request) == 400
