"""Samples and their InfluxDB line-protocol form (the spool's storage format).

A sample is encoded once, when it is taken; the spool stores the line and every sink
ships that line as it is (the SQLite sink decodes it). Timestamps are integer
milliseconds since the epoch and every write says ``precision=ms`` explicitly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.formats import number

PRECISION = "ms"

_TAG_ESCAPE = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\\": "\\\\"})
_MEASUREMENT_ESCAPE = str.maketrans({",": r"\,", " ": r"\ ", "\\": "\\\\"})
_UNESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Sample:
    """One tick's values: every field shares the timestamp ``ts_ms``."""

    ts_ms: int
    host: str
    fields: Mapping[str, float]


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"field value {value!r} is not finite")
    return number(value)


def encode(sample: Sample, measurement: str) -> str:
    """``measurement,host=H f1=v1,f2=v2 TS`` with fields as floats, TS in milliseconds."""
    if not sample.fields:
        raise ValueError("a sample needs at least one field")
    fields = ",".join(f"{k.translate(_TAG_ESCAPE)}={_float(v)}" for k, v in sample.fields.items())
    return (
        f"{measurement.translate(_MEASUREMENT_ESCAPE)},host={sample.host.translate(_TAG_ESCAPE)}"
        f" {fields} {sample.ts_ms}"
    )


def _split(text: str, sep: str) -> list[str]:
    out, cur, escaped = [], [], False
    for ch in text:
        if escaped:
            cur.append("\\" + ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return out


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(r"\1", text)


def decode(line: str) -> tuple[str, Sample]:
    """Inverse of :func:`encode` for the lines this package writes: (measurement, sample)."""
    line = line.strip()
    escaped = "\\" in line
    parts = _split(line, " ") if escaped else line.split(" ")
    if len(parts) != 3:
        raise ValueError(f"not a line of this package's line protocol: {line!r}")
    series, field_text, ts_text = parts
    pair = _unescape_pair if escaped else _plain_pair
    measurement, *tag_pairs = _split(series, ",") if escaped else series.split(",")
    tags = dict(pair(t) for t in tag_pairs)
    fields = {}
    for text in _split(field_text, ",") if escaped else field_text.split(","):
        key, value = pair(text)
        fields[key] = float(value.rstrip("i"))
    name = _unescape(measurement) if escaped else measurement
    return name, Sample(int(ts_text), tags.get("host", ""), fields)


def _plain_pair(pair: str) -> tuple[str, str]:
    """``key=value`` of a line without escapes (the common case: plain string splits)."""
    key, sep, value = pair.partition("=")
    if not sep:
        raise ValueError(f"expected key=value, got {pair!r}")
    return key, value


def _unescape_pair(pair: str) -> tuple[str, str]:
    """``key=value`` split at the first unescaped ``=``, both sides unescaped."""
    key, *value = _split(pair, "=")
    if not value:
        raise ValueError(f"expected key=value, got {pair!r}")
    return _unescape(key), _unescape("=".join(value))
