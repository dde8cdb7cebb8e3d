#!/usr/bin/env bash
# Idempotent set-up on Debian 12: system packages, the operator's venv (.venv)
# and, when run as root, a Patroni venv under /opt that the postgres user can
# execute (a checkout under a mode-700 home is not reachable by postgres).
set -euo pipefail
cd "$(dirname "$0")/.."

# patroni + python3-etcd (+ python3-idna: its urllib3 needs it for https): Debian's Patroni,
# for clusters with spec.patroni.source: debian.
# chromium + chromium-driver: the status page's browser test (Selenium uses /usr/bin/chromedriver).
# keepalived: the virtual IP in front of two or more HAProxy machines (spec.loadBalancer.vip).
# docker.io: Vagrant's docker provider for manifests/vagrant-lab.yaml (the lab starts its own
# dockerd: scripts/lab-dockerd.sh; none runs on its own).
# prometheus: its promtool checks and unit-tests docs/alerts.yml (tests/unit/test_alerts.py).
DEB_PACKAGES=(postgresql-15 pgbouncer etcd-server etcd-client haproxy keepalived iptables iproute2 python3-venv debootstrap systemd-container openssh-client openssh-server sudo vagrant docker.io patroni python3-etcd python3-idna pgbackrest chromium chromium-driver prometheus)
PATRONI_VENV=${PGHA_PATRONI_VENV:-/opt/pgha-operator/patroni}
PATRONI_REQ=("patroni[etcd3]>=4.1,<4.2" "psycopg[binary]>=3.1")

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]} (run 'make setup' as root, or apt-get install them)" >&2
    exit 1
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Debian's packages may start services on install on some machines; we run our own.
stamp=.venv/.pgha-setup-stamp
if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e ".[dev]"
  touch "$stamp"
fi

if [ "$(id -u)" -eq 0 ]; then
  if [ ! -x "$PATRONI_VENV/bin/patroni" ]; then
    echo "setup: creating the Patroni venv in $PATRONI_VENV"
    mkdir -p "$(dirname "$PATRONI_VENV")"
    /usr/bin/python3 -m venv "$PATRONI_VENV"
    "$PATRONI_VENV/bin/pip" install -q "${PATRONI_REQ[@]}"
    chmod -R a+rX "$(dirname "$PATRONI_VENV")"
  fi
fi
echo "setup: ready"
