"""Fixtures of the unit tests that open a real spool."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import SpoolConfig
from monitor.spool import Spool
from tests.unit.spool_helpers import NOW_S, Overflows, SpoolFactory


@pytest.fixture
def overflows() -> Overflows:
    return Overflows()


@pytest.fixture
def make_spool(tmp_path: Path, overflows: Overflows) -> Iterator[SpoolFactory]:
    """Opens spools on tmp_path (settings override SpoolConfig's), reporting to ``overflows``."""
    opened: list[Spool] = []

    def make(**settings: object) -> Spool:
        config = SpoolConfig(path=tmp_path / "spool.db", spill_path=tmp_path / "spill.lp")
        spool = Spool(dataclasses.replace(config, **settings), clock=lambda: NOW_S, on_overflow=overflows)
        opened.append(spool)
        return spool

    yield make
    for spool in opened:
        spool.close()
