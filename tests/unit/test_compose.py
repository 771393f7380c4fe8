"""The deployment files: docker-compose.yml, Dockerfile, .dockerignore and .env.example.

No Docker daemon is needed: the compose file is checked as YAML here, and by
`docker-compose config` when that binary is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PYTHON_SERVICES = ("gateway", "worker", "beat")
WORKER_COMMAND = ["celery", "-A", "worker.celery_app", "worker", "--loglevel=INFO"]
BEAT_COMMAND = ["celery", "-A", "worker.celery_app", "beat", "--loglevel=INFO"]
GATEWAY_COMMAND = ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}; "$${...}" is an escaped,
# container-side reference and not compose's business.
COMPOSE_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
# Active ("KEY=v") and documented-but-unset ("# KEY=v") entries alike.
ENV_KEY = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose["services"]
    return result


def as_argv(command: str | list[str]) -> list[str]:
    return command.split() if isinstance(command, str) else [str(c) for c in command]


def conditions(service: dict[str, Any]) -> dict[str, str]:
    depends = service.get("depends_on", {})
    assert isinstance(depends, dict), "depends_on must use the long form, with conditions"
    return {name: spec["condition"] for name, spec in depends.items()}


def env_example_keys() -> set[str]:
    return set(ENV_KEY.findall(ENV_EXAMPLE.read_text()))


def dockerfile_cmd() -> list[str]:
    [line] = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines()
              if ln.startswith("CMD ")]
    return as_argv(yaml.safe_load(line.removeprefix("CMD ")))


def test_all_services_present(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"redis", "minio", "createbucket", *PYTHON_SERVICES}


def test_python_services_share_one_image_and_env(services: dict[str, dict[str, Any]]) -> None:
    minio_env = services["minio"]["environment"]
    for name in PYTHON_SERVICES:
        service = services[name]
        assert service["build"] == ".", name
        assert service["image"] == services["gateway"]["image"], name
        assert service["env_file"] in (".env", [".env"]), name
        env = service["environment"]
        assert env["REDIS_URL"] == "redis://redis:6379/0", name
        assert env["S3_ENDPOINT_URL"] == "http://minio:9000", name
        # The services log in to MinIO as its root user.
        assert env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"], name


def test_commands_match_entry_points(services: dict[str, dict[str, Any]]) -> None:
    gateway = services["gateway"]
    assert as_argv(gateway.get("command", dockerfile_cmd())) == GATEWAY_COMMAND
    assert as_argv(services["worker"]["command"]) == WORKER_COMMAND
    assert as_argv(services["beat"]["command"]) == BEAT_COMMAND


def test_worker_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    # Either would make `docker compose up --scale worker=N` fail for N > 1.
    assert "container_name" not in worker
    assert "ports" not in worker


def test_beat_runs_once(services: dict[str, dict[str, Any]]) -> None:
    beat = services["beat"]
    assert "ports" not in beat
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    assert beat.get("scale", 1) == 1


def test_gateway_publishes_8000(services: dict[str, dict[str, Any]]) -> None:
    assert [str(p) for p in services["gateway"]["ports"]] == ["8000:8000"]


@pytest.mark.parametrize("name", ["redis", "minio", "gateway", "worker"])
def test_healthchecks(services: dict[str, dict[str, Any]], name: str) -> None:
    test = services[name]["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")


def test_healthcheck_commands(services: dict[str, dict[str, Any]]) -> None:
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    gateway_check = " ".join(services["gateway"]["healthcheck"]["test"])
    # python:3.11-slim has no curl, so the probe must be Python.
    assert gateway_check.startswith("CMD python")
    assert "http://localhost:8000/healthz" in gateway_check


def test_depends_on_conditions(services: dict[str, dict[str, Any]]) -> None:
    storage = {"redis": "service_healthy", "minio": "service_healthy",
               "createbucket": "service_completed_successfully"}
    assert conditions(services["gateway"]) == storage
    assert conditions(services["worker"]) == storage
    assert conditions(services["beat"]) == {"redis": "service_healthy"}
    assert conditions(services["createbucket"]) == {"minio": "service_healthy"}


def test_redis_and_minio_persist_on_named_volumes(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    assert "--appendonly yes" in " ".join(as_argv(redis["command"]))
    minio = services["minio"]
    assert minio["image"].startswith("minio/minio")
    assert "9001" in " ".join(as_argv(minio["command"]))  # the console
    for name, path in (("redis", "/data"), ("minio", "/data")):
        [volume] = [v for v in services[name]["volumes"] if v.endswith(":" + path)]
        assert volume.split(":")[0] in compose["volumes"], name


def test_createbucket_is_an_idempotent_one_shot(services: dict[str, dict[str, Any]]) -> None:
    job = services["createbucket"]
    assert job["image"].startswith("minio/mc")
    assert job.get("restart", "no") == "no"
    argv = " ".join(as_argv(job.get("entrypoint", [])) + as_argv(job["command"]))
    assert "mb" in argv
    assert "--ignore-existing" in argv  # a rerun on a kept volume must still succeed
    assert "${S3_BUCKET_NAME:-chat-memory}" in argv


def test_every_compose_variable_is_in_env_example() -> None:
    used = set(COMPOSE_VAR.findall(COMPOSE_FILE.read_text()))
    assert used, "expected the compose file to use ${VAR} settings"
    assert used <= env_example_keys(), used - env_example_keys()


def test_env_example_lists_every_setting() -> None:
    missing = set(Settings.model_fields) - env_example_keys()
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_env_example_values_are_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    # Copying the example must change nothing, so it documents the defaults truly.
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    from_example = Settings(_env_file=ENV_EXAMPLE)  # type: ignore[call-arg]
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    assert from_example == defaults


def test_env_example_keys_are_commented() -> None:
    lines = [ln for ln in ENV_EXAMPLE.read_text().splitlines() if ln.strip()]
    for index, line in enumerate(lines):
        match = ENV_KEY.match(line)
        if match is None:
            continue
        above = lines[index - 1] if index else ""
        assert above.startswith("#") and not ENV_KEY.match(above), f"no comment above {line!r}"
        # An empty value is a value ("" is not unset): unset keys stay commented.
        assert line.startswith("#") or line.split("=", 1)[1], f"empty value: {line!r}"


def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.MULTILINE)
    assert "pip install --no-cache-dir -r requirements.txt" in text
    for source in ("api/", "worker/", "shared/", "pyproject.toml"):
        assert re.search(rf"^COPY .*\b{re.escape(source)}", text, re.MULTILINE), source
    users = re.findall(r"^USER\s+(\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert dockerfile_cmd() == GATEWAY_COMMAND


def test_dockerignore_keeps_secrets_and_venv_out() -> None:
    entries = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".venv", ".git"} <= entries


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    """A copy of the compose file with a .env made from .env.example."""
    # docker-compose 1.29 has no `required: false` for env_file, so it needs a .env;
    # a copy also keeps a developer's own .env from helping or hiding anything.
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    return tmp_path


def docker_compose(compose_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return subprocess.run([binary, "-f", "docker-compose.yml", *args], cwd=compose_dir,
                          capture_output=True, text=True, timeout=60, check=False)


def test_docker_compose_config_validates(compose_dir: Path) -> None:
    result = docker_compose(compose_dir, "config", "-q")
    assert result.returncode == 0, result.stderr


def test_docker_compose_resolves_variables(compose_dir: Path) -> None:
    result = docker_compose(compose_dir, "config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert as_argv(services["createbucket"]["command"])[-1] == "local/chat-memory"
    assert services["gateway"]["environment"]["S3_BUCKET_NAME"] == "chat-memory"
    # environment: wins over env_file, so .env's localhost defaults don't leak in.
    assert services["worker"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert services["worker"]["environment"]["S3_ENDPOINT_URL"] == "http://minio:9000"
