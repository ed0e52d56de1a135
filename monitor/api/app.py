"""The API's routes: Bottle handlers, the endpoint wrapper (auth, errors, a log line), error bodies.

Every answer is JSON (CSV for /metrics on request) and every error, whatever raised it
(a bad parameter, a missing token, an unknown path or method, the database down, a bug),
has one shape: ``{"error": {"status", "title", "parameter", "message"}}``.
"""

from __future__ import annotations

import functools
import hmac
import logging
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import bottle
import orjson

from monitor import catalog
from monitor.alerts.history import AlertHistory
from monitor.api import fleet, page, params, views
from monitor.api.openapi import document
from monitor.api.stores import Query, Store, read_window
from monitor.config import Config
from monitor.errors import ApiError, QueryFailed, StoreError, StoreUnavailable
from monitor.status import SpoolStatus, read_status

log = logging.getLogger(__name__)

JSON = "application/json"
CSV = "text/csv; charset=utf-8"
Handler = Callable[[], bottle.HTTPResponse]


def _dumps(body: Any) -> bytes:
    """Compact JSON, UTF-8 (orjson: as /metrics is written)."""
    return orjson.dumps(body)


def _error_response(
    status: int, message: str, parameter: str | None = None, **headers: str
) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(
        _dumps(views.error_body(status, message, parameter)), status, Content_Type=JSON, **headers
    )


def _json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> bottle.HTTPResponse:
    response = bottle.HTTPResponse(_dumps(body), status, Content_Type=JSON)
    for name, value in (headers or {}).items():
        response.set_header(name, value)
    return response


def _utf8(environ_key: str, what: str) -> str:
    """An environ value as text. PEP 3333 hands the request's bytes over as latin-1 strings;
    bytes that are not UTF-8 are the client's mistake, a 400 that names WHAT."""
    raw = str(bottle.request.environ.get(environ_key, ""))
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError as exc:
        raise ApiError(400, f"{what} is not valid UTF-8") from exc


def _query_string() -> str:
    return _utf8("QUERY_STRING", "the query string")


def _header(name: str) -> str:
    """Request header NAME ("" when absent), never through Bottle's decoding (which raises)."""
    return _utf8("HTTP_" + name.upper().replace("-", "_"), f"the {name} header")


class _Api:
    """The routes' shared state: config, store, clock, and where the agent's status comes from."""

    def __init__(
        self,
        config: Config,
        store: Store,
        clock: Callable[[], float],
        spool_status: Callable[[], SpoolStatus | None],
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.spool_status = spool_status
        self.history = AlertHistory(config.alerts.log_path)
        self._token = config.api.token.encode()

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def endpoint(self, func: Handler, *, public: bool = False) -> Handler:
        """Auth, error translation and a request log line around one route."""

        @functools.wraps(func)
        def wrapper() -> bottle.HTTPResponse:
            started = time.perf_counter()
            try:
                if not public:
                    self.authorize()
                response = func()
            except ApiError as exc:
                response = _error_response(exc.status, exc.message, exc.parameter, **exc.headers)
            except StoreUnavailable as exc:
                log.warning("store unavailable: %s", exc)
                response = _error_response(503, f"the database is unavailable: {exc}")
            except (QueryFailed, StoreError) as exc:
                log.warning("store query failed: %s", exc)
                response = _error_response(502, f"the database refused the query: {exc}")
            except Exception:
                log.exception("bug while answering %s %s", bottle.request.method, bottle.request.path)
                response = _error_response(500, "internal error (a bug; the server log has the details)")
            log.debug(
                "%s %s -> %d in %.1f ms",
                bottle.request.method,
                bottle.request.path,
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )
            return response

        return wrapper

    def authorize(self) -> None:
        if not self._token:
            return
        header = _header("Authorization")
        scheme, _, credentials = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), self._token):
            raise ApiError(
                401,
                "a bearer token is required: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": 'Bearer realm="hostmon"'},
            )

    def metrics(self) -> bottle.HTTPResponse:
        p = params.metrics_params(_query_string(), self.config.api, self.now_ms())
        w = p.window
        if p.metrics is not None:
            metrics = p.metrics
        else:  # as before tagged families existed: the host family's metrics
            metrics = tuple(n for n in self.store.names() if catalog.family_of(n) == "host")
        query = Query(metrics, w.start_ms, w.end_ms, p.host, p.tags)
        counts, series, step_ms, reason = read_window(
            self.store,
            query,
            p.max_points,
            lambda c: views.choose_step(
                p.step_ms, sum(c.values()), len(c), w.end_ms - w.start_ms, p.max_points
            ),
            raw_if_fits=p.step_ms is None,
        )
        raw_points = sum(counts.values())
        body = views.metrics_body(
            w,
            p.host,
            metrics,
            series,
            step_ms=step_ms,
            reason=reason,
            raw_points=raw_points,
            max_points=p.max_points,
        )
        fmt = p.format or ("csv" if params.wants_csv(_header("Accept")) else "json")
        if fmt == "csv":
            response = bottle.HTTPResponse(views.metrics_csv(body).encode(), 200, Content_Type=CSV)
        else:
            response = bottle.HTTPResponse(views.metrics_json(body), 200, Content_Type=JSON)
        for name, value in views.metrics_headers(body).items():
            response.set_header(name, value)
        return response

    def aggregate(self) -> bottle.HTTPResponse:
        p = params.aggregate_params(_query_string(), self.config.api, self.now_ms())
        w = p.window
        result = self.store.aggregate(p.metric, p.fn, w.start_ms, w.end_ms, p.host, tags=p.tags)
        return _json_response(views.aggregate_body(w, p.metric, p.fn, p.host, result, tags=p.tags))

    def names(self) -> bottle.HTTPResponse:
        params.no_params(_query_string())
        return _json_response(views.names_body(self.store.kind, self.store.describe()))

    def hosts(self) -> bottle.HTTPResponse:
        params.no_params(_query_string())
        now_ms, silent_after_s = self.now_ms(), self.config.api.silent_after_s
        seen = self.store.hosts()
        body = fleet.hosts_body(
            self.store.kind,
            seen,
            now_ms,
            silent_after_s=silent_after_s,
            firing=self.history.firing(),
            now=fleet.newest_values(self.store, seen, silent_after_s),
        )
        return _json_response(body)

    def alerts(self) -> bottle.HTTPResponse:
        limit = params.alerts_limit(_query_string())
        body = fleet.alerts_body(self.now_ms(), self.history.recent(limit), self.history.firing())
        return _json_response(body)

    def health(self) -> bottle.HTTPResponse:
        params.no_params(_query_string())
        status, body = views.health(
            self.store, self.spool_status, self.now_ms(), self.config.agent.interval_s
        )
        return _json_response(body, status)

    def static(self, name: str) -> bottle.HTTPResponse:
        """The dashboard's files (monitor/api/page.py); public, like the page itself. A query
        string is ignored (a link may carry one), the file is the same."""
        file = page.lookup(name)
        if file is None:
            raise ApiError(404, f"no such file: /static/{name}")
        if page.not_modified(file, _header("If-None-Match")):
            return bottle.HTTPResponse(b"", 304, ETag=file.etag, Cache_Control="no-cache")
        response = bottle.HTTPResponse(file.body, 200)
        for header, value in file.headers().items():
            response.set_header(header, value)
        return response

    def openapi(self) -> bottle.HTTPResponse:
        params.no_params(_query_string())
        return _json_response(document(self.config.api))


def make_app(
    config: Config,
    store: Store,
    *,
    clock: Callable[[], float] = time.time,
    spool_status: Callable[[], SpoolStatus | None] | None = None,
) -> bottle.Bottle:
    """The WSGI application. SPOOL_STATUS defaults to reading ``config.spool.path`` read-only."""
    api = _Api(config, store, clock, spool_status or (lambda: read_status(config.spool.path)))
    app = bottle.Bottle(catchall=True)
    app.config["json.enable"] = False  # every body is encoded here, in one place
    app.route("/metrics", "GET", api.endpoint(api.metrics))
    app.route("/metrics/aggregate", "GET", api.endpoint(api.aggregate))
    app.route("/metrics/names", "GET", api.endpoint(api.names))
    app.route("/hosts", "GET", api.endpoint(api.hosts))
    app.route("/alerts", "GET", api.endpoint(api.alerts))
    app.route("/health", "GET", api.endpoint(api.health))
    app.route("/openapi.json", "GET", api.endpoint(api.openapi, public=True))
    app.route("/", "GET", api.endpoint(lambda: api.static(page.INDEX), public=True))
    static = api.endpoint(lambda: api.static(bottle.request.url_args["name"]), public=True)
    app.route("/static/<name:path>", "GET", lambda name: static())
    app.default_error_handler = _bottle_error
    return app


def _bottle_error(err: bottle.HTTPError) -> bottle.HTTPResponse:
    """Errors Bottle raises itself (404, 405, unreadable paths, uncaught bugs) in our shape."""
    status = int(err.status_code)
    if status == 404:
        message = f"no such endpoint: {bottle.request.path} (see /openapi.json)"
    elif status == 405:
        message = f"method {bottle.request.method} not allowed here"
    elif status >= 500:
        log.error("unhandled error: %s", err.exception or err.body)
        message = "internal error (a bug; the server log has the details)"
    else:
        message = str(err.body or HTTPStatus(status).phrase)
    extra = {"Allow": str(err.headers["Allow"])} if "Allow" in err.headers else {}
    return _error_response(status, message, **extra)
