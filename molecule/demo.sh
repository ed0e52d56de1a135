#!/usr/bin/env bash
# The local demo fleet (what `make demo` / `make demo-destroy` call):
#   molecule/demo.sh up     build the image if missing, start three systemd containers
#                           (hostmon-demo-db, -web1, -web2), deploy playbooks/site.yml with
#                           inventory/demo, print curl commands that work against it
#   molecule/demo.sh down   remove those three containers (only those)
set -euo pipefail

# shellcheck source=molecule/env.sh
source "$(dirname "$0")/env.sh"  # sets here, root; cd "$root"; PATH, CONTAINERS_CONF
IMAGE="localhost/hostmon-debian12:latest"
DB=hostmon-demo-db
NODES=(hostmon-demo-db hostmon-demo-web1 hostmon-demo-web2)

ip_of() { podman inspect -f '{{.NetworkSettings.IPAddress}}' "$1"; }

up() {
    [[ "$(id -u)" == 0 ]] || { echo "demo: needs root (podman with systemd containers)" >&2; exit 1; }
    bash "$here/build-image.sh"
    for name in "${NODES[@]}"; do
        if podman container exists "$name"; then
            [[ "$(podman inspect -f '{{.State.Running}}' "$name")" == true ]] || podman start "$name" >/dev/null
        else
            podman run -d --name "$name" --hostname "$name" --label hostmon-demo=1 \
                --systemd=always "$IMAGE" /sbin/init >/dev/null
        fi
    done
    for name in "${NODES[@]}"; do
        for _ in $(seq 60); do
            state="$(podman exec "$name" systemctl is-system-running 2>/dev/null || true)"
            [[ "$state" == running || "$state" == degraded ]] && break
            sleep 1
        done
    done
    ansible-playbook -i inventory/demo playbooks/site.yml
    print_usage
}

print_usage() {
    local db_ip web1_ip
    db_ip="$(ip_of "$DB")"
    web1_ip="$(ip_of hostmon-demo-web1)"
    cat <<USAGE

The demo fleet is up: InfluxDB 1.x on $DB ($db_ip), the hostmon agent and API on
$(for n in "${NODES[@]}"; do printf '  %s  %s\n' "$n" "$(ip_of "$n")"; done)

Samples arrive every 2 s; the original setup guide's window (10 to 2 minutes ago) fills after 2 minutes.
  curl "http://$web1_ip:5000/metrics?start=10&end=2"
  curl "http://$web1_ip:5000/metrics/aggregate?metric=cpu_usage_overall&start=10&end=2"
  curl "http://$web1_ip:5000/metrics?start=5&end=0&max_points=20"
  curl "http://$web1_ip:5000/health"
  curl -u hostmon_reader:demo-reader-password "http://$db_ip:8086/query" \\
       --data-urlencode db=local --data-urlencode 'q=SELECT count(cpu_usage_overall) FROM system GROUP BY host'
On a host:  podman exec -it hostmon-demo-web1 bash
            (journalctl -u hostmon-collector, /opt/hostmon/venv/bin/hostmon spool, /var/log/hostmon/alerts.log)
Redeploy:   CONTAINERS_CONF=$CONTAINERS_CONF .venv/bin/ansible-playbook -i inventory/demo playbooks/site.yml
Tear down:  make demo-destroy
USAGE
}

down() {
    for name in "${NODES[@]}"; do
        if podman container exists "$name"; then
            podman rm -f -t 5 "$name" >/dev/null && echo "demo: removed $name"
        fi
    done
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
