"""The HTTP API: what the agent stored, read back over HTTP as JSON (or CSV).

``make_app`` builds the WSGI application (routes in :mod:`monitor.api.app`); ``serve`` runs
it on waitress until told to stop (:mod:`monitor.api.server`). The API reads samples through
a :class:`~monitor.api.stores.Store` and the agent's status through :mod:`monitor.status`.
"""

from __future__ import annotations

from monitor.api.app import make_app
from monitor.api.server import serve

__all__ = ["make_app", "serve"]
