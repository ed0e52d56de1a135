"""Helpers shared by the unit and integration tests (fixtures live in the conftest.py files).

- ``ADMIN``: the admin user of the ``influxdb1_auth`` server fixture.
- ``FakeServer``: a tiny HTTP/1.1 server on 127.0.0.1 that records every POST and answers what
  the test tells it to (status codes the real servers cannot be made to produce).
"""

from __future__ import annotations

import gzip
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO
from urllib.parse import parse_qsl, urlsplit

ADMIN = ("admin", "admin-secret-pw")


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    raw_body: bytes  # chunked framing removed
    body: bytes  # gunzipped when Content-Encoding: gzip
    client_port: int


Reply = tuple[int, dict[str, str], bytes]


class FakeServer:
    """Answers every request with ``reply(seen)``; ``drop_after_reply`` closes silently after."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.seen: list[Seen] = []
        self.reply: Callable[[Seen], Reply] = lambda seen: (204, {}, b"")
        self.drop_after_reply = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def do_POST(self) -> None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    raw = _read_chunked(self.rfile)
                else:
                    raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw
                parts = urlsplit(self.path)
                seen = Seen(
                    "POST",
                    parts.path,
                    dict(parse_qsl(parts.query)),
                    {k.lower(): v for k, v in self.headers.items()},
                    raw,
                    body,
                    self.client_address[1],
                )
                outer.seen.append(seen)
                status, headers, reply = outer.reply(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                self.close_connection = outer.drop_after_reply

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def answer(self, status: int, body: bytes | str = b"", headers: dict[str, str] | None = None) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.reply = lambda seen: (status, dict(headers or {}), data)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _read_chunked(rfile: BinaryIO) -> bytes:
    body = b""
    while size := int(rfile.readline().split(b";")[0], 16):
        body += rfile.read(size)
        rfile.readline()  # the CRLF after the chunk
    while rfile.readline() not in (b"\r\n", b""):  # trailers, up to the empty line
        pass
    return body
