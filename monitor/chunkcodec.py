"""Packs one series' samples (timestamps and values) into a compact blob and back, exactly;
and one series' rollup buckets of a day (:func:`encode_buckets`) the same way.

Layout (then zlib-compressed): a header ``<I q b`` (sample count, first timestamp, decimal
scale ``k`` or -1), the timestamps as delta-of-delta integers (zero for a steady interval),
then the values:

- ``k >= 0`` when every value is exactly ``int / 10**k`` for some k up to :data:`MAX_DECIMALS`
  (percentages with two decimals, byte rates, near-constant values): the integers' deltas;
- ``k == -1`` otherwise: each float's bits XOR the previous one's (equal neighbours give zeros).

Each integer column is an ``array`` of the narrowest type that holds it (one type code byte,
then little-endian items), so zlib sees long runs of zero bytes. Decoding returns the same
floats bit for bit (the scale is chosen only when ``int / 10**k`` reproduces every value).
"""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from itertools import accumulate, pairwise, repeat
from operator import truediv
from typing import NamedTuple

MAX_DECIMALS = 6
_HEADER = struct.Struct("<Iqb")
_INT_CODES = ("b", "h", "i", "q")
_BOUNDS = {code: 1 << (array(code).itemsize * 8 - 1) for code in _INT_CODES}
_EXACT = 1 << 53  # integers a float holds exactly
_LITTLE = sys.byteorder == "little"


def encode(stamps_ms: list[int], values: list[float]) -> bytes:
    """STAMPS_MS (strictly increasing) and VALUES (finite floats, as many) as one blob."""
    n = len(stamps_ms)
    if n == 0 or n != len(values):
        raise ValueError(f"need as many values as timestamps, at least one ({n}, {len(values)})")
    deltas = [b - a for a, b in pairwise(stamps_ms)]
    dod = [b - a for a, b in zip([0, *deltas], deltas, strict=False)]
    k, ints = scaled(values)
    if k >= 0:
        column = _ints([b - a for a, b in zip([0, *ints], ints, strict=False)])
    else:
        bits = struct.unpack(f"<{n}Q", struct.pack(f"<{n}d", *values))
        raw = array("Q", [b ^ a for a, b in zip((0, *bits), bits, strict=False)]).tobytes()
        column = b"Q" + (raw if _LITTLE else _swapped("Q", raw))
    return zlib.compress(_HEADER.pack(n, stamps_ms[0], k) + _ints(dod) + column, 6)


def decode(blob: bytes) -> tuple[list[int], list[float]]:
    """Inverse of :func:`encode`: (timestamps, values)."""
    data = zlib.decompress(blob)
    n, first_ms, k = _HEADER.unpack_from(data)
    offset = _HEADER.size
    dod, offset = _read_ints(data, offset, n - 1)
    if n > 1 and not any(dod[1:]):  # a steady interval: no per-sample work
        stamps = list(range(first_ms, first_ms + n * dod[0], dod[0]))
    else:
        stamps = list(accumulate(accumulate(dod), initial=first_ms))
    column, offset = _read_ints(data, offset, n)
    if k >= 0:
        scale = 10**k
        values = list(map(truediv, accumulate(column), repeat(scale)))
    else:
        bits = list(accumulate(column, lambda a, b: a ^ b))
        values = list(struct.unpack(f"<{n}d", struct.pack(f"<{n}Q", *bits)))
    return stamps, values


def scaled(values: list[float]) -> tuple[int, list[int]]:
    """(k, the integers ``v * 10**k``) for the smallest k that reproduces every value (``i /
    10**k == v``, each ``|i| < 2**53`` so a float holds it exactly), or (-1, [])."""
    try:
        for k in range(MAX_DECIMALS + 1):
            scale = 10**k
            if all(round(v * scale) / scale == v for v in values):  # stops at the first misfit
                ints = [round(v * scale) for v in values]
                if min(ints) > -_EXACT and max(ints) < _EXACT:
                    return k, ints
                break
    except (OverflowError, ValueError):  # too large for any scale
        pass
    return -1, []


def _ints(numbers: list[int]) -> bytes:
    """NUMBERS as a type code byte and an array of the narrowest signed type that holds them."""
    lo, hi = (min(numbers), max(numbers)) if numbers else (0, 0)
    code = next(c for c in _INT_CODES if -_BOUNDS[c] <= lo and hi < _BOUNDS[c])
    raw = array(code, numbers).tobytes()
    return code.encode() + (raw if _LITTLE else _swapped(code, raw))


def _read_ints(data: bytes, offset: int, count: int) -> tuple[array[int], int]:
    """A column :func:`_ints` wrote (or doubles, type code ``d``) of COUNT items at OFFSET."""
    code = chr(data[offset])
    column = array(code)
    end = offset + 1 + count * column.itemsize
    column.frombytes(data[offset + 1 : end])
    if not _LITTLE:
        column.byteswap()
    return column, end


def _swapped(code: str, raw: bytes) -> bytes:
    column = array(code)
    column.frombytes(raw)
    column.byteswap()
    return column.tobytes()


class Buckets(NamedTuple):
    """Rollup buckets as columns, in time order: each bucket's start, sample count, scale, and
    sum, min, max, its newest sample's time (as an offset from the bucket's start) and value
    (sum, min, max and last times scale)."""

    bucket_ms: list[int]
    n: array[int]
    scale: array[int]
    sum: array[float]
    min: array[float]
    max: array[float]
    last_offset_ms: array[int]
    last: array[float]

    def rows(self) -> list[tuple[int, int, int, float, float, float, int, float]]:
        """(bucket_ms, n, scale, sum, min, max, last_ms, last) per bucket."""
        last_ms = [b + o for b, o in zip(self.bucket_ms, self.last_offset_ms, strict=True)]
        columns = (*self[:6], last_ms, self.last)
        return list(zip(*columns, strict=True))


_BUCKETS_HEADER = struct.Struct("<I")


def encode_buckets(buckets: Sequence[tuple[int, int, int, float, float, float, int, float]]) -> bytes:
    """BUCKETS ((bucket_ms, n, scale, sum, min, max, last_ms, last), bucket_ms increasing, at
    least one) as one blob of columns, each of the narrowest type that holds it: the starts as
    deltas, the counts and scales, the newest samples' times as offsets from their bucket's
    start, and the four values (whole numbers, as a scaled bucket's are, as integers; else
    doubles). Not compressed: a long window reads hundreds of these, and inflating them would
    cost more than reading the columns (a day of five-minute buckets is about 8 KB)."""
    if not buckets:
        raise ValueError("need at least one bucket")
    starts, n, scale, total, low, high, last_ms, last = (list(c) for c in zip(*buckets, strict=True))
    deltas = [b - a for a, b in zip([0, *starts], starts, strict=False)]
    offsets = [t - b for t, b in zip(last_ms, starts, strict=True)]
    columns = [_ints(deltas), _ints(n), _ints(scale), _ints(offsets)]
    columns += [_numbers(column) for column in (total, low, high, last)]
    return _BUCKETS_HEADER.pack(len(starts)) + b"".join(columns)


def decode_buckets(blob: bytes) -> Buckets:
    """Inverse of :func:`encode_buckets`, as columns."""
    (count,) = _BUCKETS_HEADER.unpack_from(blob)
    offset = _BUCKETS_HEADER.size
    columns = []
    for _ in range(8):
        column, offset = _read_ints(blob, offset, count)
        columns.append(column)
    deltas, n, scale, last_offsets, total, low, high, last = columns
    return Buckets(list(accumulate(deltas)), n, scale, total, low, high, last_offsets, last)  # type: ignore[arg-type]


def _numbers(values: list[float]) -> bytes:
    """VALUES as :func:`_ints` when every one is a whole number a float holds exactly, else as
    doubles (type code ``d``)."""
    if all(float(v).is_integer() and -_EXACT < v < _EXACT for v in values):
        return _ints([int(v) for v in values])
    return b"d" + _doubles(values)


def _doubles(values: list[float]) -> bytes:
    column = array("d", values)
    if not _LITTLE:
        column.byteswap()
    return column.tobytes()
