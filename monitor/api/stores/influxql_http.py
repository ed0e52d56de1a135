"""InfluxQL over HTTP for the InfluxQL store: ``GET /query`` on kept-alive connections.

Each statement has one deadline (``timeout_s``) covering connect, send and the whole body,
so a database that trickles or stalls becomes ``StoreUnavailable`` instead of a hung
thread. Connections come from a small pool (:class:`monitor.influxhttp.ConnectionPool`):
one per thread asking at a time; one the server closed while idle is replaced once,
transparently. Statements that do not depend on each other can be asked at once
(:meth:`QueryClient.queries`): InfluxDB answers each query on one core and reads a field
once per call in it.
"""

from __future__ import annotations

import http.client
import ssl
import time
import urllib.parse
from collections.abc import Callable
from concurrent import futures
from typing import Any

import orjson

from monitor.errors import QueryFailed, StoreUnavailable
from monitor.influxhttp import STALE_CONNECTION, ConnectionPool, Endpoint, describe

_MAX_BODY_BYTES = 256 * 1024 * 1024
_EMPTY_ERRORS = ("database not found",)  # nothing written yet: an empty store, as with SQLite
Answer = list[dict[str, Any]]
"""The series of one statement's result, as InfluxDB's JSON has them: ``epoch`` times are
ints, and so is a whole float value (InfluxDB writes 50.0 as ``50``): a reader that wants
floats converts them."""


class QueryClient:
    """Asks one InfluxDB's ``/query`` with fixed PARAMS (``db``, ``rp``, ``epoch``) and HEADERS."""

    def __init__(
        self,
        name: str,
        endpoint: Endpoint,
        params: dict[str, str],
        headers: dict[str, str],
        *,
        timeout_s: float,
        tls: ssl.SSLContext | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._name = name
        self._path = endpoint.base_path + "/query"
        self._params = params
        self._headers = {"Accept": "application/json", "User-Agent": "hostmon-api", **headers}
        self.timeout_s = timeout_s
        self._monotonic = monotonic
        self._pool = ConnectionPool(endpoint, timeout_s, tls)
        self._helpers = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="influxql")
        self.version = ""  # X-Influxdb-Version of the last answer

    def close(self) -> None:
        """Stop the helper threads, close the kept-alive connections."""
        self._helpers.shutdown(wait=True, cancel_futures=True)
        self._pool.close()

    def queries(self, *statements: str) -> list[Answer]:
        """The series of each statement, asked at once on pooled connections: the first on
        this thread, the others on this client's helper threads."""
        later = [self._helpers.submit(self.query, q) for q in statements[1:]]
        try:
            first = self.query(statements[0])
        except BaseException:
            futures.wait(later)
            raise
        return [first, *(f.result() for f in later)]

    def query(self, q: str) -> Answer:
        """The series of the single statement Q, [] when the database does not exist yet."""
        return self.statement(q)[0]

    def statement(self, q: str) -> tuple[Answer, bool]:
        """(series, database missing) of the single statement Q."""
        params = {**self._params, "q": q}
        status, body = self._get(f"{self._path}?{urllib.parse.urlencode(params)}")
        try:
            doc = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError as exc:
            raise StoreUnavailable(self._name, f"not an InfluxDB answer (HTTP {status})") from exc
        error = _error_text(doc)
        if status in (401, 403):
            raise StoreUnavailable(self._name, f"the database refused the API's credentials (HTTP {status})")
        if error and any(marker in error for marker in _EMPTY_ERRORS):
            return [], True
        if status == 429 or status >= 500 or status == 404:
            raise StoreUnavailable(self._name, f"HTTP {status} {error}".rstrip())
        if status >= 300 or error:
            raise QueryFailed(self._name, f"HTTP {status}: {error or 'query failed'}")
        results = doc.get("results") or [{}]
        return list(results[0].get("series") or []), False

    def _get(self, target: str) -> tuple[int, bytes]:
        """(status, body) of GET TARGET on a pooled connection, within one deadline; a
        kept-alive connection the server closed while idle is replaced once, transparently."""
        deadline = self._monotonic() + self.timeout_s
        conn, reused = self._pool.take()
        try:
            try:
                return self._exchange(conn, target, deadline)
            except STALE_CONNECTION:
                if not reused:
                    raise
                self._pool.discard(conn)
                conn, _ = self._pool.take_new()
                return self._exchange(conn, target, deadline)
        except TimeoutError as exc:
            self._pool.discard(conn)
            raise StoreUnavailable(self._name, f"no answer within {self.timeout_s:g} s") from exc
        except (OSError, http.client.HTTPException) as exc:
            self._pool.discard(conn)
            raise StoreUnavailable(self._name, describe(exc)) from exc
        except BaseException:
            self._pool.discard(conn)
            raise

    def _exchange(self, conn: http.client.HTTPConnection, target: str, deadline: float) -> tuple[int, bytes]:
        """One request and its whole answer on CONN; CONN goes back to the pool when it can."""
        remaining = deadline - self._monotonic()
        if remaining <= 0:
            raise TimeoutError
        conn.timeout = remaining
        if conn.sock is None:
            conn.connect()
        conn.sock.settimeout(remaining)
        sock = conn.sock  # the answer's socket even when the connection lets go of it (will_close)
        conn.request("GET", target, headers=self._headers)
        resp = conn.getresponse()
        self.version = resp.getheader("X-Influxdb-Version", "") or self.version
        chunks: list[bytes] = []
        total = 0
        while True:
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                raise TimeoutError
            sock.settimeout(remaining)
            chunk = resp.read1(65536)
            if not chunk:
                break
            total += len(chunk)
            if total > _MAX_BODY_BYTES:
                raise StoreUnavailable(self._name, f"answer larger than {_MAX_BODY_BYTES} bytes")
            chunks.append(chunk)
        if resp.will_close:
            self._pool.discard(conn)
        else:
            self._pool.give(conn)
        return resp.status, b"".join(chunks)


def _error_text(doc: Any) -> str:
    if not isinstance(doc, dict):
        return ""
    if doc.get("error"):
        return str(doc["error"])
    results = doc.get("results") or [{}]
    first = results[0] if isinstance(results, list) and results and isinstance(results[0], dict) else {}
    return str(first.get("error") or "")
