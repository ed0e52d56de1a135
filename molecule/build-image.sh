#!/usr/bin/env bash
# Build the Debian 12 image with systemd that the Molecule scenarios and the demo boot, unless
# it is already there. No registry is reachable: debootstrap a minimal rootfs from the apt mirror
# this machine already uses, then `podman import` it. About 45 s once; reused afterwards.
#
#   molecule/build-image.sh            build when missing
#   molecule/build-image.sh --force    rebuild
set -euo pipefail

IMAGE="${HOSTMON_IMAGE:-localhost/hostmon-debian12:latest}"
SUITE="${HOSTMON_IMAGE_SUITE:-bookworm}"
INCLUDE="systemd,systemd-sysv,python3,dbus,iproute2"
here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"

die() { echo "build-image: $*" >&2; exit 1; }

if [[ "${1:-}" != "--force" ]] && podman image exists "$IMAGE"; then
    echo "build-image: $IMAGE present, reusing it"
    exit 0
fi

command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
command -v podman >/dev/null || die "podman is not installed (apt-get install podman runc)"
[[ "$(id -u)" == 0 ]] || die "debootstrap needs root"

# The first Debian mirror in the machine's apt sources (deb822 or one-line format).
mirror="${HOSTMON_IMAGE_MIRROR:-}"
if [[ -z "$mirror" ]]; then
    for f in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list.d/*.sources; do
        [[ -f "$f" ]] || continue
        mirror="$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' "$f")"
        [[ -n "$mirror" ]] && break
    done
fi
if [[ -z "$mirror" && -f /etc/apt/sources.list ]]; then
    mirror="$(awk '$1 == "deb" && $3 !~ /security/ {print $2; exit}' /etc/apt/sources.list)"
fi
[[ -n "$mirror" ]] || die "no Debian mirror found in /etc/apt/sources.list{,.d/*.sources}"

rootfs="$(mktemp -d /var/tmp/hostmon-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT
start=$(date +%s)
echo "build-image: debootstrap $SUITE from $mirror (about a minute)"
if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$rootfs" "$mirror" \
        >"$rootfs.log" 2>&1; then
    tail -n 40 "$rootfs.log" >&2
    die "debootstrap failed (full log: $rootfs.log)"
fi
rm -f "$rootfs.log"
# systemd in a container: no getty on a console nobody reads, a machine-id made at first boot.
rm -f "$rootfs/etc/machine-id" && touch "$rootfs/etc/machine-id"
rm -f "$rootfs"/etc/systemd/system/getty.target.wants/* 2>/dev/null || true
# apt inside the container uses the same sources as this machine (incl. security updates).
if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    rm -f "$rootfs/etc/apt/sources.list"
    cp /etc/apt/sources.list.d/*.sources "$rootfs/etc/apt/sources.list.d/"
elif [[ -f /etc/apt/sources.list ]]; then
    cp /etc/apt/sources.list "$rootfs/etc/apt/sources.list"
fi
# Trim what a test host never needs.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
       "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*

tar -C "$rootfs" -c . | podman import \
    --change 'CMD ["/sbin/init"]' --change 'ENV container=podman' \
    --change 'STOPSIGNAL SIGRTMIN+3' - "$IMAGE" >/dev/null
echo "build-image: $IMAGE built in $(( $(date +%s) - start )) s"
