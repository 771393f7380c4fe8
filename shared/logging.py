"""Structured logs (structlog), with request, job and thread ids bound as context.

Everything goes to stderr through one renderer (JSON when LOG_JSON), also
what libraries log through the standard library (uvicorn, botocore), so a log
shipper sees one format. Before rendering, `Redact` guards what is written:
fields carrying users' words (`BODY_FIELDS`) are dropped unless
LOG_MESSAGE_BODIES is on, and any configured secret (API keys, provider and
AWS keys) found in a value is masked, whoever logged it. Tracebacks are
rendered as plain text, never with local variables, so they pass the mask too.

uvicorn's access log is silenced: it writes the raw path, ids and all, before
anything has validated it; the gateway logs each request by its route instead.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

import structlog
from pydantic import SecretStr
from structlog.typing import EventDict, Processor, WrappedLogger

from shared.settings import Settings

BODY_FIELDS = frozenset({"user_message", "reply"})
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
            structlog.processors.format_exc_info,
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
                    structlog.processors.format_exc_info, redact, renderer],
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


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
