#!/usr/bin/env bash
# The lab's own Docker engine for Vagrant's docker provider (manifests/vagrant-lab.yaml).
# PID 1 here need not be systemd: this starts dockerd itself and stops it by its PID.
# It never touches the host's network beyond its own bridges: no default bridge, no
# iptables rules, no IP forwarding, no masquerading; its data stays under /var/lib/pgha-lab.
#   eval "$(scripts/lab-dockerd.sh start)"   # prints export DOCKER_HOST=...
#   scripts/lab-dockerd.sh stop              # stops dockerd (and its containerd)
#   scripts/lab-dockerd.sh purge             # stop, then delete its data (images too) and run dir
set -euo pipefail
RUN=${PGHA_LAB_RUN:-/run/pgha-lab}
DATA=${PGHA_LAB_DATA:-/var/lib/pgha-lab/docker}
SOCK="unix://$RUN/docker.sock"
PIDFILE="$RUN/docker.pid"

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

case "${1:-}" in
  start)
    if ! running; then
      mkdir -p "$RUN" "$DATA"
      setsid dockerd --host "$SOCK" --data-root "$DATA" --exec-root "$RUN/exec" \
        --pidfile "$PIDFILE" --bridge none --iptables=false --ip-forward=false \
        --ip-masq=false >"$RUN/dockerd.log" 2>&1 </dev/null &
      for _ in $(seq 1 150); do
        DOCKER_HOST="$SOCK" docker version >/dev/null 2>&1 && break
        sleep 0.2
      done
      DOCKER_HOST="$SOCK" docker version >/dev/null 2>&1 || {
        echo "lab-dockerd: dockerd did not answer; see $RUN/dockerd.log" >&2
        exit 1
      }
    fi
    echo "export DOCKER_HOST=$SOCK"
    ;;
  stop | purge)
    if running; then
      pid=$(cat "$PIDFILE")
      kill -TERM "$pid"
      for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
    if [ "$1" = purge ]; then
      # Mounts dockerd left under its data (a container it could not stop) go first, so
      # rm never reaches through them.
      { grep -F " $DATA/" /proc/mounts || true; } | awk '{print $2}' | sort -r |
        xargs -r -n1 umount -l
      rm -rf "$DATA" "$RUN"
    fi
    ;;
  *)
    echo "usage: $0 start|stop|purge" >&2
    exit 2
    ;;
esac
