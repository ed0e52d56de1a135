"""Samples and their InfluxDB line-protocol form (the spool's storage format).

A sample is encoded once, when it is taken; the spool stores the line and every sink
ships that line as it is (the SQLite sink decodes it). Timestamps are integer
milliseconds since the epoch and every write says ``precision=ms`` explicitly.

Escaping is InfluxDB's: in tag keys and values a backslash escapes a comma, an equals
sign or a space, and in the measurement a comma or a space; any other backslash is a
literal character. A backslash itself has no escape that the databases agree on (of a
doubled backslash InfluxDB 1.x keeps both, VictoriaMetrics one; a value ending in a
backslash escapes the space after it and the line is refused), so text that goes into a
line must not contain one: :func:`text_problem` and :func:`measurement_problem` say so,
and the config refuses such a host or measurement.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.catalog import Family, family_of_tags, measurement_of
from monitor.formats import number

PRECISION = "ms"

MAX_TEXT_CHARS = 255
_TAG_ESCAPE = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})
_MEASUREMENT_ESCAPE = str.maketrans({",": r"\,", " ": r"\ "})
_UNESCAPE = re.compile(r"\\([,= ])")
_UNSAFE = re.compile(r"[\\\x00-\x1f\x7f]")


def text_problem(text: str) -> str | None:
    """Why TEXT cannot be a measurement or tag value that every database stores as written
    (None when it can): empty, longer than MAX_TEXT_CHARS, or holding a backslash or a
    control character (a newline ends the line)."""
    if not text:
        return "must not be empty"
    if len(text) > MAX_TEXT_CHARS:
        return f"must be at most {MAX_TEXT_CHARS} characters"
    bad = _UNSAFE.search(text)
    if bad:
        what = "a backslash" if bad.group() == "\\" else f"the control character {bad.group()!r}"
        return f"must not contain {what}: {text!r} (InfluxDB's line protocol cannot carry it unchanged)"
    return None


def measurement_problem(text: str) -> str | None:
    """:func:`text_problem`, and a leading ``#`` (the line would be a comment: dropped)."""
    if text.startswith("#"):
        return f"must not start with '#': {text!r} (InfluxDB reads such a line as a comment and drops it)"
    return text_problem(text)


Tags = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    """One series' values at one tick: every field shares the timestamp ``ts_ms``.

    ``family`` (:mod:`monitor.catalog`) decides the measurement; ``tags`` are the series' tags
    besides ``host`` (``(("mount", "/"),)`` for a filesystem), empty for the host family.
    """

    ts_ms: int
    host: str
    fields: Mapping[str, float]
    tags: Tags = ()
    family: Family = "host"


def _float(value: float) -> str:
    if not math.isfinite(value):
        raise ValueError(f"field value {value!r} is not finite")
    return number(value)


def encode(sample: Sample, measurement: str) -> str:
    """``measurement[_family],host=H[,tag=V] f1=v1,f2=v2 TS``: fields as floats, TS in ms.

    MEASUREMENT is the host family's (``sink.measurement``); other families append their name.
    """
    if not sample.fields:
        raise ValueError("a sample needs at least one field")
    fields = ",".join(f"{k.translate(_TAG_ESCAPE)}={_float(v)}" for k, v in sample.fields.items())
    tags = "".join(f",{k.translate(_TAG_ESCAPE)}={v.translate(_TAG_ESCAPE)}" for k, v in sample.tags)
    name = measurement_of(sample.family, measurement)
    return (
        f"{name.translate(_MEASUREMENT_ESCAPE)},host={sample.host.translate(_TAG_ESCAPE)}{tags}"
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
    """Inverse of :func:`encode` for the lines this package writes: (measurement, sample).

    Tags besides ``host`` come back sorted by key; the family is the one of their tag key.
    """
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
    host = tags.pop("host", "")
    extra = tuple(sorted(tags.items()))
    return name, Sample(int(ts_text), host, fields, extra, family_of_tags(k for k, _ in extra))


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
