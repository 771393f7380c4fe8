"""The whole stack for end-to-end tests, started once per session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests import servers
from tests.helpers import API_KEYS
from tests.stack import Stack, launch


@pytest.fixture(scope="session")
def stack(redis_url: str, s3_endpoint: str, workdir: Path) -> Iterator[Stack]:
    with launch(redis_url, s3_endpoint, workdir / "stack") as running:
        yield running
        if os.environ.get("CI"):
            # Put worker and gateway crashes where a CI reader will see them.
            for server in [running.gateway, *running.workers]:
                tail = server.log()[-4000:]
                if "Traceback" in tail:
                    print(f"--- {server.name} log tail ---\n{tail}")


@pytest.fixture
def fresh_llm(stack: Stack) -> Iterator[None]:
    """The shared stack's Groq-like server with its faults and records cleared."""
    stack.groq_client.post("/_control/reset").raise_for_status()
    stack.groq_client.delete("/_calls").raise_for_status()
    yield


@pytest.fixture(scope="session")
def keyed(s3_endpoint: str, workdir: Path) -> Iterator[Stack]:
    """A stack with API keys on, its metrics gathered from every process, on a
    redis-server of its own: a test may empty it without touching the others."""
    server = servers.redis_server(workdir / "keyed-redis").start()
    metrics = workdir / "keyed-metrics"
    metrics.mkdir()
    try:
        with launch(f"redis://127.0.0.1:{server.port}/0", s3_endpoint, workdir / "keyed",
                    API_KEYS=",".join(API_KEYS.values()),
                    PROMETHEUS_MULTIPROC_DIR=str(metrics)) as running:
            yield running
    finally:
        server.stop()


@pytest.fixture
def keyed_llm(keyed: Stack) -> Iterator[None]:
    """The keyed stack's Groq-like server with its faults and records cleared."""
    keyed.groq_client.post("/_control/reset").raise_for_status()
    yield


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless chromium, driven by Playwright (its own browser
    download is not used); one per module, so none outlives the tests that
    use it."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed (scripts/test.sh installs it)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()
