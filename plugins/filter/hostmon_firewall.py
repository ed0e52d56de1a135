"""Filters for the hostmon_firewall role: sources checked and written in one canonical form.

firewalld keeps a rich rule's source address exactly as it was given ("2001:DB8::1" and
"2001:db8::1" are two different rules to it), so the role writes every source in one form
(compressed, lower case, a single host without its /32 or /128) and recognises its own rules by
the exact text it renders, the text firewalld also prints for them.
"""

from __future__ import annotations

import ipaddress
import re

from ansible.errors import AnsibleFilterError

_RULE = 'rule family="{family}" source address="{address}" port port="{port}" protocol="tcp" accept'
_OWNED = re.compile(
    r'rule family="(?:ipv4|ipv6)" source address="[^"]+" port port="(?P<port>\d+)" protocol="tcp" accept'
)


def _network(source):
    """The network SOURCE names (host bits must be zero); ValueError with the reason if none."""
    text = str(source).strip()
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"{source!r} is not an IPv4 or IPv6 address or network (CIDR)") from exc
        raise ValueError(f"{source!r} has host bits set: the network is {loose}") from exc


def source_errors(sources):
    """One message per entry of SOURCES that is not an address or a CIDR network, plus duplicates."""
    if not isinstance(sources, (list, tuple)):
        return [f"{sources!r} is not a list of addresses or networks"]
    errors, seen = [], {}
    for source in sources:
        try:
            canonical = _canonical(_network(source))
        except ValueError as exc:
            errors.append(str(exc))
            continue
        if canonical in seen:
            errors.append(f"{source!r} is the same source as {seen[canonical]!r}")
        seen.setdefault(canonical, source)
    return errors


def canonical_source(source):
    """SOURCE as the role writes it: '10.88.0.5', '10.88.0.0/16', '2001:db8::1', '2001:db8::/32'."""
    try:
        return _canonical(_network(source))
    except ValueError as exc:
        raise AnsibleFilterError(str(exc)) from None


def _canonical(network):
    if network.prefixlen == network.max_prefixlen:
        return str(network.network_address)
    return str(network)


def rich_rule(source, port):
    """The rich rule that admits SOURCE to PORT/tcp, in firewalld's own canonical text."""
    address = canonical_source(source)
    family = "ipv4" if ipaddress.ip_network(address).version == 4 else "ipv6"
    return _RULE.format(family=family, address=address, port=int(port))


def owned_rich_rules(rules, port):
    """The rules among RULES that have exactly the shape rich_rule renders for PORT."""
    return [rule for rule in rules if (m := _OWNED.fullmatch(rule.strip())) and int(m["port"]) == int(port)]


class FilterModule:
    """hostmon_firewall_source_errors, _canonical_source, _rich_rule, _owned_rich_rules."""

    def filters(self):
        return {
            "hostmon_firewall_source_errors": source_errors,
            "hostmon_firewall_canonical_source": canonical_source,
            "hostmon_firewall_rich_rule": rich_rule,
            "hostmon_firewall_owned_rich_rules": owned_rich_rules,
        }
