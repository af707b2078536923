#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian bookworm machine, as root:
# the real servers (Debian packages) and the pinned Python packages in .venv. Idempotent and
# quick when nothing changed (stamp files keyed by the lists' checksums).
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS="postgresql mariadb-server mariadb-client docker-registry buildah podman runc skopeo busybox-static
uidmap nginx prometheus chromium debootstrap git ca-certificates curl iptables openssh-server openssh-client"
missing=()
for p in $DEBS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  # apt on these machines does not auto-start daemons; the project starts what it needs.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements.lock
  .venv/bin/pip install -q --no-deps -e .
  rm -f .venv/.installed-*
  touch "$stamp"
fi
