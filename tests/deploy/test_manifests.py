"""Compose file, Dockerfile, Helm chart, Prometheus and Alertmanager configs; no Docker engine.

Structural checks (plain Python over the YAML) always run. The tool checks run
where the tool is installed and are skipped with the install line otherwise:
``docker compose config`` / ``docker-compose config``, ``helm lint`` and
``helm template``, the Kubernetes schema check (``kubernetes-validate``, which
ships its schemas: kubeconform needs them downloaded), ``amtool check-config``.
``promtool check config`` always runs (promtool is required by the suite).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .tools import DEPLOY, ROOT, RULES, require

COMPOSE = DEPLOY / "docker-compose.yml"
CHART = DEPLOY / "helm" / "brand-listener"
KUBE_VERSION = "1.30.0"


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


# --- docker compose -------------------------------------------------------------------------


def compose_cli() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and run(docker, "compose", "version").returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_compose_config_parses_with_the_compose_cli() -> None:
    cli = compose_cli()
    if cli is None:
        pytest.skip("no `docker compose` plugin or docker-compose (apt-get install docker-compose)")
    result = run(*cli, "-f", str(COMPOSE), "--profile", "listen", "--profile", "demo", "config")
    assert result.returncode == 0, f"{' '.join(cli)} config failed:\n{result.stderr}"
    services = set(yaml.safe_load(result.stdout)["services"])
    assert {"kafka", "worker-1", "worker-2", "listen", "replay"} <= services


def test_compose_stack_is_complete_and_its_files_exist() -> None:
    doc = compose()
    services = doc["services"]
    assert set(services) >= {
        "kafka", "worker-1", "worker-2", "listen", "inbox", "prometheus", "alertmanager", "grafana"
    }  # fmt: skip
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: no image or build"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                if source in ("./listen.yaml", "./inbox-users.yaml"):  # supplied by the operator
                    continue
                assert (DEPLOY / source).exists(), f"{name}: mounts missing {source}"
        for dep in service.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown service {dep}"
    build = services["worker-1"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert "ZOOKEEPER" not in json.dumps(kafka).upper()
    assert services["worker-1"]["command"] == ["worker"] == services["worker-2"]["command"]
    for name, url in (
        ("worker-1", "http://127.0.0.1:6066/health/live"),
        ("worker-2", "http://127.0.0.1:6066/health/live"),
        ("listen", "http://127.0.0.1:9464/health"),
        ("inbox", "http://127.0.0.1:8086/health"),
    ):
        assert f"'{url}'" in " ".join(services[name]["healthcheck"]["test"]), name
    assert services["listen"]["environment"]["LISTENER_LISTEN__METRICS_PORT"] == "9464"
    env = services["worker-1"]["environment"]
    assert env["AGENTS_APP_ID"] == services["worker-2"]["environment"]["AGENTS_APP_ID"]
    mounts = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus/rules.yml:" in mounts
    grafana = " ".join(services["grafana"]["volumes"])
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/brand-listener.yml").read_text()
    )
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:" in grafana
    assert "./grafana/provisioning:/etc/grafana/provisioning" in grafana


def test_compose_prometheus_scrapes_workers_and_listen_and_passes_promtool(tmp_path: Path) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = jobs["brand-listener-worker"]["static_configs"][0]["targets"]
    assert sorted(t.split(":")[0] for t in targets) == ["worker-1", "worker-2"]
    assert jobs["brand-listener-listen"]["static_configs"][0]["targets"] == ["listen:9464"]
    assert jobs["brand-listener-inbox"]["static_configs"][0]["targets"] == ["inbox:8086"]
    inbox = compose()["services"]["inbox"]
    assert inbox["command"][0] == "inbox" and "8086:8086" in inbox["ports"]
    alertmanager = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanager == ["alertmanager:9093"]
    # The container path of the rules file, pointed at the repository's copy.
    config["rule_files"] = [str(RULES)]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run(require("promtool"), "check", "config", str(path))
    assert result.returncode == 0, f"promtool check config:\n{result.stdout}{result.stderr}"


def test_alertmanager_config_passes_amtool() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (apt-get install prometheus-alertmanager)")
    result = run(amtool, "check-config", str(DEPLOY / "alertmanager/alertmanager.yml"))
    assert result.returncode == 0, f"amtool check-config:\n{result.stdout}{result.stderr}"


def test_dockerfile_is_slim_non_root_and_torch_free() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert froms and all(f == "python:3.11-slim" for f in froms), froms
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in {"root", "0"}, users
    assert "pip install ." in text
    assert "torch" not in text.lower().replace("no torch", "")
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text()
    assert "models/intent-minilm/checkpoint" in ignore


# --- Helm -----------------------------------------------------------------------------------


def helm() -> str:
    path = shutil.which("helm") or str(Path.home() / "go" / "bin" / "helm")
    if not Path(path).exists():
        pytest.skip("helm not installed (go install helm.sh/helm/v3/cmd/helm@v3.18.6)")
    return path


def template(*sets: str) -> subprocess.CompletedProcess[str]:
    args = [helm(), "template", "bl", str(CHART), "--kube-version", KUBE_VERSION]
    for item in sets:
        args += ["--set-json" if item.startswith("json:") else "--set", item.removeprefix("json:")]
    return run(*args)


def rendered(*sets: str) -> list[dict[str, Any]]:
    result = template(*sets)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


EVERYTHING = (
    "serviceMonitor.enabled=true",
    "keda.enabled=true",
    "listen.persistence.enabled=true",
    "secrets.env.LISTENER_TOKEN=x",
    'json:listen.config={"brands":[{"name":"Acme"}]}',
)


def test_chart_is_structurally_sound() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "brand-listener"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["worker"]["replicas"] <= values["kafka"]["partitions"]
    assert values["keda"]["maxReplicaCount"] <= values["kafka"]["partitions"]
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    templates = {p.name for p in (CHART / "templates").iterdir()}
    assert {
        "worker-deployment.yaml", "listen-deployment.yaml", "configmap.yaml", "secret.yaml",
        "worker-service.yaml", "servicemonitor.yaml", "scaledobject.yaml",
        "inbox-deployment.yaml", "inbox-service.yaml", "inbox-secret.yaml",
    } <= templates  # fmt: skip


def test_helm_lint() -> None:
    for extra in ((), EVERYTHING):
        args = [helm(), "lint", str(CHART), "--kube-version", KUBE_VERSION]
        for item in extra:
            flag = "--set-json" if item.startswith("json:") else "--set"
            args += [flag, item.removeprefix("json:")]
        result = run(*args)
        assert result.returncode == 0, f"helm lint {extra}:\n{result.stdout}{result.stderr}"


def test_helm_template_renders_the_expected_objects() -> None:
    kinds = sorted(doc["kind"] for doc in rendered())
    assert kinds == [
        "ConfigMap", "Deployment", "Deployment", "Deployment", "Secret", "Service", "Service",
        "Service",
    ]  # fmt: skip
    docs = {(d["kind"], d["metadata"]["name"]): d for d in rendered(*EVERYTHING)}
    assert set(docs) == {
        ("ConfigMap", "bl-brand-listener"), ("Secret", "bl-brand-listener"),
        ("Service", "bl-brand-listener-worker"), ("Deployment", "bl-brand-listener-worker"),
        ("Deployment", "bl-brand-listener-listen"),
        ("PersistentVolumeClaim", "bl-brand-listener-listen"),
        ("ServiceMonitor", "bl-brand-listener-worker"),
        ("Service", "bl-brand-listener-listen"), ("ServiceMonitor", "bl-brand-listener-listen"),
        ("ScaledObject", "bl-brand-listener-worker"),
        ("Deployment", "bl-brand-listener-inbox"), ("Service", "bl-brand-listener-inbox"),
        ("Secret", "bl-brand-listener-inbox"),
    }  # fmt: skip
    listen = docs[("Deployment", "bl-brand-listener-listen")]["spec"]
    assert listen["replicas"] == 1 and listen["strategy"]["type"] == "Recreate"
    container = listen["template"]["spec"]["containers"][0]
    assert container["ports"] == [
        {"name": "http-metrics", "containerPort": 9464, "protocol": "TCP"}
    ]
    assert {"name": "LISTENER_LISTEN__METRICS_PORT", "value": "9464"} in container["env"]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http-metrics"}
    service = docs[("Service", "bl-brand-listener-listen")]["spec"]
    assert service["selector"]["app.kubernetes.io/component"] == "listen"
    assert service["ports"][0]["targetPort"] == "http-metrics"
    monitor = docs[("ServiceMonitor", "bl-brand-listener-listen")]["spec"]
    assert monitor["selector"]["matchLabels"] == service["selector"]
    assert monitor["endpoints"][0]["port"] == "http-metrics"
    worker = docs[("Deployment", "bl-brand-listener-worker")]["spec"]
    assert "replicas" not in worker, "KEDA owns the replica count when enabled"
    trigger = docs[("ScaledObject", "bl-brand-listener-worker")]["spec"]["triggers"][0]
    assert trigger["type"] == "kafka" and trigger["metadata"]["topic"] == "mentions.raw"
    assert trigger["metadata"]["consumerGroup"] == "brand-listener"
    config = docs[("ConfigMap", "bl-brand-listener")]["data"]
    assert yaml.safe_load(config["listen.yaml"]) == {"brands": [{"name": "Acme"}]}
    inbox = docs[("Deployment", "bl-brand-listener-inbox")]["spec"]
    container = inbox["template"]["spec"]["containers"][0]
    assert container["args"][0] == "inbox" and container["readinessProbe"]["httpGet"] == {
        "path": "/health", "port": "http"
    }  # fmt: skip
    secret_env = next(e for e in container["env"] if e["name"] == "INBOX_SECRET")
    assert secret_env["valueFrom"]["secretKeyRef"]["name"] == "bl-brand-listener-inbox"
    service = docs[("Service", "bl-brand-listener-inbox")]["spec"]
    assert service["selector"]["app.kubernetes.io/component"] == "inbox"
    users = docs[("Secret", "bl-brand-listener-inbox")]["stringData"]
    assert yaml.safe_load(users["users.yaml"]) == {"users": {}}
    assert len(users["session-secret"]) >= 32


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("worker.replicas=5",), "worker.replicas (5) exceeds kafka.partitions (4)"),
        (("keda.enabled=true", "keda.maxReplicaCount=8"), "keda.maxReplicaCount (8) exceeds"),
    ],
)
def test_helm_refuses_more_workers_than_partitions(sets: tuple[str, ...], message: str) -> None:
    result = template(*sets)
    assert result.returncode != 0 and message in result.stderr, result.stderr


def test_rendered_manifests_pass_the_kubernetes_schema() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (ships the schemas)"
    )
    version = KUBE_VERSION.rsplit(".", 1)[0]
    checked = []
    for doc in rendered(*EVERYTHING):
        if doc["apiVersion"] in {"keda.sh/v1alpha1", "monitoring.coreos.com/v1"}:
            continue  # CRDs: no schema shipped (see deploy/README.md)
        kubernetes_validate.validate(doc, version, strict=True)
        checked.append(doc["kind"])
    assert len(checked) == 10, checked
    broken = next(d for d in rendered() if d["kind"] == "Deployment")  # must be rejected with:
    broken["spec"]["replicaz"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, version, strict=True)


def test_compose_runs_the_kafka_version_of_the_local_broker() -> None:
    from listener.kafka_local import KAFKA_VERSION

    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


def test_the_worker_service_exposes_the_sync_webhooks_only_when_asked() -> None:
    def sync_ports(*sets: str) -> list[int]:
        service = next(
            d for d in rendered(*sets)
            if d["kind"] == "Service" and d["metadata"]["name"].endswith("-worker")
        )  # fmt: skip
        return [p["port"] for p in service["spec"]["ports"] if p["name"] == "http-sync"]

    assert sync_ports() == []
    assert sync_ports("worker.exposeSync=true") == [6067]
