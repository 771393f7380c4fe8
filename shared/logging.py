"""Structured logs (structlog), with request, job and thread ids bound as context.

Everything goes to stderr through one renderer (JSON when LOG_JSON), also
what libraries log through the standard library (uvicorn, botocore), so a log
shipper sees one format. Before rendering, `Redact` guards what is written:
fields carrying users' words (`BODY_FIELDS`) are dropped unless
LOG_MESSAGE_BODIES is on, and any configured secret (API keys, provider and
AWS keys) found in a value is masked, whoever logged it. Tracebacks are
rendered as plain text, never with local variables, so they pass the mask too;
and without LOG_MESSAGE_BODIES they show each exception's type and frames but
not its message, which can quote what a user wrote (a provider's error
echoing the prompt, a graph's own exception).

uvicorn's access log is silenced: it writes the raw path, ids and all, before
anything has validated it; the gateway logs each request by its route instead.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable

import structlog
from pydantic import SecretStr
from structlog.typing import EventDict, Processor, WrappedLogger

from shared.settings import Settings

# Fields that may hold users' words: their messages, replies, and a provider's
# own error text (which can quote the request).
BODY_FIELDS = frozenset({"user_message", "reply", "provider_error"})
REDACTED = "[redacted]"
# Shorter values are not masked: replacing a word like "test" everywhere would
# garble the logs and hide nothing an attacker could not guess.
MIN_SECRET_CHARS = 8
# Their INFO lines name hosts and URLs, and at DEBUG some write headers.
# Celery's worker writes two INFO lines per task (received, succeeded): the
# turn logs its own start and end, with the job and thread ids.
QUIET_LOGGERS = ("uvicorn.access", "httpx", "httpcore", "botocore", "aiobotocore", "boto3",
                 "urllib3", "groq", "openai", "langsmith",
                 "celery.worker.strategy", "celery.app.trace")


class Redact:
    """A processor that drops message bodies and masks secrets."""

    def __init__(self, secrets: Iterable[str], keep_bodies: bool = False) -> None:
        self.secrets = tuple(s for s in secrets if len(s) >= MIN_SECRET_CHARS)
        self.keep_bodies = keep_bodies

    def __call__(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        if not self.keep_bodies:
            for name in BODY_FIELDS & event.keys():
                event[name] = REDACTED
        for name, value in event.items():
            if isinstance(value, str) and any(s in value for s in self.secrets):
                for secret in self.secrets:
                    value = value.replace(secret, REDACTED)
                event[name] = value
        return event


class FormatException:
    """A processor that renders `exc_info` as plain text in `exception`: with
    messages only if `keep_messages`, else types and frames alone."""

    def __init__(self, keep_messages: bool) -> None:
        self.keep_messages = keep_messages

    def __call__(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        exc_info = event.pop("exc_info", None)
        if exc_info is True:
            exc_info = sys.exc_info()
        error = exc_info if isinstance(exc_info, BaseException) else (
            exc_info[1] if isinstance(exc_info, tuple) else None)
        if error is not None:
            event["exception"] = ("".join(traceback.format_exception(error))
                                  if self.keep_messages else _without_messages(error))
        return event


def _without_messages(error: BaseException) -> str:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__)
    parts = [f"Traceback (most recent call last):\n{''.join(traceback.format_tb(e.__traceback__))}"
             f"{type(e).__module__}.{type(e).__qualname__}: {REDACTED}\n"
             for e in reversed(chain)]
    return "\nDuring the handling of the above, or caused by it:\n\n".join(parts)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value in the settings (API keys, and every SecretStr field,
    so a secret setting added later is covered too): none may reach a log line."""
    values = list(settings.api_keys)
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            values.append(value.get_secret_value())
    return values


def configure_logging(settings: Settings) -> None:
    redact = Redact(secrets_of(settings), settings.LOG_MESSAGE_BODIES)
    format_exception = FormatException(keep_messages=settings.LOG_MESSAGE_BODIES)
    renderer: Processor = (
        structlog.processors.JSONRenderer() if settings.LOG_JSON
        else structlog.dev.ConsoleRenderer(colors=False,
                                           exception_formatter=structlog.dev.plain_traceback)
    )
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            format_exception,
            redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[settings.LOG_LEVEL]),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    _route_stdlib(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.contextvars.merge_contextvars,
                           structlog.stdlib.add_log_level, structlog.stdlib.add_logger_name,
                           stamp],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    format_exception, redact, renderer],
    ))


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Ours, so configuring again replaces it rather than adding a second one."""


def _route_stdlib(formatter: logging.Formatter) -> None:
    """Third-party libraries log through the standard library at WARNING and up
    (uvicorn's own lines at INFO), rendered like everything else."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(sys.stderr)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    # uvicorn set up its own handlers before importing the app; let its lines
    # reach ours instead.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
