#!/usr/bin/env bash
# The two entry points a new user needs, each installing what it lacks (idempotent):
#   harness/run.sh test      every test: unit, property, vectors, differential, tshark, lab
#   harness/run.sh interop   the interop suite against the reference peers, ending in a report
#   harness/run.sh report    `ipsec-interop report` (merge shards, --diff) with only what reports need installed
# Extra arguments go to pytest (test), `ipsec-interop run` (interop) or `ipsec-interop report` (report).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
mode=${1:-}
[ $# -gt 0 ] && shift
case "$mode" in test|interop|report) ;; *) echo "usage: harness/run.sh test|interop|report [args...]" >&2; exit 2;; esac

log() { printf '[run.sh] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
# step LABEL LOGFILE CMD...: run CMD with its output in LOGFILE, a line every 10 s while it lasts, its time at
# the end; on failure the log's tail and the exit status.
step() {
  local label=$1 logfile=$2; shift 2
  local t0=$SECONDS
  log "$label ..."
  "$@" >"$logfile" 2>&1 &
  local pid=$! rc=0
  while kill -0 "$pid" 2>/dev/null; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do sleep 1; kill -0 "$pid" 2>/dev/null || break; done
    kill -0 "$pid" 2>/dev/null && log "  ... $label: $((SECONDS - t0)) s so far"
  done
  wait "$pid" || rc=$?
  if [ $rc -ne 0 ]; then
    tail -n 30 "$logfile" >&2
    log "$label failed (exit $rc) after $((SECONDS - t0)) s; the whole log is $logfile"
    exit 1
  fi
  log "$label: done in $((SECONDS - t0)) s"
}

# Debian packages: the lab's tools, the UML kernel, tshark for the dissector cross-check, docker.io to build
# the peers' images (IPSEC_INTEROP_NO_DOCKER=1 leaves it out: the uml runtime then runs exported trees only).
# The UML kernel itself comes from an image (peers/uml-kernel: the host's bookworm kernel dies on CPUs with AMX);
# patchelf points it at that image's libc, uml-utilities brings uml_mconsole.
# `report` (a CI job joining shards) needs none of the lab's: Python and the HTML report's tools only.
if [ "$mode" = report ]; then
  DEB_PACKAGES=(python3 python3-venv python3-pip)
else
  DEB_PACKAGES=(python3 python3-venv python3-pip iproute2 nftables tcpdump tshark debootstrap
                patchelf uml-utilities)
  [ "${IPSEC_INTEROP_NO_DOCKER:-}" = 1 ] || DEB_PACKAGES+=(docker.io)
fi
# The HTML report (harness/report/html.py): Allure 2's command line from the npm registry, run by Java; the test
# command also opens the reports in headless Chromium (harness/tests/report/test_html_report.py). Asked for by
# command, not package name: a Node.js or Java from elsewhere (nodesource's bundles npm) is used as it is.
command -v npm >/dev/null || DEB_PACKAGES+=(npm)
command -v java >/dev/null || DEB_PACKAGES+=(default-jre-headless)
if [ "$mode" = test ] && ! command -v chromium >/dev/null; then DEB_PACKAGES+=(chromium); fi
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
mkdir -p "$top/.cache"
if [ ${#missing[@]} -gt 0 ]; then
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | as_root debconf-set-selections
  # No service may start while we install: the packaged Docker daemon would make a default bridge and NAT
  # rules on this host. The daemon the lab uses is started by `ipsec-interop setup` with settings of its own
  # (harness/runtime/dockerd.py); /etc/docker/daemon.json is the user's and is never written here.
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod 755 "$policy" && made_policy=1
    trap '[ -n "$made_policy" ] && as_root rm -f "$policy"' EXIT
  fi
  step "apt-get update" "$top/.cache/apt-update.log" as_root env DEBIAN_FRONTEND=noninteractive apt-get update
  step "installing Debian packages: ${missing[*]}" "$top/.cache/apt-install.log" \
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  if [ -n "$made_policy" ]; then as_root rm -f "$policy"; made_policy=; fi
fi

# Python: a venv beside the checkout, reinstalled only when pyproject.toml changes.
py=${PYTHON:-python3}
venv=$top/.venv
stamp=$venv/.pyproject.sha256
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  step "making the virtualenv $venv" "$top/.cache/venv.log" "$py" -m venv "$venv"
  step "installing the Python package into $venv" "$top/.cache/pip.log" \
    sh -c '"$1/bin/pip" install --upgrade pip && "$1/bin/pip" install -e "$2"' sh "$venv" "$top"
  echo "$want" > "$stamp"
fi
export PATH=$venv/bin:$PATH

# Allure 2 for the HTML report, in a project-local prefix, reinstalled only when the version pinned in
# harness/report/html.py changes.
allure_want=$(sed -n 's/^ALLURE_VERSION = "\([^"]*\)".*/\1/p' harness/report/html.py)
tools=$top/.tools/allure
if [ "$(cat "$tools/.version" 2>/dev/null)" != "$allure_want" ]; then
  rm -rf "$tools"
  mkdir -p "$tools"
  step "installing Allure $allure_want (npm allure-commandline) into $tools" "$top/.cache/npm-allure.log" \
    npm install --prefix "$tools" --no-audit --no-fund --no-save "allure-commandline@$allure_want"
  echo "$allure_want" > "$tools/.version"
fi

# The lab's runtimes and images.
if [ "$mode" != report ]; then
  ipsec-interop setup
fi

case "$mode" in
  test)
    # -n auto: one worker more than the cores, at most 4, or IPSEC_INTEROP_WORKERS (harness/plugin.py says why).
    # Any -n/-p given wins.
    par=(-n auto --dist loadgroup)
    for a in "$@"; do case "$a" in -n*|--numprocesses*|--dist*|-p) par=();; esac; done
    set +e
    python -m pytest -p no:cacheprovider --junitxml=reports/junit.xml "${par[@]}" "$@"
    rc=$?
    set -e
    [ $rc -eq 5 ] && { log "pytest collected no tests"; exit 1; }
    exit $rc ;;
  interop)
    exec ipsec-interop run "$@" ;;
  report)
    exec ipsec-interop report "$@" ;;
esac
