"""How times, numbers and reasons are written wherever a person or a parser reads them.

One ISO-8601 form for every timestamp the package prints (API bodies, alerts.log, the CLI):
UTC, milliseconds, ``Z``. One form for numbers: ``90`` rather than ``90.0``, otherwise the
shortest text that reads back as the same float. One form for a reason (an error, a server's
message): a single line of bounded length.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

DAY_MS = 86_400_000
MAX_REASON_CHARS = 300
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_TWO_DIGITS = tuple(f"{n:02d}" for n in range(60))
_MILLIS_Z = tuple(f"{n:03d}Z" for n in range(1000))


@functools.lru_cache(maxsize=64)
def _date(day: int) -> str:
    return (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%d")


def iso_ms(ts_ms: int) -> str:
    """``2024-05-01T12:00:00.000Z`` for epoch milliseconds (cheap: the API calls it once per point)."""
    day, ms_of_day = divmod(ts_ms, DAY_MS)
    seconds, ms = divmod(ms_of_day, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    return f"{_date(day)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}Z"


def iso_ms_each(stamps: Sequence[int]) -> list[str]:
    """:func:`iso_ms` of each of STAMPS, the text up to the hour made once an hour and the rest
    once per distinct offset into the hour (a day of 10-second points: 360 of them), from
    tables of digits (a fleet's newest samples: nearly every offset distinct)."""
    hours: dict[int, str] = {}  # "2024-05-01T12:" per epoch hour
    rests: dict[int, str] = {}  # "05:30.000Z" per millisecond of the hour
    out = []
    for ts_ms in stamps:
        hour, ms = divmod(ts_ms, 3_600_000)
        prefix = hours.get(hour)
        if prefix is None:
            prefix = hours[hour] = iso_ms(hour * 3_600_000)[:14]
        rest = rests.get(ms)
        if rest is None:
            minutes, millis = divmod(ms, 60_000)
            seconds, millis = divmod(millis, 1000)
            rest = rests[ms] = f"{_TWO_DIGITS[minutes]}:{_TWO_DIGITS[seconds]}.{_MILLIS_Z[millis]}"
        out.append(prefix + rest)
    return out


def number(value: float) -> str:
    """``90`` rather than ``90.0``; otherwise Python's shortest round-tripping form."""
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """TEXT with its whitespace (newlines included) collapsed, cut to LIMIT characters."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
