"""Configuration: one TOML file, validated once at load into frozen dataclasses.

Every default lives in this module (the ``field`` defaults below) and is documented in
README.md, "Configuration". Every problem is reported with the file and the dotted key.
Secrets (tokens, passwords) are never read from the TOML itself: each comes from a file
(``token_file``) or an environment variable (``token_env``), with a fixed fallback variable.
"""

from __future__ import annotations

import functools
import os
import socket
import tomllib
import types
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from monitor.catalog import TAG_KEY, TAG_KEYS, family_of
from monitor.errors import ConfigError
from monitor.lineprotocol import measurement_problem, text_problem

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

CONFIG_ENV = "HOSTMON_CONFIG"
STATE_DIR_ENV = "HOSTMON_STATE_DIR"
SinkKind = Literal["sqlite", "influxdb_v2", "influxdb_v1"]
Overflow = Literal["drop_oldest", "spill"]
Comparison = Literal[">", ">=", "<", "<="]
Severity = Literal["info", "warning", "critical"]
SINK_KINDS: tuple[SinkKind, ...] = get_args(SinkKind)
OVERFLOW_POLICIES: tuple[Overflow, ...] = get_args(Overflow)
COMPARISONS: tuple[Comparison, ...] = get_args(Comparison)
SEVERITIES: tuple[Severity, ...] = get_args(Severity)
MiB = 1024 * 1024
SILENT_AFTER_MIN_S = 30.0
D = TypeVar("D", bound="DataclassInstance")


def default_silent_after_s(interval_s: float, flush_interval_s: float) -> float:
    """``api.silent_after_s`` when not set: three agent intervals, at least 30 s, and at least
    twice the longest a live agent's newest sample waits to be stored (a tick and a flush)."""
    return max(SILENT_AFTER_MIN_S, 3 * interval_s, 2 * (interval_s + flush_interval_s))


def default_state_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """``$HOSTMON_STATE_DIR``, else /var/lib/hostmon for root, else the XDG state dir."""
    if environ.get(STATE_DIR_ENV):
        return Path(environ[STATE_DIR_ENV])
    if os.geteuid() == 0:
        return Path("/var/lib/hostmon")
    xdg = environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "hostmon"


@dataclass(frozen=True)
class AgentConfig:
    host: str = ""  # "" means socket.gethostname()
    interval_s: float = 10.0
    state_dir: Path = Path()


@dataclass(frozen=True)
class SpoolConfig:
    path: Path = Path()  # default: <state_dir>/spool.db
    max_spool_bytes: int = 256 * MiB  # disk budget of the spool file
    buffer_size: int = 1_000_000  # the original setup guide's setting: samples held before overflow
    overflow: Overflow = "drop_oldest"
    spill_path: Path = Path()  # default: <state_dir>/spill.lp


@dataclass(frozen=True)
class ShipperConfig:
    batch_size: int = 5000  # samples (ticks, spool rows: a tick is one line per series) per write request
    flush_interval_s: float = 10.0  # an idle shipper looks for new samples this often
    gzip: bool = True
    timeout_s: float = 10.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0


@dataclass(frozen=True)
class SinkConfig:
    kind: SinkKind = "sqlite"
    measurement: str = "system"
    # influxdb_v1 / influxdb_v2
    url: str = ""
    verify_tls: bool = True
    ca_file: Path | None = None
    token: str = field(default="", repr=False)  # resolved secret, v2 (and v1 on 2.x/3.x)
    # influxdb_v2
    org: str = ""
    bucket: str = ""
    # influxdb_v1
    database: str = ""
    retention_policy: str = ""
    username: str = ""
    password: str = field(default="", repr=False)  # resolved secret
    # sqlite
    path: Path = Path()  # default: <state_dir>/metrics.db
    retention_days: float = 7.0  # the raw tier's
    # A coarser tier keeps at least as long as the finer one (the longer setting wins).
    minutes_retention_days: float = 90.0
    hours_retention_days: float = 730.0
    max_db_bytes: int = 1024 * MiB
    # Each tier's share of max_db_bytes (past it, its oldest data goes first).
    raw_share: float = 0.3
    minutes_share: float = 0.6
    hours_share: float = 0.1


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 5000
    token: str = field(default="", repr=False)  # resolved secret; "" means no auth
    # Read credentials for the API's queries; empty means "use the sink's". Lets the API hold a
    # read-only token/user while the agent holds a write-only one.
    store_username: str = ""
    store_password: str = field(default="", repr=False)  # resolved secret
    store_token: str = field(default="", repr=False)  # resolved secret
    max_points: int = 10_000
    max_window_minutes: float = 31 * 24 * 60.0
    query_timeout_s: float = 10.0
    threads: int = 8
    # Clients: open connections in all (each a file descriptor), per client address (0: no
    # cap), how long one may sit idle, and how long one request (or TLS handshake) may take
    # to arrive from its first byte to its last.
    connection_limit: int = 1000
    max_connections_per_client: int = 32
    idle_timeout_s: float = 30.0
    request_timeout_s: float = 10.0
    tls_cert_file: Path | None = None  # PEM, the chain after the certificate
    tls_key_file: Path | None = None
    # Serve beyond loopback without a token and TLS anyway (e.g. behind a TLS proxy).
    allow_insecure: bool = False
    # A host whose newest sample is older than this is silent (/hosts) and fires host_silent.
    # 0 means the default (default_silent_after_s(): 3 agent intervals, at least 30 s).
    silent_after_s: float = 0.0
    silent_severity: Severity = "warning"
    silent_webhook: str = ""


# Filesystem types never worth a series: memory, kernel and container-layer filesystems, and
# network filesystems (a statvfs on one whose server is away blocks the collector's tick).
DEFAULT_EXCLUDE_FS_TYPES = (
    "afs",
    "autofs",
    "binfmt_misc",
    "bpf",
    "ceph",
    "cgroup*",
    "cifs",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.glusterfs",
    "fuse.lxcfs",
    "fuse.sshfs",
    "fusectl",
    "glusterfs",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nfs",
    "nfs4",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "smb3",
    "smbfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
)
DEFAULT_EXCLUDE_DISKS = ("loop*", "ram*")
DEFAULT_EXCLUDE_NICS = ("lo", "veth*", "docker*", "br-*", "virbr*", "cni*", "flannel*", "podman*")


@dataclass(frozen=True)
class CollectorsConfig:
    """What the agent samples besides the original fields (those are always sampled).

    ``*_include`` / ``*_exclude``: glob patterns (fnmatch, case-sensitive) on the mount point,
    the block device name (``sda``, ``nvme0n1``) and the interface name; a name is kept when it
    matches an include pattern (or the include list is empty) and no exclude pattern.
    """

    load: bool = True
    swap: bool = True
    filesystem: bool = True
    filesystem_include: tuple[str, ...] = ()
    filesystem_exclude: tuple[str, ...] = ()
    filesystem_exclude_types: tuple[str, ...] = DEFAULT_EXCLUDE_FS_TYPES
    disk: bool = True
    disk_include: tuple[str, ...] = ()
    disk_exclude: tuple[str, ...] = DEFAULT_EXCLUDE_DISKS
    network: bool = True
    network_include: tuple[str, ...] = ()
    network_exclude: tuple[str, ...] = DEFAULT_EXCLUDE_NICS


@dataclass(frozen=True)
class AlertRule:
    name: str
    metric: str
    op: Comparison
    threshold: float
    for_s: float = 0.0
    severity: Severity = "warning"
    hysteresis: float = 0.0
    webhook: str = ""
    # Tag matcher of a rule on a tagged metric (only the metric family's key may be set): a
    # value ("/") watches that one series, "*" every series, each with its own state. Not set
    # on a tagged metric means "*".
    mount: str = ""
    device: str = ""
    interface: str = ""

    @property
    def matcher(self) -> tuple[str, str] | None:
        """(tag key, value or "*") for a rule on a tagged metric, None for a host metric."""
        key = TAG_KEY.get(family_of(self.metric) or "host")
        if key is None:
            return None
        return key, getattr(self, key) or "*"


@dataclass(frozen=True)
class AlertsConfig:
    log_path: Path = Path()  # default: <state_dir>/alerts.log
    max_bytes: int = 10 * MiB
    backup_count: int = 5
    webhook_timeout_s: float = 5.0
    rules: tuple[AlertRule, ...] = ()


@dataclass(frozen=True)
class Config:
    agent: AgentConfig
    spool: SpoolConfig
    shipper: ShipperConfig
    sink: SinkConfig
    api: ApiConfig
    alerts: AlertsConfig
    source: Path | None = None
    collectors: CollectorsConfig = CollectorsConfig()

    @property
    def host(self) -> str:
        return self.agent.host


SECRETS = {  # section -> secret key -> fallback environment variable
    "sink": {"token": "HOSTMON_SINK_TOKEN", "password": "HOSTMON_SINK_PASSWORD"},
    "api": {
        "token": "HOSTMON_API_TOKEN",
        "store_password": "HOSTMON_STORE_PASSWORD",
        "store_token": "HOSTMON_STORE_TOKEN",
    },
}


# What each annotated type accepts from TOML: (what is expected, test, conversion, zero).
_PARSERS: dict[type, tuple[str, Callable[[Any], bool], Callable[[Any], Any], Any]] = {
    bool: ("true or false", lambda v: isinstance(v, bool), bool, False),
    float: ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool), float, 0.0),
    int: ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool), int, 0),
    Path: ("a non-empty path", lambda v: isinstance(v, str) and bool(v), Path, Path()),
    str: ("a string", lambda v: isinstance(v, str), str, ""),
    tuple[str, ...]: (
        "an array of strings",
        lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        tuple,
        (),
    ),
}


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """Each field's type as annotated, resolved (the annotations here are strings)."""
    return get_type_hints(cls)


def _value_type(annotation: Any) -> type:
    """The key of :data:`_PARSERS` for a field annotated ANNOTATION.

    ``X | None`` is X (TOML has no null: a value that is given is an X). A ``Literal`` of
    strings is str; whether the string is one of them is checked by :func:`_validate`.
    """
    if get_origin(annotation) in (Union, types.UnionType):
        given = [a for a in get_args(annotation) if a is not type(None)]
        annotation = given[0] if len(given) == 1 else annotation
    if get_origin(annotation) is Literal:
        return str
    if annotation == tuple[str, ...]:
        return annotation  # type: ignore[no-any-return]
    if annotation not in _PARSERS:
        raise TypeError(f"no TOML parser for a field of type {annotation!r}")
    return annotation  # type: ignore[no-any-return]


def _fallback(f: Field[Any], annotation: Any) -> Any:
    """What a field holds when its TOML value is wrong: its default, else its type's zero."""
    if f.default is not MISSING:
        return f.default
    if get_origin(annotation) is Literal:
        return get_args(annotation)[0]
    return _PARSERS[_value_type(annotation)][3]


class _Reader:
    """Collects every problem instead of stopping at the first."""

    def __init__(self, source: str, environ: Mapping[str, str]) -> None:
        self.source = source
        self.environ = environ
        self.problems: list[str] = []

    def problem(self, key: str, message: str) -> None:
        self.problems.append(f"{self.source}: {key}: {message}")

    def section(self, raw: Mapping[str, Any], cls: type[D], name: str, **fixed: Any) -> D:
        table = raw.get(name, {})
        if not isinstance(table, dict):
            self.problem(name, "must be a table")
            table = {}
        secrets = SECRETS.get(name, {})
        known = {f.name for f in fields(cls)}
        allowed = known | {f"{s}_file" for s in secrets} | {f"{s}_env" for s in secrets}
        for key in table:
            if key in secrets:
                self.problem(
                    f"{name}.{key}",
                    f"secrets are not read from the config file; use {name}.{key}_file or {name}.{key}_env",
                )
            elif key not in allowed:
                self.problem(f"{name}.{key}", "unknown key")
        values: dict[str, Any] = dict(fixed)
        for f in fields(cls):
            if f.name in secrets and f.name not in fixed:
                values[f.name] = self.secret(table, name, f.name, secrets[f.name])
        given = {k: v for k, v in table.items() if k not in values}
        values.update(self.values(cls, given, name))
        return cls(**values)

    def values(self, cls: type[DataclassInstance], table: Mapping[str, Any], prefix: str) -> dict[str, Any]:
        """The fields of CLS that TABLE gives, each parsed by its annotated type."""
        annotations = _field_types(cls)
        out: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in table:
                annotation = annotations[f.name]
                key = f"{prefix}.{f.name}"
                out[f.name] = self.convert(key, table[f.name], annotation, _fallback(f, annotation))
        return out

    def convert(self, key: str, value: Any, annotation: Any, fallback: Any) -> Any:
        """VALUE parsed as ANNOTATION; on a problem (recorded), FALLBACK instead."""
        expected, accepts, conversion, _ = _PARSERS[_value_type(annotation)]
        if accepts(value):
            return conversion(value)
        self.problem(key, f"expected {expected}, got {value!r}")
        return fallback

    def secret(self, table: Mapping[str, Any], section: str, name: str, fallback: str) -> str:
        file_key, env_key = f"{name}_file", f"{name}_env"
        if file_key in table:
            path = Path(str(table[file_key]))
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                self.problem(f"{section}.{file_key}", f"cannot read {path}: {exc.strerror}")
                return ""
            except UnicodeDecodeError as exc:
                self.problem(f"{section}.{file_key}", f"cannot read {path}: {_not_utf8(exc)}")
                return ""
        if env_key in table:
            var = str(table[env_key])
            if var not in self.environ:
                self.problem(f"{section}.{env_key}", f"environment variable {var} is not set")
            return self.environ.get(var, "")
        return self.environ.get(fallback, "")


def _not_utf8(exc: UnicodeDecodeError) -> str:
    """Where a file stops being UTF-8, for a config error (the bytes themselves may be a secret)."""
    return f"not UTF-8 text ({exc.reason} at byte {exc.start + 1})"


def _check(r: _Reader, key: str, ok: bool, message: str) -> None:
    if not ok:
        r.problem(key, message)


def _validate(r: _Reader, c: Config) -> None:
    host_problem = text_problem(c.agent.host)
    _check(
        r,
        "agent.host",
        host_problem is None,
        f"{host_problem} (the host tag of every sample; the default is the system's host name)",
    )
    measurement = measurement_problem(c.sink.measurement)
    _check(r, "sink.measurement", measurement is None, str(measurement))
    _check(r, "agent.interval_s", 0.1 <= c.agent.interval_s <= 3600, "must be 0.1 to 3600 seconds")
    _check(r, "spool.max_spool_bytes", c.spool.max_spool_bytes >= MiB, "must be at least 1 MiB")
    _check(r, "spool.buffer_size", c.spool.buffer_size >= 1, "must be at least 1")
    _check(
        r,
        "spool.overflow",
        c.spool.overflow in OVERFLOW_POLICIES,
        f"must be one of {', '.join(OVERFLOW_POLICIES)}",
    )
    _check(r, "shipper.batch_size", 1 <= c.shipper.batch_size <= 100_000, "must be 1 to 100000")
    for key in ("flush_interval_s", "timeout_s", "backoff_initial_s", "backoff_max_s"):
        _check(r, f"shipper.{key}", getattr(c.shipper, key) > 0, "must be positive")
    _check(
        r,
        "shipper.backoff_max_s",
        c.shipper.backoff_max_s >= c.shipper.backoff_initial_s,
        "must be at least shipper.backoff_initial_s",
    )
    s = c.sink
    _check(r, "sink.kind", s.kind in SINK_KINDS, f"must be one of {', '.join(SINK_KINDS)}")
    if s.kind.startswith("influxdb"):
        _check(r, "sink.url", s.url.startswith(("http://", "https://")), "must be an http:// or https:// URL")
    if s.kind == "influxdb_v2":
        for key in ("org", "bucket"):
            _check(r, f"sink.{key}", bool(getattr(s, key)), "is required for influxdb_v2")
        _check(
            r,
            "sink.token_file",
            bool(s.token),
            "a token is required for influxdb_v2 (token_file, token_env or HOSTMON_SINK_TOKEN)",
        )
    if s.kind == "influxdb_v1":
        _check(r, "sink.database", bool(s.database), "is required for influxdb_v1")
    _check(r, "sink.retention_days", s.retention_days > 0, "must be positive")
    for key in ("minutes_retention_days", "hours_retention_days"):
        _check(r, f"sink.{key}", getattr(s, key) > 0, "must be positive")
    for key in ("raw_share", "minutes_share", "hours_share"):
        _check(r, f"sink.{key}", 0 < getattr(s, key) <= 1, "must be more than 0, at most 1")
    _check(
        r,
        "sink.hours_share",
        s.raw_share + s.minutes_share + s.hours_share <= 1 + 1e-9,
        "raw_share + minutes_share + hours_share must be at most 1",
    )
    _check(r, "sink.max_db_bytes", s.max_db_bytes >= MiB, "must be at least 1 MiB")
    a = c.api
    _check(r, "api.port", 0 <= a.port <= 65535, "must be 0 to 65535")
    _check(r, "api.max_points", 10 <= a.max_points <= 1_000_000, "must be 10 to 1000000")
    _check(r, "api.max_window_minutes", a.max_window_minutes > 0, "must be positive")
    _check(r, "api.query_timeout_s", a.query_timeout_s > 0, "must be positive")
    _check(r, "api.threads", 1 <= a.threads <= 64, "must be 1 to 64")
    _check(r, "api.connection_limit", 10 <= a.connection_limit <= 100_000, "must be 10 to 100000")
    _check(
        r,
        "api.max_connections_per_client",
        0 <= a.max_connections_per_client <= a.connection_limit,
        "must be 0 (no cap) to api.connection_limit",
    )
    _check(r, "api.idle_timeout_s", 1 <= a.idle_timeout_s <= 3600, "must be 1 to 3600 seconds")
    _check(
        r, "api.request_timeout_s", 0 < a.request_timeout_s <= 600, "must be more than 0, at most 600 seconds"
    )
    lag_s = c.agent.interval_s + c.shipper.flush_interval_s
    _check(
        r,
        "api.silent_after_s",
        lag_s < a.silent_after_s <= 7 * 86_400,
        f"must be more than agent.interval_s + shipper.flush_interval_s ({lag_s:g} s: how old a live "
        "agent's newest stored sample can be) and at most 604800 seconds (7 days)",
    )
    _check(
        r, "api.silent_severity", a.silent_severity in SEVERITIES, f"must be one of {', '.join(SEVERITIES)}"
    )
    _check(
        r,
        "api.silent_webhook",
        not a.silent_webhook or a.silent_webhook.startswith(("http://", "https://")),
        "must be an http:// or https:// URL",
    )
    _check(
        r,
        "api.tls_key_file",
        (a.tls_cert_file is None) == (a.tls_key_file is None),
        "api.tls_cert_file and api.tls_key_file go together: set both or neither",
    )
    for f in fields(CollectorsConfig):
        value = getattr(c.collectors, f.name)
        if isinstance(value, tuple):
            for i, pattern in enumerate(value):
                _check(
                    r,
                    f"collectors.{f.name}[{i}]",
                    _pattern_problem(pattern) is None,
                    str(_pattern_problem(pattern)),
                )
    _check(r, "alerts.max_bytes", c.alerts.max_bytes >= 1024, "must be at least 1024")
    _check(r, "alerts.backup_count", c.alerts.backup_count >= 0, "must not be negative")


def _pattern_problem(pattern: str) -> str | None:
    """Why PATTERN is not a usable glob pattern (None when it is)."""
    if not pattern:
        return "must not be empty (it would match nothing)"
    if "\x00" in pattern:
        return "must not contain a NUL character"
    if pattern.count("[") > pattern.count("]"):
        return f"unclosed [ in {pattern!r} (fnmatch would match it literally)"
    return None


def _rules(r: _Reader, raw: Any) -> tuple[AlertRule, ...]:
    if not isinstance(raw, list):
        r.problem("alerts.rules", "must be an array of tables ([[alerts.rules]])")
        return ()
    rules: list[AlertRule] = []
    names: set[str] = set()
    known = {f.name for f in fields(AlertRule)}
    for i, item in enumerate(raw):
        key = f"alerts.rules[{i}]"
        if not isinstance(item, dict):
            r.problem(key, "must be a table")
            continue
        for k in item:
            if k not in known:
                r.problem(f"{key}.{k}", "unknown key")
        missing = [k for k in ("name", "metric", "op", "threshold") if k not in item]
        for k in missing:
            r.problem(f"{key}.{k}", "is required")
        if missing:
            continue
        rule = AlertRule(**r.values(AlertRule, item, key))
        _check(r, f"{key}.op", rule.op in COMPARISONS, f"must be one of {' '.join(COMPARISONS)}")
        _check(r, f"{key}.severity", rule.severity in SEVERITIES, f"must be one of {', '.join(SEVERITIES)}")
        _check(r, f"{key}.for_s", rule.for_s >= 0, "must not be negative")
        _check(r, f"{key}.hysteresis", rule.hysteresis >= 0, "must not be negative")
        _check(r, f"{key}.name", rule.name not in names, f"duplicate rule name {rule.name!r}")
        _check(
            r,
            f"{key}.webhook",
            not rule.webhook or rule.webhook.startswith(("http://", "https://")),
            "must be an http:// or https:// URL",
        )
        family = family_of(rule.metric)
        for tag in TAG_KEYS:
            if getattr(rule, tag) and (family is None or TAG_KEY[family] != tag):
                r.problem(
                    f"{key}.{tag}",
                    f"{rule.metric} has no {tag} tag"
                    + (
                        f" (its family {family} is tagged {TAG_KEY[family]})"
                        if family and TAG_KEY[family]
                        else ""
                    ),
                )
        names.add(rule.name)
        rules.append(rule)
    return tuple(rules)


def parse(
    raw: Mapping[str, Any],
    source: str = "<defaults>",
    *,
    environ: Mapping[str, str] = os.environ,
    hostname: Callable[[], str] = socket.gethostname,
) -> Config:
    """Build a validated Config from an already-parsed TOML mapping."""
    r = _Reader(source, environ)
    for name in raw:
        if name not in ("agent", "spool", "shipper", "sink", "api", "alerts", "collectors"):
            r.problem(name, "unknown section")
    agent = r.section(raw, AgentConfig, "agent")
    if agent.host == "":
        agent = replace(agent, host=hostname())
    if agent.state_dir == Path():
        agent = replace(agent, state_dir=default_state_dir(environ))
    state = agent.state_dir
    spool = r.section(raw, SpoolConfig, "spool")
    spool = _default_paths(spool, path=state / "spool.db", spill_path=state / "spill.lp")
    sink = _default_paths(r.section(raw, SinkConfig, "sink"), path=state / "metrics.db")
    alerts_raw = raw.get("alerts", {}) if isinstance(raw.get("alerts", {}), dict) else {}
    rules = _rules(r, alerts_raw.get("rules", []))
    alerts = r.section(raw, AlertsConfig, "alerts", rules=rules)
    alerts = _default_paths(alerts, log_path=state / "alerts.log")
    api = r.section(raw, ApiConfig, "api")
    shipper = r.section(raw, ShipperConfig, "shipper")
    if api.silent_after_s == 0:
        api = replace(api, silent_after_s=default_silent_after_s(agent.interval_s, shipper.flush_interval_s))
    config = Config(
        agent,
        spool,
        shipper,
        sink,
        api,
        alerts,
        None if source == "<defaults>" else Path(source),
        r.section(raw, CollectorsConfig, "collectors"),
    )
    _validate(r, config)
    if r.problems:
        raise ConfigError(r.problems)
    return config


def _default_paths(obj: D, **defaults: Path) -> D:
    """OBJ with every path field still ``Path()`` (not configured) set to its default."""
    return replace(obj, **{k: v for k, v in defaults.items() if getattr(obj, k) == Path()})


def load(path: str | Path | None = None, *, environ: Mapping[str, str] = os.environ) -> Config:
    """Load PATH, else ``$HOSTMON_CONFIG``, else the built-in defaults (embedded SQLite)."""
    if path is None:
        path = environ.get(CONFIG_ENV) or None
    if path is None:
        return parse({}, environ=environ)
    path = Path(path)
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {_not_utf8(exc)}"]) from exc
    return parse(raw, str(path), environ=environ)
