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
# Compose refuses to start without these: no working default ships anywhere.
REQUIRED = ("API_KEYS", "MINIO_ROOT_PASSWORD", "MINIO_APP_PASSWORD", "REDIS_PASSWORD")
LOOPBACK = ("127.0.0.1", "::1", "[::1]")
WORKER_COMMAND = ["celery", "-A", "worker.celery_app", "worker", "--loglevel=INFO"]
BEAT_COMMAND = ["celery", "-A", "worker.celery_app", "beat", "--loglevel=INFO"]
GATEWAY_COMMAND = ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}; "$${...}" is an escaped,
# container-side reference and not compose's business.
COMPOSE_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
# A reference and how it treats an unset variable: ":?" fails, ":-"/"-" default.
COMPOSE_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?])?")
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


def env_example_values() -> dict[str, str]:
    """The entries that copying .env.example sets (commented ones set nothing)."""
    lines = ENV_EXAMPLE.read_text().splitlines()
    return dict(ln.split("=", 1) for ln in lines if ln and not ln.startswith("#"))


def published_address(port: str | int | dict[str, Any]) -> str:
    """The host address a `ports:` entry publishes on; "" means every interface."""
    if isinstance(port, dict):
        return str(port.get("host_ip", ""))
    parts = str(port).rsplit(":", 2)
    return parts[0] if len(parts) == 3 else ""


def referenced(value: str) -> set[str]:
    return set(COMPOSE_VAR.findall(value))


def dockerfile_cmd() -> list[str]:
    [line] = [ln for ln in (ROOT / "Dockerfile").read_text().splitlines()
              if ln.startswith("CMD ")]
    return as_argv(yaml.safe_load(line.removeprefix("CMD ")))


def test_all_services_present(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= {"redis", "minio", "minio-init", *PYTHON_SERVICES}


def test_python_services_share_one_image_and_env(services: dict[str, dict[str, Any]]) -> None:
    for name in PYTHON_SERVICES:
        service = services[name]
        assert service["build"] == ".", name
        assert service["image"] == services["gateway"]["image"], name
        assert service["env_file"] in (".env", [".env"]), name
        env = service["environment"]
        assert env["REDIS_URL"] == (
            "redis://:${REDIS_PASSWORD:?set REDIS_PASSWORD in .env (letters and digits)}"
            "@redis:6379/0"), name
        assert env["S3_ENDPOINT_URL"] == "http://minio:9000", name


def test_the_app_logs_in_to_minio_as_its_own_user_not_root(
        services: dict[str, dict[str, Any]]) -> None:
    root = referenced(" ".join(services["minio"]["environment"].values()))
    assert root == {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    init_env = services["minio-init"]["environment"]
    for name in PYTHON_SERVICES:
        env = services[name]["environment"]
        assert referenced(env["AWS_ACCESS_KEY_ID"]) == {"MINIO_APP_USER"}, name
        assert referenced(env["AWS_SECRET_ACCESS_KEY"]) == {"MINIO_APP_PASSWORD"}, name
        # The same values minio-init gives the user it creates.
        assert env["AWS_ACCESS_KEY_ID"] == init_env["MINIO_APP_USER"], name
        assert env["AWS_SECRET_ACCESS_KEY"] == init_env["MINIO_APP_PASSWORD"], name
        # env_file passes all of .env in: the root login is blanked over it.
        assert env["MINIO_ROOT_USER"] == env["MINIO_ROOT_PASSWORD"] == "", name
    assert env_example_values()["MINIO_APP_USER"] != env_example_values()["MINIO_ROOT_USER"]


def test_no_port_is_published_beyond_loopback(services: dict[str, dict[str, Any]]) -> None:
    published = [(name, port) for name, service in services.items()
                 for port in service.get("ports", [])]
    assert published, "expected the gateway at least to be published"
    for name, port in published:
        assert published_address(port) in LOOPBACK, (name, port)


def test_published_address_reads_every_form() -> None:
    assert published_address("8000:8000") == ""
    assert published_address("8000") == ""
    assert published_address(8000) == ""
    assert published_address("0.0.0.0:9000:9000") == "0.0.0.0"
    assert published_address("127.0.0.1:9000:9000") == "127.0.0.1"
    assert published_address("[::1]:9000:9000") == "[::1]"
    assert published_address({"target": 9000, "published": 9000}) == ""
    assert published_address({"target": 9000, "host_ip": "127.0.0.1"}) == "127.0.0.1"


def test_secrets_have_no_default_and_auth_is_on(services: dict[str, dict[str, Any]]) -> None:
    text = COMPOSE_FILE.read_text()
    for name, how in COMPOSE_REF.findall(text):
        if name in REQUIRED:
            assert how == ":?", f"${{{name}}} must fail when unset, not default"
    assert "minioadmin" not in text  # MinIO's well-known default login
    for name in PYTHON_SERVICES:
        assert referenced(services[name]["environment"]["API_KEYS"]) == {"API_KEYS"}, name


def test_env_example_holds_no_usable_password() -> None:
    # A name ending in _KEY holds a key, unless it is a limit per key.
    secret = re.compile(r"PASSWORD|SECRET|API_KEYS?$|(?<!_PER)_KEY$")
    values = env_example_values()
    assert REQUIRED[0] in env_example_keys()
    for name in env_example_keys():
        if secret.search(name):
            assert not values.get(name), f"{name} ships a value in .env.example"
    assert "minioadmin" not in ENV_EXAMPLE.read_text()


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


def test_gateway_publishes_8000_on_loopback(services: dict[str, dict[str, Any]]) -> None:
    assert [str(p) for p in services["gateway"]["ports"]] == ["127.0.0.1:8000:8000"]


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
               "minio-init": "service_completed_successfully"}
    assert conditions(services["gateway"]) == storage
    assert conditions(services["worker"]) == storage
    assert conditions(services["beat"]) == {"redis": "service_healthy"}
    assert conditions(services["minio-init"]) == {"minio": "service_healthy"}


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


def test_minio_init_makes_the_bucket_and_a_user_confined_to_it(
        services: dict[str, dict[str, Any]]) -> None:
    job = services["minio-init"]
    assert job["image"].startswith("minio/mc")
    assert job.get("restart", "no") == "no"
    assert job["environment"]["BUCKET"] == "${S3_BUCKET_NAME:-chat-memory}"
    [script] = job["command"]
    steps = [line.strip() for line in script.splitlines()]
    assert "mc mb --ignore-existing \"local/$$BUCKET\"" in steps  # a rerun must succeed
    assert 'mc admin user add local "$$MINIO_APP_USER" "$$MINIO_APP_PASSWORD"' in steps
    assert 'mc admin policy attach local chat-bucket --user "$$MINIO_APP_USER"' in steps
    # The policy names the bucket and its objects, and no other resource.
    resources = re.findall(r'"Resource": \[([^]]*)\]', script)
    assert resources == ['"arn:aws:s3:::\'"$$BUCKET"\'"', '"arn:aws:s3:::\'"$$BUCKET"\'/*"']
    assert "s3:*" not in script


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


@pytest.fixture
def configured_dir(compose_dir: Path) -> Path:
    """As an operator leaves it: .env.example with the required values filled in."""
    with (compose_dir / ".env").open("a") as env:
        env.write("API_KEYS=key-one,key-two\nMINIO_ROOT_PASSWORD=root-password-1\n"
                  "MINIO_APP_PASSWORD=app-password-1\nREDIS_PASSWORD=redispassword1\n")
    return compose_dir


def docker_compose(compose_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return subprocess.run([binary, "-f", "docker-compose.yml", *args], cwd=compose_dir,
                          capture_output=True, text=True, timeout=60, check=False)


def test_docker_compose_config_validates(configured_dir: Path) -> None:
    result = docker_compose(configured_dir, "config", "-q")
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", REQUIRED)
def test_docker_compose_refuses_to_start_without_a_secret(compose_dir: Path,
                                                         missing: str) -> None:
    given = "".join(f"{name}=value-of-{name}\n" for name in REQUIRED if name != missing)
    with (compose_dir / ".env").open("a") as env:
        env.write(given)
    result = docker_compose(compose_dir, "config", "-q")
    assert result.returncode != 0
    assert f"set {missing} in .env" in result.stderr


def test_docker_compose_resolves_variables(configured_dir: Path) -> None:
    result = docker_compose(configured_dir, "config")
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert services["minio-init"]["environment"]["BUCKET"] == "chat-memory"
    assert services["gateway"]["environment"]["S3_BUCKET_NAME"] == "chat-memory"
    assert services["gateway"]["environment"]["API_KEYS"] == "key-one,key-two"
    root = services["minio"]["environment"]
    for name in PYTHON_SERVICES:
        env = services[name]["environment"]
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (
            "chat-app", "app-password-1"), name
        assert env["AWS_ACCESS_KEY_ID"] != root["MINIO_ROOT_USER"]
        assert "root-password-1" not in env.values(), name
    # environment: wins over env_file, so .env's localhost defaults don't leak in.
    assert services["worker"]["environment"]["REDIS_URL"] == (
        "redis://:redispassword1@redis:6379/0")
    # Redis asks for that password, and refuses writes rather than evict past its cap.
    redis_argv = " ".join(as_argv(services["redis"]["command"]))
    assert "--requirepass redispassword1" in redis_argv
    assert "--maxmemory 1gb --maxmemory-policy noeviction" in redis_argv
    assert services["redis"]["environment"]["REDISCLI_AUTH"] == "redispassword1"
    assert "--basic-auth" in " ".join(as_argv(services["flower"]["command"]))
    assert services["worker"]["environment"]["S3_ENDPOINT_URL"] == "http://minio:9000"
