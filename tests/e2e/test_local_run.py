"""`make run`'s stack keeps what it stores: killed with SIGKILL mid-turn, started again,
it shows every conversation with every succeeded turn once, and the turn that
was running completed once.

The stack is started as `make run` starts it (scripts/run_local.sh), its data
in a temporary folder, with the Groq-like server as its LLM so a turn can be
held running when everything is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests import servers

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


class LocalRun:
    """scripts/run_local.sh in a process group of its own, on `port`, storing in `data`."""

    def __init__(self, data: Path, logs: Path, port: int, groq_port: int) -> None:
        self.port = port
        self.logs = logs
        # Only these: a REDIS_URL or S3 setting of the caller's would be used instead.
        self.env = {
            "PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"),
            "LOCAL_DATA_DIR": str(data), "PORT": str(port), "ENV_FILE": "/dev/null",
            "LLM_PROVIDER": "groq", "GROQ_API_KEY": "gsk-test-not-a-real-key",
            "GROQ_API_BASE": f"http://127.0.0.1:{groq_port}", "GROQ_MODEL": "test-model",
            # A dead worker's turn is taken over within seconds, not the default 20.
            "THREAD_LEASE_SECONDS": "3", "RECOVERY_INTERVAL_SECONDS": "1",
            "RECOVERY_STALL_SECONDS": "3", "PYTHONUNBUFFERED": "1"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: httpx.Client | None = None
        self.starts = 0

    def start(self) -> httpx.Client:
        self.starts += 1
        # The child keeps its own copy of the descriptor; ours can close at once.
        with (self.logs / f"run{self.starts}.log").open("wb") as log:
            self.proc = subprocess.Popen(["bash", "scripts/run_local.sh"], cwd=ROOT,
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        client = self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}",
                                            timeout=30)
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, self.log()
            try:
                if client.get("/readyz").status_code == 200:
                    return client
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"the stack did not start:\n{self.log()}"
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL to every process of the stack at once."""
        if self.client is not None:
            self.client.close()
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        return (self.logs / f"run{self.starts}.log").read_text(errors="replace")[-4000:]


@pytest.fixture
def groq(tmp_path: Path) -> Iterator[httpx.Client]:
    port = servers.free_port()
    server = servers.Server("groq", [sys.executable, "-m", "tests.fakes.fake_groq_server",
                                     "--port", str(port)], port, tmp_path / "groq.log").start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.stop()


@pytest.fixture
def local_run(tmp_path: Path, groq: httpx.Client) -> Iterator[LocalRun]:
    run = LocalRun(tmp_path / "data", tmp_path, servers.free_port(), groq.base_url.port or 0)
    try:
        yield run
    finally:
        run.kill()


def said(client: httpx.Client, text: str, thread_id: str | None = None) -> dict[str, Any]:
    reply = client.post("/chat", json={"message": text, "thread_id": thread_id})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def history(client: httpx.Client, thread_id: str) -> list[str]:
    reply = client.get(f"/chat/history/{thread_id}")
    assert reply.status_code == 200, reply.text
    return [m["content"] for m in reply.json()["messages"]]


def test_conversations_survive_a_kill_of_every_process(
        local_run: LocalRun, groq: httpx.Client) -> None:
    client = local_run.start()
    threads = []
    for n in range(3):
        thread_id = said(client, f"t{n} first")["thread_id"]
        said(client, f"t{n} second", thread_id)
        threads.append(thread_id)
    groq.post("/_control", json={"hold": True}).raise_for_status()
    running = client.post("/chat", params={"wait": "false"},
                          json={"message": "t0 third", "thread_id": threads[0]}).json()
    deadline = time.monotonic() + 30
    while not any(c["messages"][-1]["content"] == "t0 third" for c in groq.get("/_calls").json()):
        assert time.monotonic() < deadline, "the third turn did not reach the LLM"
        time.sleep(0.05)

    local_run.kill()
    groq.post("/_control", json={"hold": False}).raise_for_status()
    client = local_run.start()

    listed = client.get("/chat/threads").json()["threads"]
    assert {t["thread_id"] for t in listed} == set(threads)
    for n, thread_id in enumerate(threads[1:], start=1):
        assert history(client, thread_id) == [f"t{n} first", f"echo: t{n} first",
                                              f"t{n} second", f"echo: t{n} second"]
    deadline = time.monotonic() + 60
    while client.get(f"/chat/jobs/{running['job_id']}").json()["status"] != "succeeded":
        assert time.monotonic() < deadline, local_run.log()
        time.sleep(0.1)
    assert history(client, threads[0]) == [
        "t0 first", "echo: t0 first", "t0 second", "echo: t0 second",
        "t0 third", "echo: t0 third"]  # the turn killed mid-way ran again, stored once
