"""What the routes answer besides success, for the OpenAPI schema.

Every route behind auth may answer 401, 413, 422, 429 and 503; `errors`
adds the codes particular to a route. (Without API_KEYS no 401 is sent, and
api/routes/docs.py takes it out of the schema.) Headers a client acts on are
declared with the status that carries them.
"""

from __future__ import annotations

from typing import Any

from api.schemas import ErrorBody

Responses = dict[int | str, dict[str, Any]]


def _event(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """One kind of Server-Sent Event: its name, and its JSON `data`."""
    return {"type": "object", "required": ["event", "data"], "properties": {
        "event": {"const": name},
        "data": {"type": "string", "contentMediaType": "application/json",
                 "contentSchema": data},
        # Absent only on an outcome rebuilt after the job's stream expired.
        "id": {"type": "string", "pattern": r"^\d+-\d+$"},
    }}


def _object(**properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": list(properties), "properties": properties}


_TEXT = {"type": "string"}
# `itemSchema` (OpenAPI 3.2) describes each event of the stream.
SSE_CONTENT = {"text/event-stream": {"itemSchema": {"oneOf": [
    _event("token", _object(text=_TEXT)),
    _event("reset", _object(attempt={"type": "integer"})),
    _event("done", {"$ref": "#/components/schemas/ChatReply"}),
    _event("error", _object(detail=_TEXT, job_id=_TEXT)),
    _event("cancelled", _object(job_id=_TEXT)),
]}}}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


RETRY_AFTER = _header("Seconds to wait before trying again.",
                      {"type": "string", "pattern": r"^\d+$"})

_ERRORS: Responses = {
    400: {"description": "Malformed request: a body that is not UTF-8, or a bad "
                         "Last-Event-ID."},
    401: {"description": "Missing or unknown API key (when API_KEYS is set).",
          "headers": {"WWW-Authenticate": _header("Always `Bearer`.")}},
    403: {"description": "Not this key's to change (a graph's default assistant)."},
    404: {"description": "Unknown, expired, or another API key's."},
    409: {"description": "Conflicts with the state of the job or the Idempotency-Key."},
    413: {"description": "Request body over MAX_BODY_BYTES (it was not read), or metadata "
                         "over 64 keys or 16 KB once merged (nothing was changed)."},
    422: {"description": "Invalid parameters or body; `detail` says which."},
    429: {"description": "Over CLIENT_RATE_LIMIT requests in the window, or (POST /chat) "
                         "MAX_QUEUED_PER_CLIENT jobs of this client or MAX_QUEUED_PER_THREAD "
                         "of this thread unfinished, or (a wait or a stream) MAX_WAITS_PER_KEY "
                         "held by this key; nothing was queued.",
          "headers": {"Retry-After": RETRY_AFTER}},
    502: {"description": "The job failed (the LLM refused it, or retries ran out)."},
    503: {"description": "Redis, S3 or the broker is down, or the gateway holds "
                         "GATEWAY_MAX_WAITERS waiting clients; nothing was queued. "
                         "Try again later.",
          "headers": {"Retry-After": RETRY_AFTER}},
    504: {"description": "The job failed: the LLM timed out on every attempt."},
}
_COMMON = (401, 413, 422, 429, 503)


def errors(*codes: int) -> Responses:
    """The error responses of a route: the common ones and `codes`."""
    return {code: {"model": ErrorBody, **_ERRORS[code]}
            for code in sorted({*_COMMON, *codes})}
