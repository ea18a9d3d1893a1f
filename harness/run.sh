#!/usr/bin/env bash
# The two entry points a new user needs, each installing what it lacks (idempotent):
#   harness/run.sh test      every test: unit, property, vectors, differential, tshark, lab
#   harness/run.sh interop   the interop suite against the reference peers, ending in a report
# Extra arguments go to pytest (test) or to `ipsec-interop run` (interop).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
mode=${1:-}
[ $# -gt 0 ] && shift
case "$mode" in test|interop) ;; *) echo "usage: harness/run.sh test|interop [args...]" >&2; exit 2;; esac

log() { printf '[run.sh] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages: the lab's tools, the UML kernel, tshark for the dissector cross-check.
DEB_PACKAGES=(python3 python3-venv python3-pip iproute2 nftables tcpdump tshark debootstrap
              user-mode-linux uml-utilities docker.io)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  # docker.io must never start with a default bridge or NAT rules on this host.
  if [ ! -e /etc/docker/daemon.json ]; then
    as_root mkdir -p /etc/docker
    echo '{"bridge": "none", "iptables": false, "ip6tables": false}' | as_root tee /etc/docker/daemon.json >/dev/null
  fi
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | as_root debconf-set-selections
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python: a venv beside the checkout, reinstalled only when pyproject.toml changes.
py=${PYTHON:-python3}
venv=$top/.venv
stamp=$venv/.pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing the Python package into $venv"
  "$py" -m venv "$venv"
  if ! { "$venv/bin/pip" install -q --upgrade pip && "$venv/bin/pip" install -q -e "$top"; } >"$venv/pip.log" 2>&1; then
    cat "$venv/pip.log" >&2
    log "pip install failed (log above, also in $venv/pip.log)"
    exit 1
  fi
  echo "$want" > "$stamp"
fi
export PATH=$venv/bin:$PATH

# The lab's runtimes and images (present once the lab exists).
if [ -f harness/commands/setup.py ]; then
  ipsec-interop setup
fi

case "$mode" in
  test)
    set +e
    python -m pytest -p no:cacheprovider --junitxml=reports/junit.xml "$@"
    rc=$?
    set -e
    [ $rc -eq 5 ] && { log "pytest collected no tests"; exit 1; }
    exit $rc ;;
  interop)
    exec ipsec-interop run "$@" ;;
esac
