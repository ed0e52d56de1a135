#!/usr/bin/env bash
# Build the hostmon wheelhouse on the controller: hostmon's wheel and a wheel of every dependency,
# then one reproducible tarball of them (what the monitor role copies to each host).
#
#   build-wheelhouse.sh PYTHON SOURCE_DIR WHEELHOUSE_DIR
#
# - hostmon is built from a clean copy of SOURCE_DIR, so a stale build/ directory can never put
#   deleted modules into the wheel; SOURCE_DATE_EPOCH makes the wheel byte-for-byte reproducible.
# - Dependencies are resolved offline from WHEELHOUSE_DIR first; pip reaches the index only when
#   one is missing (the hosts never do: they install with --no-index).
# - WHEELHOUSE_DIR/wheelhouse.tar: sorted, fixed mtime and owner, so unchanged wheels give an
#   unchanged tarball and the role copies (and restarts) nothing.
set -euo pipefail
python="$1" src="$2" out="$3"
export SOURCE_DATE_EPOCH=315532800 PIP_DISABLE_PIP_VERSION_CHECK=1

mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tar -C "$src" -cf - \
    --exclude=./.git --exclude=./.venv --exclude=./build --exclude='./*.egg-info' \
    --exclude=./.wheelhouse --exclude=./.cache --exclude=./.tox --exclude=./node_modules \
    --exclude=./.mypy_cache --exclude=./.ruff_cache --exclude=./.pytest_cache . \
    | tar -C "$tmp" -xf -
rm -f "$out"/hostmon-*.whl
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$out" "$tmp"
wheel="$(ls "$out"/hostmon-*.whl)"
if ! "$python" -m pip wheel --quiet --no-index --find-links "$out" --wheel-dir "$out" "$wheel" 2>/dev/null; then
    "$python" -m pip wheel --quiet --find-links "$out" --wheel-dir "$out" "$wheel"
fi
tar --create --file="$out/wheelhouse.tar" --sort=name --mtime=@315532800 --owner=0 --group=0 \
    --numeric-owner --directory="$out" --exclude=./wheelhouse.tar .
echo "$(basename "$wheel")"
