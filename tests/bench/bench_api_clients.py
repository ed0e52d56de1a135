"""Hostile clients against the API's server: waitress as configured before, as now, and cheroot.

For each server, HOSTILE idle and slow (a header line a second) connections are held open
from 127.0.0.2 (re-opened when closed) while a normal client on 127.0.0.1 asks ``/health``
once every 0.2 s with a 10 s timeout; the table shows how many normal requests were
answered and how fast. TLS rows add the same idle clients against the TLS listener (a
connection that sends nothing stalls the server side of a TLS handshake).

    .venv/bin/python -m tests.bench.bench_api_clients [--hostile 500] [--seconds 20]

cheroot is not a dependency: install it into the venv (``pip install cheroot``) for its rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import ssl
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monitor.api import make_app, serve
from monitor.api.stores.sqlite import SQLiteStore
from monitor.config import Config, parse
from tests import servers
from tests.hostile import HostileClients


def config(tmp: Path, **api: Any) -> Config:
    return parse({"agent": {"state_dir": str(tmp), "host": "bench"}, "api": {"port": 0, **api}}, environ={})


@contextmanager
def hostmon(cfg: Config) -> Iterator[int]:
    stop, ready = threading.Event(), []
    thread = threading.Thread(target=serve, args=(cfg,), kwargs={"stop": stop, "on_ready": ready.append})
    thread.start()
    deadline = time.monotonic() + 10
    while not ready and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield int(ready[0].rsplit(":", 1)[1])
    finally:
        stop.set()
        thread.join(15)


@contextmanager
def waitress_before(cfg: Config) -> Iterator[int]:
    """waitress.create_server as serve() called it before: its defaults, 8 threads."""
    import waitress
    from waitress import wasyncore

    sockets: dict[int, Any] = {}
    app = make_app(cfg, SQLiteStore(cfg.sink.path))
    server = waitress.create_server(app, map=sockets, host="127.0.0.1", port=0, threads=8, ident="hostmon")
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            wasyncore.loop(timeout=0.2, map=sockets, use_poll=True, count=1)

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        yield int(server.effective_port)
    finally:
        stop.set()
        thread.join(15)
        server.task_dispatcher.shutdown()
        wasyncore.close_all(sockets)


@contextmanager
def cheroot_server(cfg: Config, tls: tuple[Path, Path] | None = None) -> Iterator[int]:
    """cheroot's WSGI server with 8 threads and its defaults (timeout 10 s)."""
    from cheroot import wsgi

    app = make_app(cfg, SQLiteStore(cfg.sink.path))
    server = wsgi.Server(("127.0.0.1", servers.free_port()), app, numthreads=8)
    if tls:
        from cheroot.ssl.builtin import BuiltinSSLAdapter

        server.ssl_adapter = BuiltinSSLAdapter(str(tls[0]), str(tls[1]))
    server.prepare()
    thread = threading.Thread(target=server.serve)
    thread.start()
    try:
        yield int(server.bind_addr[1])
    finally:
        server.stop()
        thread.join(15)


def self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def normal_requests(url: str, seconds: float, context: ssl.SSLContext | None) -> dict[str, Any]:
    latencies, failures = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=10, context=context) as resp:
                resp.read()
            latencies.append(time.monotonic() - started)
        except (urllib.error.URLError, OSError):
            failures += 1
        time.sleep(0.2)
    done = sorted(latencies)
    return {
        "answered": len(done),
        "failed": failures,
        "p50_ms": round(statistics.median(done) * 1000, 1) if done else None,
        "max_ms": round(done[-1] * 1000, 1) if done else None,
    }


def run(hostile: int, seconds: float) -> list[dict[str, Any]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * max(hostile, 2000) + 1024)), hard))
    tmp = Path(tempfile.mkdtemp(prefix="hostmon-bench-clients-"))
    cert, key = self_signed(tmp)
    plain = config(tmp)
    no_cap = config(tmp, max_connections_per_client=0)
    with_tls = config(tmp, tls_cert_file=str(cert), tls_key_file=str(key))
    client_tls = ssl.create_default_context(cafile=str(cert))
    half = {"idle": hostile // 2, "slow": hostile // 2}
    cases: list[tuple[str, Callable[[], Any], str, dict[str, int]]] = [
        ("waitress, as before", lambda: waitress_before(plain), "http", half),
        ("waitress, hostmon now", lambda: hostmon(plain), "http", half),
        ("hostmon now, TLS", lambda: hostmon(with_tls), "https", half),
        # Without the per-client cap only the total limit (1000) and the deadlines are left:
        # a client holding more than the limit starves the others until its idle ones time out.
        ("hostmon, no per-client cap", lambda: hostmon(no_cap), "http", half),
        ("hostmon, no cap, 2x limit", lambda: hostmon(no_cap), "http", {"idle": 1000, "slow": 1000}),
    ]
    try:
        import cheroot  # noqa: F401

        cases += [
            ("cheroot 8 threads", lambda: cheroot_server(plain), "http", half),
            ("cheroot, idle only", lambda: cheroot_server(plain), "http", {"idle": hostile, "slow": 0}),
            ("cheroot, 8 slow only", lambda: cheroot_server(plain), "http", {"idle": 0, "slow": 8}),
            ("cheroot, TLS", lambda: cheroot_server(plain, (cert, key)), "https", {"idle": 20, "slow": 0}),
        ]
    except ImportError:
        print("cheroot not installed: its rows are skipped")
    rows = []
    for name, start, scheme, attack in cases:
        with start() as port:
            url = f"{scheme}://127.0.0.1:{port}"
            context = client_tls if scheme == "https" else None
            with HostileClients(port, max_seconds=seconds + 30, **attack) as clients:
                clients.wait_ready(20)
                time.sleep(1.0)  # let the slow ones send a first header line
                result = normal_requests(url, seconds, context)
                counts = clients.counts
            rows.append(
                {
                    "server": name,
                    **attack,
                    **result,
                    "hostile_peak_held": counts.peak_held,
                    "hostile_closed_by_server": counts.closed_by_server,
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'server':<28} {'idle':>5} {'slow':>5} {'answered':>8} {'failed':>6} {'p50 ms':>8} {'max ms':>8}"
    lines = [head]
    for r in rows:
        lines.append(
            f"{r['server']:<28} {r['idle']:>5} {r['slow']:>5} {r['answered']:>8} {r['failed']:>6} "
            f"{r['p50_ms']!s:>8} {r['max_ms']!s:>8}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hostile", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print(table(run(args.hostile, args.seconds)))


if __name__ == "__main__":
    main()
