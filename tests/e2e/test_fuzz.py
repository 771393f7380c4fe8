"""Schemathesis against the gateway's own OpenAPI schema, with the real stack behind it.

Every operation gets generated requests, valid and not: none may get a 5xx,
and every response must be one the schema documents (status, headers, body).
The stack runs with auth on, so the schema's security is exercised too.

The schema is built in-process at import, as schemathesis parametrizes at
collection (its lazy, fixture-fed loader does not run on pytest 9); a test
checks that the running gateway serves the same one.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, settings

from api.main import create_app
from shared.settings import Settings
from tests import servers
from tests.stack import Stack, launch

pytestmark = pytest.mark.e2e

KEY = "fuzz-key-0123456789abcdef"
EXAMPLES_PER_OPERATION = 25
examples: Counter[str] = Counter()
statuses: Counter[int] = Counter()


@pytest.fixture(scope="module")
def fuzz_stack(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory,
               pytestconfig: pytest.Config) -> Iterator[Stack]:
    """A stack of its own, on a redis-server of its own, so nothing else sees its jobs."""
    workdir: Path = tmp_path_factory.mktemp("fuzz")
    redis = servers.redis_server(workdir / "redis").start()
    try:
        with launch(f"redis://127.0.0.1:{redis.port}/0", s3_endpoint, workdir / "stack",
                    workers=1, API_KEYS=KEY, CHAT_WAIT_TIMEOUT="5") as stack:
            yield stack
    finally:
        redis.stop()
        if examples:
            # Past pytest's capture, so the counts show in every run's output.
            capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
            with capture.global_and_fixture_disabled():
                print(f"\nschemathesis: {len(examples)} operations, "
                      f"{sum(examples.values())} examples ("
                      + ", ".join(f"{op} {n}" for op, n in sorted(examples.items()))
                      + "); statuses: "
                      + ", ".join(f"{code} x{n}" for code, n in sorted(statuses.items())))


SPEC = create_app(Settings(_env_file=None)).openapi()  # type: ignore[call-arg]
schema = schemathesis.openapi.from_dict(SPEC)


def unknown_to_this_python(body: object) -> bool:
    """A language with code points this Python's Unicode tables have not assigned,
    at any depth of the body (a run has it in its config or its context).

    Schemathesis knows a newer Unicode: a letter new to it is unassigned here,
    so the gateway refuses it by the tables it has; that is no schema error.
    """
    if isinstance(body, list):
        return any(unknown_to_this_python(item) for item in body)
    if not isinstance(body, dict):
        return False
    language = body.get("language")
    return (isinstance(language, str) and any(unicodedata.category(c) == "Cn" for c in language)
            ) or any(unknown_to_this_python(value) for value in body.values())


def test_the_gateway_serves_the_schema_under_test(fuzz_stack: Stack) -> None:
    assert fuzz_stack.client.get("/openapi.json").json() == SPEC


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_input_breaks_the_gateway(case: Any, fuzz_stack: Stack) -> None:
    assume(not unknown_to_this_python(case.body))
    examples[case.operation.label] += 1
    response = case.call_and_validate(base_url=str(fuzz_stack.client.base_url).rstrip("/"),
                                      headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
    statuses[response.status_code] += 1
