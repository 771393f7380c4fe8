"""The gateway with nothing behind it: validation, auth, and dependencies down."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.schemas import NOT_BLANK
from tests.helpers import app_client


@pytest.fixture
def client() -> Iterator[TestClient]:
    with app_client() as client:
        yield client


def test_healthz_answers_without_dependencies(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "checks": {}}


def test_readyz_names_what_is_down(client: TestClient) -> None:
    reply = client.get("/readyz")
    assert reply.status_code == 503
    checks = reply.json()["checks"]
    assert checks["redis"].startswith("unavailable")
    assert checks["s3"].startswith("unavailable")


def test_chat_with_redis_down_is_503_not_a_stack_trace(client: TestClient) -> None:
    reply = client.post("/chat", json={"message": "hi"})
    assert reply.status_code == 503
    assert reply.json() == {"detail": "redis unavailable, try again later"}
    assert "Traceback" not in reply.text


def test_history_with_s3_down_is_503(client: TestClient) -> None:
    reply = client.get("/chat/history/abc")
    assert reply.status_code == 503
    assert "S3" in reply.json()["detail"]


@pytest.mark.parametrize(("body", "where"), [
    ({"message": ""}, "message"),
    ({"message": " \t\n "}, "message"),
    ({"message": "x" * 32_001}, "message"),
    ({"message": "hi", "thread_id": "a/b"}, "thread_id"),
    ({"message": "hi", "thread_id": "abc\n"}, "thread_id"),
    ({"message": "hi", "language": "English; drop"}, "language"),
    ({"message": "hi", "language": "x" * 65}, "language"),
    ({"message": 42}, "message"),
])
def test_bad_bodies_are_422_before_anything_is_touched(client: TestClient,
                                                       body: dict[str, object],
                                                       where: str) -> None:
    reply = client.post("/chat", json=body)
    assert reply.status_code == 422
    assert where in reply.json()["detail"]


@pytest.mark.parametrize("params", [{"timeout": "-1"}, {"timeout": "301"}, {"wait": "maybe"}])
def test_bad_query_parameters_are_422(client: TestClient, params: dict[str, str]) -> None:
    assert client.post("/chat", params=params, json={"message": "hi"}).status_code == 422


def test_a_long_idempotency_key_is_422(client: TestClient) -> None:
    reply = client.post("/chat", json={"message": "hi"}, headers={"Idempotency-Key": "k" * 129})
    assert reply.status_code == 422


def test_languages_with_letters_from_any_script_are_accepted(client: TestClient) -> None:
    # Valid bodies get past validation and fail only on the missing Redis.
    for language in ("Français", "Brazilian Portuguese", "Serbo-Croatian", "日本語"):
        assert client.post("/chat", json={"message": "hi", "language": language}).status_code == 503


K1, K2 = "first-key-0123456789", "second-key-0123456789"


def test_with_api_keys_every_endpoint_but_probes_needs_one() -> None:
    with app_client(API_KEYS=f"{K1},{K2}") as client:
        assert client.get("/healthz").status_code == 200
        for method, path in [("POST", "/chat"), ("GET", "/chat/jobs/abc"),
                             ("POST", "/chat/jobs/abc/cancel"), ("GET", "/chat/history/abc"),
                             ("DELETE", "/chat/history/abc")]:
            reply = client.request(method, path, json={"message": "hi"})
            assert reply.status_code == 401, path
            assert reply.headers["www-authenticate"] == "Bearer"
        wrong = client.get("/chat/jobs/abc", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = client.get("/chat/jobs/abc", headers={"Authorization": f"Bearer {K2}"})
        assert right.status_code == 503  # past auth, on to the (missing) Redis


def test_the_x_api_key_header_is_worth_the_bearer_one() -> None:
    with app_client(API_KEYS=f"{K1},{K2}") as client:
        assert client.get("/chat/jobs/abc", headers={"x-api-key": "nope"}).status_code == 401
        right = client.get("/chat/jobs/abc", headers={"x-api-key": K2})
        assert right.status_code == 503  # past auth, on to the (missing) Redis


AGENT_PATHS = {
    "/assistants", "/assistants/search", "/assistants/count", "/assistants/{assistant_id}",
    "/assistants/{assistant_id}/versions", "/assistants/{assistant_id}/latest",
    "/assistants/{assistant_id}/graph",
    "/assistants/{assistant_id}/schemas", "/assistants/{assistant_id}/subgraphs", "/info", "/ok",
    "/threads/{thread_id}/state/{checkpoint_id}", "/threads/{thread_id}/state/checkpoint",
    "/threads", "/threads/search",
    "/threads/{thread_id}", "/threads/{thread_id}/copy", "/threads/{thread_id}/history",
    "/threads/{thread_id}/state", "/threads/{thread_id}/runs", "/threads/{thread_id}/runs/wait",
    "/threads/{thread_id}/runs/stream", "/threads/{thread_id}/runs/{run_id}",
    "/threads/{thread_id}/runs/{run_id}/cancel", "/threads/{thread_id}/runs/{run_id}/join",
    "/threads/{thread_id}/runs/{run_id}/stream", "/runs", "/runs/wait", "/runs/stream"}


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/chat", "/chat/jobs/{job_id}", "/chat/jobs/{job_id}/cancel",
                          "/chat/history/{thread_id}", "/chat/jobs/{job_id}/events",
                          "/chat/threads", "/metrics", "/healthz", "/readyz", *AGENT_PATHS}
    assert "202" in paths["/chat"]["post"]["responses"]


def test_streams_need_a_key_too() -> None:
    with app_client(API_KEYS=K1) as client:
        for method, path in [("POST", "/chat?stream=true"), ("GET", "/chat/jobs/abc/events")]:
            reply = client.request(method, path, json={"message": "hi"})
            assert reply.status_code == 401, path
            assert reply.headers["content-type"] == "application/json"


DOCS = ("/openapi.json", "/docs", "/redoc")


def test_schema_and_docs_need_a_key_when_auth_is_on() -> None:
    with app_client(API_KEYS=K1) as client:
        for path in DOCS:
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.headers["www-authenticate"] == "Bearer"
            assert set(refused.json()) == {"detail"}
            assert client.get(path, headers={"Authorization": f"Bearer {K2}"}).status_code == 401
            assert client.get(path, headers={"Authorization": f"Bearer {K1}"}).status_code == 200


def test_schema_and_docs_are_open_when_auth_is_off(client: TestClient) -> None:
    for path in DOCS:
        assert client.get(path).status_code == 200, path


def test_without_api_keys_the_schema_declares_no_security(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "securitySchemes" not in spec.get("components", {})
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert "security" not in operation, (method, path)
            assert "401" not in operation["responses"], (method, path)
    assert "HTTPBearer" not in client.get("/openapi.json").text  # the same on a second call


def test_openapi_documents_auth_and_the_limits_on_every_protected_operation() -> None:
    with app_client(API_KEYS=K1) as client:
        spec = client.get("/openapi.json", headers={"Authorization": f"Bearer {K1}"}).json()
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if path in ("/healthz", "/readyz"):
                assert "security" not in operation
                continue
            assert operation["security"] == [{"HTTPBearer": []}, {"APIKeyHeader": []}], (
                method, path)
            assert {"401", "413", "422", "429", "503"} <= set(operation["responses"])
            assert "Retry-After" in operation["responses"]["429"]["headers"]
    events = spec["paths"]["/chat/jobs/{job_id}/events"]["get"]["responses"]["200"]["content"]
    assert "itemSchema" in events["text/event-stream"]


def test_unknown_query_parameters_are_422(client: TestClient) -> None:
    reply = client.post("/chat", params={"wiat": "false"}, json={"message": "hi"})
    assert reply.status_code == 422
    assert "wiat" in reply.json()["detail"]


def test_405_names_every_method_of_the_path(client: TestClient) -> None:
    reply = client.put("/chat/history/abc")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "DELETE, GET, HEAD"


def test_405_names_the_methods_of_the_most_literal_path(client: TestClient) -> None:
    # /threads/search is a path of its own, not a thread named "search".
    assert client.put("/threads/search").headers["allow"] == "POST"
    assert client.put("/threads/t1").headers["allow"] == "DELETE, GET, HEAD, PATCH"


def test_the_schema_s_blank_pattern_is_exactly_what_strip_removes() -> None:
    blank = re.compile(NOT_BLANK)
    for code in range(0x3100):  # past U+3000, the last whitespace character
        char = chr(code)
        assert (blank.fullmatch(char) is None) == char.isspace(), hex(code)


def test_a_browser_elsewhere_may_call_only_from_an_allowed_origin() -> None:
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,x-api-key"}
    with app_client(CORS_ORIGINS="http://localhost:3000") as client:
        allowed = client.options("/threads/search",
                                 headers={"Origin": "http://localhost:3000", **preflight})
        other = client.options("/threads", headers={"Origin": "http://evil.test", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in other.headers
    with app_client() as client:  # unset: no browser elsewhere is let in
        closed = client.options("/threads", headers={"Origin": "http://localhost:3000",
                                                     **preflight})
    assert "access-control-allow-origin" not in closed.headers


def test_a_json_body_sent_as_text_is_read_as_json(client: TestClient) -> None:
    # As agent-chat-ui's proxy forwards it: JSON, without its content type.
    for kind in ("text/plain;charset=UTF-8", None):
        headers = {"Content-Type": kind} if kind else {}
        reply = client.post("/threads/search", content=b'{"limit": 0}', headers=headers)
        assert reply.status_code == 422
        assert "limit" in reply.text  # read as JSON: the field is named


def test_info_and_ok_answer_as_the_langgraph_server_does(client: TestClient) -> None:
    info = client.get("/info")
    assert info.status_code == 200 and info.json()["flags"]["assistants"] is True
    assert client.get("/ok").json() == {"ok": True}
