"""The one exception tree of the monitor package.

    MonitorError                 root; ``retryable`` says whether trying again can help
     ├── ConfigError             a config file or value is wrong (never retryable)
     ├── AccessDenied            a file or directory the command needs cannot be read or written
     │                           as this user (a configuration problem: the CLI exits 2)
     ├── FileDamaged             a state file (spool, store) is not a usable SQLite database
     ├── SinkError               a write to the database failed: (target, reason, status, retry_after_s)
     │    ├── Unavailable        network error, timeout, 429 or 5xx: keep the batch, retry later
     │    ├── AuthFailed         401/403: keep the batch, alert, keep retrying
     │    ├── Rejected           400/413/422: the batch is bad data, drop it and move on
     │    └── ReplayFailed       a spill file replay stopped part-way (``sent`` lines went out)
     ├── StoreError              a read (API query) failed: (target, reason)
     │    ├── StoreUnavailable   the database cannot be reached or timed out (HTTP 503)
     │    └── QueryFailed        the database answered with an error (HTTP 502)
     └── ApiError                a request the API refuses: (status, message, parameter, headers)

Foreign errors (``http.client``, ``urllib3``, ``sqlite3``, ``influxdb_client``) are translated
at the boundary where they happen: ``raise Unavailable(target, describe(exc)) from exc``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


class MonitorError(Exception):
    """Root of every error this package raises on purpose."""

    retryable = False


class ConfigError(MonitorError):
    """One or more configuration problems; each message names the file and the key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class AccessDenied(MonitorError):
    """This process (as USER) cannot ACTION ("read", "write", "create") PATH: REASON (the OS's words).

    Never retryable: an owner, a mode or a mount has to change first.
    """

    def __init__(self, path: Path, action: str, reason: str, user: str) -> None:
        self.path = path
        self.action = action
        self.reason = reason
        self.user = user
        super().__init__(f"cannot {action} {path} as user {user}: {reason}")


class FileDamaged(MonitorError):
    """PATH is not a usable SQLite database (garbage, truncated, a directory): REASON."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path} is damaged: {reason}")


class SinkError(MonitorError):
    """A batch could not be written to TARGET (a sink's name) for REASON (one line).

    ``status`` is the HTTP status when the database answered; ``retry_after_s`` what its
    ``Retry-After`` asked for, if anything.
    """

    def __init__(
        self,
        target: str,
        reason: str,
        *,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.target = target
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s
        super().__init__(f"{target}: {reason}")


class Unavailable(SinkError):
    """Network error, timeout, 429 or 5xx: the batch stays spooled and is retried."""

    retryable = True


class AuthFailed(SinkError):
    """401/403: credentials refused. The batch stays spooled; an alert is raised."""

    retryable = True


class Rejected(SinkError):
    """400/413/422: the server refused the data itself. Retrying the same batch cannot help."""

    retryable = False


class ReplayFailed(SinkError):
    """A spill file could not be replayed completely; ``sent`` lines were written before.

    Built from the failure that stopped the replay (CAUSE), whose ``retryable`` it takes.
    """

    def __init__(self, path: Path, sent: int, cause: Exception) -> None:
        super().__init__(str(path), f"stopped after {sent} lines were sent: {cause}")
        self.sent = sent
        self.retryable = getattr(cause, "retryable", False)


class StoreError(MonitorError):
    """A query for the API failed: TARGET (a store's name) and REASON (one line)."""

    def __init__(self, target: str, reason: str) -> None:
        self.target = target
        self.reason = reason
        super().__init__(f"{target}: {reason}")


class StoreUnavailable(StoreError):
    """The store cannot be reached, or did not answer in time."""

    retryable = True


class QueryFailed(StoreError):
    """The store answered the query with an error."""


class ApiError(MonitorError):
    """A request the API refuses: an HTTP status, the parameter at fault, what was expected."""

    def __init__(
        self,
        status: int,
        message: str,
        parameter: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.parameter = parameter
        self.headers = dict(headers or {})
