#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements-dev.txt
if ! command -v docker-compose >/dev/null 2>&1 && [ "${CI:-}" = "true" ]; then
  # Validates docker-compose.yml offline (tests/unit/test_compose.py).
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq docker-compose >/dev/null 2>&1 \
    || echo "docker-compose not installable; its validation test will skip"
fi
exec .venv/bin/python -m pytest "$@"
