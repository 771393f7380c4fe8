"""Schemathesis against the gateway's own OpenAPI schema, with the real stack behind it.

Every operation gets generated requests, valid and not, checked by all of
schemathesis's checks: no 5xx, every response one the schema documents
(status, headers, body), schema-valid requests accepted and invalid ones
refused, and the declared security enforced. It runs twice, on two stacks:
with API_KEYS unset (the schema declares no security) and with it set (the
requests carry a valid key; schemathesis also sends some without).

The schemas are built in-process at import, as schemathesis parametrizes at
collection (its lazy, fixture-fed loader does not run on pytest 9); a test
checks that each running gateway serves the same one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api.main import create_app
from shared.settings import Settings
from tests.helpers import stack_of_its_own
from tests.stack import Stack

pytestmark = pytest.mark.e2e

KEY = "fuzz-key-0123456789abcdef"
EXAMPLES_PER_OPERATION = 25
examples: dict[str, Counter[str]] = {"auth off": Counter(), "auth on": Counter()}
statuses: dict[str, Counter[int]] = {"auth off": Counter(), "auth on": Counter()}


def _schema(**env: str) -> tuple[dict[str, Any], schemathesis.BaseSchema]:
    spec = create_app(Settings(_env_file=None, **env)).openapi()  # type: ignore[call-arg]
    schema = schemathesis.openapi.from_dict(spec)
    schema.config.checks.update(included_check_names=["all"])
    return spec, schema


OPEN_SPEC, open_schema = _schema()
KEYED_SPEC, keyed_schema = _schema(API_KEYS=KEY)


@pytest.fixture(scope="module")
def report(pytestconfig: pytest.Config) -> Iterator[None]:
    yield
    # Past pytest's capture, so the counts show in every run's output.
    capture = pytestconfig.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        for mode, counts in examples.items():
            if counts:
                print(f"\nschemathesis, {mode}: {len(counts)} operations, "
                      f"{sum(counts.values())} examples ("
                      + ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))
                      + "); statuses: "
                      + ", ".join(f"{code} x{n}" for code, n in sorted(statuses[mode].items())))


def _stack(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory,
           **env: str) -> Iterator[Stack]:
    """A stack of its own, so nothing else sees its jobs."""
    with stack_of_its_own(s3_endpoint, tmp_path_factory.mktemp("fuzz"), workers=1,
                          CHAT_WAIT_TIMEOUT="5", **env) as stack:
        yield stack


@pytest.fixture(scope="module")
def open_stack(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory,
               report: None) -> Iterator[Stack]:
    yield from _stack(s3_endpoint, tmp_path_factory)


@pytest.fixture(scope="module")
def keyed_stack(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory,
                report: None) -> Iterator[Stack]:
    yield from _stack(s3_endpoint, tmp_path_factory, API_KEYS=KEY)


# Headers that frame the HTTP message itself: a generated value (an empty
# Content-Length) makes a malformed request, which uvicorn refuses with a
# plain-text 400 before the app sees it. That is the transport, not the schema.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "host", "connection"})


def breaks_http_framing(headers: Any) -> bool:
    return any(str(name).lower() in FRAMING_HEADERS for name in (headers or {}))


def test_each_gateway_serves_the_schema_under_test(open_stack: Stack,
                                                   keyed_stack: Stack) -> None:
    assert open_stack.client.get("/openapi.json").json() == OPEN_SPEC
    keyed = keyed_stack.client.get("/openapi.json", headers={"Authorization": f"Bearer {KEY}"})
    assert keyed.json() == KEYED_SPEC


def graph_input(case: Any) -> bool:
    """A run's `input`: checked against its graph's own input schema, which
    differs from graph to graph, so the API's schema can only say "an object"
    and a schema-valid one may still be refused (422 naming the field)."""
    return isinstance(case.body, dict) and bool(case.body.get("input"))


def call(mode: str, case: Any, stack: Stack, headers: dict[str, str]) -> None:
    assume(not breaks_http_framing(case.headers))
    examples[mode][case.operation.label] += 1
    excluded = [positive_data_acceptance] if graph_input(case) else []
    response = case.call_and_validate(base_url=str(stack.client.base_url).rstrip("/"),
                                      headers=headers, timeout=30, excluded_checks=excluded)
    statuses[mode][response.status_code] += 1


FUZZ = settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


@open_schema.parametrize()
@FUZZ
def test_no_input_breaks_the_open_gateway(case: Any, open_stack: Stack) -> None:
    call("auth off", case, open_stack, {})


@keyed_schema.parametrize()
@FUZZ
def test_no_input_breaks_the_keyed_gateway(case: Any, keyed_stack: Stack) -> None:
    call("auth on", case, keyed_stack, {"Authorization": f"Bearer {KEY}"})
