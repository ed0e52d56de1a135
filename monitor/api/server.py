"""Serving the API on waitress (never Bottle's development server) until told to stop."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from monitor.api.app import make_app
from monitor.api.stores import Store, make_store
from monitor.config import Config

log = logging.getLogger(__name__)


def serve(
    config: Config,
    *,
    stop: threading.Event | None = None,
    store: Store | None = None,
    on_ready: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> None:
    """Serve the API with waitress on ``api.host:api.port`` until STOP is set.

    In the main thread SIGTERM and SIGINT set STOP too. ON_READY gets the URL once the
    socket listens (useful with port 0). STORE and CLOCK are for tests and benchmarks.
    """
    import waitress
    from waitress import wasyncore

    stop = stop or threading.Event()
    store = store or make_store(config)
    app = make_app(config, store, clock=clock)
    sockets: dict[int, Any] = {}
    server = waitress.create_server(
        app,
        map=sockets,
        host=config.api.host,
        port=config.api.port,
        threads=config.api.threads,
        ident="hostmon",
    )
    port = getattr(server, "effective_port", config.api.port)
    host = config.api.host if ":" not in config.api.host else f"[{config.api.host}]"
    url = f"http://{host}:{port}"
    auth = "bearer token required" if config.api.token else "no authentication"
    log.info("API serving on %s (store: %s; %s; %d threads)", url, store.name, auth, config.api.threads)
    try:
        with _stop_on_signals(stop):
            if on_ready is not None:
                on_ready(url)
            while not stop.is_set():
                wasyncore.loop(timeout=0.2, map=sockets, use_poll=True, count=1)
    finally:
        server.task_dispatcher.shutdown()
        wasyncore.close_all(sockets)
        store.close()
        log.info("API on %s stopped", url)


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
