"""The Helm chart: lint, render, values schema, Kubernetes and CRD schemas (no cluster).

``helm lint`` and ``helm template`` run where helm is installed (skipped with the
install line otherwise). Core objects are checked against Kubernetes 1.30's
schemas with ``kubernetes-validate`` (it ships them); the custom resources
(PrometheusRule, ServiceMonitor, ScaledObject, TriggerAuthentication) against
their CRDs' own schemas, checked in under ``tests/deploy/crds/`` (fetch.sh),
made strict the same way: an unknown field is an error.
"""

from __future__ import annotations

import filecmp
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from .tools import CHART, DEPLOY, GRAFANA_DASHBOARDS, ROOT, RULES, rules

KUBE_VERSION = "1.30.0"
EVERYTHING = CHART / "ci" / "everything-values.yaml"
CRDS = Path(__file__).parent / "crds"
FULLNAME = "bl-brand-listener"
KAFKA_SETTINGS = {
    "BOOTSTRAP_SERVERS", "TOPIC_PREFIX", "SECURITY_PROTOCOL", "SASL_MECHANISM", "SASL_USERNAME",
    "SASL_PASSWORD", "SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE", "SSL_KEY_PASSWORD",
    "SSL_CHECK_HOSTNAME",
}  # fmt: skip
"""The nested ``kafka`` settings, as AGENTS_KAFKA__<name> and LISTENER_KAFKA__<name>."""

Doc = dict[str, Any]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, check=False)


def helm() -> str:
    path = shutil.which("helm") or str(Path.home() / "go" / "bin" / "helm")
    if not Path(path).exists():
        pytest.skip("helm not installed (go install helm.sh/helm/v3/cmd/helm@v3.18.6)")
    return path


def values_args(args: tuple[str, ...]) -> list[str]:
    """``key=value`` -> --set, ``json:key=...`` -> --set-json, a path -> -f."""
    out: list[str] = []
    for item in args:
        if item.startswith("json:"):
            out += ["--set-json", item.removeprefix("json:")]
        elif "=" in item:
            out += ["--set", item]
        else:
            out += ["-f", item]
    return out


def template(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [helm(), "template", "bl", str(CHART), "--kube-version", KUBE_VERSION]
    return run(*cmd, *values_args(args))


@cache
def rendered(*args: str) -> tuple[Doc, ...]:
    result = template(*args)
    assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def by_key(*args: str) -> dict[tuple[str, str], Doc]:
    return {(d["kind"], d["metadata"]["name"]): d for d in rendered(*args)}


def pod(docs: dict[tuple[str, str], Doc], component: str) -> Doc:
    return dict(docs[("Deployment", f"{FULLNAME}-{component}")]["spec"]["template"]["spec"])


def environment(docs: dict[tuple[str, str], Doc], component: str) -> dict[str, Any]:
    """A container's environment: its ConfigMaps' data, then its own env (value or valueFrom)."""
    container = pod(docs, component)["containers"][0]
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(docs[("ConfigMap", source["configMapRef"]["name"])]["data"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


# --- the chart's copies of the rules and dashboards -------------------------------------


def test_the_chart_copies_of_rules_and_dashboards_match_the_repository() -> None:
    """The chart can read only its own folder: ``make chart-files`` copies them in."""
    copy = CHART / "files" / "prometheus" / "rules.yml"
    assert filecmp.cmp(RULES, copy, shallow=False), f"{copy} differs: run `make chart-files`"
    dashboards = sorted(p.name for p in GRAFANA_DASHBOARDS.glob("*.json"))
    copies = CHART / "files" / "grafana" / "dashboards"
    assert dashboards and sorted(p.name for p in copies.iterdir()) == dashboards, (
        f"{copies} holds other files than {DEPLOY / 'grafana/dashboards'}: run `make chart-files`"
    )
    for name in dashboards:
        assert filecmp.cmp(GRAFANA_DASHBOARDS / name, copies / name, shallow=False), (
            f"{copies / name} differs: run `make chart-files`"
        )


# --- lint, values schema -----------------------------------------------------------------


def test_chart_is_structurally_sound() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "brand-listener"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["worker"]["replicas"] <= values["kafka"]["partitions"]
    assert values["keda"]["maxReplicaCount"] <= values["kafka"]["partitions"]
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["listen"]["persistence"]["enabled"] is True
    assert "ci/" in (CHART / ".helmignore").read_text().split()


def test_helm_lint_with_defaults_and_with_everything_on() -> None:
    for extra in ((), (str(EVERYTHING),)):
        cmd = [helm(), "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION]
        result = run(*cmd, *values_args(extra))
        assert result.returncode == 0, f"helm lint {extra}:\n{result.stdout}{result.stderr}"


def test_values_schema_covers_every_value_and_refuses_unknown_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def merged(base: Any, overlay: Any) -> Any:
        if isinstance(base, dict) and isinstance(overlay, dict):
            return {k: merged(base.get(k), overlay.get(k, base.get(k))) if k in base else overlay[k]
                    for k in base.keys() | overlay.keys()}  # fmt: skip
        return overlay

    everything = merged(values, yaml.safe_load(EVERYTHING.read_text()))
    for doc in (values, everything):
        jsonschema.Draft7Validator(schema).validate(doc)

    def walk(node: Any, spec: Doc, path: str) -> None:
        if not isinstance(node, dict) or "properties" not in spec:
            return
        assert spec.get("additionalProperties") is False, f"{path or '.'}: open to typos"
        for key, value in node.items():
            assert key in spec["properties"], f"{path}.{key} is not in values.schema.json"
            walk(value, spec["properties"][key], f"{path}.{key}")
        assert set(spec["properties"]) <= set(node), f"{path}: schema has keys values lack"

    walk(values, schema, "")


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("kafka.securityProtocol=FOO",), "/kafka/securityProtocol"),
        (("kafka.sasl.mechanism=GSSAPI",), "/kafka/sasl/mechanism"),
        (("kafka.bootstrapServer=x:9092",), "bootstrapServer"),  # a typo: unknown key
        (("listen.persistence.enabled=yes",), "/listen/persistence/enabled"),
        (("worker.maxUnavailable=half",), "/worker/maxUnavailable"),
    ],
)
def test_a_bad_value_fails_the_render(sets: tuple[str, ...], message: str) -> None:
    result = template(*sets)
    assert result.returncode != 0 and "values don't meet the specifications" in result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (("worker.replicas=5",), "worker.replicas (5) exceeds kafka.partitions (4)"),
        (("keda.enabled=true", "keda.maxReplicaCount=8"), "keda.maxReplicaCount (8) exceeds"),
        (("kafka.securityProtocol=SASL_SSL",), "SASL_SSL needs kafka.sasl.username"),
        (
            ("kafka.securityProtocol=SASL_PLAINTEXT", "kafka.sasl.username=u"),
            "needs kafka.sasl.password or kafka.sasl.existingSecret",
        ),
        (("kafka.tls.keyPasswordKey=pw",), "kafka.tls.clientSecret, which is empty"),
    ],
)
def test_helm_refuses_settings_that_cannot_work(sets: tuple[str, ...], message: str) -> None:
    result = template(*sets)
    assert result.returncode != 0 and message in result.stderr, result.stderr


# --- what is rendered ----------------------------------------------------------------------


def test_defaults_render_the_app_without_the_monitoring_stack() -> None:
    assert sorted((d["kind"], d["metadata"]["name"]) for d in rendered()) == sorted([
        ("ConfigMap", FULLNAME), ("Secret", f"{FULLNAME}-inbox"),
        ("ServiceAccount", FULLNAME),
        ("Deployment", f"{FULLNAME}-worker"), ("Service", f"{FULLNAME}-worker"),
        ("PodDisruptionBudget", f"{FULLNAME}-worker"),
        ("Deployment", f"{FULLNAME}-listen"), ("Service", f"{FULLNAME}-listen"),
        ("PersistentVolumeClaim", f"{FULLNAME}-listen"),
        ("Deployment", f"{FULLNAME}-inbox"), ("Service", f"{FULLNAME}-inbox"),
        ("PodDisruptionBudget", f"{FULLNAME}-inbox"),
    ])  # fmt: skip


def test_everything_on_renders_every_object() -> None:
    assert set(by_key(str(EVERYTHING))) == {
        ("ConfigMap", FULLNAME), ("Secret", FULLNAME), ("Secret", f"{FULLNAME}-kafka"),
        ("ServiceAccount", FULLNAME), ("NetworkPolicy", FULLNAME), ("Ingress", FULLNAME),
        ("Deployment", f"{FULLNAME}-worker"), ("Service", f"{FULLNAME}-worker"),
        ("PodDisruptionBudget", f"{FULLNAME}-worker"), ("ServiceMonitor", f"{FULLNAME}-worker"),
        ("ScaledObject", f"{FULLNAME}-worker"), ("TriggerAuthentication", f"{FULLNAME}-kafka"),
        ("Deployment", f"{FULLNAME}-listen"), ("Service", f"{FULLNAME}-listen"),
        ("PersistentVolumeClaim", f"{FULLNAME}-listen"), ("ServiceMonitor", f"{FULLNAME}-listen"),
        ("Deployment", f"{FULLNAME}-inbox"), ("Service", f"{FULLNAME}-inbox"),
        ("Secret", f"{FULLNAME}-inbox"), ("PodDisruptionBudget", f"{FULLNAME}-inbox"),
        ("PrometheusRule", FULLNAME),
        ("ConfigMap", f"{FULLNAME}-dashboard-ops"), ("ConfigMap", f"{FULLNAME}-dashboard-support"),
    }  # fmt: skip


def test_listen_is_one_replica_with_probes_on_its_metrics_port() -> None:
    docs = by_key(str(EVERYTHING))
    listen = docs[("Deployment", f"{FULLNAME}-listen")]["spec"]
    assert listen["replicas"] == 1 and listen["strategy"]["type"] == "Recreate"
    container = pod(docs, "listen")["containers"][0]
    assert {"name": "http-metrics", "containerPort": 9464, "protocol": "TCP"} in container["ports"]
    assert environment(docs, "listen")["LISTENER_LISTEN__METRICS_PORT"] == "9464"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http-metrics"}
    service = docs[("Service", f"{FULLNAME}-listen")]["spec"]
    assert service["selector"]["app.kubernetes.io/component"] == "listen"
    monitor = docs[("ServiceMonitor", f"{FULLNAME}-listen")]["spec"]
    assert monitor["selector"]["matchLabels"] == service["selector"]
    assert monitor["endpoints"][0]["port"] == "http-metrics"
    config = docs[("ConfigMap", FULLNAME)]["data"]
    assert yaml.safe_load(config["listen.yaml"])["brands"] == [{"name": "Acme"}]


@pytest.mark.parametrize(
    ("sets", "claim"),
    [((), f"{FULLNAME}-listen"), (("listen.persistence.existingClaim=cursors",), "cursors")],
)
def test_the_cursor_directory_is_on_a_persistent_volume_claim(
    sets: tuple[str, ...], claim: str
) -> None:
    docs = by_key(*sets)
    spec = pod(docs, "listen")
    cursor_dir = PurePosixPath(environment(docs, "listen")["LISTENER_LISTEN__CURSOR_DIR"])
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = [
        m for m in spec["containers"][0]["volumeMounts"]
        if cursor_dir.is_relative_to(m["mountPath"])
    ]  # fmt: skip
    assert len(mounts) == 1, mounts
    assert volumes[mounts[0]["name"]]["persistentVolumeClaim"] == {"claimName": claim}
    assert not mounts[0].get("readOnly")
    pvcs = [d for d in rendered(*sets) if d["kind"] == "PersistentVolumeClaim"]
    if claim == f"{FULLNAME}-listen":
        assert [p["metadata"]["name"] for p in pvcs] == [claim]
        assert pvcs[0]["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert pvcs[0]["spec"]["resources"]["requests"]["storage"] == "1Gi"
    else:
        assert pvcs == []
    off = pod(by_key("listen.persistence.enabled=false"), "listen")
    assert {v["name"]: v for v in off["volumes"]}[mounts[0]["name"]] == {
        "name": mounts[0]["name"], "emptyDir": {}
    }  # fmt: skip


def test_the_kafka_block_reaches_every_pod_under_the_nested_names() -> None:
    defaults = by_key()
    for component, prefix in (("worker", "AGENTS"), ("inbox", "AGENTS"), ("listen", "LISTENER")):
        env = environment(defaults, component)
        assert env[f"{prefix}_KAFKA__BOOTSTRAP_SERVERS"] == "kafka:9092"
        assert env[f"{prefix}_KAFKA__SECURITY_PROTOCOL"] == "PLAINTEXT"
        assert not any("SASL" in name for name in env), component
    from agents.settings import LEGACY_NAMES
    from listener.settings import ListenerSettings

    flat = {f"AGENTS_{name.upper()}" for name in LEGACY_NAMES}
    flat |= {f"LISTENER_{name.upper()}" for name in ListenerSettings.legacy_names}
    assert not flat & set(defaults[("ConfigMap", FULLNAME)]["data"]), "the old flat names"

    docs = by_key(str(EVERYTHING))
    kafka_secret = docs[("Secret", f"{FULLNAME}-kafka")]["stringData"]
    for component, prefix in (("worker", "AGENTS"), ("inbox", "AGENTS"), ("listen", "LISTENER")):
        env = environment(docs, component)
        settings = {
            name.removeprefix(f"{prefix}_KAFKA__"): value
            for name, value in env.items() if name.startswith(f"{prefix}_KAFKA__")
        }  # fmt: skip
        # the AGENTS_ pods (worker, inbox) create topics: they also get the partition count
        extra = {"TOPIC_PARTITIONS"} if prefix == "AGENTS" else set()
        assert set(settings) == KAFKA_SETTINGS | extra, component
        assert settings["SECURITY_PROTOCOL"] == "SASL_SSL"
        assert settings["SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert settings["SASL_USERNAME"] == "brand-listener"
        assert settings["TOPIC_PREFIX"] == "acme." and settings["SSL_CHECK_HOSTNAME"] == "true"
        password = settings["SASL_PASSWORD"]["secretKeyRef"]
        assert password["name"] == f"{FULLNAME}-kafka"
        assert kafka_secret[password["key"]] == "not-a-real-password"
        assert settings["SSL_KEY_PASSWORD"]["secretKeyRef"] == {
            "name": "kafka-client", "key": "key-password"
        }  # fmt: skip
        # Each *_FILE path is a key of its Secret, mounted where the path points.
        spec = pod(docs, component)
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
        for name, secret in (
            ("SSL_CAFILE", "kafka-ca"), ("SSL_CERTFILE", "kafka-client"),
            ("SSL_KEYFILE", "kafka-client"),
        ):  # fmt: skip
            path = PurePosixPath(settings[name])
            mount = mounts[str(path.parent)]
            volume = volumes[mount["name"]]["secret"]
            assert volume["secretName"] == secret and mount["readOnly"] is True
            assert {"key": path.name, "path": path.name} in volume["items"]


def test_keda_logs_in_to_kafka_like_the_workers() -> None:
    docs = by_key(str(EVERYTHING))
    trigger = docs[("ScaledObject", f"{FULLNAME}-worker")]["spec"]["triggers"][0]
    assert trigger["metadata"]["topic"] == "acme.mentions.raw"
    assert trigger["metadata"]["sasl"] == "scram_sha512" and trigger["metadata"]["tls"] == "enable"
    auth = docs[("TriggerAuthentication", trigger["authenticationRef"]["name"])]["spec"]
    worker_env = environment(docs, "worker")
    for ref in auth["env"]:
        assert ref["containerName"] == "worker" and ref["name"] in worker_env
    assert {r["parameter"] for r in auth["env"]} == {"username", "password"}
    assert {r["parameter"] for r in auth["secretTargetRef"]} == {"ca", "cert", "key", "keyPassword"}
    plain = by_key("keda.enabled=true")
    trigger = plain[("ScaledObject", f"{FULLNAME}-worker")]["spec"]["triggers"][0]
    assert "authenticationRef" not in trigger and "sasl" not in trigger["metadata"]
    assert "replicas" not in plain[("Deployment", f"{FULLNAME}-worker")]["spec"]


def test_the_prometheus_rule_holds_every_rule_of_the_repository() -> None:
    docs = by_key("serviceMonitor.enabled=true", "prometheusRule.labels.release=kps")
    rule = docs[("PrometheusRule", FULLNAME)]
    assert rule["metadata"]["labels"]["release"] == "kps"
    chart_rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    repo_rules = rules()
    names = [r.get("alert", r.get("record")) for r in chart_rules]
    assert names == [r.get("alert", r.get("record")) for r in repo_rules]
    assert sum("alert" in r for r in chart_rules) >= 14
    base = "https://github.com/brand-listener/brand-listener/blob/main/"
    for ours, theirs in zip(chart_rules, repo_rules, strict=True):
        assert ours["expr"] == theirs["expr"] and ours.get("for") == theirs.get("for")
        assert ours.get("labels") == theirs.get("labels")
        if "alert" in ours:
            url = ours["annotations"]["runbook_url"]
            assert url == base + theirs["annotations"]["runbook_url"], url
            # Prometheus templates pass through untouched (Helm does not expand them).
            assert ours["annotations"]["summary"] == theirs["annotations"]["summary"]


def test_the_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    docs = rendered("serviceMonitor.enabled=true", "grafanaDashboards.labelValue=yes")
    maps = [d for d in docs if d["kind"] == "ConfigMap" and "-dashboard-" in d["metadata"]["name"]]
    found = {}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "yes"
        ((name, text),) = cm["data"].items()
        found[name] = json.loads(text)
    assert found == {p.name: json.loads(p.read_text()) for p in GRAFANA_DASHBOARDS.glob("*.json")}


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        ((), set()),
        (("serviceMonitor.enabled=true",), {"PrometheusRule", "dashboards"}),
        (("prometheusRule.enabled=true",), {"PrometheusRule"}),
        (("grafanaDashboards.enabled=true",), {"dashboards"}),
        (
            ("serviceMonitor.enabled=true", "prometheusRule.enabled=false",
             "grafanaDashboards.enabled=false"),
            set(),
        ),
    ],
)  # fmt: skip
def test_rules_and_dashboards_follow_the_service_monitor_unless_set(
    sets: tuple[str, ...], expected: set[str]
) -> None:
    found = set()
    for doc in rendered(*sets):
        if doc["kind"] == "PrometheusRule":
            found.add("PrometheusRule")
        if doc["kind"] == "ConfigMap" and doc["metadata"]["labels"].get("grafana_dashboard"):
            found.add("dashboards")
    assert found == expected


def test_the_routing_rules_are_mounted_from_a_configmap(tmp_path: Path) -> None:
    from agents.pipeline.rules_file import load_rules

    assert "AGENTS_RULES_FILE" not in environment(by_key(), "worker")  # the built-in table
    example = DEPLOY / "rules.example.yaml"
    values = tmp_path / "rules-values.yaml"
    values.write_text(yaml.safe_dump({"rules": yaml.safe_load(example.read_text())}))
    docs = by_key(str(values))
    path = PurePosixPath(environment(docs, "worker")["AGENTS_RULES_FILE"])
    spec = pod(docs, "worker")
    mount = next(
        m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == str(path.parent)
    )
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    configmap = docs[("ConfigMap", volume["configMap"]["name"])]
    mounted = tmp_path / path.name
    mounted.write_text(configmap["data"][path.name])
    assert load_rules(mounted) == load_rules(example)
    annotations = docs[("Deployment", f"{FULLNAME}-worker")]["spec"]["template"]["metadata"]
    assert (
        annotations["annotations"]["checksum/rules"]
        != (
            by_key()[("Deployment", f"{FULLNAME}-worker")]["spec"]["template"]["metadata"][
                "annotations"
            ]["checksum/rules"]
        )
    ), "a rules change must roll the workers (the rules are read at start)"


def test_the_webhook_ingest_and_the_inbox_get_a_service_and_an_ingress() -> None:
    docs = by_key(str(EVERYTHING))
    listen_ports = {p["name"]: p for p in pod(docs, "listen")["containers"][0]["ports"]}
    assert listen_ports["http-webhook"]["containerPort"] == 8090  # connectors.webhook.port
    services = {
        name: {p["name"]: p for p in docs[("Service", f"{FULLNAME}-{name}")]["spec"]["ports"]}
        for name in ("listen", "inbox")
    }
    assert services["listen"]["http-webhook"]["port"] == 8090
    ingress = docs[("Ingress", FULLNAME)]["spec"]
    assert ingress["ingressClassName"] == "nginx" and ingress["tls"][0]["secretName"]
    routes = {rule["host"]: rule["http"]["paths"][0] for rule in ingress["rules"]}
    webhook, inbox = routes["mentions.example.com"], routes["inbox.example.com"]
    assert webhook["path"] == "/webhooks/mentions" and inbox["path"] == "/"
    for route, name in ((webhook, "listen"), (inbox, "inbox")):
        backend = route["backend"]["service"]
        assert backend["name"] == f"{FULLNAME}-{name}"
        assert backend["port"]["name"] in services[name]

    # No webhook block, or one switched off: no webhook port, no webhook route.
    for sets in ((), ('json:listen.config={"connectors":{"webhook":{"enabled":false}}}',)):
        docs = by_key("ingress.enabled=true", *sets)
        ports = docs[("Service", f"{FULLNAME}-listen")]["spec"]["ports"]
        assert [p["name"] for p in ports] == ["http-metrics"]
        backends = [
            r["http"]["paths"][0]["backend"]["service"]["name"]
            for r in docs[("Ingress", FULLNAME)]["spec"]["rules"]
        ]
        assert backends == [f"{FULLNAME}-inbox"]
    default_port = by_key('json:listen.config={"connectors":{"webhook":{"secrets":["whsec_x"]}}}')
    ports = default_port[("Service", f"{FULLNAME}-listen")]["spec"]["ports"]
    assert [p["port"] for p in ports if p["name"] == "http-webhook"] == [8088]


def test_the_network_policy_admits_the_named_ports_and_sends_to_kafka_and_dns() -> None:
    assert not any(d["kind"] == "NetworkPolicy" for d in rendered())
    docs = by_key(str(EVERYTHING))
    policy = docs[("NetworkPolicy", FULLNAME)]["spec"]
    for component in ("worker", "listen", "inbox"):
        template = docs[("Deployment", f"{FULLNAME}-{component}")]["spec"]["template"]
        assert (
            policy["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        )
    container_ports = {
        p["name"]
        for c in ("worker", "listen", "inbox")
        for p in pod(docs, c)["containers"][0]["ports"]
    }
    admitted = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert admitted == container_ports == {"http-metrics", "http", "http-webhook", "http-sync"}
    metrics, public = policy["ingress"]
    assert metrics["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }  # fmt: skip
    assert public["from"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "ingress-nginx"
    }  # fmt: skip
    egress = [(tuple(p["port"] for p in r["ports"]), bool(r.get("to"))) for r in policy["egress"]]
    assert egress == [((53, 53), False), ((9096,), True), ((443,), False), ((8080,), True)]


def test_every_pod_runs_as_the_service_account_without_a_token() -> None:
    docs = by_key(str(EVERYTHING))
    account = docs[("ServiceAccount", FULLNAME)]
    assert account["automountServiceAccountToken"] is False
    assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    for component in ("worker", "listen", "inbox"):
        spec = pod(docs, component)
        assert spec["serviceAccountName"] == FULLNAME
        assert spec["automountServiceAccountToken"] is False
    spec = pod(by_key("serviceAccount.create=false"), "worker")
    assert spec["serviceAccountName"] == "default"


def test_the_disruption_budgets_select_their_deployments_pods() -> None:
    docs = by_key()
    for component in ("worker", "inbox"):
        budget = docs[("PodDisruptionBudget", f"{FULLNAME}-{component}")]["spec"]
        labels = docs[("Deployment", f"{FULLNAME}-{component}")]["spec"]["template"]["metadata"]
        assert budget["selector"]["matchLabels"].items() <= labels["labels"].items()
        assert budget["maxUnavailable"] == 1
    assert ("PodDisruptionBudget", f"{FULLNAME}-listen") not in docs  # one replica
    assert not any(
        d["kind"] == "PodDisruptionBudget"
        for d in rendered("worker.maxUnavailable=null", "inbox.enabled=false")
    )


def test_the_worker_service_exposes_the_sync_webhooks_only_when_asked() -> None:
    def sync_ports(*sets: str) -> list[int]:
        service = by_key(*sets)[("Service", f"{FULLNAME}-worker")]
        return [p["port"] for p in service["spec"]["ports"] if p["name"] == "http-sync"]

    assert sync_ports() == []
    assert sync_ports("worker.exposeSync=true") == [6067]


# --- schemas of the rendered objects ---------------------------------------------------------


def strict(schema: Any) -> Any:
    """A CRD schema with unknown fields refused (the API server would drop them silently)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def crd_validator(doc: Doc) -> jsonschema.Draft7Validator:
    group, version = doc["apiVersion"].split("/")
    path = CRDS / f"{group}_{version}_{doc['kind']}.json"
    assert path.exists(), f"no CRD schema for {doc['apiVersion']} {doc['kind']} in {CRDS}"
    return jsonschema.Draft7Validator(strict(json.loads(path.read_text())))


def test_rendered_manifests_pass_the_kubernetes_and_crd_schemas() -> None:
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate (ships the schemas)"
    )
    version = KUBE_VERSION.rsplit(".", 1)[0]
    checked: dict[str, int] = {}
    for docs in (rendered(), rendered(str(EVERYTHING))):
        for doc in docs:
            if "." in doc["apiVersion"].split("/")[0] and not doc["apiVersion"].startswith(
                ("networking.k8s.io/", "policy/")
            ):
                crd_validator(doc).validate(doc)
            else:
                kubernetes_validate.validate(doc, version, strict=True)
            checked[doc["kind"]] = checked.get(doc["kind"], 0) + 1
    assert len(rendered()) + len(rendered(str(EVERYTHING))) == sum(checked.values())
    assert {"PrometheusRule", "ServiceMonitor", "ScaledObject", "TriggerAuthentication",
            "NetworkPolicy", "Ingress", "PodDisruptionBudget"} <= set(checked)  # fmt: skip


def test_the_schema_checks_reject_a_misspelt_field() -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = by_key(str(EVERYTHING))
    broken = json.loads(json.dumps(docs[("Deployment", f"{FULLNAME}-worker")]))
    broken["spec"]["replicaz"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBE_VERSION.rsplit(".", 1)[0], strict=True)
    for key, field in (
        (("PrometheusRule", FULLNAME), ("spec", "groups", 0, "rules", 0, "exprr")),
        (("ServiceMonitor", f"{FULLNAME}-worker"), ("spec", "endpoints", 0, "intervall")),
        (("ScaledObject", f"{FULLNAME}-worker"), ("spec", "minReplicas")),
        (("TriggerAuthentication", f"{FULLNAME}-kafka"), ("spec", "secretTargetRefs")),
    ):
        doc = json.loads(json.dumps(docs[key]))
        assert not list(crd_validator(doc).iter_errors(doc)), key
        node: Any = doc
        for step in field[:-1]:
            node = node[step]
        node[field[-1]] = "x"
        assert list(crd_validator(doc).iter_errors(doc)), f"{key}: {field} accepted"
