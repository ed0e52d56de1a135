"""OpenPGP key fingerprints from `gpg --show-keys --with-colons`, for pinning package signing keys."""

from __future__ import annotations

from typing import Any


def gpg_fingerprints(colons: str) -> list[str]:
    """Every primary key's and subkey's fingerprint in gpg's colon listing, upper case, in order.

    A `fpr` record follows each `pub` and `sub` record; its tenth field is the fingerprint.
    Several keys (gpg reads concatenated armored blocks) give all their fingerprints.
    """
    found: list[str] = []
    for line in str(colons).splitlines():
        fields = line.split(":")
        if fields[0] == "fpr" and len(fields) > 9 and fields[9]:
            fingerprint = fields[9].upper()
            if fingerprint not in found:
                found.append(fingerprint)
    return found


def gpg_missing_fingerprints(wanted: list[str], present: list[str]) -> list[str]:
    """The fingerprints of WANTED (any case, spaces allowed) that PRESENT lacks."""
    have = {p.replace(" ", "").upper() for p in present}
    return [w for w in (x.replace(" ", "").upper() for x in wanted) if w not in have]


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "gpg_fingerprints": gpg_fingerprints,
            "gpg_missing_fingerprints": gpg_missing_fingerprints,
        }
