"""The Kubernetes manifests (deploy/k8s), rendered for every overlay.

No cluster runs here, so they are kept honest two ways: every rendered
object is validated against its schema, and the properties that matter are
asserted. Schemas, offline:
- built-in kinds: kubernetes-validate (PyPI, requirements-dev.txt), which
  ships the Kubernetes API's JSON schemas; strict, so an unknown or misspelt
  field fails, against the oldest and the newest Kubernetes we claim;
- KEDA's ScaledObject and TriggerAuthentication, prometheus-operator's
  ServiceMonitor: the validators that @kubernetes-models/keda and
  @kubernetes-models/prometheus-operator (npm) compile from those projects'
  CRDs, run by tests/js/validate_crds.mjs under Node. They check types,
  required fields and enums; unknown fields pass (the CRDs do not forbid
  them), so the fields we rely on are asserted below.
The npm packages install once into ~/.cache/s3-chat-backend/; a test skips,
saying why, only where kubectl, Node or a package cannot be had.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from shared.metrics import TURNS_RUNNING
from shared.queue import QUEUE
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("small", "large")
# The oldest Kubernetes the manifests are for, and the newest the schemas know.
K8S_VERSIONS = ("1.30", "1.37")
CRD_PACKAGES = ("@kubernetes-models/keda@2.0.0", "@kubernetes-models/prometheus-operator@6.0.0")
CRD_SCRIPT = ROOT / "tests" / "js" / "validate_crds.mjs"
CUSTOM = {"keda.sh/v1alpha1", "monitoring.coreos.com/v1"}
SECRET_NAME = "chat-secrets"
# A name that holds a secret, whatever its setting's type.
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEYS?$|_KEY$|_KEY_ID$|REDIS_URL")
# Celery's heartbeat interval (celery.worker.heartbeat.Heart).
HEARTBEAT_SECONDS = 2.0
# worker/tasks.py bounds a task at TURN_TIME_LIMIT + 15 s; closing takes 10 s.
TASK_BACKSTOP, CLOSE_SECONDS = 15, 10

Resource = dict[str, Any]


def kustomize(path: Path) -> list[Resource]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (it renders the kustomizations: "
                    "Debian's google-cloud-cli-kubectl, or any kubectl >= 1.27)")
    done = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Resource]:
    return kustomize(K8S / "overlays" / request.param)


def find(docs: list[Resource], kind: str, name: str) -> Resource:
    [doc] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def workloads(docs: list[Resource]) -> dict[str, Resource]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}


def container(deployment: Resource) -> Resource:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    result: Resource = only
    return result


def config(docs: list[Resource]) -> dict[str, str]:
    [cm] = [d for d in docs if d["kind"] == "ConfigMap"
            and d["metadata"]["name"].startswith("chat-config")]
    data: dict[str, str] = cm["data"]
    return data


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are read here"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


# --- schemas ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def kubernetes_validate() -> Any:
    return pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate is not installed (pip install -r requirements-dev.txt)")


def schema_errors(kv: Any, doc: Resource, version: str) -> str | None:
    try:
        kv.validate(doc, version, strict=True)
    except kv.ValidationError as exc:
        return f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"
    return None


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_built_in_objects_match_the_kubernetes_schemas(
        rendered: list[Resource], kubernetes_validate: Any, version: str) -> None:
    built_in = [d for d in rendered if d["apiVersion"] not in CUSTOM]
    assert {d["kind"] for d in built_in} >= {
        "Namespace", "ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
        "PodDisruptionBudget", "NetworkPolicy"}
    errors = {f"{d['kind']}/{d['metadata']['name']}": schema_errors(kubernetes_validate, d, version)
              for d in built_in}
    assert not {k: v for k, v in errors.items() if v}, errors


def test_the_kubernetes_schemas_catch_a_misspelt_field(kubernetes_validate: Any) -> None:
    gateway = find(kustomize(K8S / "overlays" / "small"), "Deployment", "chat-gateway")
    broken = copy.deepcopy(gateway)
    probes = container(broken)
    probes["readinesProbe"] = probes.pop("readinessProbe")
    assert "readinesProbe" in (schema_errors(kubernetes_validate, broken, K8S_VERSIONS[-1]) or "")


@pytest.fixture(scope="module")
def crd_validator() -> Path:
    """A folder with the @kubernetes-models packages and the script beside them."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("Node.js and npm are not installed (apt-get install nodejs npm)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    tag = "-".join(p.rsplit("/", 1)[1].replace("@", "-") for p in CRD_PACKAGES)
    folder = cache / "s3-chat-backend" / f"k8s-crds-{tag}"
    if not (folder / "node_modules" / "@kubernetes-models" / "prometheus-operator").is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "package.json").write_text('{"private": true, "type": "module"}')
        installed = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", "--engine-strict=false",
             *CRD_PACKAGES], cwd=folder, capture_output=True, text=True, timeout=300, check=False)
        if installed.returncode != 0:
            pytest.skip(f"npm could not install the CRD schemas: {installed.stderr[-500:]}")
    shutil.copy(CRD_SCRIPT, folder / CRD_SCRIPT.name)
    return folder


def crd_errors(folder: Path, docs: list[Resource]) -> dict[str, str | None]:
    ran = subprocess.run(["node", str(folder / CRD_SCRIPT.name)], input=json.dumps(docs),
                         capture_output=True, text=True, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    return {f"{r['kind']}/{r['name']}": r["error"] for r in json.loads(ran.stdout)}


def test_custom_resources_match_the_keda_and_prometheus_operator_schemas(
        rendered: list[Resource], crd_validator: Path) -> None:
    custom = [d for d in rendered if d["apiVersion"] in CUSTOM]
    assert {d["kind"] for d in custom} == {"ScaledObject", "TriggerAuthentication",
                                           "ServiceMonitor"}
    errors = crd_errors(crd_validator, custom)
    assert len(errors) == len(custom)
    assert not {k: v for k, v in errors.items() if v}, errors


def test_the_crd_schemas_catch_a_wrong_type(crd_validator: Path) -> None:
    docs = kustomize(K8S / "overlays" / "small")
    scaled = copy.deepcopy(find(docs, "ScaledObject", "chat-worker"))
    scaled["spec"]["minReplicaCount"] = "one"
    monitor = copy.deepcopy(find(docs, "ServiceMonitor", "chat-worker"))
    del monitor["spec"]["selector"]
    errors = crd_errors(crd_validator, [scaled, monitor])
    assert "minReplicaCount must be integer" in (errors["ScaledObject/chat-worker"] or "")
    assert "selector" in (errors["ServiceMonitor/chat-worker"] or "")


# --- what the manifests must say --------------------------------------------------


def test_every_object_lives_in_one_namespace_of_restricted_pods(
        rendered: list[Resource]) -> None:
    [namespace] = [d for d in rendered if d["kind"] == "Namespace"]
    name = namespace["metadata"]["name"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in rendered if d is not namespace} == {name}


def test_the_three_processes_run_the_contract_commands(rendered: list[Resource]) -> None:
    deployments = workloads(rendered)
    assert set(deployments) == {"chat-gateway", "chat-worker", "chat-beat"}
    commands = {name: container(d)["command"] for name, d in deployments.items()}
    assert commands["chat-gateway"][:2] == ["uvicorn", "api.main:app"]
    assert commands["chat-worker"][:4] == ["celery", "-A", "worker.celery_app", "worker"]
    assert commands["chat-beat"][:4] == ["celery", "-A", "worker.celery_app", "beat"]
    assert len({container(d)["image"] for d in deployments.values()}) == 1


def test_the_worker_outlives_its_longest_turn(rendered: list[Resource]) -> None:
    limit = int(config(rendered).get("TURN_TIME_LIMIT",
                                     Settings.model_fields["TURN_TIME_LIMIT"].default))
    grace = workloads(rendered)["chat-worker"]["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"]
    assert grace > limit + TASK_BACKSTOP + CLOSE_SECONDS


def test_beat_runs_once_and_is_never_rolled(rendered: list[Resource]) -> None:
    beat = workloads(rendered)["chat-beat"]
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}
    scaled = {d["spec"]["scaleTargetRef"]["name"] for d in rendered
              if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")}
    assert scaled == {"chat-gateway", "chat-worker"}


def test_the_gateway_probes_its_health_routes(rendered: list[Resource]) -> None:
    from api.routes.health import router

    routes = {getattr(r, "path", None) for r in router.routes}
    gateway = container(workloads(rendered)["chat-gateway"])
    port = {p["name"]: p["containerPort"] for p in gateway["ports"]}["http"]
    assert gateway["command"][-2:] == ["--port", str(port)]
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert {"/readyz", "/healthz"} <= routes


def test_the_worker_is_probed_by_its_heartbeat_file_not_the_broker(
        rendered: list[Resource]) -> None:
    worker = container(workloads(rendered)["chat-worker"])
    env = {e["name"]: e.get("value") for e in worker["env"]}
    beat_file = env["WORKER_HEARTBEAT_FILE"]
    mounts = [m["mountPath"] for m in worker["volumeMounts"]]
    assert os.path.dirname(beat_file) in mounts  # writable under a read-only root
    for probe in ("startupProbe", "livenessProbe"):
        command = worker[probe]["exec"]["command"]
        assert command[:4] == ["python", "-m", "worker.heartbeat", beat_file]
        # Several missed heartbeats, and more than a probe's own period.
        assert float(command[4]) >= 10 * HEARTBEAT_SECONDS
        assert float(command[4]) >= worker[probe]["periodSeconds"]
    assert "readinessProbe" not in worker  # it serves no traffic


def test_every_pod_runs_unprivileged_with_bounded_resources(rendered: list[Resource]) -> None:
    text = (ROOT / "Dockerfile").read_text()
    uid = int(re.findall(r"useradd [^\n]*--uid (\d+)", text)[0])
    for name, deployment in workloads(rendered).items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, name
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] == uid, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        main = container(deployment)
        assert main["securityContext"] == {"allowPrivilegeEscalation": False,
                                           "readOnlyRootFilesystem": True,
                                           "capabilities": {"drop": ["ALL"]}}, name
        for bound in ("requests", "limits"):
            assert set(main["resources"][bound]) == {"cpu", "memory"}, (name, bound)
        assert {"/tmp"} <= {m["mountPath"] for m in main["volumeMounts"]}, name


def test_no_secret_value_is_in_the_manifests(rendered: list[Resource]) -> None:
    assert "Secret" not in {d["kind"] for d in rendered}
    secret_settings = {name for name, field in Settings.model_fields.items()
                       if SecretStr in (field.annotation, *getattr(field.annotation,
                                                                   "__args__", ()))}
    assert secret_settings >= {"AWS_SECRET_ACCESS_KEY", "GROQ_API_KEY"}
    for key in config(rendered):
        assert key not in secret_settings and not SECRETISH.search(key), key
    for name, deployment in workloads(rendered).items():
        main = container(deployment)
        for entry in main.get("env", []):
            assert not SECRETISH.search(entry["name"]) or "valueFrom" in entry, (name, entry)
        assert {"secretRef": {"name": SECRET_NAME}} in main["envFrom"], name
        assert any(e.get("configMapRef", {}).get("name", "").startswith("chat-config")
                   for e in main["envFrom"]), name


def test_the_example_secret_is_an_example(rendered: list[Resource]) -> None:
    example = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert example["metadata"]["name"] == SECRET_NAME
    assert all(re.fullmatch(r"[^<>]*(<[^<>]+>[^<>]*)+", v) for v in example["stringData"].values())
    for kustomization in K8S.rglob("kustomization.yaml"):
        listed = yaml.safe_load(kustomization.read_text()).get("resources", [])
        assert not [r for r in listed if "secret" in r], kustomization
    # It names every key the manifests read from the Secret.
    read = {ref["key"] for d in rendered if d["kind"] == "TriggerAuthentication"
            for ref in d["spec"]["secretTargetRef"]}
    read |= {e["authorization"]["credentials"]["key"] for d in rendered
             if d["kind"] == "ServiceMonitor" for e in d["spec"]["endpoints"]
             if "authorization" in e}
    assert read and read <= set(example["stringData"])


def test_network_policies_deny_by_default_and_open_only_the_gateway(
        rendered: list[Resource]) -> None:
    policies = [d["spec"] for d in rendered if d["kind"] == "NetworkPolicy"]
    assert {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]} in policies
    for name, deployment in workloads(rendered).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        own = [p for p in policies if p["podSelector"] and selects(p["podSelector"], labels)]
        assert len(own) == 1, f"{name}: one policy of its own, found {len(own)}"
        [policy] = own
        assert set(policy["policyTypes"]) == {"Ingress", "Egress"}, name
        egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
        assert 6379 in egress_ports, name  # Redis, for all three
        open_ingress = [rule for rule in policy.get("ingress", []) if "from" not in rule]
        if name == "chat-gateway":
            assert [p["port"] for rule in open_ingress for p in rule["ports"]] == [8000]
            assert egress_ports == {6379, 443}
        else:
            assert not open_ingress, f"{name} must not be reachable from anywhere"
    beat = workloads(rendered)["chat-beat"]["spec"]["template"]["metadata"]["labels"]
    [beat_policy] = [p for p in policies if p["podSelector"] and selects(p["podSelector"], beat)]
    assert "ingress" not in beat_policy


def test_workers_scale_on_turns_waiting_plus_turns_running(rendered: list[Resource]) -> None:
    scaled = find(rendered, "ScaledObject", "chat-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == "chat-worker"
    assert "replicas" not in workloads(rendered)["chat-worker"]["spec"]  # KEDA's to set
    assert scaled["minReplicaCount"] >= 1  # the workers run the recovery sweep
    triggers = {t["name"]: t for t in scaled["triggers"]}
    assert scaled["advanced"]["scalingModifiers"]["formula"] == "waiting + running"
    waiting, running = triggers["waiting"], triggers["running"]
    assert waiting["type"] == "redis"
    assert waiting["metadata"]["listName"] == QUEUE
    assert find(rendered, "TriggerAuthentication", waiting["authenticationRef"]["name"])
    assert running["type"] == "prometheus"
    assert f"sum({TURNS_RUNNING._name}{{" in running["metadata"]["query"]
    assert 'service="chat-worker"' in running["metadata"]["query"]
    # Each worker holds WORKER_CONCURRENCY turns: the target leaves it room.
    concurrency = int(config(rendered)["WORKER_CONCURRENCY"])
    assert 0 < int(scaled["advanced"]["scalingModifiers"]["target"]) <= concurrency


def test_prometheus_scrapes_every_gateway_and_worker_pod(rendered: list[Resource]) -> None:
    services = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "Service"}
    monitors = [d["spec"] for d in rendered if d["kind"] == "ServiceMonitor"]
    worker = container(workloads(rendered)["chat-worker"])
    metrics_port = {e["name"]: e.get("value") for e in worker["env"]}["WORKER_METRICS_PORT"]
    assert {p["name"]: p["containerPort"] for p in worker["ports"]}["metrics"] == int(metrics_port)
    assert services["chat-worker"]["spec"]["clusterIP"] == "None"  # every pod, not one
    for name, port in (("chat-gateway", "http"), ("chat-worker", "metrics")):
        service = services[name]
        [monitor] = [m for m in monitors if selects(m["selector"], service["metadata"]["labels"])]
        assert [e["port"] for e in monitor["endpoints"]] == [port]
        assert port in {p["name"] for p in service["spec"]["ports"]}
        assert all(e["path"] == "/metrics" for e in monitor["endpoints"])


def test_gateway_and_workers_have_disruption_budgets(rendered: list[Resource]) -> None:
    budgets = [d["spec"] for d in rendered if d["kind"] == "PodDisruptionBudget"]
    for name in ("chat-gateway", "chat-worker"):
        labels = workloads(rendered)[name]["spec"]["template"]["metadata"]["labels"]
        assert [b for b in budgets if selects(b["selector"], labels)], name
    hpa = find(rendered, "HorizontalPodAutoscaler", "chat-gateway")["spec"]
    assert hpa["scaleTargetRef"]["name"] == "chat-gateway"
    assert hpa["minReplicas"] >= 2


def test_the_overlays_differ_in_size_only() -> None:
    small, large = (kustomize(K8S / "overlays" / o) for o in OVERLAYS)

    def shape(docs: list[Resource]) -> set[tuple[str, str]]:
        return {(d["kind"], re.sub(r"-[a-z0-9]{10}$", "", d["metadata"]["name"])) for d in docs}

    assert shape(small) == shape(large)
    limits = [find(docs, "ScaledObject", "chat-worker")["spec"]["maxReplicaCount"]
              for docs in (small, large)]
    assert limits[0] < limits[1]
