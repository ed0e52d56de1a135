"""The roles' templates, rendered by Ansible, produce files their consumers accept.

hostmon.toml goes through hostmon's own config loader; the units are checked for the
hardening the issue asks for (and for being well-formed, section by section); the Grafana
provisioning files are loaded as YAML and compared with what Grafana expects; the InfluxDB
configs are parsed as TOML, and the 1.x one is run by the real influxd.
"""

from __future__ import annotations

import configparser
import json
import re
import subprocess
import tomllib
import urllib.error
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from monitor import config as hostmon_config
from monitor.api import listener
from monitor.api.server import FD_RESERVE
from tests import servers
from tests.ansible.helpers import REPO, render
from tests.tlscerts import make_ca_and_server_cert

MONITOR_CASES = ("sqlite", "v1", "v2")
NOT_SECRETS = ("ca_file", "tls_cert_file", "tls_key_file")  # files the role copies, not secrets
DASHBOARD = REPO / "files" / "dashboards" / "system-metrics.json"


def load_hostmon_config(text: str, secrets: dict[str, str], tmp_path: Path) -> hostmon_config.Config:
    """Parse a rendered hostmon.toml with hostmon's loader, the secret files placed under TMP_PATH."""
    raw = tomllib.loads(text)
    for section in raw.values():
        if not isinstance(section, dict):
            continue
        for key, value in list(section.items()):
            if key.endswith("_file") and key not in NOT_SECRETS:
                name = Path(value).name
                assert name in secrets, f"{key} names {value}, but the role writes no such secret"
                path = tmp_path / name
                path.write_text(secrets[name])
                section[key] = str(path)
    return hostmon_config.parse(raw, "hostmon.toml", environ={}, hostname=lambda: "unused")


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every line of a systemd unit, in order; rejects malformed lines."""
    entries, section = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]") and line.count("[") == 1, f"malformed section line {line!r}"
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z]+", key), f"malformed unit line {line!r}"
        assert "[" not in value, f"a section header ran into a value: {line!r}"
        entries.append((section, key, value))
    return entries


def unit_value(entries: list[tuple[str, str, str]], section: str, key: str) -> list[str]:
    return [v for s, k, v in entries if s == section and k == key]


@pytest.mark.parametrize("case", MONITOR_CASES)
def test_hostmon_toml_is_accepted_by_hostmons_config_loader(rendered, case, tmp_path):
    secrets = json.loads(rendered[f"monitor-{case}/secrets.json"])
    config = load_hostmon_config(rendered[f"monitor-{case}/hostmon.toml"], secrets, tmp_path)
    assert config.agent.state_dir == Path("/var/lib/hostmon")
    assert config.alerts.log_path == Path("/var/log/hostmon/alerts.log")
    assert config.api.host == "127.0.0.1" and config.api.port == 5000
    assert config.sink.kind == {"sqlite": "sqlite", "v1": "influxdb_v1", "v2": "influxdb_v2"}[case]
    assert [r.name for r in config.alerts.rules][:1] == ["cpu_high"]


def test_hostmon_toml_carries_the_collector_switches_patterns_and_rule_matchers(rendered, tmp_path):
    secrets = json.loads(rendered["monitor-v1/secrets.json"])
    config = load_hostmon_config(rendered["monitor-v1/hostmon.toml"], secrets, tmp_path)
    c = config.collectors
    assert (c.disk, c.network, c.load) == (False, True, True)
    assert c.network_include == ("eth*", "ens*")
    assert c.filesystem_exclude == ("/mnt/*",)
    assert c.filesystem_exclude_types == ()
    assert [(r.name, r.matcher) for r in config.alerts.rules[2:]] == [
        ("root_full", ("mount", "/")),
        ("any_fs_full", ("mount", "*")),
    ]
    defaults = json.loads(rendered["monitor-sqlite/secrets.json"])
    default = load_hostmon_config(rendered["monitor-sqlite/hostmon.toml"], defaults, tmp_path / "d")
    assert default.collectors == hostmon_config.CollectorsConfig()


def test_hostmon_toml_v1_carries_writer_for_the_agent_and_reader_for_the_api(rendered, tmp_path):
    secrets = json.loads(rendered["monitor-v1/secrets.json"])
    config = load_hostmon_config(rendered["monitor-v1/hostmon.toml"], secrets, tmp_path)
    assert (config.sink.url, config.sink.database, config.sink.retention_policy) == (
        "http://10.88.0.5:8086",
        "local",
        "hostmon",
    )
    assert config.sink.username == "hostmon_writer"
    assert config.sink.password == "writer pw with 'quotes' and \\ backslash"
    assert (config.api.store_username, config.api.store_password) == ("hostmon_reader", "reader-pw")
    assert config.api.token == "api-token-0123456789abcdef"
    rule = config.alerts.rules[1]
    assert (rule.name, rule.op, rule.threshold, rule.webhook) == (
        'disk "busy"',
        ">=",
        1e8,
        "http://127.0.0.1:9/hook",
    )


def test_hostmon_toml_v2_carries_write_token_for_the_agent_and_read_token_for_the_api(rendered, tmp_path):
    secrets = json.loads(rendered["monitor-v2/secrets.json"])
    config = load_hostmon_config(rendered["monitor-v2/hostmon.toml"], secrets, tmp_path)
    assert (config.sink.org, config.sink.bucket, config.sink.token) == ("hostmon", "local", "write-token-abc")
    assert config.api.store_token == "read-token-xyz"
    assert config.api.token == ""  # no API token given: no *_file for it, no auth


def test_the_api_beyond_loopback_gets_its_token_tls_and_client_limits(rendered, tmp_path):
    secrets = json.loads(rendered["monitor-tls/secrets.json"])
    config = load_hostmon_config(rendered["monitor-tls/hostmon.toml"], secrets, tmp_path)
    api = config.api
    assert (api.host, api.token) == ("0.0.0.0", "api-token-0123456789abcdef")
    assert (api.tls_cert_file, api.tls_key_file) == (
        Path("/etc/hostmon/tls/api.crt"),
        Path("/etc/hostmon/tls/api.key"),
    )
    assert (api.connection_limit, api.max_connections_per_client) == (1000, 32)
    assert (api.idle_timeout_s, api.request_timeout_s, api.allow_insecure) == (30.0, 10.0, False)
    # With the files where the role copies them, the API starts: hostmon's own start-up check.
    issued = make_ca_and_server_cert(tmp_path / "pki")
    placed = replace(api, tls_cert_file=issued.cert_file, tls_key_file=issued.key_file)
    assert listener.problems(replace(config, api=placed)) == []
    assert "tls_cert_file" not in rendered["monitor-v1/hostmon.toml"]  # no TLS given: none configured


def test_the_silent_host_rule_defaults_to_three_intervals_and_takes_the_role_variables(rendered, tmp_path):
    secrets = json.loads(rendered["monitor-sqlite/secrets.json"])
    default = load_hostmon_config(rendered["monitor-sqlite/hostmon.toml"], secrets, tmp_path).api
    assert (default.silent_after_s, default.silent_severity, default.silent_webhook) == (40.0, "warning", "")
    assert "silent_after_s" not in rendered["monitor-sqlite/hostmon.toml"]  # 0: the agent's own default
    files = render(
        tmp_path / "rendered.json",
        monitor_api_silent_after_s=45,
        monitor_api_silent_severity="critical",
        monitor_api_silent_webhook="https://hooks.example/silent",
    )
    api = load_hostmon_config(files["monitor-sqlite/hostmon.toml"], secrets, tmp_path).api
    assert (api.silent_after_s, api.silent_severity, api.silent_webhook) == (
        45.0,
        "critical",
        "https://hooks.example/silent",
    )


@pytest.mark.parametrize("case", ["v1", "tls"])
def test_the_api_unit_holds_a_descriptor_per_connection(rendered, case, tmp_path):
    secrets = json.loads(rendered[f"monitor-{case}/secrets.json"])
    config = load_hostmon_config(rendered[f"monitor-{case}/hostmon.toml"], secrets, tmp_path)
    (limit,) = unit_value(
        unit_entries(rendered[f"monitor-{case}/hostmon-api.service"]), "Service", "LimitNOFILE"
    )
    assert int(limit) >= config.api.connection_limit + FD_RESERVE


@pytest.mark.parametrize("case", MONITOR_CASES)
def test_no_secret_value_is_written_into_hostmon_toml(rendered, case):
    text = rendered[f"monitor-{case}/hostmon.toml"]
    for value in json.loads(rendered[f"monitor-{case}/secrets.json"]).values():
        assert value not in text


@pytest.mark.parametrize("unit", ["hostmon-collector.service", "hostmon-api.service"])
def test_units_are_hardened_and_well_formed(rendered, unit):
    entries = unit_entries(rendered[f"monitor-v1/{unit}"])
    assert {s for s, _, _ in entries} == {"Unit", "Service", "Install"}
    svc = {k: v for s, k, v in entries if s == "Service" and k != "SystemCallFilter"}
    expected = {
        "User": "hostmon",
        "Group": "hostmon",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "Restart": "on-failure",
        "ReadWritePaths": "/var/lib/hostmon /var/log/hostmon",
        "CapabilityBoundingSet": "",
        "Environment": "HOSTMON_CONFIG=/etc/hostmon/hostmon.toml",
        "UMask": "0027",
    }
    assert {k: svc.get(k) for k in expected} == expected
    command = "collect" if "collector" in unit else "api"
    assert svc["ExecStart"] == f"/opt/hostmon/venv/bin/hostmon {command}"
    assert unit_value(entries, "Install", "WantedBy") == ["multi-user.target"]
    assert unit_value(entries, "Service", "SystemCallFilter") == [
        "@system-service",
        "~@privileged @resources",
    ]


def test_collector_reloads_with_sighup_and_the_api_restarts(rendered):
    collector = unit_entries(rendered["monitor-v1/hostmon-collector.service"])
    api = unit_entries(rendered["monitor-v1/hostmon-api.service"])
    assert unit_value(collector, "Service", "ExecReload") == ["/bin/kill -HUP $MAINPID"]
    assert unit_value(api, "Service", "ExecReload") == ["/bin/kill -HUP $MAINPID"]


def test_logrotate_rule_renames_dated_files_and_lets_the_agent_recreate(rendered):
    text = rendered["monitor-v1/logrotate"]
    body = text[text.index("/var/log/hostmon/alerts.log {") :]
    assert body.count("{") == 1 and body.rstrip().endswith("}")
    directives = {line.strip().split()[0] for line in body.splitlines()[1:-1] if line.strip()}
    assert {"dateext", "nocreate", "missingok", "compress", "su"} <= directives
    assert "copytruncate" not in directives
    assert "su hostmon hostmon" in body


GRAFANA_CASES = ("v1-influxql", "v2-influxql", "dollar-password", "dollar-token", "tls")
# jsonData keys Grafana's InfluxDB datasource reads (pkg/tsdb/influxdb/models/datasource_info.go)
# and those of the plugin SDK's HTTP client options (TLS, custom headers).
INFLUXDB_JSON_DATA_KEYS = {"dbName", "version", "httpMode", "timeInterval", "defaultBucket", "organization"}
INFLUXDB_JSON_DATA_KEYS |= {"maxSeries", "tlsAuth", "tlsAuthWithCACert", "tlsSkipVerify", "serverName"}
# What Grafana's process environment holds when it reads the provisioning files.
GRAFANA_ENV = {"HOME": "/usr/share/grafana", "USER": "grafana", "PATH": "/usr/sbin:/usr/bin"}


def go_shell_name(s: str) -> tuple[str, int]:
    """Go's os.Expand getShellName: the variable name after a $, and how many bytes it takes."""
    if s[0] == "{":
        if len(s) > 2 and s[1] in "*#$@!?-0123456789" and s[2] == "}":
            return s[1], 3
        end = s.find("}", 1)
        if end == 1:
            return "", 2
        return (s[1:end], end + 1) if end > 0 else ("", 1)
    if s[0] in "*#$@!?-0123456789":
        return s[0], 1
    n = len(s) - len(s.lstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"))
    return s[:n], n


def go_expand_env(s: str, env: dict[str, str]) -> str:
    """Go's os.ExpandEnv: $NAME and ${NAME} replaced, a $ not followed by a name kept."""
    out, i = [], 0
    while i < len(s):
        if s[i] == "$" and i + 1 < len(s):
            name, width = go_shell_name(s[i + 1 :])
            if name:
                out.append(env.get(name, ""))
            elif width == 0:
                out.append("$")
            i += 1 + width
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def grafana_provisioning_value(raw: str, env: dict[str, str]) -> str:
    """What Grafana makes of a provisioning string (pkg/services/provisioning/values: split on
    $$, expand $__env{}/${} (setting.ExpandVar) and then os.ExpandEnv, join with $)."""

    def expand_var(part: str) -> str:
        return re.sub(
            r"\$(|__\w+)\{([^}]+)\}",
            lambda m: env.get(m[2], "") if m[1] in ("", "__env") else m[0],
            part,
        )

    return "$".join(go_expand_env(expand_var(part), env) for part in raw.split("$$"))


def grafana_ini_reads(text: str) -> dict[str, dict[str, str]]:
    """grafana.ini as Grafana's go-ini reads it: ; and # start comments (also after a value),
    a value in \"\"\" quotes runs to the last \"\"\" on its line."""
    parser = configparser.ConfigParser(
        interpolation=None, comment_prefixes=(";", "#"), inline_comment_prefixes=None, delimiters=("=",)
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    values: dict[str, dict[str, str]] = {}
    for section in parser.sections():
        for key, raw in parser[section].items():
            if raw.startswith('"""') and len(raw) > 3:
                value = raw[3:][: raw[3:].rfind('"""')]
            else:
                value = re.split("[;#]", raw, maxsplit=1)[0].strip()
            values.setdefault(section, {})[key] = value
    return values


def grafana_datasource(rendered: dict[str, str], case: str) -> dict:
    doc = yaml.safe_load(rendered[f"grafana-{case}/datasource.yml"])
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    return dict(ds)


def test_grafana_datasource_influxql_on_1x_uses_the_reader_user(rendered):
    ds = grafana_datasource(rendered, "v1-influxql")
    assert (ds["type"], ds["uid"], ds["url"], ds["access"]) == (
        "influxdb",
        "hostmon-influxdb",
        "http://db:8086",
        "proxy",
    )
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["jsonData"]["dbName"] == "local"
    assert ds["user"] == "hostmon_reader"
    assert ds["secureJsonData"] == {"password": "reader-pw"}


def test_grafana_datasource_influxql_on_2x_sends_the_read_only_token(rendered):
    ds = grafana_datasource(rendered, "v2-influxql")
    assert ds["jsonData"]["version"] == "InfluxQL"
    assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonData"] == {"httpHeaderValue1": "Token read-token-xyz"}
    assert "user" not in ds


@pytest.mark.parametrize("case", GRAFANA_CASES)
def test_grafana_datasource_sets_only_what_grafanas_influxdb_datasource_reads(rendered, case):
    json_data = grafana_datasource(rendered, case)["jsonData"]
    unknown = {k for k in json_data if not re.fullmatch(r"httpHeaderName\d+", k)} - INFLUXDB_JSON_DATA_KEYS
    assert not unknown, f"jsonData keys Grafana's InfluxDB datasource does not read: {unknown}"
    assert "retentionPolicy" not in json_data


@pytest.mark.parametrize(
    ("case", "field", "written"),
    [
        ("dollar-password", ("secureJsonData", "password"), "pa$HOME$$w${USER}x$__env{HOME}$"),
        ("dollar-password", ("user",), "reader$1"),
        ("dollar-token", ("secureJsonData", "httpHeaderValue1"), "Token tok$en${PATH}$$"),
    ],
    ids=["password", "user", "token"],
)
def test_grafana_datasource_credentials_with_dollar_reach_grafana_unchanged(rendered, case, field, written):
    value = grafana_datasource(rendered, case)
    for key in field:
        value = value[key]
    assert grafana_provisioning_value(value, GRAFANA_ENV) == written
    # The check can fail: the same value unescaped is what Grafana used to receive.
    assert grafana_provisioning_value(written, GRAFANA_ENV) != written


@pytest.mark.parametrize("case", GRAFANA_CASES)
def test_grafana_provisioning_files_keep_every_other_string_as_written(rendered, case):
    def strings(node):
        if isinstance(node, dict):
            for v in node.values():
                yield from strings(v)
        elif isinstance(node, list):
            for v in node:
                yield from strings(v)
        elif isinstance(node, str):
            yield node

    for name in ("datasource.yml", "dashboards.yml"):
        for value in strings(yaml.safe_load(rendered[f"grafana-{case}/{name}"])):
            assert grafana_provisioning_value(value, GRAFANA_ENV) == value.replace("$$", "$")


def test_grafana_datasource_verifies_an_https_influxdb_against_its_ca(rendered):
    ds = grafana_datasource(rendered, "tls")
    assert ds["url"] == "https://db.example:8086"
    assert ds["jsonData"]["tlsAuthWithCACert"] is True
    pem = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n"
    assert ds["secureJsonData"]["tlsCACert"] == pem
    assert "tlsSkipVerify" not in ds["jsonData"]
    plain = grafana_datasource(rendered, "v2-influxql")
    assert "tlsAuthWithCACert" not in plain["jsonData"] and "tlsCACert" not in plain["secureJsonData"]


def test_the_dashboard_uses_the_provisioned_datasource_uid(rendered):
    ds = grafana_datasource(rendered, "v1-influxql")
    board = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}


def test_grafana_dashboard_provider_reads_the_copied_dashboards(rendered):
    (provider,) = yaml.safe_load(rendered["grafana-v1-influxql/dashboards.yml"])["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/hostmon"
    assert provider["allowUiUpdates"] is False


def test_grafana_ini_sets_admin_and_secret_key_from_the_vault_and_stays_closed(rendered):
    ini = grafana_ini_reads(rendered["grafana-v1-influxql/grafana.ini"])
    assert ini["security"]["admin_user"] == "admin"
    assert ini["security"]["admin_password"] == "s3cret;#pw"  # \"\"\" keep ; and # from go-ini's comments
    assert ini["security"]["secret_key"] == "0123456789abcdef;0123456789#abcdef-from-the-vault"
    assert ini["security"]["cookie_secure"] == "false"
    assert ini["users"]["allow_sign_up"] == "false"
    assert ini["auth.anonymous"]["enabled"] == "false"
    assert ini["analytics"]["reporting_enabled"] == "false"
    assert ini["plugins"]["preinstall_disabled"] == "true"
    assert ini["server"] == {"http_addr": "0.0.0.0", "http_port": "3000", "domain": "localhost"}
    assert ini["paths"]["provisioning"] == "/etc/grafana/provisioning"
    assert rendered["grafana-v1-influxql/api_url"] == "http://127.0.0.1:3000"


def test_grafana_ini_serves_https_with_secure_cookies_and_the_checks_verify_it(rendered):
    ini = grafana_ini_reads(rendered["grafana-tls/grafana.ini"])
    assert ini["server"]["protocol"] == "https"
    assert ini["server"]["cert_file"] == "/etc/grafana/tls/grafana.crt"
    assert ini["server"]["cert_key"] == "/etc/grafana/tls/grafana.key"
    assert ini["server"]["domain"] == "grafana.example"
    assert ini["security"]["cookie_secure"] == "true"
    # The role's own requests go to the name the certificate carries, over https.
    assert rendered["grafana-tls/api_url"] == "https://grafana.example:3000"


def test_grafana_ini_passes_other_settings_through_and_may_override_the_roles_defaults(rendered):
    ini = grafana_ini_reads(rendered["grafana-tls/grafana.ini"])
    assert ini["users"]["allow_sign_up"] == "true"  # overrides the role's default
    assert ini["users"]["allow_org_create"] == "false"  # the role's default stays
    assert ini["users"]["default_theme"] == "light"
    assert ini["auth.generic_oauth"] == {
        "enabled": "false",
        "scopes": "openid email",
        "allowed_domains": "example.com,example.org",
    }
    assert ini["smtp"]["from_name"] == "hostmon ; alerts #1"  # quoted, so go-ini keeps it whole
    assert ini["plugins"]["preinstall_disabled"] == "false"
    assert ini["security"]["admin_user"] == "admin"  # the role's keys are still there


def test_influxdb_configs_are_toml_with_auth_on_and_reporting_off(rendered):
    v1 = tomllib.loads(rendered["influxdb/influxdb.conf"])
    assert v1["http"]["auth-enabled"] is True
    assert v1["http"]["bind-address"] == "0.0.0.0:8086"
    assert v1["reporting-disabled"] is True
    assert v1["data"]["dir"] == "/var/lib/influxdb/data"
    v2 = tomllib.loads(rendered["influxdb/config.toml"])
    assert v2["http-bind-address"] == "0.0.0.0:8086"
    assert v2["bolt-path"] == "/var/lib/influxdb/influxd.bolt"
    assert v2["reporting-disabled"] is True


@pytest.mark.integration
def test_rendered_1x_config_runs_the_real_influxd_with_auth_enforced(tmp_path):
    exe = servers.binary("influxd")
    if exe is None:
        if servers.IN_CI:
            pytest.fail("influxd missing in CI")
        pytest.skip("influxd not installed")
    port, rpc_port = servers.free_port(), servers.free_port()
    files = render(
        tmp_path / "rendered.json",
        influxdb_test_data_dir=str(tmp_path / "data"),
        influxdb_test_bind_address="127.0.0.1",
        influxdb_test_port=port,
    )
    # The template pins the backup RPC port to 127.0.0.1:8088; give this test run its own.
    conf = files["influxdb/influxdb.conf"].replace("127.0.0.1:8088", f"127.0.0.1:{rpc_port}")
    (tmp_path / "influxdb.conf").write_text(conf)
    log = (tmp_path / "influxd.log").open("wb")
    proc = subprocess.Popen(
        [exe, "-config", str(tmp_path / "influxdb.conf")], stdout=log, stderr=subprocess.STDOUT
    )
    server = servers.Server(
        "influxd", f"http://127.0.0.1:{port}", port, tmp_path, proc, tmp_path / "influxd.log"
    )
    try:
        servers.wait_ready(server, "/ping", 30)
        with pytest.raises(urllib.error.HTTPError) as err:
            servers.influx_query(server.url, "SHOW DATABASES")
        assert err.value.code == 403  # auth is on and no admin exists yet: what the role bootstraps
        assert b"create admin user first" in err.value.read()
    finally:
        server.stop()
        log.close()


def test_the_production_example_serves_the_api_with_a_token_and_tls():
    values = yaml.safe_load((REPO / "inventory/production.example/group_vars/all/vars.yml").read_text())
    assert values["monitor_api_host"] == "0.0.0.0" and "vault_" in values["monitor_api_token"]
    assert values["monitor_api_tls_cert"].endswith(".crt") and values["monitor_api_tls_key"].endswith(".key")
    assert not values.get("monitor_api_allow_insecure", False)
