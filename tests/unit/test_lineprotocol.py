"""Line protocol: what the spool stores and every sink sends."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.lineprotocol import Sample, decode, encode


def test_encode_writes_one_line_with_host_tag_float_fields_and_ms_timestamp():
    line = encode(
        Sample(1_700_000_000_000, "web-1", {"cpu_usage_overall": 12.5, "disk_read": 4096.0}), "system"
    )
    assert line == "system,host=web-1 cpu_usage_overall=12.5,disk_read=4096 1700000000000"


def test_special_characters_in_host_and_measurement_are_escaped():
    line = encode(Sample(1, "a b,c=d", {"memory_usage": 1.0}), "my system,x")
    assert line == r"my\ system\,x,host=a\ b\,c\=d memory_usage=1 1"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused(bad):
    with pytest.raises(ValueError, match="not finite"):
        encode(Sample(1, "h", {"memory_usage": bad}), "system")


def test_a_sample_without_fields_is_refused():
    with pytest.raises(ValueError, match="at least one field"):
        encode(Sample(1, "h", {}), "system")


def test_decode_rejects_lines_that_are_not_ours():
    with pytest.raises(ValueError):
        decode("garbage")


hosts = st.text(alphabet=st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=20).filter(
    lambda s: s.strip() == s and "\\" not in s
)
values = st.floats(allow_nan=False, allow_infinity=False, width=64)


@given(
    host=hosts,
    ts=st.integers(min_value=0, max_value=2**53),
    fields=st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,15}", fullmatch=True), values, min_size=1),
)
def test_decode_inverts_encode(host, ts, fields):
    measurement, sample = decode(encode(Sample(ts, host, fields), "system"))
    assert measurement == "system"
    assert sample == Sample(ts, host, fields)
