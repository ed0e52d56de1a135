"""Hostile clients for the tests and benchmarks: many idle or slow connections held open.

``HostileClients`` opens IDLE connections that never send a byte and SLOW ones that send a
request line and then one header line a second, never finishing, all from SOURCE (another
loopback address, so a per-address cap can tell them from the test's own requests). A
connection the server closes is opened again, as a real attacker would. Everything runs in
one background thread, bounded by ``max_seconds``, to 127.0.0.x only, and stops on exit.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Counts:
    opened: int = 0  # connections the server accepted (connect() succeeded)
    closed_by_server: int = 0
    failed_connects: int = 0
    lines_sent: int = 0
    held: int = 0  # open right now
    peak_held: int = 0
    answers: list[bytes] = field(default_factory=list)  # first bytes of what the server sent


class HostileClients:
    def __init__(
        self,
        port: int,
        *,
        idle: int,
        slow: int,
        source: str = "127.0.0.2",
        target: str = "127.0.0.1",
        max_seconds: float = 120.0,
        connect_timeout_s: float = 0.5,
    ) -> None:
        assert target.startswith("127.") and source.startswith("127."), "loopback only"
        self.port, self.source, self.target = port, source, target
        self.wanted = {"idle": idle, "slow": slow}
        self.max_seconds = max_seconds
        self.connect_timeout_s = connect_timeout_s
        self.counts = Counts()
        self._socks: dict[socket.socket, str] = {}
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-clients", daemon=True)

    def __enter__(self) -> HostileClients:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        for sock in list(self._socks):
            sock.close()
        self._socks.clear()
        if self.error is not None:
            raise RuntimeError(f"the hostile clients failed: {self.error!r}") from self.error

    def wait_ready(self, timeout_s: float) -> bool:
        """True once as many connections as wanted were attempted."""
        ready = self._ready.wait(timeout_s)
        if self.error is not None:
            raise RuntimeError(f"the hostile clients failed: {self.error!r}") from self.error
        return ready

    def _open(self, kind: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((self.source, 0))
            sock.settimeout(self.connect_timeout_s)
            sock.connect((self.target, self.port))
        except OSError:
            sock.close()
            self.counts.failed_connects += 1
            return
        sock.setblocking(False)
        if kind == "slow":
            sock.send(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        self._socks[sock] = kind
        self.counts.opened += 1

    def _top_up(self, budget: int) -> None:
        """Open up to BUDGET connections where fewer than wanted are held."""
        for kind, wanted in self.wanted.items():
            missing = wanted - sum(1 for k in self._socks.values() if k == kind)
            for _ in range(min(missing, budget)):
                if self._stop.is_set():
                    return
                self._open(kind)
                budget -= 1

    def _reap(self) -> None:
        """Drop the connections the server closed (readable: EOF, a refusal, an error)."""
        if not self._socks:
            return
        poller = select.poll()  # not select(): descriptors here go far past 1024
        by_fd = {sock.fileno(): sock for sock in self._socks}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        for fd, _ in poller.poll(0):
            sock = by_fd[fd]
            try:
                data = sock.recv(256)
            except OSError:
                data = b""
            if data and len(self.counts.answers) < 20:
                self.counts.answers.append(data[:64])
            sock.close()
            del self._socks[sock]
            self.counts.closed_by_server += 1

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:  # surfaced by __exit__: a dead attacker must not pass as harmless
            self.error = exc
            self._ready.set()
            raise

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        next_line = time.monotonic() + 1.0
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._top_up(budget=50)
            if self.counts.opened + self.counts.failed_connects >= sum(self.wanted.values()):
                self._ready.set()
            self._reap()
            if time.monotonic() >= next_line:
                next_line += 1.0
                for sock, kind in list(self._socks.items()):
                    if kind == "slow":
                        with contextlib.suppress(OSError):
                            sock.send(b"X-Slow: 1\r\n")
                            self.counts.lines_sent += 1
            self.counts.held = len(self._socks)
            self.counts.peak_held = max(self.counts.peak_held, self.counts.held)
            self._stop.wait(0.05)


@contextlib.contextmanager
def hostile(port: int, **kw: object) -> Iterator[HostileClients]:
    with HostileClients(port, **kw) as clients:  # type: ignore[arg-type]
        yield clients
