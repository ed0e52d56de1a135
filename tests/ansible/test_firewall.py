"""The shared firewall role: sources checked and written the way firewalld keeps them.

What runs without containers: the role's filters (canonical sources, preflight messages, which
rich rules are the role's), firewalld's own rich-rule parser (from the host's python3-firewall)
agreeing with the text the role renders, the preflight entry point run by ansible-playbook, and
the three roles calling the one shared role with their own variables. The rules on a real
firewalld are proven by the Molecule scenario molecule/firewall.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from ansible.errors import AnsibleFilterError

from tests import servers
from tests.ansible.helpers import REPO, ansible_env, ansible_playbook
from tests.ansible.test_argument_specs import defaults, spec, used_variables

SYSTEM_PYTHON = "/usr/bin/python3"
# role: its switch, then its port, sources and zone variables
CALLERS = {
    "influxdb": (
        "influxdb_firewalld",
        "influxdb_port",
        "influxdb_allowed_sources",
        "influxdb_firewalld_zone",
    ),
    "grafana": ("grafana_firewalld", "grafana_port", "grafana_allowed_sources", "grafana_firewalld_zone"),
    "monitor": (
        "monitor_api_firewalld",
        *(f"monitor_api_{v}" for v in ("port", "allowed_sources", "firewalld_zone")),
    ),
}


def load_filters() -> ModuleType:
    path = REPO / "plugins" / "filter" / "hostmon_firewall.py"
    spec = importlib.util.spec_from_file_location("hostmon_firewall_filters", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


filters = load_filters()


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("10.88.0.5", "10.88.0.5"),
        (" 10.88.0.5 ", "10.88.0.5"),
        ("10.88.0.5/32", "10.88.0.5"),
        ("10.88.0.0/16", "10.88.0.0/16"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("2001:db8::1/128", "2001:db8::1"),
        ("2001:DB8::/32", "2001:db8::/32"),
    ],
)
def test_sources_are_written_in_one_canonical_form(given, canonical):
    assert filters.canonical_source(given) == canonical


def test_rich_rule_names_the_family_the_address_and_the_port():
    assert filters.rich_rule("10.88.0.0/16", 8086) == (
        'rule family="ipv4" source address="10.88.0.0/16" port port="8086" protocol="tcp" accept'
    )
    assert filters.rich_rule("2001:DB8::1", "3000") == (
        'rule family="ipv6" source address="2001:db8::1" port port="3000" protocol="tcp" accept'
    )


@pytest.mark.parametrize(
    ("sources", "complaint"),
    [
        (["agent1.example"], "'agent1.example' is not an IPv4 or IPv6 address or network"),
        (["10.88.0.5/16"], "'10.88.0.5/16' has host bits set: the network is 10.88.0.0/16"),
        (["10.88.0.300"], "'10.88.0.300' is not an IPv4 or IPv6 address"),
        (["10.88.0.0/33"], "'10.88.0.0/33' is not an IPv4 or IPv6 address"),
        (["2001:db8::1/64"], "'2001:db8::1/64' has host bits set: the network is 2001:db8::/64"),
        (["10.88.0.5", "10.88.0.5/32"], "'10.88.0.5/32' is the same source as '10.88.0.5'"),
        ([""], "'' is not an IPv4 or IPv6 address"),
        ("10.88.0.5", "is not a list"),
    ],
)
def test_source_errors_name_each_bad_entry_and_why(sources, complaint):
    errors = filters.source_errors(sources)
    assert len(errors) == 1 and complaint in errors[0], errors


def test_good_sources_have_no_errors():
    assert filters.source_errors(["10.88.0.5", "10.88.0.0/16", "2001:db8::1", "2001:db8::/64"]) == []


def test_rich_rule_refuses_what_is_not_an_address():
    with pytest.raises(AnsibleFilterError, match="not an IPv4 or IPv6"):
        filters.rich_rule("everyone", 8086)


def test_only_rules_of_exactly_the_roles_shape_for_the_port_are_the_roles():
    mine = [filters.rich_rule("10.88.0.5", 8086), filters.rich_rule("2001:db8::/64", 8086)]
    others = [
        'rule family="ipv4" source address="192.0.2.10" port port="8086" protocol="tcp" reject',
        'rule family="ipv4" source address="10.88.0.5" port port="9100" protocol="tcp" accept',
        'rule family="ipv4" source address="10.88.0.5" port port="8086" protocol="udp" accept',
        'rule priority="-1" family="ipv4" source address="10.88.0.5" port port="8086" protocol="tcp" accept',
        'rule family="ipv4" source address="10.88.0.5" port port="8086" protocol="tcp" log prefix="x" accept',
        'rule family="ipv4" source NOT address="10.88.0.5" port port="8086" protocol="tcp" accept',
        'rule family="ipv4" source address="10.88.0.5" service name="ssh" accept',
        'rule family="ipv4" source address="10.88.0.5" port port="8086" protocol="tcp" accept'
        ' limit value="1/m"',
        'rule family="ipv4" source address="10.88.0.5" port port="8086" protocol="tcp" audit accept',
    ]
    assert filters.owned_rich_rules([*others, *mine], 8086) == mine
    assert filters.owned_rich_rules(mine, 3000) == []


def firewalld_canonical(rules: list[str]) -> list[str]:
    """firewalld's own text for each rule (its rich-rule parser, in the system's python3-firewall)."""
    probe = "import firewall.core.rich"
    if subprocess.run([SYSTEM_PYTHON, "-c", probe], check=False, capture_output=True).returncode != 0:
        reason = "python3-firewall (Debian's firewalld) is not installed"
        if servers.IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    script = (
        "import json, sys\n"
        "from firewall.core.rich import Rich_Rule\n"
        "for text in json.load(sys.stdin):\n"
        "    rule = Rich_Rule(rule_str=text)\n"
        "    rule.check()\n"
        "    print(str(rule))\n"
    )
    done = subprocess.run(
        [SYSTEM_PYTHON, "-c", script], input=json.dumps(rules), capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_firewalld_keeps_the_rendered_rules_exactly_as_the_role_writes_them():
    rules = [
        filters.rich_rule(source, port)
        for source, port in [
            ("10.88.0.5", 8086),
            ("10.88.0.0/16", 3000),
            ("2001:DB8::1", 80),
            ("2001:db8::/32", 1),
        ]
    ]
    assert firewalld_canonical(rules) == rules


def test_rules_added_by_hand_are_recognised_in_firewalld_s_own_text():
    # What firewall-cmd --list-rich-rules prints for rules typed without quotes, in another order.
    hand = [
        "rule family=ipv4 source address=10.88.0.7 port protocol=tcp port=8086 accept",
        "rule family=ipv4 source address=10.88.0.7 port port=8086 protocol=tcp reject",
        "rule family=ipv4 source address=10.88.0.7 port port=8086 protocol=tcp log level=info accept",
        "rule priority=1 family=ipv4 source address=10.88.0.7 port port=8086 protocol=tcp accept",
        "rule family=ipv4 source address=10.88.0.7 port port=8086 protocol=tcp accept limit value=1/m",
        # priority 0 is firewalld's default and vanishes from the text: the same rule as the role's.
        "rule priority=0 family=ipv4 source address=10.88.0.7 port port=8086 protocol=tcp accept",
    ]
    listed = firewalld_canonical(hand)
    assert filters.owned_rich_rules(listed, 8086) == [filters.rich_rule("10.88.0.7", 8086)] * 2


def run_validate(tmp_path: Path, sources: object) -> subprocess.CompletedProcess[str]:
    playbook = tmp_path / "validate.yml"
    play = {
        "name": "Validate sources",
        "hosts": "localhost",
        "connection": "local",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Check the sources",
                "ansible.builtin.import_role": {"name": "hostmon_firewall", "tasks_from": "validate"},
                "vars": {
                    "hostmon_firewall_sources": "{{ test_sources }}",
                    "hostmon_firewall_sources_var": "influxdb_allowed_sources",
                },
            }
        ],
    }
    playbook.write_text(yaml.safe_dump([play]))
    env = ansible_env(ANSIBLE_ROLES_PATH=str(REPO / "roles"))
    return subprocess.run(
        [ansible_playbook(), "-i", "localhost,", str(playbook), "-e", json.dumps({"test_sources": sources})],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_preflight_names_the_variable_and_every_bad_source(tmp_path):
    done = run_validate(tmp_path, ["10.88.0.5", "db.example", "10.88.0.5/16"])
    assert done.returncode != 0
    assert (
        "influxdb_allowed_sources must list IPv4/IPv6 addresses or CIDR networks (e.g. 10.0.0.5, 10.0.0.0/24,"
        " 2001:db8::/64): 'db.example' is not an IPv4 or IPv6 address or network (CIDR);"
        " '10.88.0.5/16' has host bits set: the network is 10.88.0.0/16"
    ) in done.stdout


def test_preflight_accepts_addresses_and_networks_of_both_families(tmp_path):
    done = run_validate(tmp_path, ["10.88.0.5", "10.88.0.0/16", "2001:db8::1", "2001:db8::/64"])
    assert done.returncode == 0, done.stdout[-3000:]


def task_files(role: str, name: str) -> list[dict]:
    return list(yaml.safe_load((REPO / "roles" / role / "tasks" / name).read_text()))


@pytest.mark.parametrize("role", CALLERS)
def test_each_role_converges_its_port_through_the_shared_role(role):
    switch, port, sources, zone = CALLERS[role]
    [task] = task_files(role, "firewall.yml")
    assert task["ansible.builtin.import_role"] == {"name": "hostmon.hostmon.hostmon_firewall"}
    assert task["when"] == switch
    assert task["vars"]["hostmon_firewall_port"] == f"{{{{ {port} }}}}"
    assert task["vars"]["hostmon_firewall_sources"] == f"{{{{ {sources} }}}}"
    assert task["vars"]["hostmon_firewall_zone"] == f"{{{{ {zone} }}}}"


@pytest.mark.parametrize("role", CALLERS)
def test_each_roles_preflight_checks_its_sources_through_the_shared_role(role):
    _, _, sources, _ = CALLERS[role]
    [task] = [t for t in task_files(role, "preflight.yml") if "ansible.builtin.import_role" in t]
    shared = {"name": "hostmon.hostmon.hostmon_firewall", "tasks_from": "validate"}
    assert task["ansible.builtin.import_role"] == shared
    assert task["vars"] == {
        "hostmon_firewall_sources": f"{{{{ {sources} }}}}",
        "hostmon_firewall_sources_var": sources,
    }


def test_the_shared_roles_variables_are_specified_with_their_defaults():
    entry_points = {"main": spec("hostmon_firewall"), "validate": spec("hostmon_firewall", "validate")}
    specified = set(entry_points["main"]) | set(entry_points["validate"])
    filter_names = set(filters.FilterModule().filters())
    assert used_variables("hostmon_firewall") - filter_names <= specified
    for name, value in defaults("hostmon_firewall").items():
        for options in entry_points.values():
            if name in options:
                assert options[name]["default"] == value, name
    assert set(defaults("hostmon_firewall")) | {"hostmon_firewall_port"} == set(entry_points["main"])
