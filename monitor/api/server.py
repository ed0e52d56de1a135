"""Serving the API on waitress (never Bottle's development server) until told to stop."""

from __future__ import annotations

import logging
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from monitor.api import listener
from monitor.api.app import make_app
from monitor.api.stores import Store, make_store
from monitor.config import Config
from monitor.errors import ConfigError

log = logging.getLogger(__name__)

FD_RESERVE = 64  # descriptors beside the connections: the listener, the store, logs, the loop


def serve(
    config: Config,
    *,
    stop: threading.Event | None = None,
    store: Store | None = None,
    on_ready: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Serve the API with waitress on ``api.host:api.port`` until STOP is set.

    Raises ConfigError, before it binds anything, when :func:`listener.problems` refuses
    the config (beyond loopback without a token and TLS; unreadable TLS files). In the main
    thread SIGTERM and SIGINT set STOP too. ON_READY gets the URL once the socket listens
    (useful with port 0). STORE and CLOCK are for tests and benchmarks.
    """
    from waitress import wasyncore

    refused = listener.problems(config)
    if refused:
        raise ConfigError(refused)
    api = config.api
    tls = listener.tls_context(api, str(config.source or "<defaults>"))
    connection_limit = file_limited(api.connection_limit)
    stop = stop or threading.Event()
    store = store or make_store(config)
    app = make_app(config, store, clock=clock)
    sockets: dict[int, Any] = {}
    servers = listener.make_servers(app, api, sockets, tls=tls, connection_limit=connection_limit)
    host = api.host if ":" not in api.host else f"[{api.host}]"
    url = f"{'https' if tls else 'http'}://{host}:{servers[0].effective_port}"
    auth = "bearer token required" if api.token else "no authentication"
    log.info(
        "API serving on %s (store: %s; %s; %s; %d threads; %s)",
        url,
        store.name,
        auth,
        "TLS" if tls else "plain HTTP",
        api.threads,
        listener.describe_limits(api, connection_limit),
    )
    if not listener.is_loopback(api.host) and not (api.token and tls):
        log.warning(
            "API on %s is reachable from other machines without a token and TLS (api.allow_insecure)", url
        )
    try:
        with _stop_on_signals(stop):
            if on_ready is not None:
                on_ready(url)
            while not stop.is_set():
                wasyncore.loop(timeout=0.2, map=sockets, use_poll=True, count=1)
    finally:
        servers[0].task_dispatcher.shutdown()
        wasyncore.close_all(sockets)
        store.close()
        log.info("API on %s stopped", url)


def file_limited(
    connection_limit: int,
    *,
    getrlimit: Callable[[int], tuple[int, int]] = resource.getrlimit,
    setrlimit: Callable[[int, tuple[int, int]], None] = resource.setrlimit,
) -> int:
    """CONNECTION_LIMIT, or less when the open-file limit cannot hold it and FD_RESERVE more.

    Raises the soft limit up to the hard one first. A systemd unit that filters the
    ``@resources`` system calls (ours does) cannot raise it: its ``LimitNOFILE`` must.
    """
    soft, hard = getrlimit(resource.RLIMIT_NOFILE)
    need = connection_limit + FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.debug("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return connection_limit
    lowered = max(10, soft - FD_RESERVE)
    log.warning(
        "api.connection_limit %d lowered to %d: the open-file limit is %d (set LimitNOFILE=%d or more)",
        connection_limit,
        lowered,
        soft,
        need,
    )
    return lowered


@contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set STOP while inside (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
