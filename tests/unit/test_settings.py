from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from shared.ids import digest_id, is_valid_id
from shared.settings import Settings, describe
from shared.storage import open_saver


def settings(**env: object) -> Settings:
    return Settings(_env_file=None, **env)  # type: ignore[call-arg]


def test_defaults_follow_the_contract() -> None:
    s = settings()
    assert (s.RATE_LIMIT_CALLS, s.RATE_LIMIT_PERIOD) == (50, 60)
    assert s.REDIS_URL == "redis://localhost:6379/0"
    assert s.S3_PREFIX == "chat_histories/"
    assert s.SESSION_TTL_SECONDS == 30 * 24 * 3600
    assert s.CLEANUP_INTERVAL_SECONDS == 3600
    assert s.CHAT_WAIT_TIMEOUT == 60
    assert s.CLIENT_RATE_LIMIT == 0
    assert s.api_keys == frozenset()


def test_provider_is_echo_without_a_key_and_groq_with_one() -> None:
    assert settings().llm_provider == "echo"
    assert settings(GROQ_API_KEY="gsk-x").llm_provider == "groq"
    assert settings(GROQ_API_KEY="gsk-x", LLM_PROVIDER="echo").llm_provider == "echo"


@pytest.mark.parametrize(("env", "named"), [
    ({"RATE_LIMIT_CALLS": 0}, "RATE_LIMIT_CALLS"),
    ({"SESSION_TTL_SECONDS": -1}, "SESSION_TTL_SECONDS"),
    ({"REDIS_URL": "http://x"}, "REDIS_URL"),
    ({"CELERY_BROKER_URL": "kafka://x"}, "CELERY_BROKER_URL"),
    ({"REDIS_CLUSTER": "1"}, "CELERY_BROKER_URL"),
    ({"REDIS_CLUSTER": "1", "REDIS_URL": "redis://node:7000/0",
      "CELERY_BROKER_URL": "redis://node:7000/1"}, "CELERY_BROKER_URL"),
    ({"LLM_PROVIDER": "groq"}, "GROQ_API_KEY"),
    ({"LLM_PROVIDER": "openai"}, "OPENAI_BASE_URL"),
    ({"S3_BUCKET_NAME": "Bad_Bucket"}, "S3_BUCKET_NAME"),
    ({"S3_PREFIX": "../up/"}, "S3_PREFIX"),
    ({"CHAT_WAIT_TIMEOUT": 301}, "CHAT_WAIT_TIMEOUT"),
    ({"CHECKPOINT_ENCRYPTION_KEY": "c2hvcnQ="}, "CHECKPOINT_ENCRYPTION_KEY"),
    ({"CHECKPOINT_KEEP_LAST": -1}, "CHECKPOINT_KEEP_LAST"),
])
def test_a_wrong_setting_is_named_in_one_line(env: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**env)
    line = describe(caught.value)
    assert named in line
    assert "\n" not in line


@pytest.mark.parametrize("broker", ["redis://queue:6379/0", "redis://node:7001/0",
                                    "amqp://guest:guest@node:5672//"])
def test_a_cluster_takes_a_broker_of_its_own(broker: str) -> None:
    s = settings(REDIS_CLUSTER="1", REDIS_URL="redis://node:7000", CELERY_BROKER_URL=broker)
    assert (True, broker) == (s.REDIS_CLUSTER, s.CELERY_BROKER_URL)


def test_api_keys_are_split_and_trimmed() -> None:
    a, b, c = "a" * 16, "b" * 20, "c" * 32
    assert settings(API_KEYS=f" {a}, {b} ,,{c}").api_keys == frozenset({a, b, c})


def test_a_key_short_enough_to_guess_stops_the_start() -> None:
    with pytest.raises(ValidationError) as caught:
        settings(API_KEYS=f"{'a' * 32},short-key")
    line = describe(caught.value)
    assert "API_KEYS" in line and "16 characters" in line and "short-key" not in line


def test_owner_ids_are_keyed_by_the_server_secret() -> None:
    key = "k" * 24
    plain, salted = settings().owner_id_key, settings(OWNER_ID_SECRET="s" * 32).owner_id_key
    assert plain is None and salted == b"s" * 32
    assert digest_id(key) == hashlib.sha256(key.encode()).hexdigest()[:32]
    assert digest_id(key, salted) not in (digest_id(key), digest_id(key, b"other"))
    assert is_valid_id(digest_id(key, salted))


def test_secrets_do_not_show_in_repr() -> None:
    assert "gsk-secret" not in repr(settings(GROQ_API_KEY="gsk-secret"))


async def test_the_s3_pool_is_sized_by_its_setting() -> None:
    # Opening the saver connects nowhere: no server is needed.
    async with open_saver(settings(S3_MAX_CONNECTIONS=7,
                                   S3_ENDPOINT_URL="http://127.0.0.1:9")) as saver:
        assert saver.client.meta.config.max_pool_connections == 7
