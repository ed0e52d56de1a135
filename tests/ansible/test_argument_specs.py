"""Every role variable is documented and validated in its meta/argument_specs.yml.

Checks, per role: every default is specified (and the documented default matches it), every
variable the role's tasks, templates and handlers use is specified or internal (``_`` prefix),
every name carries the role's prefix, and the specification really rejects bad values — through
the same validator Ansible runs when a role starts (ArgumentSpecValidator).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from tests.ansible.helpers import REPO

ROLES = ("influxdb", "grafana", "monitor")
# Facts a role publishes for the others (documented in the role's description, not inputs).
PUBLISHED = {"influxdb": {"influxdb_connection"}}


def spec(role: str, entry: str = "main") -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "roles" / role / "meta" / "argument_specs.yml").read_text())
    return dict(doc["argument_specs"][entry]["options"])


def defaults(role: str) -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text()))


def used_variables(role: str) -> set[str]:
    """Names with the role's prefix in its tasks, templates, handlers and vars (tags excluded)."""
    names: set[str] = set()
    pattern = re.compile(rf"(?<![\w.]){role}_[a-z0-9_]+")
    for sub in ("tasks", "templates", "handlers", "vars"):
        for path in (REPO / "roles" / role / sub).rglob("*"):
            if path.is_file():
                text = re.sub(r"tags: \[[^\]]*\]", "", path.read_text())
                names |= set(pattern.findall(text))
    return names


def filter_names(role: str) -> set[str]:
    """Names of the collection's filters named after the role (plugins/filter/*.py): not variables."""
    names: set[str] = set()
    for path in (REPO / "plugins" / "filter").glob("*.py"):
        names |= set(re.findall(rf'"({role}_[a-z0-9_]+)":', path.read_text()))
    return names


def is_templated(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


@pytest.mark.parametrize("role", ROLES)
def test_every_default_is_specified_with_a_description(role):
    options = spec(role)
    missing = set(defaults(role)) - set(options)
    assert not missing, f"{role}: defaults without an argument spec: {sorted(missing)}"
    for name, option in options.items():
        assert option.get("description"), f"{role}: {name} has no description"
        assert "type" in option, f"{role}: {name} has no type"


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_carries_the_role_prefix(role):
    for name in [*defaults(role), *spec(role)]:
        assert name.startswith(f"{role}_"), f"{role}: {name} lacks the {role}_ prefix"


@pytest.mark.parametrize("role", ROLES)
def test_documented_defaults_match_defaults_main(role):
    options, values = spec(role), defaults(role)
    for name, value in values.items():
        if "default" in options[name] and not is_templated(value):
            assert options[name]["default"] == value, (
                f"{role}: {name} documented as {options[name]['default']!r}"
            )


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_the_role_uses_is_specified(role):
    undocumented = used_variables(role) - set(spec(role)) - PUBLISHED.get(role, set()) - filter_names(role)
    assert not undocumented, f"{role}: used but not in meta/argument_specs.yml: {sorted(undocumented)}"


@pytest.mark.parametrize("role", ROLES)
def test_literal_defaults_pass_the_roles_own_validation(role):
    params = {k: v for k, v in defaults(role).items() if not is_templated(v)}
    result = ArgumentSpecValidator(spec(role)).validate({**required_values(role), **params})
    assert not result.error_messages, result.error_messages


@pytest.mark.parametrize(
    ("role", "params", "complaint"),
    [
        ("influxdb", {"influxdb_flavour": "nightly"}, "influxdb_flavour"),
        ("influxdb", {"influxdb_port": "eighty"}, "influxdb_port"),
        ("influxdb", {"influxdb_buckets": [{"retention_days": 3}]}, "name"),
        ("monitor", {"monitor_interval_s": "fast"}, "monitor_interval_s"),
        ("monitor", {"monitor_spool_overflow": "ignore"}, "monitor_spool_overflow"),
        ("monitor", {"monitor_alert_rules": [{"name": "x", "metric": "m", "op": "=", "threshold": 1}]}, "op"),
        ("monitor", {"monitor_sink_kind": "prometheus"}, "monitor_sink_kind"),
        ("grafana", {"grafana_datasource_query_language": "SQL"}, "grafana_datasource_query_language"),
        ("grafana", {"grafana_enabled": "perhaps"}, "grafana_enabled"),
    ],
)
def test_the_specification_rejects_bad_values(role, params, complaint):
    result = ArgumentSpecValidator(spec(role)).validate({**required_values(role), **params})
    assert any(complaint in message for message in result.error_messages), result.error_messages


def test_influxdb_requires_an_admin_password():
    result = ArgumentSpecValidator(spec("influxdb")).validate({})
    assert any("influxdb_admin_password" in m for m in result.error_messages)


def test_influxdb_connection_entry_point_is_specified():
    assert {"influxdb_flavour", "influxdb_token_dir"} <= set(spec("influxdb", "connection"))


def required_values(role: str) -> dict[str, Any]:
    return {"influxdb": {"influxdb_admin_password": "x" * 12}}.get(role, {})


def test_used_variables_finds_what_a_template_refers_to(tmp_path: Path):
    # The scanner itself: a name only in a template is found, a dotted attribute is not.
    assert "monitor_api_port" in used_variables("monitor")
    assert not any(name.startswith("monitor_.") for name in used_variables("monitor"))


@pytest.mark.parametrize(
    "inventory", ["demo/group_vars/all.yml", "production.example/group_vars/all/vars.yml"]
)
@pytest.mark.parametrize("role", ROLES)
def test_example_inventories_pass_the_role_specs(inventory, role):
    values = yaml.safe_load((REPO / "inventory" / inventory).read_text())
    mine = {k: v for k, v in values.items() if k.startswith(f"{role}_") and not is_templated(v)}
    unknown = set(mine) - set(spec(role))
    assert not unknown, f"{inventory} sets variables {role} does not have: {sorted(unknown)}"
    result = ArgumentSpecValidator(spec(role)).validate({**required_values(role), **mine})
    assert not result.error_messages, result.error_messages
