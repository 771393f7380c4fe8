#!/usr/bin/env bash
# Installs what the tests need on a fresh machine, then runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh requirements-dev.txt
sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
if ! command -v docker-compose >/dev/null 2>&1 && [ "${CI:-}" = "true" ]; then
  # Validates docker-compose.yml offline (tests/unit/test_compose.py).
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq docker-compose >/dev/null 2>&1 \
    || echo "docker-compose not installable; its validation test will skip"
fi
if ! command -v chromium >/dev/null 2>&1; then
  # The chat page's browser tests (tests/e2e/test_page.py) drive Debian's
  # chromium through Playwright; Playwright's own browser download is not used.
  echo "installing chromium (Debian package)..."
  { $sudo_cmd apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium; } >/dev/null 2>&1 \
    || echo "chromium not installable; the browser tests will skip"
fi
if ! command -v npm >/dev/null 2>&1; then
  # The LangGraph JS SDK's test (tests/e2e/test_js_sdk.py) runs under Node, and
  # agent-chat-ui's (tests/e2e/test_agent_chat_ui.py) is installed with the pnpm
  # its package.json pins, through npx, and served by `next start`.
  echo "installing nodejs and npm (Debian packages)..."
  { $sudo_cmd apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq nodejs npm; } >/dev/null 2>&1 \
    || echo "nodejs/npm not installable; the JS SDK and agent-chat-ui tests will skip"
fi
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
  # tests/e2e/test_rabbitmq.py runs the broker-dependent tests again on a
  # RabbitMQ node of its own (Debian's package; the system's service is not used).
  echo "installing rabbitmq-server (Debian package)..."
  { $sudo_cmd apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq rabbitmq-server; } >/dev/null 2>&1 \
    || echo "rabbitmq-server not installable; the RabbitMQ tests will skip"
fi
exec .venv/bin/python -m pytest "$@"
