"""What reaches the logs: no secret, no message body, no library chatter that names either."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from shared.logging import QUIET_LOGGERS, REDACTED, Redact, configure_logging, secrets_of
from shared.settings import Settings

API_KEY = "sk-live-0123456789abcdef"
GROQ_KEY = "gsk_abcdefghijklmnop"


@pytest.fixture
def settings() -> Iterator[Settings]:
    yield Settings(_env_file=None, API_KEYS=f"{API_KEY},other-key-0123456789",
                   GROQ_API_KEY=GROQ_KEY, AWS_SECRET_ACCESS_KEY="aws-secret-value",
                   LOG_JSON=True)
    structlog.reset_defaults()


def test_every_secret_setting_is_masked() -> None:
    redact = Redact(["a-long-secret", "short"])
    event = redact(None, "info", {"event": "x", "url": "http://h/?k=a-long-secret&j=short",
                                  "n": 3})
    assert event == {"event": "x", "url": f"http://h/?k={REDACTED}&j=short", "n": 3}


def test_message_bodies_are_dropped_unless_asked_for() -> None:
    event = {"event": "job_accepted", "user_message": "my words", "reply": "its words",
             "chars": 8}
    assert Redact([])(None, "info", dict(event)) == {
        **event, "user_message": REDACTED, "reply": REDACTED}
    assert Redact([], keep_bodies=True)(None, "info", dict(event)) == event


def test_secrets_of_names_keys_of_clients_providers_and_aws(settings: Settings) -> None:
    assert set(secrets_of(settings)) == {API_KEY, "other-key-0123456789", GROQ_KEY,
                                         "aws-secret-value"}


def test_our_lines_and_library_lines_are_masked_alike(settings: Settings,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(settings)
    structlog.get_logger("t").warning("oops", detail=f"Authorization: Bearer {API_KEY}")
    logging.getLogger("some.library").warning("calling with key=%s", GROQ_KEY)
    try:
        raise ValueError(f"bad key {API_KEY}")
    except ValueError:
        structlog.get_logger("t").exception("crashed")

    written = capsys.readouterr().err
    assert API_KEY not in written
    assert GROQ_KEY not in written
    assert written.count(REDACTED) >= 3
    assert "ValueError" in written  # the traceback is there, as plain text


def test_chatty_libraries_and_the_raw_access_log_are_quiet(settings: Settings) -> None:
    configure_logging(settings)
    for name in QUIET_LOGGERS:
        assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
    assert "uvicorn.access" in QUIET_LOGGERS
    assert {"httpx", "botocore"} <= set(QUIET_LOGGERS)


def test_configuring_twice_leaves_one_handler(settings: Settings) -> None:
    configure_logging(settings)
    configure_logging(settings)
    ours = [h for h in logging.getLogger().handlers if type(h).__name__ == "_Handler"]
    assert len(ours) == 1


def test_exception_messages_and_provider_texts_are_kept_out_unless_asked_for(
        settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    prompt = "my private question about my health"
    configure_logging(settings)
    try:
        try:
            raise KeyError(f"the provider says: {prompt}")
        except KeyError as exc:
            raise RuntimeError(f"while sending {prompt}") from exc
    except RuntimeError:
        structlog.get_logger("t").exception("turn_crashed")
    structlog.get_logger("t").warning("turn_rejected", error="the LLM provider refused",
                                      provider_error=f"400: {prompt}")

    written = capsys.readouterr().err
    assert prompt not in written
    assert "builtins.KeyError" in written and "builtins.RuntimeError" in written
    assert "test_security_logging.py" in written  # the frames are there

    configure_logging(settings.model_copy(update={"LOG_MESSAGE_BODIES": True}))
    structlog.get_logger("t").warning("turn_rejected", provider_error=f"400: {prompt}")
    assert prompt in capsys.readouterr().err
