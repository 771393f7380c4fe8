#!/usr/bin/env bash
# Installs what the project needs on a fresh machine: a virtualenv with the
# pinned packages, and redis-server from Debian's packages when it is missing.
# Usage: scripts/bootstrap.sh [requirements file]   (default requirements-dev.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
reqs="${1:-requirements-dev.txt}"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "installing redis-server (Debian package)..."
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq redis-server >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
stamp=".venv/.installed-$(cat requirements.txt "$reqs" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$reqs"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
