#!/usr/bin/env bash
# Run the Molecule scenarios (what `make test` calls after pytest):
#   default  all-in-one host: InfluxDB 1.x (distro flavour) + hostmon; converge, idempotence, verify
#   fleet    a database host and two monitored hosts; verify includes a >= 60 s database outage
#   firewall firewalld on the database host: real connections prove the port follows influxdb_allowed_sources
#   tls      InfluxDB over https with a test CA; an agent verifies and ships, one given the wrong
#            CA spools and alerts until the right CA is deployed, then every spooled sample arrives
# Each runs `molecule test` (destroy, syntax, create, prepare, converge, idempotence, verify,
# destroy; firewall checks changed=0 in its verify instead) on podman containers booting systemd,
# from the image molecule/build-image.sh builds when it is missing.
#
#   molecule/run-scenarios.sh [SCENARIO...]      (default: default fleet firewall tls)
#
# Outside CI, a machine that cannot run them (not root, no podman/debootstrap) is skipped with
# the reason. In CI (CI=true) every such problem, and any image build failure, is a failure.
set -euo pipefail

# shellcheck source=molecule/env.sh
source "$(dirname "$0")/env.sh"  # sets here, root; cd "$root"; PATH, CONTAINERS_CONF
export ANSIBLE_FORCE_COLOR=0 PY_COLORS=0 ANSIBLE_NOCOLOR=1
scenarios=("$@")
[[ ${#scenarios[@]} -gt 0 ]] || scenarios=(default fleet firewall tls)
in_ci=false
[[ -n "${CI:-}" && "${CI,,}" != "false" && "${CI}" != "0" ]] && in_ci=true

cannot_run() {
    if $in_ci; then
        echo "molecule: FAILED: $*" >&2
        echo "molecule: 0 passed, ${#scenarios[@]} failed"
        exit 1
    fi
    echo "molecule: skipped: $* (CI=true makes this a failure)"
    exit 0
}

[[ "$(id -u)" == 0 ]] || cannot_run "needs root (podman with systemd containers, debootstrap)"
for tool in podman runc debootstrap molecule ansible-playbook; do
    command -v "$tool" >/dev/null || cannot_run "$tool is not installed (make test installs it: apt podman runc debootstrap, venv extra [deploy])"
done

if ! bash "$here/build-image.sh"; then
    echo "molecule: FAILED: the base image could not be built" >&2
    echo "molecule: 0 passed, ${#scenarios[@]} failed"
    exit 1
fi

# One probe container: fail fast (and readably) when podman cannot boot systemd here.
probe="hostmon-probe-$$"
if ! podman run -d --rm --name "$probe" --systemd=always localhost/hostmon-debian12:latest /sbin/init >/dev/null; then
    echo "molecule: FAILED: podman cannot start a systemd container (see ENVIRONMENT.md: runc, ulimits)" >&2
    echo "molecule: 0 passed, ${#scenarios[@]} failed"
    exit 1
fi
podman rm -f "$probe" >/dev/null 2>&1 || true

# The scenarios build hostmon's wheel from a snapshot of the tree taken now, so converge and
# idempotence install the same code even if files change meanwhile (a shared checkout).
snapshot="$root/.cache/hostmon-src"
rm -rf "$snapshot" && mkdir -p "$snapshot"
tar -C "$root" -cf - --exclude=./.git --exclude=./.venv --exclude=./build --exclude='./*.egg-info' \
    --exclude=./.wheelhouse --exclude=./.cache --exclude=./.mypy_cache --exclude=./.ruff_cache \
    --exclude=./.pytest_cache --exclude=./node_modules . | tar -C "$snapshot" -xf -
export HOSTMON_SOURCE_DIR="$snapshot"

current=""
cleanup() {
    if [[ -n "$current" ]]; then
        echo "molecule: interrupted, destroying scenario $current"
        molecule destroy -s "$current" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT INT TERM

passed=0 failed=0 summary=()
for scenario in "${scenarios[@]}"; do
    current="$scenario"
    log="$root/.cache/molecule-$scenario.log"
    mkdir -p "$root/.cache"
    echo "molecule: scenario $scenario (log: $log)"
    start=$(date +%s)
    if timeout --kill-after=60 40m molecule test -s "$scenario" 2>&1 | tee "$log"; then
        result=passed; passed=$((passed + 1))
    else
        result=FAILED; failed=$((failed + 1))
        molecule destroy -s "$scenario" >/dev/null 2>&1 || true
    fi
    current=""
    summary+=("$(printf '%-8s %-7s %4d s' "$scenario" "$result" $(( $(date +%s) - start )))")
done

echo "molecule: scenario  result  time"
printf 'molecule: %s\n' "${summary[@]}"
echo "molecule: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
