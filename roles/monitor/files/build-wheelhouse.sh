#!/usr/bin/env bash
# Build the hostmon wheelhouse on the controller: hostmon's wheel and a wheel of every dependency,
# then one reproducible tarball of them (what the monitor role copies to each host).
#
#   build-wheelhouse.sh PYTHON SOURCE_DIR WHEELHOUSE_DIR [ARCH PYTHON_VERSION [MANYLINUX]]
#
# - hostmon is built from a clean copy of SOURCE_DIR, so a stale build/ directory can never put
#   deleted modules into the wheel; SOURCE_DATE_EPOCH makes the wheel byte-for-byte reproducible.
# - With ARCH (x86_64, aarch64) and PYTHON_VERSION (3.11), the dependencies are the hosts' wheels,
#   not the controller's: `pip download --only-binary=:all: --platform manylinux_<MANYLINUX>_<ARCH>
#   --python-version <PYTHON_VERSION>` (MANYLINUX defaults to 2_34, EL 9's glibc; every older level
#   is named too). So an x86_64 or macOS controller builds an aarch64 fleet's wheelhouse.
#   Without them the controller's own platform and Python are used (pip wheel).
# - Dependencies are resolved offline from WHEELHOUSE_DIR first; pip reaches the index only when
#   one is missing (the hosts never do: they install with --no-index).
# - WHEELHOUSE_DIR/wheelhouse.tar: sorted, fixed mtime and owner, so unchanged wheels give an
#   unchanged tarball and the role copies (and restarts) nothing.
set -euo pipefail
python="$1" src="$2" out="$3" arch="${4:-}" pyver="${5:-}" manylinux="${6:-2_34}"
export SOURCE_DATE_EPOCH=315532800 PIP_DISABLE_PIP_VERSION_CHECK=1
if [[ -n "$arch" && -z "$pyver" ]]; then
    echo "build-wheelhouse: ARCH needs PYTHON_VERSION too" >&2
    exit 2
fi

mkdir -p "$out"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
tar -C "$src" -cf - \
    --exclude=./.git --exclude=./.venv --exclude=./build --exclude='./*.egg-info' \
    --exclude=./.wheelhouse --exclude=./.cache --exclude=./.tox --exclude=./node_modules \
    --exclude=./.mypy_cache --exclude=./.ruff_cache --exclude=./.pytest_cache \
    --exclude=./collections --exclude=./molecule --exclude=./tests . \
    | tar -C "$tmp" -xf -
rm -f "$out"/hostmon-*.whl
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$out" "$tmp"
wheel="$(ls "$out"/hostmon-*.whl)"
if [[ -n "$arch" ]]; then
    # pip matches --platform tags exactly: name every glibc level up to MANYLINUX.
    target=(--only-binary=:all: --python-version "$pyver" --implementation cp --dest "$out")
    for level in 2_17 2_24 2_26 2_27 2_28 2_31 2_34 2_35 2_36 2_39; do
        target+=(--platform "manylinux_${level}_${arch}")
        [[ "$level" == "$manylinux" ]] && break
    done
    target+=(--platform "manylinux2014_${arch}")
    if ! "$python" -m pip download --quiet --no-index --find-links "$out" "${target[@]}" "$wheel" 2>/dev/null; then
        "$python" -m pip download --quiet --find-links "$out" "${target[@]}" "$wheel"
    fi
elif ! "$python" -m pip wheel --quiet --no-index --find-links "$out" --wheel-dir "$out" "$wheel" 2>/dev/null; then
    "$python" -m pip wheel --quiet --find-links "$out" --wheel-dir "$out" "$wheel"
fi
tar --create --file="$out/wheelhouse.tar" --sort=name --mtime=@315532800 --owner=0 --group=0 \
    --numeric-owner --directory="$out" --exclude=./wheelhouse.tar .
basename "$wheel"
