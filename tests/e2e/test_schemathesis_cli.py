"""schemathesis's command line, `st run`, against the whole stack, with auth off and on.

It runs as a user or a CI job would, every phase (examples, coverage,
fuzzing with 25 examples per operation, and the stateful one: requests
chained through the schema's links, checked for use after delete, resources
that vanish, auth that is ignored) and every check: no 5xx, every response
one the schema documents (status, headers, body, SSE events), schema-valid
requests accepted and invalid ones refused, the declared security enforced. What
the schema cannot state is allowed, operation by operation and with the
reason, in tests/e2e/schemathesis.toml, next to this file; that file also turns
every check on (`--checks all` on the command line would override what it
allows).

The two runs go at once, each against a stack of its own; either failing
fails the test with schemathesis's own report (its seed reproduces it:
`st run ... --seed N`).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import stack_of_its_own
from tests.stack import Stack

pytestmark = pytest.mark.e2e

KEY = "st-cli-key-0123456789abcdef"
CONFIG = Path(__file__).with_name("schemathesis.toml")
ST = Path(sys.executable).with_name("st")
# Each run takes one to two minutes on two busy cores; past this it is stuck.
# Under pytest's own timeout (300 s, the stacks' start included), so a stuck
# run fails with what it printed.
TIMEOUT = 200


@pytest.fixture(scope="module")
def open_stack(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_of_its_own(s3_endpoint, tmp_path_factory.mktemp("st-open"), workers=1,
                          CHAT_WAIT_TIMEOUT="5") as stack:
        yield stack


@pytest.fixture(scope="module")
def keyed_stack(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with stack_of_its_own(s3_endpoint, tmp_path_factory.mktemp("st-keyed"), workers=1,
                          CHAT_WAIT_TIMEOUT="5", API_KEYS=KEY) as stack:
        yield stack


@dataclass
class Run:
    mode: str
    process: subprocess.Popen[str]
    output: Path
    started: float
    seconds: float = 0.0

    def report(self) -> str:
        return self.output.read_text(errors="replace")


def start(mode: str, stack: Stack, workdir: Path, *headers: str) -> Run:
    url = str(stack.client.base_url).rstrip("/")
    argv = [str(ST), "--no-color", "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
            "--url", url, "--max-examples", "25",
            "--request-timeout", "30"]
    for header in headers:
        argv += ["-H", header]
    output = workdir / f"st-{mode.replace(' ', '-')}.txt"
    with output.open("w") as sink:
        # Its working directory is the test's own: schemathesis's default
        # report folder, if anything, lands there.
        process = subprocess.Popen(argv, cwd=workdir, stdout=sink, stderr=subprocess.STDOUT,
                                   text=True)
    return Run(mode, process, output, time.monotonic())


def finish(run: Run) -> None:
    try:
        run.process.wait(timeout=max(1.0, TIMEOUT - (time.monotonic() - run.started)))
    except subprocess.TimeoutExpired:
        run.process.kill()
        run.process.wait()
    run.seconds = time.monotonic() - run.started


def summary(run: Run) -> str:
    """The run's last lines: its counts, seed and time."""
    lines = [line for line in run.report().splitlines()
             if line.strip().startswith(("Seed:", "=====", "Test cases:"))
             or " generated" in line]
    return f"{run.mode}: exit {run.process.returncode} after {run.seconds:.0f} s; " + \
        " | ".join(line.strip(" =") for line in lines[-3:])


def test_st_run_finds_nothing_with_auth_off_or_on(open_stack: Stack, keyed_stack: Stack,
                                                  tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert ST.exists(), f"schemathesis's command line is not installed at {ST}"
    runs = [start("auth off", open_stack, tmp_path),
            start("auth on", keyed_stack, tmp_path, f"Authorization: Bearer {KEY}")]
    for run in runs:
        finish(run)
    with capsys.disabled():
        for run in runs:
            print(f"\nschemathesis cli, {summary(run)}")

    for run in runs:
        assert run.seconds < TIMEOUT, f"{run.mode}: st run did not end in {TIMEOUT} s:\n" \
                                      f"{run.report()}"
        assert run.process.returncode == 0, f"{run.mode}: st run failed:\n{run.report()}"
