"""Security end to end: API keys, tenant isolation, limits, hostile ids, and the logs.

Two stacks of their own, each on its own redis-server (so their Redis can be
inspected and nothing else's workers take their jobs): `secure`, with two API
keys, and `limited`, with a per-client limit of 5 requests in 2 s.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import httpx
import pytest
import redis

from shared.store.keys import job_key
from tests import servers
from tests.helpers import stack_of_its_own
from tests.sse import read_events
from tests.stack import Stack, launch

pytestmark = pytest.mark.e2e

KEY_A, KEY_B = "key-a-0123456789ab", "key-b-0123456789ab"
A = {"Authorization": f"Bearer {KEY_A}"}
B = {"Authorization": f"Bearer {KEY_B}"}
GROQ_KEY = "gsk-test-not-a-real-key"
# Every message sent here, so the log test can look for each of them.
SENT: list[str] = []


def words(text: str) -> str:
    """A message no log line could contain by chance."""
    message = f"{text} {uuid.uuid4().hex}"
    SENT.append(message)
    return message


@pytest.fixture(scope="module")
def secure_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.Server]:
    server = servers.redis_server(tmp_path_factory.mktemp("secure-redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def secure(secure_redis: servers.Server, s3_endpoint: str,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with launch(f"redis://127.0.0.1:{secure_redis.port}/0", s3_endpoint,
                tmp_path_factory.mktemp("secure"), workers=1, API_KEYS=f"{KEY_A},{KEY_B}",
                LOG_LEVEL="DEBUG", LOG_JSON="true") as stack:
        yield stack


@pytest.fixture
def store(secure: Stack) -> Iterator[redis.Redis]:
    with redis.Redis.from_url(secure.env["REDIS_URL"], decode_responses=True) as client:
        yield client


@pytest.fixture(scope="module")
def limited(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # No workers: whatever got queued would stay in Redis for the test to see.
    with stack_of_its_own(s3_endpoint, tmp_path_factory.mktemp("limited"), workers=0,
                          API_KEYS=f"{KEY_A},{KEY_B}", CLIENT_RATE_LIMIT="5",
                          CLIENT_RATE_WINDOW_SECONDS="2") as stack:
        yield stack


@pytest.fixture(scope="module")
def thread_of_a(secure: Stack) -> dict[str, Any]:
    """A finished turn of key A: its thread and job."""
    reply = secure.client.post("/chat", json={"message": words("a's secret")}, headers=A)
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


def queued(store: redis.Redis) -> tuple[int, int]:
    """Job records, and messages waiting in the broker's queue."""
    return len(list(store.scan_iter(job_key("*")))), int(store.llen("chat"))


# --- API keys ---------------------------------------------------------------------


def every_endpoint(thread: str, job: str) -> list[tuple[str, str, dict[str, Any]]]:
    body = {"json": {"message": "knock knock", "thread_id": thread}}
    return [
        ("POST", "/chat", body),
        ("POST", "/chat?stream=true", body),
        ("GET", f"/chat/jobs/{job}", {}),
        ("GET", f"/chat/jobs/{job}/events", {}),
        ("POST", f"/chat/jobs/{job}/cancel", {}),
        ("GET", f"/chat/history/{thread}", {}),
        ("DELETE", f"/chat/history/{thread}", {}),
    ]


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", "Bearer  x", "Bearer key-c", f"Bearer {KEY_A}-and-more",
    f"Basic {KEY_A}", KEY_A, f"Bearer {KEY_A[:-1]}",
])
def test_a_missing_or_wrong_key_is_401_on_every_endpoint(
        secure: Stack, thread_of_a: dict[str, Any], authorization: str | None,
        store: redis.Redis) -> None:
    before = queued(store)
    headers = {} if authorization is None else {"Authorization": authorization}
    for method, path, extra in every_endpoint(thread_of_a["thread_id"], thread_of_a["job_id"]):
        reply = secure.client.request(method, path, headers=headers, **extra)
        assert reply.status_code == 401, (method, path, reply.text)
        assert reply.headers["www-authenticate"] == "Bearer"
        assert set(reply.json()) == {"detail"}
        assert KEY_A not in reply.text
    assert queued(store) == before
    assert secure.client.get(f"/chat/history/{thread_of_a['thread_id']}", headers=A).status_code \
        == 200


def test_the_probes_need_no_key(secure: Stack) -> None:
    assert secure.client.get("/healthz").status_code == 200
    assert secure.client.get("/readyz").status_code == 200


def test_the_schema_and_docs_need_a_key(secure: Stack) -> None:
    for path in ("/openapi.json", "/docs", "/redoc"):
        refused = secure.client.get(path)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"] == "Bearer"
        assert "HTTPBearer" not in refused.text  # nothing of the schema leaks
        assert secure.client.get(path, headers=A).status_code == 200, path
    schema = secure.client.get("/openapi.json", headers=A).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_right_key_opens_every_endpoint(secure: Stack) -> None:
    first = secure.client.post("/chat", json={"message": words("mine")}, headers=A).json()
    thread, job = first["thread_id"], first["job_id"]
    expected = {"/chat": 200, "/chat?stream=true": 200, f"/chat/jobs/{job}": 200,
                f"/chat/jobs/{job}/events": 200, f"/chat/jobs/{job}/cancel": 409,
                f"/chat/history/{thread}": 200}
    for method, path, extra in every_endpoint(thread, job):
        if method == "DELETE":
            continue
        if "json" in extra:
            extra = {"json": {**extra["json"], "message": words("again")}}
        with secure.client.stream(method, path, headers=A, **extra) as reply:
            reply.read()
        assert reply.status_code == expected[path], (method, path, reply.text)
    # The scheme's name is case-insensitive (RFC 9110).
    lower = secure.client.get(f"/chat/history/{thread}",
                              headers={"Authorization": f"bearer {KEY_A}"})
    assert lower.status_code == 200
    assert secure.client.delete(f"/chat/history/{thread}", headers=A).status_code == 204


# --- Tenant isolation -------------------------------------------------------------


def test_key_b_cannot_touch_key_a_thread_or_jobs(
        secure: Stack, thread_of_a: dict[str, Any], store: redis.Redis) -> None:
    thread, job = thread_of_a["thread_id"], thread_of_a["job_id"]
    secure.groq_client.delete("/_calls").raise_for_status()
    before = queued(store)

    for method, path, extra in every_endpoint(thread, job):
        if method == "POST" and not path.startswith("/chat/jobs"):
            continue  # a post starts B's own thread of that id: the next test
        reply = secure.client.request(method, path, headers=B, **extra)
        assert reply.status_code == 404, (method, path, reply.text)
        assert thread_of_a["response"] not in reply.text

    assert queued(store) == before
    assert secure.llm_calls() == []
    # A's conversation is untouched and still A's.
    history = secure.client.get(f"/chat/history/{thread}", headers=A).json()
    assert [m["role"] for m in history["messages"]] == ["human", "assistant"]
    assert secure.client.get(f"/chat/jobs/{job}", headers=A).json()["status"] == "succeeded"


def test_a_thread_id_is_private_to_its_key(secure: Stack, store: redis.Redis) -> None:
    chosen = f"both-chose-{uuid.uuid4().hex}"
    said = {"b": words("b's words"), "a": words("a's words")}

    mine = secure.client.post("/chat", json={"message": said["b"], "thread_id": chosen},
                              headers=B)
    theirs = secure.client.post("/chat", json={"message": said["a"], "thread_id": chosen},
                                headers={**A, "Idempotency-Key": "same-name"})

    assert mine.status_code == 200, mine.text
    assert theirs.status_code == 200, theirs.text
    assert mine.json()["thread_id"] == theirs.json()["thread_id"] == chosen
    for headers, own, other in ((B, said["b"], said["a"]), (A, said["a"], said["b"])):
        history = secure.client.get(f"/chat/history/{chosen}", headers=headers)
        assert history.status_code == 200, history.text
        assert history.json()["thread_id"] == chosen
        assert history.json()["messages"][0]["content"] == own
        assert other not in history.text
    # Either key deleting its thread leaves the other's.
    assert secure.client.delete(f"/chat/history/{chosen}", headers=B).status_code == 204
    assert secure.client.get(f"/chat/history/{chosen}", headers=B).status_code == 404
    assert len(secure.client.get(f"/chat/history/{chosen}",
                                 headers=A).json()["messages"]) == 2
    # What a key is answered about an id it never used says nothing of the
    # other key's use of it.
    unused = f"nobody-chose-{uuid.uuid4().hex}"
    for path in (f"/chat/history/{chosen}", f"/threads/{chosen}"):
        taken = secure.client.get(path, headers=B)
        free = secure.client.get(path.replace(chosen, unused), headers=B)
        assert taken.status_code == free.status_code == 404
        assert taken.json() == free.json()
    # No Redis key names the id bare: each is the owner's.
    assert not [k for k in store.scan_iter(f"*:{chosen}:*")]


def test_a_langgraph_thread_id_is_private_to_its_key(secure: Stack) -> None:
    chosen = f"lg-both-{uuid.uuid4().hex}"
    made = {name: secure.client.post("/threads", headers=headers, json={
        "thread_id": chosen, "metadata": {"who": name}})
        for name, headers in (("a", A), ("b", B))}

    for name, headers in (("a", A), ("b", B)):
        assert made[name].status_code == 200, made[name].text
        assert made[name].json()["thread_id"] == chosen
        got = secure.client.get(f"/threads/{chosen}", headers=headers).json()
        assert got["metadata"]["who"] == name
        found = secure.client.post("/threads/search", headers=headers,
                                   json={"ids": [chosen]}).json()
        assert [(t["thread_id"], t["metadata"]["who"]) for t in found] == [(chosen, name)]
    # Each key's run stores into its own thread only.
    run = secure.client.post(f"/threads/{chosen}/runs/wait", headers=A, json={
        "assistant_id": "chat", "input": {"messages": [{"type": "human",
                                                         "content": words("a runs")}]}})
    assert run.status_code == 200, run.text
    a_state = secure.client.get(f"/threads/{chosen}/state", headers=A).json()
    b_state = secure.client.get(f"/threads/{chosen}/state", headers=B).json()
    assert a_state["checkpoint"]["thread_id"] == chosen
    assert len(a_state["values"]["messages"]) == 2
    assert b_state["values"] == {} and b_state["checkpoint"] is None


# --- Limits -----------------------------------------------------------------------


def test_an_oversized_body_is_413_and_nothing_is_queued(secure: Stack,
                                                        store: redis.Redis) -> None:
    secure.groq_client.delete("/_calls").raise_for_status()
    before = queued(store)
    huge = json.dumps({"message": "x" * 600_000}).encode()

    declared = secure.client.post("/chat", content=huge, headers={
        **A, "Content-Type": "application/json"})

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for start in range(0, len(huge), 64_000):
            yield huge[start:start + 64_000]

    streamed = secure.client.post("/chat", content=chunks(), headers={
        **A, "Content-Type": "application/json"})

    for reply in (declared, streamed):
        assert reply.status_code == 413
        assert "too large" in reply.json()["detail"]
    assert queued(store) == before
    assert secure.llm_calls() == []


def test_over_the_client_limit_is_429_until_the_window_moves(limited: Stack) -> None:
    with redis.Redis.from_url(limited.env["REDIS_URL"], decode_responses=True) as store:
        for _ in range(5):
            assert limited.client.get("/chat/jobs/nothing", headers=A).status_code == 404

        over = limited.client.post("/chat", json={"message": words("one too many")}, headers=A)

        assert over.status_code == 429
        assert 1 <= int(over.headers["retry-after"]) <= 2
        assert "detail" in over.json()
        assert queued(store) == (0, 0)
        # Other clients, the probes and unauthenticated callers are not held back.
        assert limited.client.get("/chat/jobs/nothing", headers=B).status_code == 404
        assert limited.client.get("/healthz").status_code == 200
        assert limited.client.get("/chat/jobs/nothing").status_code == 401

        time.sleep(int(over.headers["retry-after"]))
        assert limited.client.get("/chat/jobs/nothing", headers=A).status_code == 404


# --- Hostile identifiers ----------------------------------------------------------

HOSTILE_PATH_IDS = [
    "..%2F..%2Fetc%2Fpasswd", "%2E%2E", "..", "a%00b", "%00", "abc%0A", "abc%0D%0Aset-cookie",
    "%EF%BC%A1%EF%BC%A2", "%D0%B0bc",  # fullwidth "AB"; Cyrillic "a", then "bc"
    "a%20b", "a.b", "%3Bdrop", "%25", "x" * 10_240, "%C0%AE%C0%AE",
]
# Look-alikes: fullwidth "abc", and "abc" with a Cyrillic "a".
HOSTILE_BODY_IDS = ["../x", "a/b", "a\x00b", "\uff41\uff42\uff43", "\u0430bc", "x" * 10_240,
                    "abc\n", "", " "]


def test_hostile_ids_in_paths_are_refused_never_500(secure: Stack) -> None:
    for raw in HOSTILE_PATH_IDS:
        for method, template in [("GET", "/chat/history/{}"), ("DELETE", "/chat/history/{}"),
                                 ("GET", "/chat/jobs/{}"), ("GET", "/chat/jobs/{}/events"),
                                 ("POST", "/chat/jobs/{}/cancel")]:
            url = httpx.URL(str(secure.client.base_url).rstrip("/") + template.format(raw))
            reply = secure.client.request(method, url, headers=A)
            # 405: a client may fold "/chat/history/.." into "/chat/" before sending.
            assert reply.status_code in (404, 405, 422), (method, raw[:40], reply.status_code)
            assert "detail" in reply.json()


def test_hostile_ids_in_bodies_and_headers_are_refused(secure: Stack,
                                                       store: redis.Redis) -> None:
    before = queued(store)
    for thread in HOSTILE_BODY_IDS:
        reply = secure.client.post("/chat", json={"message": "hi", "thread_id": thread},
                                   headers=A)
        assert reply.status_code == 422, (thread[:40], reply.text)
        assert "thread_id" in reply.json()["detail"]
    assert queued(store) == before
    assert secure.client.get("/chat/jobs/x/events", headers={
        **A, "Last-Event-ID": "../../0"}).status_code == 400


def test_request_ids_are_echoed_only_when_valid(secure: Stack) -> None:
    offered = f"req-{uuid.uuid4().hex}"
    assert secure.client.get("/healthz", headers={"X-Request-ID": offered}).headers[
        "x-request-id"] == offered
    for bad in ["../evil", "a b", "x" * 200, "\uff41"]:
        answered = secure.client.get("/healthz", headers={"X-Request-ID": bad.encode()})
        assert re.fullmatch(r"[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}",
                            answered.headers["x-request-id"]), bad


def test_no_hostile_input_reached_a_redis_or_s3_key(secure: Stack, store: redis.Redis) -> None:
    safe = re.compile(r"[A-Za-z0-9_:./-]+")
    for key in store.scan_iter():
        assert safe.fullmatch(key) and ".." not in key, key
    s3 = boto3.client("s3", endpoint_url=secure.env["S3_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    listed = s3.list_objects_v2(Bucket=secure.env["S3_BUCKET_NAME"]).get("Contents", [])
    assert listed
    for item in listed:
        assert safe.fullmatch(item["Key"]) and ".." not in item["Key"], item["Key"]


# --- Logs (last: it reads what every test above wrote) -----------------------------


def test_logs_hold_ids_but_no_key_and_no_message(secure: Stack) -> None:
    request_id = f"req-{uuid.uuid4().hex}"
    message = words("the most private words")
    with secure.client.stream("POST", "/chat?stream=true", json={"message": message},
                              headers={**A, "X-Request-ID": request_id}) as reply:
        job = reply.headers["x-job-id"]
        events = list(read_events(reply))
    assert events[-1].type == "done"
    # The last lines come just after the stream's end: the turn's, in a
    # worker, and the request's, in the gateway.
    deadline = time.monotonic() + 10
    while not (any("turn_succeeded" in line and job in line
                   for w in secure.workers for line in w.log().splitlines())
               and any('"request"' in line and request_id in line
                       for line in secure.gateway.log().splitlines())):
        assert time.monotonic() < deadline, "the turn's or the request's last line is missing"
        time.sleep(0.05)

    gateway = secure.gateway.log()
    logs = "\n".join([gateway, *(w.log() for w in secure.workers)])
    for secret in (KEY_A, KEY_B, GROQ_KEY, "Bearer "):
        assert secret not in logs, secret
    for sent in SENT:
        assert sent not in logs, sent
        assert sent.split()[-1] not in logs, sent  # not even its unique part
    for hostile in ("passwd", ";drop", "../evil", "set-cookie"):
        assert hostile not in logs, hostile
    # Structured: every gateway line is JSON, and the turn's lines carry its ids.
    lines = [json.loads(line) for line in gateway.splitlines() if line.strip()]
    accepted = [e for e in lines if e.get("event") == "job_accepted"
                and e.get("request_id") == request_id]
    assert accepted and accepted[0]["job_id"] == job
    assert accepted[0]["user_message"] == "[redacted]"
    assert any(e.get("event") == "request" and e.get("request_id") == request_id
               and e.get("route") == "/chat" for e in lines)
