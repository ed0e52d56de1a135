"""The dashboard page: static files shipped inside the package (``monitor/api/static/``).

``GET /`` is ``index.html``; ``GET /static/<name>`` is any file under the static directory
(the page's scripts and styles, the vendored chart library). Names are looked up in the set of
files the package holds, read once at first use, so a request can never reach outside it
(``..``, absolute paths and unknown names are 404). The page is public; the data it asks the
API for carries the token (the page asks for it when the API answers 401).

Every file goes out with a strong ETag (``If-None-Match`` answers 304) and a Content Security
Policy that allows this origin only: no inline script, no other host, no frames.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

STATIC_PACKAGE = "monitor.api.static"
INDEX = "index.html"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: str
    etag: str

    def headers(self) -> dict[str, str]:
        # The page's own files change with the package: revalidate, never serve stale code.
        return {
            "Content-Type": self.content_type,
            "ETag": self.etag,
            "Cache-Control": "no-cache",
            **SECURITY_HEADERS,
        }


@functools.cache
def static_files() -> dict[str, StaticFile]:
    """Every file under the static directory by its relative name (``vendor/uPlot-….js``)."""
    out: dict[str, StaticFile] = {}
    pending = [("", resources.files(STATIC_PACKAGE))]
    while pending:
        prefix, folder = pending.pop()
        for entry in folder.iterdir():
            name = prefix + entry.name
            if entry.is_dir():
                pending.append((name + "/", entry))
                continue
            suffix = entry.name[entry.name.rfind(".") :] if "." in entry.name else ""
            content_type = CONTENT_TYPES.get(suffix)
            if content_type is None:  # __init__.py, licences without a suffix: not served
                continue
            body = entry.read_bytes()
            out[name] = StaticFile(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return out


def lookup(name: str) -> StaticFile | None:
    """The static file NAME (a relative name as :func:`static_files` lists it), or None."""
    return static_files().get(name)


def not_modified(file: StaticFile, if_none_match: str) -> bool:
    """True when the client's ``If-None-Match`` already names FILE's ETag."""
    tags = {tag.strip() for tag in if_none_match.split(",")}
    return file.etag in tags or "*" in tags
