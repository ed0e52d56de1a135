#!/usr/bin/env bash
# The default scenario's dependency step (molecule.yml): what a user with an air-gapped fleet has
# on the controller before the first run.
#   1. The collection built with `ansible-galaxy collection build` and installed into a
#      collections path of its own; converge uses only that (no roles path into the repository).
#   2. A stand-in for InfluxData's download site: Debian's influxdb .deb (`apt-get download`, no
#      InfluxDB 2.x package is reachable here) and its sha256 in a local "mirror" directory, which
#      the role fetches from by a file:// URL into an empty influxdb_artifacts_dir on the controller,
#      verifies, copies to the host and installs (the official flavour's .deb path).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$root/.cache/molecule-default"
rm -rf "$work/collections" "$work/build" "$work/artifacts"
mkdir -p "$work/collections" "$work/build" "$work/no-roles" "$work/mirror"

ansible-galaxy collection build --force --output-path "$work/build" "$root" >/dev/null
ansible-galaxy collection install --offline --no-deps --force -p "$work/collections" \
    "$work/build"/hostmon-hostmon-*.tar.gz >/dev/null
echo "collection: installed $(basename "$work/build"/hostmon-hostmon-*.tar.gz) into $work/collections"

arch="$(dpkg --print-architecture)"
deb="$work/mirror/influxdb_1.6.7-standin_${arch}.deb"
if [[ ! -f "$deb" ]]; then
    tmp="$(mktemp -d)"
    # A fresh machine may have no package lists yet.
    (cd "$tmp" && apt-get download -q influxdb >/dev/null 2>&1) \
        || (apt-get update -qq && cd "$tmp" && apt-get download -q influxdb >/dev/null)
    mv "$tmp"/influxdb_*.deb "$deb"
    rm -rf "$tmp"
fi
sha256sum "$deb" | cut -d' ' -f1 >"$deb.sha256"
echo "collection: stand-in package $(basename "$deb") sha256 $(cat "$deb.sha256")"
