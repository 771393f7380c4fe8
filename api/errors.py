"""Errors the API answers with, all rendered as JSON with a `detail`.

    ApiError (status_code)
     ├── NotFound           404
     ├── Conflict           409
     ├── Invalid            422
     ├── Unauthorized       401
     ├── TooManyRequests    429 (Retry-After)
     ├── JobFailed          502 / 504, with the job id
     └── Unavailable        503, naming the dependency that is down

Starlette's HTTPException (404/405 of routing, and 413 from the body limit
in api/middleware.py, which must pass FastAPI's body parsing) is rendered the
same way. Exceptions of Redis, S3 and the broker are mapped to `Unavailable`
in one place (`install_handlers`); anything else is a 500 without a stack trace.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from shared.checkpoint import S3Unavailable
from shared.redis_client import CLUSTER_UNAVAILABLE

log = structlog.get_logger("api")

# The type of a validation error that is a size limit passed: answered 413.
TOO_LARGE = "too_large"

# Seconds a client refused for load is told to wait: a turn or two.
BUSY_RETRY_AFTER = 5


class ApiError(Exception):
    status_code = 500

    def __init__(self, detail: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extra = extra


class BadRequest(ApiError):
    status_code = 400


class NotFound(ApiError):
    status_code = 404


class Forbidden(ApiError):
    status_code = 403


class TooLarge(ApiError):
    status_code = 413


class Conflict(ApiError):
    status_code = 409


class Invalid(ApiError):
    """A well-formed request this server cannot carry out as asked."""

    status_code = 422


class Unauthorized(ApiError):
    status_code = 401


class TooManyRequests(ApiError):
    status_code = 429


class Unavailable(ApiError):
    status_code = 503


class JobFailed(ApiError):
    def __init__(self, detail: str, job_id: str, status_code: int) -> None:
        super().__init__(detail, job_id=job_id)
        self.status_code = status_code


def _json(status: int, detail: Any, headers: dict[str, str] | None = None,
          **extra: Any) -> JSONResponse:
    return JSONResponse({"detail": detail, **extra}, status_code=status, headers=headers)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"] if p != "body") or "body"
        parts.append(f"{where}: {str(err['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)


def _allowed_methods(request: Request) -> str:
    """Every documented method on the request's path. Each route (GET and
    DELETE of one path are two) would name only its own in its 405.

    Of the paths that match, the most literal ones are the request's:
    /threads/search is itself, not /threads/{thread_id} searching for "search".
    """
    matches: dict[int, set[str]] = {}
    for template, operations in request.app.openapi()["paths"].items():
        parts = re.split(r"\{[^/}]+\}", template)
        pattern = "[^/]+".join(re.escape(part) for part in parts)
        if re.fullmatch(pattern, request.url.path):
            matches.setdefault(len(parts), set()).update(m.upper() for m in operations)
    methods = matches[min(matches)] if matches else set()
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods))


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _json(exc.status_code, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Over a size limit is 413, like a body over MAX_BODY_BYTES.
        too_large = any(err["type"] == TOO_LARGE for err in exc.errors())
        return _json(413 if too_large else 422, _validation_detail(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return _json(exc.status_code, exc.detail, headers)

    @app.exception_handler(OperationalError)
    async def broker_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("dependency_down", dependency="broker", error=type(exc).__name__)
        return _json(503, "the task queue (broker) is unavailable, try again later",
                     {"Retry-After": "5"})

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def redis_down(_: Request, exc: Exception) -> JSONResponse:
        log.warning("dependency_down", dependency="redis", error=type(exc).__name__)
        return _json(503, "redis unavailable, try again later", {"Retry-After": "5"})

    for unavailable in CLUSTER_UNAVAILABLE:
        app.add_exception_handler(unavailable, redis_down)

    @app.exception_handler(OutOfMemoryError)
    async def redis_full(_: Request, exc: Exception) -> JSONResponse:
        # maxmemory with noeviction: Redis refuses a script or a transaction
        # whole, so what was refused left nothing half-written.
        log.warning("dependency_full", dependency="redis")
        return _json(503, "redis is out of memory: nothing was stored, try again later",
                     {"Retry-After": "30"})

    @app.exception_handler(S3Unavailable)
    async def s3_down(_: Request, exc: S3Unavailable) -> JSONResponse:
        log.warning("dependency_down", dependency="s3", error=type(exc).__name__)
        return _json(503, "storage (S3) unavailable, try again later", {"Retry-After": "5"})

    @app.exception_handler(Exception)
    async def crash(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error=type(exc).__name__)
        return _json(500, "internal error")
