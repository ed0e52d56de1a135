# Sourced by molecule/run-scenarios.sh and molecule/demo.sh: work from the repository root, with
# the project's virtualenv first on PATH and podman reading molecule/containers.conf.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"
export PATH="$root/.venv/bin:$PATH"
export CONTAINERS_CONF="$here/containers.conf"
