"""Real database servers for the tests and benchmarks: InfluxDB 1.x and VictoriaMetrics.

Each server runs from its Debian package's binary, in its own temporary directory, on a
free loopback port. ``start_*`` polls until the server answers (with a deadline) and, when
it does not, raises with the server's log so the failure explains itself.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

IN_CI = bool(os.environ.get("CI"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    url: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) — only the process this object started."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def start(self, ready_path: str, timeout_s: float = 30.0) -> None:
        """(Re)start the same server on the same port and data directory."""
        self.stop()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        wait_ready(self, ready_path, timeout_s)


def wait_ready(server: Server, path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(server.url + path, timeout=2) as resp:
                if resp.status < 300:
                    return
        except (urllib.error.URLError, OSError) as exc:
            last = str(exc)
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{server.name} not ready after {timeout_s}s ({last}):\n{server.log()}")


def binary(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)


INFLUXDB_CONF = """\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{dir}/meta"
[data]
  dir = "{dir}/data"
  wal-dir = "{dir}/wal"
  query-log-enabled = false
  trace-logging-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  auth-enabled = {auth}
  log-enabled = false
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
"""


def start_influxdb1(workdir: Path, *, auth: bool = False) -> Server:
    """InfluxDB 1.x (Debian's ``influxdb``) with ``/ping``, ``/write`` and ``/query``."""
    exe = binary("influxd")
    if exe is None:
        raise FileNotFoundError("influxd (apt-get install influxdb)")
    workdir.mkdir(parents=True, exist_ok=True)
    port, rpc_port = free_port(), free_port()
    conf = workdir / "influxdb.conf"
    conf.write_text(INFLUXDB_CONF.format(dir=workdir, port=port, rpc_port=rpc_port, auth=str(auth).lower()))
    args = [exe, "-config", str(conf)]
    server = Server(
        "influxd",
        f"http://127.0.0.1:{port}",
        port,
        workdir,
        _spawn(args, workdir),
        workdir / "influxd.log",
        args,
    )
    wait_ready(server, "/ping", 30)
    return server


def start_victoriametrics(workdir: Path) -> Server:
    """VictoriaMetrics: accepts line protocol on ``/api/v2/write``, exports on ``/api/v1/export``."""
    exe = binary("victoria-metrics")
    if exe is None:
        raise FileNotFoundError("victoria-metrics (apt-get install victoria-metrics)")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = [
        exe,
        f"-storageDataPath={workdir / 'data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-search.latencyOffset=0s",
        "-search.disableCache",
        "-loggerLevel=WARN",
    ]
    server = Server(
        "victoria-metrics",
        f"http://127.0.0.1:{port}",
        port,
        workdir,
        _spawn(args, workdir),
        workdir / "victoria-metrics.log",
        args,
    )
    wait_ready(server, "/health", 30)
    return server


def _spawn(args: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    log = (workdir / f"{Path(args[0]).name}.log").open("ab")
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=workdir)


def influx_query(server_url: str, q: str, db: str = "", auth: tuple[str, str] | None = None) -> dict:
    """Run an InfluxQL statement over ``/query`` (POST) and return the decoded JSON."""
    import base64
    import json
    import urllib.parse

    data = urllib.parse.urlencode({"q": q, "db": db, "epoch": "ms"}).encode()
    req = urllib.request.Request(server_url + "/query", data=data, method="POST")
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())
