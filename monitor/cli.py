"""The hostmon command line: collect, api, run, selftest, spool and check-config.

Exit codes: 0 success, 1 the command ran and failed (selftest mismatch, replay failure, a
damaged spool or spill file), 2 the configuration or the command line is wrong, or a file or
directory the command needs cannot be read or written as this user (one line naming the path
and the user).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from monitor import __version__, access
from monitor import config as config_mod
from monitor.config import Config
from monitor.errors import AccessDenied, ConfigError, FileDamaged, MonitorError
from monitor.formats import iso_ms

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hostmon", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"hostmon {__version__}")
    p.add_argument(
        "-c",
        "--config",
        help=f"TOML config file (default: ${config_mod.CONFIG_ENV}, else built-in defaults)",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("collect", help="run the agent: sample, spool and ship until SIGTERM")
    sub.add_parser("api", help="serve the HTTP API until SIGTERM")
    sub.add_parser("run", help="the agent and the API in one process (what make run starts)")
    sub.add_parser("selftest", help="write marked test records to the database, read them back")
    spool = sub.add_parser("spool", help="show the spool's depth and counters; replay a spill file")
    spool_sub = spool.add_subparsers(dest="spool_command", metavar="ACTION")
    replay = spool_sub.add_parser("replay", help="send a spilled line-protocol file to the database")
    replay.add_argument("file", type=Path)
    replay.add_argument("--keep", action="store_true", help="keep the file after a full replay")
    export = spool_sub.add_parser(
        "export", help="print what a spool file (also a damaged one moved aside) holds, as line protocol"
    )
    export.add_argument("file", type=Path)
    sub.add_parser("check-config", help="validate the config file and print every error")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        config = config_mod.load(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    command = args.command.replace("-", "_")
    name = " ".join(filter(None, [args.command, getattr(args, "spool_command", None)]))
    try:
        if command == "spool" and args.spool_command == "replay":
            return _replay(config, args.file, keep=args.keep)
        if command == "spool" and args.spool_command == "export":
            return _export(args.file)
        return int(COMMANDS[command](config))
    except AccessDenied as exc:
        print(f"hostmon {name}: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:  # a command may check more than loading does (the API's exposure)
        for problem in exc.problems:
            print(f"config error: {problem}", file=sys.stderr)
        return 2
    except MonitorError as exc:
        print(f"hostmon {name}: {exc}", file=sys.stderr)
        return 1


def _collect(config: Config) -> int:
    from monitor.agent import Agent

    agent = Agent(config)
    _on_signals(reload=agent.request_reload, stop=agent.stop)
    agent.run()
    return 0


def _api(config: Config) -> int:
    """Serve until SIGTERM/SIGINT; SIGHUP re-reads the config and serves again with it."""
    from monitor.api import listener, serve

    access.check_api(config)
    stop, reload = threading.Event(), threading.Event()

    def request_reload() -> None:
        reload.set()
        stop.set()

    _on_signals(reload=request_reload)
    while True:
        stop.clear()
        reload.clear()
        # Refused before the silent-host rule starts, so a refusal is the one line on stderr.
        if refused := listener.problems(config):
            raise ConfigError(refused)
        with _silent_hosts(config):
            serve(config, stop=stop)  # in the main thread SIGTERM and SIGINT set stop
        if not reload.is_set():
            return 0
        try:
            config = config_mod.load(config.source)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused, keeping the running config: %s", problem)


def _run(config: Config) -> int:
    from monitor.agent import Agent
    from monitor.api import listener, serve

    if refused := listener.problems(config):
        raise ConfigError(refused)
    access.check_agent(config)  # before the API starts: neither runs when one cannot
    access.check_api(config)
    agent = Agent(config)
    api_stop = threading.Event()
    api = threading.Thread(target=serve, args=(config,), kwargs={"stop": api_stop}, name="api")
    api.start()

    def stop() -> None:
        agent.stop()
        api_stop.set()

    _on_signals(reload=agent.request_reload, stop=stop)
    try:
        with _silent_hosts(config):
            agent.run()
    finally:
        api_stop.set()
        api.join(10)
    return 0


@contextmanager
def _silent_hosts(config: Config) -> Iterator[None]:
    """The silent-host rule on the fleet of the API's store, on a thread and a store of its own."""
    from monitor.alerts.silent import watching
    from monitor.api.stores import make_store

    store = make_store(config)
    try:
        with watching(config, store.hosts):
            yield
    finally:
        store.close()


def _selftest(config: Config) -> int:
    from monitor.selftest import run_selftest

    ok, lines = run_selftest(config)
    for line in lines:
        print(line)
    return 0 if ok else 1


def _spool(config: Config) -> int:
    from monitor.status import read_status

    try:
        status = read_status(config.spool.path)
    except FileDamaged as exc:
        print(f"hostmon spool: {exc} (the agent moves a damaged spool aside when it starts)", file=sys.stderr)
        return 1
    if status is None:
        print(f"no spool at {config.spool.path} (the agent has not run with this config)")
        return 0
    rows = [
        ("spool", str(config.spool.path)),
        ("depth (samples)", str(status.depth)),
        ("oldest sample", _iso(status.oldest_ts_ms)),
        ("newest sample", _iso(status.newest_ts_ms)),
        ("dropped (total)", str(status.dropped_total)),
        ("spilled (total)", str(status.spilled_total)),
        ("rejected by the database (total)", str(status.rejected_total)),
        ("last successful write", _iso(status.last_success_ms)),
        ("database reachable", {None: "unknown", True: "yes", False: "no"}[status.sink_reachable]),
        ("last error", status.last_error or "-"),
        ("agent heartbeat", _iso(status.updated_ms)),
        ("last wall-clock step", _clock_step(status.clock_step_ms, status.clock_step_at_ms)),
    ]
    if config.spool.spill_path.exists():
        rows.append(("spill file", f"{config.spool.spill_path} (replay: hostmon spool replay FILE)"))
    for damaged in _moved_aside(config.spool.path):
        rows.append(("moved aside (damaged)", f"{damaged} (its samples: hostmon spool export FILE)"))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


def _replay(config: Config, path: Path, *, keep: bool) -> int:
    """Send a spill file; claim it first so the agent can keep spilling to a fresh one."""
    from monitor.replay import replay
    from monitor.sinks import make_sink
    from monitor.spool import spill

    if not path.is_file():
        what = "a directory, not a spill file" if path.is_dir() else "no such file"
        print(f"hostmon spool replay: {path}: {what}", file=sys.stderr)
        return 2
    access.require_readable(path)
    if not keep:
        access.require_writable(path)  # claimed by renaming it, removed after a full replay
    work = path if keep else spill.claim(path, f"replaying-{os.getpid()}")
    sink = make_sink(config.sink, config.shipper)
    try:
        sent = replay(work, sink, config.shipper.batch_size)
    except MonitorError as exc:
        print(f"hostmon spool replay: stopped: {exc}; the rest is still in {work}", file=sys.stderr)
        return 1
    finally:
        sink.close()
    if not keep:
        work.unlink()
    print(f"replayed {sent} lines from {path} to {sink.name}" + ("" if keep else "; file removed"))
    return 0


def _export(path: Path) -> int:
    """The lines a spool file still holds on stdout, a summary on stderr (see monitor.spool.salvage)."""
    from monitor.spool import salvage

    if not path.exists():
        print(f"hostmon spool export: {path}: no such file", file=sys.stderr)
        return 2
    access.require_readable(path, access.SQLITE_COMPANIONS)
    out = sys.stdout
    result = salvage.export_lines(path, lambda line: out.write(line + "\n"))
    out.flush()
    summary = f"exported {result.lines} samples from {path}"
    if result.skipped_delivered:
        summary += f" ({result.skipped_delivered} already delivered left out)"
    if result.unreadable:
        summary += f"; {result.unreadable} rows held no readable sample"
    if result.gap is not None:
        after, before = result.gap
        upto = "the end" if before == salvage.NEWEST_SEQ else f"seq {before}"
        summary += f"; damaged pages: the samples after seq {after} up to {upto} could not be read"
    print(summary, file=sys.stderr)
    return 0


def _moved_aside(spool_path: Path) -> list[Path]:
    """Damaged spools moved aside beside SPOOL_PATH (:func:`monitor.sqlitedb.move_aside`)."""
    found = spool_path.parent.glob(f"{spool_path.name}.damaged-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm", "-journal", ".lp")))


def _check_config(config: Config) -> int:
    from monitor.api import listener

    if refused := listener.problems(config):  # what `hostmon api` would refuse to start with
        raise ConfigError(refused)
    where = config.source or "built-in defaults"
    print(f"{where}: OK (sink {config.sink.kind}, host {config.host}, every {config.agent.interval_s}s,")
    print(f"  state in {config.agent.state_dir}, {len(config.alerts.rules)} alert rule(s))")
    return 0


def _clock_step(step_ms: int | None, at_ms: int | None) -> str:
    if step_ms is None or at_ms is None:
        return "-"
    return f"{step_ms / 1000:+.3f} s at {iso_ms(at_ms)}"


def _iso(ts_ms: int | None) -> str:
    return "-" if ts_ms is None else iso_ms(ts_ms)


def _on_signals(*, reload: Callable[[], None], stop: Callable[[], None] | None = None) -> None:
    """SIGHUP calls RELOAD; SIGTERM and SIGINT call STOP when given (else they keep their handlers)."""

    def handle_reload(_signum: int, _frame: object) -> None:
        log.info("received SIGHUP, reloading the configuration")
        reload()

    def handle_stop(signum: int, _frame: object) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        if stop is not None:
            stop()

    signal.signal(signal.SIGHUP, handle_reload)
    if stop is not None:
        signal.signal(signal.SIGTERM, handle_stop)
        signal.signal(signal.SIGINT, handle_stop)


COMMANDS = {
    "collect": _collect,
    "api": _api,
    "run": _run,
    "selftest": _selftest,
    "spool": _spool,
    "check_config": _check_config,
}
