"""All configuration, read once from the environment (or a `.env` file).

Names are the environment variables' names, as the contract fixes them.
A wrong or missing setting stops the process at start with one line naming it.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.checkpoint.serde import decode_key

Positive = Annotated[int, Field(gt=0)]
DAY = 24 * 3600


# A key shorter than this could be guessed, or found from its owner's digest.
MIN_API_KEY_CHARS = 16


class Settings(BaseSettings):
    """The service's settings; see `.env.example` for what each one does."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    AWS_ACCESS_KEY_ID: str | None = None
    AWS_SECRET_ACCESS_KEY: SecretStr | None = None
    AWS_REGION: str = "us-east-1"
    S3_BUCKET_NAME: str = Field("chat-memory", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    S3_ENDPOINT_URL: str | None = None
    S3_PREFIX: str = Field("chat_histories/", pattern=r"^([A-Za-z0-9_-][A-Za-z0-9_.-]*/)*$")
    # Checkpoint saver (shared/checkpoint): checkpoints kept per thread, pruned as
    # turns are saved (0 keeps all), and the base64 AES key that encrypts them at
    # rest (unset: not encrypted); passed as keep_last= and encryption_key=.
    # The S3 client's connection pool, per process (gateway, or worker child).
    S3_MAX_CONNECTIONS: int = Field(64, ge=1, le=10_000)
    CHECKPOINT_KEEP_LAST: int = Field(20, ge=0)
    CHECKPOINT_ENCRYPTION_KEY: SecretStr | None = None

    LLM_PROVIDER: Literal["groq", "openai", "echo"] | None = None
    GROQ_API_KEY: SecretStr | None = None
    GROQ_MODEL: str = "llama-3.3-70b-versatile"
    GROQ_API_BASE: str | None = None
    OPENAI_BASE_URL: str | None = None
    OPENAI_API_KEY: SecretStr | None = None
    OPENAI_MODEL: str | None = None
    LLM_TIMEOUT_SECONDS: float = Field(60.0, gt=0, le=600)
    LLM_MAX_TOKENS: Positive | None = None
    CONTEXT_MAX_TOKENS: Positive = 6000
    # Messages a conversation's state keeps (the LLM sees at most these, cut to
    # CONTEXT_MAX_TOKENS); the transcript keeps them all for history.
    CONTEXT_WINDOW_MESSAGES: int = Field(64, ge=2, le=10_000)

    # The langgraph.json declaring the graphs served (the built-in `chat` is
    # always there unless the file declares that id); the graph POST /chat runs.
    LANGGRAPH_CONFIG: str | None = None
    CHAT_GRAPH_ID: str = Field("chat", pattern=r"^[A-Za-z0-9_.-]{1,128}$")

    LANGSMITH_API_KEY: SecretStr | None = None
    LANGSMITH_TRACING: bool = False

    RATE_LIMIT_CALLS: Positive = 50
    RATE_LIMIT_PERIOD: Positive = 60

    REDIS_URL: str = Field("redis://localhost:6379/0", pattern=r"^rediss?://")
    # REDIS_URL is one node of a Redis Cluster (the client finds the others).
    # Kombu's Redis transport cannot use a cluster, so the broker is then a
    # Redis or RabbitMQ of its own (CELERY_BROKER_URL, required).
    REDIS_CLUSTER: bool = False
    # Celery's broker: a Redis (by default the one of REDIS_URL) or RabbitMQ.
    # Turns reach it only through Celery's own API (shared/queue.py).
    CELERY_BROKER_URL: str | None = Field(None, pattern=r"^(rediss?|amqps?|pyamqp)://")
    # Connections per process (gateway, or worker child); see shared/redis_client.py.
    REDIS_MAX_CONNECTIONS: int = Field(50, ge=4, le=10_000)
    SESSION_TTL_SECONDS: Positive = 30 * DAY
    CLEANUP_INTERVAL_SECONDS: Positive = 3600
    CLEANUP_RECONCILE_SECONDS: Positive = DAY
    CHAT_WAIT_TIMEOUT: float = Field(60.0, ge=0, le=300)
    JOB_TTL_SECONDS: int = Field(2 * DAY, ge=DAY)
    TURN_MAX_RETRIES: int = Field(5, ge=0, le=20)
    TURN_TIME_LIMIT: Positive = 150
    WORKER_CONCURRENCY: Positive = 100
    # Each worker process serves its own /metrics on this port (unset: none),
    # so Prometheus scrapes every pod; see worker/metrics_server.py.
    WORKER_METRICS_PORT: int | None = Field(None, ge=1, le=65535)
    # The file a worker touches at each of Celery's heartbeats, for a liveness
    # probe that costs no broadcast (unset: none); see worker/heartbeat.py.
    WORKER_HEARTBEAT_FILE: str | None = None
    # A dead worker's thread is taken over after its lease runs out and the
    # next recovery sweep (run by the workers) sees it; see worker/recovery.py.
    THREAD_LEASE_SECONDS: int = Field(15, ge=3, le=300)
    RECOVERY_INTERVAL_SECONDS: float = Field(5.0, gt=0, le=300)
    RECOVERY_STALL_SECONDS: float = Field(30.0, gt=0)

    # Clients one gateway process holds at once, waiting on POST /chat or
    # reading a stream; past it new ones get 503 with Retry-After, before
    # anything is queued.
    GATEWAY_MAX_WAITERS: Positive = 5000
    # Of those, what one key (or address without auth) may hold, so no one
    # key's streams turn every other key away; past it: 429 for that key.
    MAX_WAITS_PER_KEY: Positive = 1000
    # Unfinished jobs one client (API key, or address without auth) may have,
    # and one thread's inbox may hold; past them: 429, nothing queued.
    MAX_QUEUED_PER_CLIENT: Positive = 200
    MAX_QUEUED_PER_THREAD: Positive = 50
    # Conversations one API key may have (with auth on); past it a message
    # that would start another is 429, nothing queued.
    MAX_THREADS_PER_CLIENT: Positive = 10_000

    API_KEYS: str | None = None
    # The server's secret in the digest that names a key's owner (an HMAC):
    # without it, a weak key could be found again from a bucket's metadata or
    # a Redis dump. Changing it re-keys every owner (see README, Security).
    OWNER_ID_SECRET: SecretStr | None = None
    # The bearer token GET /metrics takes instead of an API key: a scraper
    # needs no tenant's key, and no tenant sees every tenant's counts.
    METRICS_TOKEN: str | None = None
    # Origins a browser may call the API from (a UI served elsewhere), comma-separated.
    CORS_ORIGINS: str | None = None
    CLIENT_RATE_LIMIT: int = Field(0, ge=0)
    # The limit's window; only tests shorten it, so they need not wait a minute.
    CLIENT_RATE_WINDOW_SECONDS: Positive = 60
    # The largest valid body is ~385 KB: 32,000 characters outside the BMP,
    # each sent as a JSON escape pair (12 bytes), as json.dumps does by default.
    MAX_BODY_BYTES: int = Field(512 * 1024, ge=1024)

    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    LOG_JSON: bool = False
    LOG_MESSAGE_BODIES: bool = False

    @field_validator("CHECKPOINT_ENCRYPTION_KEY")
    @classmethod
    def _key_decodes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_key(value.get_secret_value())
        return value

    @field_validator("API_KEYS")
    @classmethod
    def _keys_are_long(cls, value: str | None) -> str | None:
        short = [k for k in (value or "").split(",") if 0 < len(k.strip()) < MIN_API_KEY_CHARS]
        if short:
            raise ValueError(f"every key needs {MIN_API_KEY_CHARS} characters or more "
                             f"({len(short)} shorter); make one with: python3 -c "
                             '"import secrets; print(secrets.token_urlsafe(24))"')
        return value

    @model_validator(mode="after")
    def _provider_is_usable(self) -> Settings:
        provider = self.llm_provider
        if provider == "groq" and self.GROQ_API_KEY is None:
            raise ValueError("GROQ_API_KEY: required when LLM_PROVIDER=groq")
        if provider == "openai" and not (self.OPENAI_BASE_URL and self.OPENAI_MODEL):
            raise ValueError("OPENAI_BASE_URL and OPENAI_MODEL: required when LLM_PROVIDER=openai")
        return self

    @model_validator(mode="after")
    def _broker_is_not_the_cluster(self) -> Settings:
        broker = self.CELERY_BROKER_URL
        if self.REDIS_CLUSTER and (broker is None or _address(broker) == _address(self.REDIS_URL)):
            raise ValueError("CELERY_BROKER_URL: required when REDIS_CLUSTER=1, and not the "
                             "cluster's node (Celery cannot queue on a Redis Cluster): "
                             "a Redis or RabbitMQ of its own")
        return self

    @property
    def llm_provider(self) -> Literal["groq", "openai", "echo"]:
        """The provider in use: explicit, else groq when a key is set, else echo."""
        if self.LLM_PROVIDER is not None:
            return self.LLM_PROVIDER
        return "groq" if self.GROQ_API_KEY is not None else "echo"

    @property
    def api_keys(self) -> frozenset[str]:
        return frozenset(k.strip() for k in (self.API_KEYS or "").split(",") if k.strip())

    @property
    def owner_id_key(self) -> bytes | None:
        secret = self.OWNER_ID_SECRET
        return secret.get_secret_value().encode() if secret is not None else None

    @property
    def cors_origins(self) -> list[str]:
        return [o.strip() for o in (self.CORS_ORIGINS or "").split(",") if o.strip()]

    @property
    def s3_url(self) -> str:
        return f"s3://{self.S3_BUCKET_NAME}/{self.S3_PREFIX}"


def _address(url: str) -> tuple[str | None, int | None]:
    parts = urlsplit(url)
    return parts.hostname, parts.port or (6379 if parts.scheme.startswith("redis") else None)


def describe(error: ValidationError) -> str:
    """One line naming every bad setting, for the operator."""
    parts = []
    for item in error.errors():
        name = ".".join(str(p) for p in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {message}" if name else message)
    return "invalid configuration: " + "; ".join(parts)


@lru_cache
def get_settings() -> Settings:
    """The process's settings; exits with one clear line when they are wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        print(describe(exc), file=sys.stderr)
        raise SystemExit(2) from None
