"""Line protocol: what the spool stores and every sink sends."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.lineprotocol import Sample, decode, encode, measurement_problem, text_problem


def test_encode_writes_one_line_with_host_tag_float_fields_and_ms_timestamp():
    line = encode(
        Sample(1_700_000_000_000, "web-1", {"cpu_usage_overall": 12.5, "disk_read": 4096.0}), "system"
    )
    assert line == "system,host=web-1 cpu_usage_overall=12.5,disk_read=4096 1700000000000"


def test_special_characters_in_host_and_measurement_are_escaped():
    line = encode(Sample(1, "a b,c=d", {"memory_usage": 1.0}), "my system,x")
    assert line == r"my\ system\,x,host=a\ b\,c\=d memory_usage=1 1"


def test_a_backslash_is_not_escaped_because_influxdb_has_no_escape_for_it():
    # What InfluxDB reads: a backslash before a comma escapes it, before an x it is itself.
    assert encode(Sample(1, "a,b", {"memory_usage": 1.0}), "system") == r"system,host=a\,b memory_usage=1 1"
    assert decode(r"system,host=a\x\,y memory_usage=1 1")[1].host == r"a\x,y"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("back\\slash", "backslash"),
        ("trailing\\", "backslash"),
        ("two\nlines", "control character"),
        ("tab\there", "control character"),
        ("", "empty"),
        ("x" * 256, "at most 255"),
    ],
)
def test_text_a_line_cannot_carry_unchanged_is_named(text, problem):
    assert problem in (text_problem(text) or "")
    assert problem in (measurement_problem(text) or "")


def test_a_measurement_starting_with_a_hash_would_be_a_comment():
    assert "comment" in (measurement_problem("#system") or "")
    assert text_problem("#web") is None and measurement_problem("sys#tem") is None


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


# Every host the config accepts (text_problem is its rule), the special characters drawn often.
hosts = st.text(
    alphabet=st.one_of(st.characters(blacklist_categories=["Cs"]), st.sampled_from(" ,=\\\"'#")),
    min_size=1,
    max_size=20,
).filter(lambda s: text_problem(s) is None)
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


def test_a_tagged_family_goes_to_its_own_measurement_and_decodes_back():
    sample = Sample(
        1000, "web 1", {"filesystem_used_percent": 42.5}, (("mount", "/var/lib data"),), "filesystem"
    )
    line = encode(sample, "system")
    assert line == r"system_filesystem,host=web\ 1,mount=/var/lib\ data filesystem_used_percent=42.5 1000"
    assert decode(line) == ("system_filesystem", sample)


def test_the_host_family_keeps_the_configured_measurement_and_no_extra_tags():
    line = encode(Sample(5, "h", {"load_1": 0.25}), "system")
    assert line == "system,host=h load_1=0.25 5"
    assert decode(line)[1].family == "host"
    assert decode(line)[1].tags == ()
