"""HTTP helpers for the influxdb role: failure reports, the server's version, 2.x token plans.

Every request that carries a password or a token runs in a ``no_log`` task, so Ansible shows
nothing when it fails. ``influxdb_http_failures`` turns the registered results into messages
with the status and the response body, with every ``token`` and ``password`` field blanked, so
a failure is readable and no secret reaches a log.
"""

from __future__ import annotations

import json
from typing import Any

SECRET_KEYS = frozenset({"token", "password"})
BODY_CHARS = 600


def _redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("<hidden>" if k.lower() in SECRET_KEYS else _redacted(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


def _body(result: dict[str, Any]) -> str:
    if "json" in result:
        text = json.dumps(_redacted(result["json"]), sort_keys=True)
    else:
        text = str(result.get("content") or "").strip()
        if text.startswith(("{", "[")):
            try:
                text = json.dumps(_redacted(json.loads(text)), sort_keys=True)
            except ValueError:
                text = "<a body that is not JSON>"
    return text[:BODY_CHARS] or "<empty body>"


def influxdb_http_failures(registered: Any, expected: list[int], what: str = "request") -> list[str]:
    """One message per request in REGISTERED (a uri result or a loop's) answered outside EXPECTED.

    Skipped requests (check mode, ``when``) are not failures. A request that got no answer at
    all (status -1) reports uri's own message, which names the URL but never a header.
    """
    registered = registered or {}
    results = registered.get("results", [registered])
    wanted = {int(code) for code in expected}
    failures = []
    for result in results:
        if not isinstance(result, dict) or result.get("skipped") or "status" not in result:
            continue
        status = int(result["status"])
        if status in wanted:
            continue
        where = f"{what} {result.get('url', '')}".strip()
        label = result.get("item", "")
        if isinstance(label, dict):
            label = label.get("name") or label.get("id") or ""
        where = f"{where} ({label})" if label else where
        if status == -1:
            failures.append(f"{where}: no answer: {result.get('msg', '')}")
        else:
            failures.append(f"{where}: HTTP {status} (expected {sorted(wanted)}): {_body(result)}")
    return failures


def influxdb_v1_failures(registered: Any, what: str = "InfluxQL") -> list[str]:
    """Like ``influxdb_http_failures`` for 1.x ``/query``: also a 200 whose statement failed."""
    registered = registered or {}
    results = registered.get("results", [registered])
    failures = influxdb_http_failures(registered, [200], what)
    for result in results:
        if not isinstance(result, dict) or result.get("skipped") or result.get("status") != 200:
            continue
        errors = [r["error"] for r in (result.get("json") or {}).get("results") or [] if "error" in r]
        if errors:
            failures.append(f"{what}: {'; '.join(str(e) for e in errors)}")
    return failures


def influxdb_major(version: Any) -> str:
    """The major version in an ``X-Influxdb-Version`` header: ``v2.7.11`` -> ``2``; ``''`` if none."""
    text = str(version or "").strip().lstrip("vV")
    digits = ""
    for char in text:
        if not char.isdigit():
            break
        digits += char
    return digits


def _permission_keys(permissions: Any) -> set[tuple[str, str, str, str]]:
    keys = set()
    for permission in permissions or []:
        resource = permission.get("resource") or {}
        keys.add(
            (
                str(permission.get("action", "")),
                str(resource.get("type", "")),
                str(resource.get("id", "")),
                str(resource.get("orgID", "")),
            )
        )
    return keys


def influxdb_v2_token_plan(
    authorizations: Any, wanted: dict[str, Any], stored_id: str, have_value: bool
) -> dict[str, Any]:
    """Decide what makes one of the role's 2.x tokens match WANTED (an AuthorizationPostRequest).

    The role's token is the authorization whose ID it stored (STORED_ID), or, before it stored
    one, the only authorization with the wanted description. InfluxDB cannot change a token's
    permissions, so a token whose permissions, description or status differ, or whose value the
    role no longer holds (HAVE_VALUE false), is replaced: a new one is created and the old one
    deleted, with any other authorization that carries the wanted description.

    Returns ``{"keep": id or "", "create": bool, "delete": [ids], "reason": str}``.
    """
    auths = [a for a in (authorizations or []) if isinstance(a, dict) and a.get("id")]
    description = wanted.get("description", "")
    same_description = [a for a in auths if a.get("description") == description]
    current = next((a for a in auths if stored_id and a["id"] == stored_id), None)
    if current is None and not stored_id and len(same_description) == 1:
        current = same_description[0]

    if current is None:
        reason = "no such token yet" if not stored_id else f"the stored token {stored_id} is gone"
    elif not have_value:
        reason = "its value is not stored on the host"
    elif _permission_keys(current.get("permissions")) != _permission_keys(wanted.get("permissions")):
        reason = "its permissions differ"
    elif current.get("description") != description:
        reason = "its description differs"
    elif current.get("status", "active") != "active":
        reason = "it is inactive"
    else:
        reason = ""

    keep = current["id"] if current is not None and not reason else ""
    old = [current["id"]] if current is not None and not keep else []
    duplicates = [a["id"] for a in same_description if a["id"] != keep and a["id"] not in old]
    return {"keep": keep, "create": not keep, "delete": old + duplicates, "reason": reason or "unchanged"}


class FilterModule:
    """Ansible entry point."""

    def filters(self) -> dict[str, Any]:
        return {
            "influxdb_http_failures": influxdb_http_failures,
            "influxdb_v1_failures": influxdb_v1_failures,
            "influxdb_major": influxdb_major,
            "influxdb_v2_token_plan": influxdb_v2_token_plan,
        }
