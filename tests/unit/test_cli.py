"""The command line: its help text and the signal handlers it installs."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from monitor import cli

SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)


@pytest.fixture
def handlers() -> Iterator[None]:
    """Whatever a test installs is undone afterwards."""
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    yield
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def test_help_describes_hostmon_in_a_plain_sentence(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0
    assert "The hostmon command line: collect, api, run, selftest, spool and check-config." in out
    assert "`" not in out


def test_sighup_reloads_and_sigterm_stops(handlers):
    calls: list[str] = []
    cli._on_signals(reload=lambda: calls.append("reload"), stop=lambda: calls.append("stop"))
    signal.raise_signal(signal.SIGHUP)
    signal.raise_signal(signal.SIGTERM)
    signal.raise_signal(signal.SIGINT)
    assert calls == ["reload", "stop", "stop"]


def test_without_stop_sigterm_keeps_the_handler_it_had(handlers):
    def before(_signum: int, _frame: object) -> None:
        pass

    signal.signal(signal.SIGTERM, before)
    calls: list[str] = []
    cli._on_signals(reload=lambda: calls.append("reload"))
    signal.raise_signal(signal.SIGHUP)
    assert calls == ["reload"]
    assert signal.getsignal(signal.SIGTERM) is before
