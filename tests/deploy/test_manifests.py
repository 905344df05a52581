"""Compose file, Dockerfile, Prometheus and Alertmanager configs; no Docker engine.

Structural checks (plain Python over the YAML) always run. The tool checks run
where the tool is installed and are skipped with the install line otherwise:
``docker compose config`` / ``docker-compose config``, ``amtool check-config``.
``promtool check config`` always runs (promtool is required by the suite).
The Helm chart's tests are in ``test_helm.py``.
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


def test_compose_runs_the_kafka_version_of_the_local_broker() -> None:
    from listener.kafka_local import KAFKA_VERSION

    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
