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
from pathlib import Path

import pytest
import yaml

from monitor import config as hostmon_config
from tests import servers
from tests.ansible.helpers import REPO, render

MONITOR_CASES = ("sqlite", "v1", "v2")
DASHBOARD = REPO / "files" / "dashboards" / "system-metrics.json"


def load_hostmon_config(text: str, secrets: dict[str, str], tmp_path: Path) -> hostmon_config.Config:
    """Parse a rendered hostmon.toml with hostmon's loader, the secret files placed under TMP_PATH."""
    raw = tomllib.loads(text)
    for section in raw.values():
        if not isinstance(section, dict):
            continue
        for key, value in list(section.items()):
            if key.endswith("_file") and key != "ca_file":
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


def test_grafana_datasource_influxql_on_1x_uses_the_reader_user(rendered):
    doc = yaml.safe_load(rendered["grafana-v1-influxql/datasource.yml"])
    (ds,) = doc["datasources"]
    assert doc["apiVersion"] == 1
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
    (ds,) = yaml.safe_load(rendered["grafana-v2-influxql/datasource.yml"])["datasources"]
    assert ds["jsonData"]["version"] == "InfluxQL"
    assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonData"] == {"httpHeaderValue1": "Token read-token-xyz"}
    assert "user" not in ds


def test_grafana_datasource_flux_option(rendered):
    (ds,) = yaml.safe_load(rendered["grafana-v2-flux/datasource.yml"])["datasources"]
    assert ds["jsonData"]["version"] == "Flux"
    assert (ds["jsonData"]["organization"], ds["jsonData"]["defaultBucket"]) == ("hostmon", "local")
    assert ds["secureJsonData"] == {"token": "read-token-xyz"}


def test_the_dashboard_uses_the_provisioned_datasource_uid(rendered):
    (ds,) = yaml.safe_load(rendered["grafana-v1-influxql/datasource.yml"])["datasources"]
    board = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in board["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]}


def test_grafana_dashboard_provider_reads_the_copied_dashboards(rendered):
    (provider,) = yaml.safe_load(rendered["grafana-v1-influxql/dashboards.yml"])["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards/hostmon"
    assert provider["allowUiUpdates"] is False


def test_grafana_ini_sets_admin_from_the_vault_and_no_sign_up(rendered):
    ini = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    ini.read_string(rendered["grafana-v1-influxql/grafana.ini"])
    assert ini["security"]["admin_user"] == "admin"
    assert ini["security"]["admin_password"] == '"""s3cret;#pw"""'  # triple quotes keep ; and #
    assert ini["users"]["allow_sign_up"] == "false"
    assert ini["analytics"]["reporting_enabled"] == "false"
    assert ini["server"]["http_port"] == "3000"


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
