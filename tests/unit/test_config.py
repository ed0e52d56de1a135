"""Config loading: defaults, every kind of bad value named by file and key, secrets handling."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor import config
from monitor.errors import ConfigError

ENV: dict[str, str] = {"HOSTMON_STATE_DIR": "/srv/state"}


def problems(raw: dict, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.parse(raw, "cfg.toml", environ=environ or ENV, hostname=lambda: "h1")
    return info.value.problems


def test_no_config_means_embedded_sqlite_in_the_state_dir():
    c = config.parse({}, environ=ENV, hostname=lambda: "web-1")
    assert c.sink.kind == "sqlite"
    assert c.host == "web-1"
    assert c.sink.path == Path("/srv/state/metrics.db")
    assert c.spool.path == Path("/srv/state/spool.db")
    assert c.spool.spill_path == Path("/srv/state/spill.lp")
    assert c.alerts.log_path == Path("/srv/state/alerts.log")
    assert c.api.host == "127.0.0.1" and c.api.port == 5000


def test_load_without_a_path_uses_the_environment_variable(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[agent]\nhost = "db-7"\ninterval_s = 2\n')
    c = config.load(environ={**ENV, "HOSTMON_CONFIG": str(cfg)})
    assert c.host == "db-7" and c.agent.interval_s == 2.0 and c.source == cfg


def test_unknown_sections_and_keys_are_named():
    found = problems({"agnet": {}, "sink": {"kind": "sqlite", "retension_days": 3}})
    assert "cfg.toml: agnet: unknown section" in found
    assert "cfg.toml: sink.retension_days: unknown key" in found


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"agent": {"interval_s": "5"}}, "cfg.toml: agent.interval_s: expected a number, got '5'"),
        ({"agent": {"interval_s": 0}}, "cfg.toml: agent.interval_s: must be 0.1 to 3600 seconds"),
        ({"spool": {"buffer_size": 1.5}}, "cfg.toml: spool.buffer_size: expected an integer, got 1.5"),
        ({"spool": {"buffer_size": True}}, "cfg.toml: spool.buffer_size: expected an integer, got True"),
        ({"spool": {"overflow": "panic"}}, "cfg.toml: spool.overflow: must be one of drop_oldest, spill"),
        ({"shipper": {"gzip": "yes"}}, "cfg.toml: shipper.gzip: expected true or false, got 'yes'"),
        (
            {"shipper": {"backoff_initial_s": 9, "backoff_max_s": 2}},
            "cfg.toml: shipper.backoff_max_s: must be at least shipper.backoff_initial_s",
        ),
        (
            {"sink": {"kind": "influx"}},
            "cfg.toml: sink.kind: must be one of sqlite, influxdb_v2, influxdb_v1",
        ),
        (
            {"sink": {"kind": "influxdb_v1", "url": "localhost:8086", "database": "m"}},
            "cfg.toml: sink.url: must be an http:// or https:// URL",
        ),
        (
            {"sink": {"kind": "influxdb_v1", "url": "http://x"}},
            "cfg.toml: sink.database: is required for influxdb_v1",
        ),
        ({"api": {"port": 70000}}, "cfg.toml: api.port: must be 0 to 65535"),
        ({"api": {"max_points": 1}}, "cfg.toml: api.max_points: must be 10 to 1000000"),
        ({"spool": {"path": ""}}, "cfg.toml: spool.path: expected a non-empty path, got ''"),
        ({"sink": "sqlite"}, "cfg.toml: sink: must be a table"),
        ({"sink": {"hours_retention_days": 0}}, "cfg.toml: sink.hours_retention_days: must be positive"),
        ({"sink": {"raw_share": 1.5}}, "cfg.toml: sink.raw_share: must be more than 0, at most 1"),
        (
            {"sink": {"raw_share": 0.5, "minutes_share": 0.5}},
            "cfg.toml: sink.hours_share: raw_share + minutes_share + hours_share must be at most 1",
        ),
    ],
)
def test_each_bad_value_is_reported_with_its_key(raw, expected):
    assert expected in problems(raw)


@pytest.mark.parametrize("host", ["back\\slash", "ends-in\\", "two\nlines", "x" * 256])
def test_a_host_the_line_protocol_cannot_carry_unchanged_is_refused_naming_agent_host(host):
    (found,) = problems({"agent": {"host": host}})
    assert found.startswith("cfg.toml: agent.host: must ")


def test_a_system_host_name_with_a_backslash_is_refused_too():
    with pytest.raises(ConfigError, match=r"agent\.host: must not contain a backslash.*system's host name"):
        config.parse({}, environ=ENV, hostname=lambda: "EXAMPLE\\web1")


def test_a_measurement_that_would_be_a_comment_or_lose_its_backslash_is_refused():
    assert problems({"sink": {"measurement": "#system"}})[0].startswith(
        "cfg.toml: sink.measurement: must not"
    )
    assert "backslash" in problems({"sink": {"measurement": "sys\\tem"}})[0]
    assert "empty" in problems({"sink": {"measurement": ""}})[0]


def test_every_problem_is_reported_at_once():
    found = problems({"agent": {"interval_s": -1}, "api": {"port": -1, "threads": 0}})
    assert len(found) == 3


def test_v2_sink_requires_org_bucket_and_a_token():
    found = problems({"sink": {"kind": "influxdb_v2", "url": "http://db:8086"}})
    assert "cfg.toml: sink.org: is required for influxdb_v2" in found
    assert "cfg.toml: sink.bucket: is required for influxdb_v2" in found
    assert any(p.startswith("cfg.toml: sink.token_file: a token is required") for p in found)


def test_inline_secrets_are_refused_with_the_keys_to_use_instead():
    found = problems({"sink": {"password": "hunter2"}, "api": {"token": "t"}})
    assert (
        "cfg.toml: sink.password: secrets are not read from the config file; "
        "use sink.password_file or sink.password_env"
    ) in found
    assert any(p.startswith("cfg.toml: api.token: secrets are not read") for p in found)
    assert not any("hunter2" in p for p in found)


def test_secrets_come_from_a_file_an_env_var_or_the_fallback_variable(tmp_path):
    token = tmp_path / "token"
    token.write_text("from-file\n")
    base = {"kind": "influxdb_v2", "url": "http://db:8086", "org": "o", "bucket": "b"}
    c = config.parse({"sink": {**base, "token_file": str(token)}}, environ=ENV)
    assert c.sink.token == "from-file"
    c = config.parse({"sink": {**base, "token_env": "MY_TOKEN"}}, environ={**ENV, "MY_TOKEN": "from-env"})
    assert c.sink.token == "from-env"
    c = config.parse({"sink": base}, environ={**ENV, "HOSTMON_SINK_TOKEN": "fallback"})
    assert c.sink.token == "fallback"
    assert "from-file" not in repr(c) and "fallback" not in repr(c)


def test_unreadable_secret_file_and_missing_env_var_are_named(tmp_path):
    found = problems({"sink": {"password_file": str(tmp_path / "nope")}, "api": {"token_env": "UNSET_VAR"}})
    assert (
        f"cfg.toml: sink.password_file: cannot read {tmp_path / 'nope'}: No such file or directory" in found
    )
    assert "cfg.toml: api.token_env: environment variable UNSET_VAR is not set" in found


def test_alert_rules_are_validated_each_with_its_index():
    rules = [
        {"name": "cpu", "metric": "cpu_usage_overall", "op": ">", "threshold": 90, "for_s": 30},
        {"name": "cpu", "metric": "memory_usage", "op": "=>", "threshold": 1, "severity": "fatal"},
        {"metric": "memory_usage", "op": ">", "colour": "red"},
    ]
    found = problems({"alerts": {"rules": rules}})
    assert "cfg.toml: alerts.rules[1].op: must be one of > >= < <=" in found
    assert "cfg.toml: alerts.rules[1].severity: must be one of info, warning, critical" in found
    assert "cfg.toml: alerts.rules[1].name: duplicate rule name 'cpu'" in found
    assert "cfg.toml: alerts.rules[2].colour: unknown key" in found
    assert "cfg.toml: alerts.rules[2].name: is required" in found
    assert "cfg.toml: alerts.rules[2].threshold: is required" in found


def test_valid_alert_rules_load_with_defaults():
    rule = {"name": "mem", "metric": "memory_usage", "op": ">=", "threshold": 95}
    c = config.parse({"alerts": {"rules": [rule]}}, environ=ENV)
    (r,) = c.alerts.rules
    assert (r.name, r.op, r.threshold, r.for_s, r.severity, r.hysteresis) == (
        "mem",
        ">=",
        95.0,
        0.0,
        "warning",
        0.0,
    )


def test_a_broken_toml_file_names_the_file(tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[agent\n")
    with pytest.raises(ConfigError) as info:
        config.load(cfg, environ=ENV)
    assert info.value.problems[0].startswith(f"{cfg}: not valid TOML")


def test_a_missing_file_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read: No such file"):
        config.load(tmp_path / "absent.toml", environ=ENV)


def test_state_dir_default_depends_on_the_user():
    assert config.default_state_dir({"HOSTMON_STATE_DIR": "/x"}) == Path("/x")
    expected = Path("/var/lib/hostmon") if config.os.geteuid() == 0 else None
    if expected is not None:
        assert config.default_state_dir({}) == expected
    else:
        assert config.default_state_dir({"XDG_STATE_HOME": "/xdg"}) == Path("/xdg/hostmon")


# -- each field is parsed by its annotation, not by its default's type ---------------------


@dataclass(frozen=True)
class Future:
    """Fields the config may grow: a number that defaults to None, a path with no default."""

    limit: int | None = None
    where: Path | None = None
    enabled: bool = False
    ratio: float = 0.5


def read(table: dict) -> tuple[dict, list[str]]:
    reader = config._Reader("cfg.toml", {})
    return reader.values(Future, table, "future"), reader.problems


def test_an_optional_int_field_defaulting_to_none_is_parsed_as_an_int():
    assert read({"limit": 7}) == ({"limit": 7}, [])
    assert read({"limit": "/var/x"}) == (
        {"limit": None},
        ["cfg.toml: future.limit: expected an integer, got '/var/x'"],
    )


def test_an_optional_path_field_is_parsed_as_a_path():
    assert read({"where": "/var/x"}) == ({"where": Path("/var/x")}, [])


@pytest.mark.parametrize("value", [1, 0, "true"])
def test_a_bool_field_refuses_anything_but_true_or_false(value):
    assert read({"enabled": value})[1] == [f"cfg.toml: future.enabled: expected true or false, got {value!r}"]
    assert problems({"shipper": {"gzip": value}}) == [
        f"cfg.toml: shipper.gzip: expected true or false, got {value!r}"
    ]


def test_a_float_field_takes_an_integer_as_a_float():
    (values, found) = read({"ratio": 2})
    assert values == {"ratio": 2.0} and type(values["ratio"]) is float and found == []


def test_a_field_of_a_type_without_a_parser_is_a_bug_not_a_silent_pass():
    @dataclass(frozen=True)
    class Odd:
        pair: tuple[int, int] = (0, 0)

    with pytest.raises(TypeError, match="no TOML parser"):
        config._Reader("cfg.toml", {}).values(Odd, {"pair": [1, 2]}, "odd")


def test_a_required_rule_key_of_the_wrong_type_is_named_not_a_crash():
    found = problems(
        {"alerts": {"rules": [{"name": 3, "metric": "memory_usage", "op": ">", "threshold": "x"}]}}
    )
    assert "cfg.toml: alerts.rules[0].name: expected a string, got 3" in found
    assert "cfg.toml: alerts.rules[0].threshold: expected a number, got 'x'" in found


# -- [collectors] -------------------------------------------------------------------------------


def test_collectors_default_to_on_with_real_filesystems_whole_disks_and_real_nics():
    c = config.parse({}, environ=ENV).collectors
    assert (c.load, c.swap, c.filesystem, c.disk, c.network) == (True, True, True, True, True)
    assert {"tmpfs", "overlay", "squashfs", "proc", "sysfs", "cgroup*", "nsfs", "autofs"} <= set(
        c.filesystem_exclude_types
    )
    assert c.disk_exclude == ("loop*", "ram*")
    assert c.network_exclude == ("lo", "veth*", "docker*", "br-*", "virbr*", "cni*", "flannel*", "podman*")
    assert c.filesystem_include == c.disk_include == c.network_include == ()


def test_collectors_switches_and_patterns_load_from_toml(tmp_path):
    path = tmp_path / "hostmon.toml"
    path.write_text(
        "[collectors]\n"
        "disk = false\n"
        'network_include = ["eth*", "ens*"]\n'
        'filesystem_exclude = ["/mnt/*"]\n'
        "filesystem_exclude_types = []\n",
        encoding="utf-8",
    )
    c = config.load(path, environ=ENV).collectors
    assert c.disk is False and c.network is True
    assert c.network_include == ("eth*", "ens*")
    assert c.filesystem_exclude == ("/mnt/*",)
    assert c.filesystem_exclude_types == ()


def test_bad_collector_keys_values_and_patterns_are_named():
    found = problems(
        {
            "collectors": {
                "disk": "yes",
                "network_exclude": "lo",
                "disk_include": ["sd*", 3],
                "filesystem_exclude": ["/ok", "", "/mnt/[abc"],
                "cpu": True,
            }
        }
    )
    assert "cfg.toml: collectors.disk: expected true or false, got 'yes'" in found
    assert "cfg.toml: collectors.network_exclude: expected an array of strings, got 'lo'" in found
    assert "cfg.toml: collectors.disk_include: expected an array of strings, got ['sd*', 3]" in found
    assert "cfg.toml: collectors.filesystem_exclude[1]: must not be empty (it would match nothing)" in found
    assert (
        "cfg.toml: collectors.filesystem_exclude[2]:"
        " unclosed [ in '/mnt/[abc' (fnmatch would match it literally)" in found
    )
    assert "cfg.toml: collectors.cpu: unknown key" in found


def test_a_rule_matcher_must_be_the_tag_key_of_its_metric_family():
    rules = [
        {"name": "a", "metric": "filesystem_used_percent", "op": ">", "threshold": 90, "device": "sda"},
        {"name": "b", "metric": "cpu_usage_overall", "op": ">", "threshold": 90, "mount": "/"},
        {"name": "c", "metric": "filesystem_used_percent", "op": ">", "threshold": 90, "mount": "/"},
    ]
    found = problems({"alerts": {"rules": rules}})
    assert found == [
        "cfg.toml: alerts.rules[0].device: filesystem_used_percent has no device tag"
        " (its family filesystem is tagged mount)",
        "cfg.toml: alerts.rules[1].mount: cpu_usage_overall has no mount tag",
    ]


def test_a_rule_matcher_is_one_series_every_series_or_none_for_host_metrics():
    rules = [
        {"name": "root", "metric": "filesystem_used_percent", "op": ">", "threshold": 90, "mount": "/"},
        {"name": "all", "metric": "filesystem_used_percent", "op": ">", "threshold": 90, "mount": "*"},
        {"name": "unset", "metric": "network_errors_in_per_s", "op": ">", "threshold": 1},
        {"name": "cpu", "metric": "cpu_usage_overall", "op": ">", "threshold": 90},
    ]
    c = config.parse({"alerts": {"rules": rules}}, environ=ENV)
    assert [r.matcher for r in c.alerts.rules] == [("mount", "/"), ("mount", "*"), ("interface", "*"), None]


@pytest.mark.parametrize(
    ("raw", "expected_s"),
    [
        ({}, 40.0),  # 2 x (10 s interval + 10 s flush)
        ({"agent": {"interval_s": 1}, "shipper": {"flush_interval_s": 1}}, 30.0),  # at least 30 s
        ({"agent": {"interval_s": 60}}, 180.0),  # 3 intervals
        ({"agent": {"interval_s": 1}, "api": {"silent_after_s": 12.5}}, 12.5),
    ],
)
def test_silent_after_s_defaults_to_a_few_intervals_and_flushes(raw, expected_s):
    assert config.parse(raw, environ=ENV).api.silent_after_s == expected_s


@pytest.mark.parametrize(
    ("api", "expected"),
    [
        (
            {"silent_after_s": 15},
            "cfg.toml: api.silent_after_s: must be more than agent.interval_s + shipper.flush_interval_s "
            "(20 s: how old a live agent's newest stored sample can be) and at most 604800 seconds (7 days)",
        ),
        ({"silent_after_s": -1}, "cfg.toml: api.silent_after_s: must be more than"),
        ({"silent_after_s": 604801}, "cfg.toml: api.silent_after_s: must be more than"),
        (
            {"silent_severity": "fatal"},
            "cfg.toml: api.silent_severity: must be one of info, warning, critical",
        ),
        (
            {"silent_webhook": "hooks.example"},
            "cfg.toml: api.silent_webhook: must be an http:// or https:// URL",
        ),
    ],
)
def test_the_silent_host_settings_are_validated_naming_the_key(api, expected):
    assert any(p.startswith(expected) for p in problems({"api": api})), problems({"api": api})


def test_each_tier_of_the_embedded_store_has_its_retention_and_share_by_default():
    s = config.parse({}, environ=ENV, hostname=lambda: "h").sink
    assert (s.retention_days, s.minutes_retention_days, s.hours_retention_days) == (7.0, 90.0, 730.0)
    assert (s.raw_share, s.minutes_share, s.hours_share) == (0.3, 0.6, 0.1)
