"""Deployment artifacts (deploy/): offline checks, no container engine, no network.

- every Kubernetes manifest validates against the bundled Kubernetes schemas
  (kubernetes-validate, strict: unknown fields fail); CRDs (Strimzi KafkaTopic) and the
  Kustomization are checked structurally here instead;
- the ConfigMap's config passes ``logfog check-config`` and keeps the rules of
  config/logfog.yaml (only kafka.bootstrap and enrich.geo may differ);
- the Strimzi topics match ``streams.topics.topic_specs`` exactly and keep privacy
  rule 14's retention limits (also after segment rolling);
- the Deployment's probes, resources and security settings; the Dockerfile's user,
  port, entrypoint and absence of secrets; the compose file's references.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from streams.admin import TopicSpec
from streams.cli import main as logfog_main
from streams.config import load_file
from streams.topics import topic_specs

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
CONFIG = ROOT / "config" / "logfog.yaml"

#: Kubernetes versions whose schemas every manifest must satisfy (both bundled).
K8S_VERSIONS = ("1.30.0", "1.33.0")

DAY_MS = 86_400_000
#: Privacy rule 14, per topic: raw <= 3 d, pseudonymous output <= 30 d, aggregates
#: <= 25 months (25 x 30.4 d, rounded down to 760 d).
RULE14_LIMIT_MS = {"raw": 3 * DAY_MS, "output": 30 * DAY_MS, "aggregates": 760 * DAY_MS}

#: Topics the manifests hold even for a config that would not create them (aggregation
#: or key sharing off): expected settings.
EXTRA_TOPICS = {
    "logfog.keys": {"partitions": 1, "cleanup": "compact,delete", "max_retention_ms": 3 * DAY_MS},
    "logs.aggregates": {"partitions": None, "cleanup": "delete",
                        "max_retention_ms": RULE14_LIMIT_MS["aggregates"]},
}  # fmt: skip

LOGFOG_ENV_RE = re.compile(r"\bLOGFOG_[A-Z0-9_]+\b")
WEB_PORT = 6066


# ---------------------------------------------------------------------------- helpers


def _docs(path: Path) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(d, dict) for d in docs), f"{path}: every document must be a mapping"
    return docs


def _manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _all_manifests() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in _manifest_files():
        for doc in _docs(path):
            yield path, doc


def _one(kind: str, path: Path | None = None) -> dict[str, Any]:
    found = [d for p, d in _all_manifests() if d["kind"] == kind and (path is None or p == path)]
    assert len(found) == 1, f"expected exactly one {kind}, found {len(found)}"
    return found[0]


def _known_logfog_env() -> set[str]:
    """LOGFOG_* names that appear in logfog's own sources (streams/)."""
    names: set[str] = set()
    for source in (ROOT / "streams").rglob("*.py"):
        names.update(LOGFOG_ENV_RE.findall(source.read_text(encoding="utf-8")))
    return names


def _config_from_configmap() -> str:
    data = _one("ConfigMap")["data"]
    assert set(data) == {"logfog.yaml"}, data.keys()
    text = data["logfog.yaml"]
    assert isinstance(text, str)
    return text


def _worker_container() -> dict[str, Any]:
    pod = _one("Deployment", K8S / "deployment.yaml")["spec"]["template"]["spec"]
    containers = [c for c in pod["containers"] if c["name"] == "worker"]
    assert len(containers) == 1
    return containers[0]


def _quantity_bytes(value: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+)([KMG]i?)?", str(value))
    assert match, f"unsupported memory quantity {value!r}"
    return int(match.group(1)) * units.get(match.group(2) or "", 1)


def _cpu_millis(value: str | int) -> int:
    text = str(value)
    return int(text[:-1]) if text.endswith("m") else int(float(text) * 1000)


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    lines = [
        line
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    instructions = _dockerfile_instructions()
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def _strimzi_topics() -> dict[str, dict[str, Any]]:
    topics: dict[str, dict[str, Any]] = {}
    for _path, doc in _all_manifests():
        if doc["kind"] == "KafkaTopic":
            name = doc["spec"].get("topicName", doc["metadata"]["name"])
            assert name not in topics, f"topic {name} declared twice"
            topics[name] = doc
    return topics


# ------------------------------------------------------------ Kubernetes manifests


def test_every_manifest_validates_against_kubernetes_schemas() -> None:
    validated = set()
    for path, doc in _all_manifests():
        if doc["apiVersion"].startswith("kafka.strimzi.io/"):
            continue  # a CRD: checked by the Strimzi tests below
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{path.name}: {doc['kind']} invalid for {version}: {error.message}")
            except SchemaNotFoundError:
                pytest.fail(f"{path.name}: no Kubernetes schema for {doc['kind']}")
        validated.add(doc["kind"])
    expected = {"Namespace", "ConfigMap", "Secret", "Deployment", "PodDisruptionBudget",
                "Service", "PersistentVolumeClaim", "Job", "Pod", "NetworkPolicy"}  # fmt: skip
    assert expected <= validated, f"missing manifests: {expected - validated}"


def test_the_schema_validation_rejects_a_bad_manifest() -> None:
    """Guards the guard: strict validation must catch a typo in a Deployment."""
    bad = yaml.safe_load((K8S / "deployment.yaml").read_text(encoding="utf-8"))
    bad["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)


def test_every_manifest_is_namespaced_and_labelled() -> None:
    for path, doc in _all_manifests():
        meta = doc["metadata"]
        assert meta.get("labels", {}).get("app.kubernetes.io/name") == "logfog", path.name
        if doc["kind"] == "Namespace":
            continue
        expected = "kafka" if doc["kind"] in ("KafkaTopic", "KafkaUser") else "logfog"
        assert meta.get("namespace") == expected, f"{path.name}: {doc['kind']} namespace"


def test_kustomization_lists_the_manifests() -> None:
    kustomization = _docs(K8S / "kustomization.yaml")[0]
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    resources = kustomization["resources"]
    for name in resources:
        assert (K8S / name).is_file(), f"kustomization lists missing {name}"
    optional = {
        "secret.example.yaml",
        "job-topics.yaml",
        "geo-loader.yaml",
        "aggregator.yaml",
        "networkpolicy.yaml",
    }  # applied by hand (fmt: skip)
    assert "secret.example.yaml" not in resources, "an example secret must not be applied"
    assert {p.name for p in _manifest_files()} - optional == set(resources)
    # No namespace transformer: it would move the KafkaTopics out of Strimzi's namespace.
    assert "namespace" not in kustomization
    assert {i["name"] for i in kustomization.get("images", [])} == {"logfog"}


def test_namespace_enforces_restricted_pod_security() -> None:
    labels = _one("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# ---------------------------------------------------------------------- ConfigMap


def test_configmap_config_passes_check_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "logfog.yaml"
    path.write_text(_config_from_configmap(), encoding="utf-8")
    assert logfog_main(["check-config", str(path)]) == 0
    assert ": OK: " in capsys.readouterr().out


def test_configmap_keeps_the_rules_of_config_logfog_yaml(tmp_path: Path) -> None:
    path = tmp_path / "logfog.yaml"
    path.write_text(_config_from_configmap(), encoding="utf-8")
    deployed, _ = load_file(path)
    reference, _ = load_file(CONFIG)
    raw_deployed = yaml.safe_load(_config_from_configmap())
    raw_reference = yaml.safe_load(CONFIG.read_text(encoding="utf-8"))
    # The field rules, as written and as normalized, are identical.
    assert raw_deployed["destinations"] == raw_reference["destinations"]
    assert deployed["destinations"] == reference["destinations"]
    # Everything else too, except where Kafka and the geo database are.
    for key in sorted(set(reference) | set(deployed)):
        if key not in ("kafka", "enrich"):
            assert deployed.get(key) == reference.get(key), key
    production = {"bootstrap", "replication", "create_topics", "security", "compression"}
    assert deployed["kafka"]["compression"] == "lz4"  # bytes cross a network there
    assert {k: v for k, v in deployed["kafka"].items() if k not in production} == {
        k: v for k, v in reference["kafka"].items() if k not in production
    }
    assert deployed["enrich"]["cache_size"] == reference["enrich"]["cache_size"]
    # In-cluster TLS bootstrap, geo database on the mounted volume.
    assert not deployed["kafka"]["bootstrap"].startswith(("127.", "localhost"))
    assert deployed["kafka"]["bootstrap"].endswith(".svc:9093")
    geo_mount = _mount_path("geo")
    for kind, value in deployed["enrich"]["geo"].items():
        if value is not None:
            assert value.startswith(geo_mount + "/"), f"enrich.geo.{kind} is not on the volume"


def test_configmap_is_rendered_from_the_current_config() -> None:
    """configmap.yaml is generated: re-run deploy/k8s/render_configmap.py after edits."""
    spec = importlib.util.spec_from_file_location("render_configmap", K8S / "render_configmap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    deployed = yaml.safe_load(_config_from_configmap())
    rendered = module.render(
        CONFIG.read_text(encoding="utf-8"),
        deployed["kafka"]["bootstrap"],
        deployed["enrich"]["geo"]["city"],
    )
    assert (K8S / "configmap.yaml").read_text(encoding="utf-8") == rendered, (
        "stale: run .venv/bin/python deploy/k8s/render_configmap.py"
    )


def _mount_path(volume: str) -> str:
    mounts = {m["name"]: m for m in _worker_container()["volumeMounts"]}
    return str(mounts[volume]["mountPath"])


# ------------------------------------------------------------------------ Kafka security


def _deployed_config(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "logfog.yaml"
    path.write_text(_config_from_configmap(), encoding="utf-8")
    return load_file(path)[0]


def test_deployed_kafka_is_sasl_ssl_with_files_from_secrets(tmp_path: Path) -> None:
    security = _deployed_config(tmp_path)["kafka"]["security"]
    assert security["protocol"] == "SASL_SSL"
    assert security["sasl_mechanism"].startswith("SCRAM-")
    assert security["password"].startswith("file:"), "never a literal password"
    files = {security["ca_file"], security["password"].removeprefix("file:")}
    user = next(d for _, d in _all_manifests() if d["kind"] == "KafkaUser")
    assert user["metadata"]["name"] == security["username"]
    assert user["spec"]["authentication"]["type"] == security["sasl_mechanism"].lower()
    for path in (K8S / "deployment.yaml", K8S / "aggregator.yaml", K8S / "job-topics.yaml"):
        (doc,) = _docs(path)
        pod = doc["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        mount = next(m for m in container["volumeMounts"] if m["name"] == "kafka-auth")
        assert mount["readOnly"] is True
        volume = next(v for v in pod["volumes"] if v["name"] == "kafka-auth")
        provided = {
            f"{mount['mountPath']}/{item['path']}"
            for source in volume["projected"]["sources"]
            for item in source["secret"]["items"]
        }
        assert files <= provided, path.name
        assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]


def test_deployed_topics_are_replicated_and_owned_by_strimzi(tmp_path: Path) -> None:
    config = _deployed_config(tmp_path)
    assert config["kafka"]["create_topics"] is False
    topics = _strimzi_topics()
    for spec in topic_specs(config):
        assert spec.replication_factor == 3, spec.name
        assert topics[spec.name]["spec"]["replicas"] == spec.replication_factor, spec.name


# ------------------------------------------------------------------------ topics


def test_strimzi_topics_match_the_config_exactly() -> None:
    config, _ = load_file(CONFIG)
    topics = _strimzi_topics()
    specs: list[TopicSpec] = topic_specs(config)
    assert specs
    for spec in specs:
        assert spec.name in topics, f"no KafkaTopic for {spec.name}"
        topic = topics[spec.name]["spec"]
        assert topic["partitions"] == spec.partitions, spec.name
        assert int(topic["config"]["retention.ms"]) == spec.retention_ms, spec.name
        for key, value in spec.config.items():
            assert str(topic["config"].get(key)) == value, (spec.name, key)
        assert topic["config"]["cleanup.policy"] == spec.cleanup_policy, spec.name
        assert topic["replicas"] >= spec.replication_factor, spec.name
    config_names = {s.name for s in specs}
    unexpected = set(topics) - config_names - set(EXTRA_TOPICS)
    assert not unexpected, f"KafkaTopics for unknown topics: {unexpected}"


def test_strimzi_keys_topic_matches_keyshare_topic_spec() -> None:
    """logfog.keys exactly as streams.keyshare.topic_spec wants it for the config's epoch."""
    from streams.durations import parse_duration
    from streams.keyshare import DEFAULT_TOPIC, topic_spec

    config, _ = load_file(CONFIG)
    spec = topic_spec(
        DEFAULT_TOPIC,
        epoch_seconds=parse_duration(config["keys"]["epoch"]),
        grace_seconds=parse_duration(config["keys"]["grace"]),
    )
    topic = _strimzi_topics()[spec.name]["spec"]
    assert topic["partitions"] == spec.partitions
    deployed = {k: str(v) for k, v in topic["config"].items() if k != "min.insync.replicas"}
    assert deployed == spec.topic_configs()


def test_strimzi_topics_for_keys_and_aggregates() -> None:
    topics = _strimzi_topics()
    for name, expected in EXTRA_TOPICS.items():
        assert name in topics, f"no KafkaTopic for {name}"
        spec = topics[name]["spec"]
        if expected["partitions"] is not None:
            assert spec["partitions"] == expected["partitions"], name
        assert spec["config"]["cleanup.policy"] == expected["cleanup"], name
        assert int(spec["config"]["retention.ms"]) <= expected["max_retention_ms"], name


def test_strimzi_topic_structure() -> None:
    topics = _strimzi_topics()
    assert topics
    for name, doc in topics.items():
        assert doc["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}, name
        meta = doc["metadata"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]), meta["name"]
        assert meta["labels"].get("strimzi.io/cluster"), f"{name}: no strimzi.io/cluster"
        spec = doc["spec"]
        assert set(spec) <= {"topicName", "partitions", "replicas", "config"}, name
        assert isinstance(spec["partitions"], int) and spec["partitions"] >= 1
        assert isinstance(spec["replicas"], int) and spec["replicas"] >= 1
        assert all(isinstance(v, str | int | bool) for v in spec["config"].values()), name
        min_isr = int(spec["config"].get("min.insync.replicas", 1))
        assert min_isr < spec["replicas"] or spec["replicas"] == 1, name


def _rule14_limit(name: str, config: dict[str, Any]) -> int:
    if name == config["kafka"]["raw"]["topic"]:
        return RULE14_LIMIT_MS["raw"]
    if name == "logs.aggregates":
        return RULE14_LIMIT_MS["aggregates"]
    return RULE14_LIMIT_MS["output"]


def test_every_topic_retention_keeps_rule_14() -> None:
    config, _ = load_file(CONFIG)
    for spec in topic_specs(config):
        assert spec.retention_ms is not None, f"{spec.name}: retention not declared"
        assert 0 < spec.retention_ms <= _rule14_limit(spec.name, config), spec.name
    for name, doc in _strimzi_topics().items():
        retention = int(doc["spec"]["config"]["retention.ms"])
        assert 0 < retention <= _rule14_limit(name, config), name


def test_segments_roll_so_that_retention_is_enforced_on_time() -> None:
    """Kafka deletes closed segments only: a record lives up to retention + segment.ms."""
    for name, doc in _strimzi_topics().items():
        config = doc["spec"]["config"]
        assert "segment.ms" in config, f"{name}: segment.ms not set (broker default is 7 d)"
        assert int(config["segment.ms"]) <= int(config["retention.ms"]) // 24, name


def test_topics_create_makes_every_topic_strimzi_has() -> None:
    """`logfog topics create` (compose's and job-topics.yaml's one-shot) creates every
    topic, logfog.keys and the internal ones included, with the Strimzi settings."""
    config, _ = load_file(CONFIG)
    topics = _strimzi_topics()
    specs = {s.name: s for s in topic_specs(config)}
    assert set(topics) <= set(specs), set(topics) - set(specs)
    for name, topic in topics.items():
        wanted = specs[name].topic_configs()
        deployed = {k: str(v) for k, v in topic["spec"]["config"].items()
                    if k != "min.insync.replicas"}  # fmt: skip
        assert deployed == wanted, name


# -------------------------------------------------------------------- Deployment


def test_probes_use_the_named_web_port_and_health_paths() -> None:
    container = _worker_container()
    ports = {p["name"]: p for p in container["ports"]}
    assert ports["web"]["containerPort"] == WEB_PORT
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        http = container[probe]["httpGet"]
        assert http == {"path": path, "port": "web"}, probe
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}


def test_the_aggregator_child_port_is_declared_where_logfog_reads_it() -> None:
    container = _worker_container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert ports["aggregator"] == int(env["LOGFOG_AGGREGATOR_WEB_PORT"]) != ports["web"]
    compose_worker = _compose()["services"]["worker"]
    assert compose_worker["environment"]["LOGFOG_AGGREGATOR_WEB_PORT"] in str(
        compose_worker["ports"]
    )


def test_resources_are_set(tmp_path: Path) -> None:
    resources = _worker_container()["resources"]
    requests, limits = resources["requests"], resources["limits"]
    assert _cpu_millis(requests["cpu"]) >= 1000, "one worker saturates one core"
    if _deployed_config(tmp_path)["aggregates"]["run_in"] == "process":
        assert _cpu_millis(requests["cpu"]) >= 2000, "and its aggregator child another"
    assert _quantity_bytes(requests["memory"]) >= 512 * 2**20
    assert _quantity_bytes(limits["memory"]) >= _quantity_bytes(requests["memory"])
    # Deliberately no CPU limit (CFS throttling of the event loop); if one is ever
    # added it must leave headroom above the request for the consumer thread.
    if "cpu" in limits:
        assert _cpu_millis(limits["cpu"]) > _cpu_millis(requests["cpu"])


def test_worker_runs_non_root_with_a_read_only_root_filesystem() -> None:
    pod = _one("Deployment", K8S / "deployment.yaml")["spec"]["template"]["spec"]
    container = _worker_container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = {m["mountPath"]: m["name"] for m in container["volumeMounts"]
                if not m.get("readOnly")}  # fmt: skip
    env = {e["name"]: e for e in container["env"]}
    datadir = env["LOGFOG_DATA_DIR"]["value"]
    for path in ("/tmp", datadir):
        assert path in writable, f"{path} must be writable"
        assert "emptyDir" in volumes[writable[path]], path
    config_mount = next(m for m in container["volumeMounts"] if m["name"] == "config")
    assert config_mount["readOnly"] is True
    assert volumes["config"]["configMap"]["name"] == _one("ConfigMap")["metadata"]["name"]
    assert "--config" in container["args"]
    config_arg = container["args"][container["args"].index("--config") + 1]
    assert config_arg == f"{config_mount['mountPath']}/logfog.yaml"


def test_worker_env_comes_from_the_secret_and_is_read_by_logfog() -> None:
    container = _worker_container()
    known = _known_logfog_env()
    secret = _one("Secret")
    for item in container["env"]:
        if item["name"].startswith("LOGFOG_"):
            assert item["name"] in known, f"logfog never reads {item['name']}"
    env = {e["name"]: e for e in container["env"]}
    master = env["LOGFOG_MASTER_KEY"]
    assert "value" not in master, "the master key must come from a Secret"
    ref = master["valueFrom"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"]
    assert ref["key"] in secret["stringData"]
    assert ref.get("optional") is not True, "the worker needs the master key"
    # The rotation key: from the same Secret, and optional (absent outside rotations).
    accepted = env["LOGFOG_MASTER_KEY_ACCEPTED"]
    assert "value" not in accepted
    assert accepted["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    assert accepted["valueFrom"]["secretKeyRef"]["optional"] is True


def test_example_secret_holds_no_usable_key() -> None:
    for value in _one("Secret")["stringData"].values():
        assert not re.fullmatch(r"[0-9a-fA-F]{64,}", value), "a real-looking key in the example"


def test_spread_shutdown_and_disruption_budget() -> None:
    deployment = _one("Deployment", K8S / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    keys = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
    assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys
    for constraint in pod["topologySpreadConstraints"]:
        assert constraint["labelSelector"]["matchLabels"] == selector
    assert 30 <= pod["terminationGracePeriodSeconds"] <= 300
    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == selector
    assert pdb["spec"].get("maxUnavailable") == 1 or pdb["spec"].get("minAvailable") == 1
    config, _ = load_file(CONFIG)
    assert deployment["spec"]["replicas"] <= config["kafka"]["raw"]["partitions"], (
        "workers beyond the raw topic's partitions idle"
    )


def test_service_exposes_metrics_for_prometheus() -> None:
    service = _one("Service")
    selector = _one("Deployment", K8S / "deployment.yaml")["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    annotations = service["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert int(annotations["prometheus.io/port"]) == WEB_PORT
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["web"]["targetPort"] == "web"
    assert ports["web"]["port"] == WEB_PORT


def test_topics_job_uses_the_same_config() -> None:
    job = _one("Job", K8S / "job-topics.yaml")
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:2] == ["topics", "create"]
    config_name = job["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"]
    assert config_name == _one("ConfigMap")["metadata"]["name"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_the_readme_states_the_manifests_resources() -> None:
    """deploy/README.md gave the worker `cpu: 1`, `512Mi` and a `1Gi` limit, while its
    manifest requests two cores (worker and aggregator child), 1536Mi and a 5Gi limit."""
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    section = text[text.index("### Resources") : text.index("## Scaling")]
    bullets = [" ".join(b.split()) for b in re.split(r"^- ", section, flags=re.M)[1:]]
    for name in ("deployment.yaml", "aggregator.yaml"):
        pod = _one("Deployment", K8S / name)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        requests, limits = container["resources"]["requests"], container["resources"]["limits"]
        stated = (f'requests `cpu: "{requests["cpu"]}"`, `memory: {requests["memory"]}`; '
                  f'limits: `memory: {limits["memory"]}`')  # fmt: skip
        (bullet,) = [b for b in bullets if f"(`deploy/k8s/{name}`" in b]
        assert stated in bullet, (name, stated, bullet)
        assert "cpu" not in limits and "no CPU limit" in bullet, name


# -------------------------------------------------------------------- Dockerfile


def test_dockerfile_final_stage() -> None:
    stage = _final_stage()
    words = dict(stage)
    assert words["FROM"].startswith(("${PYTHON_IMAGE}", "python:3.11-slim"))
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    user = [rest for word, rest in stage if word == "USER"]
    assert user, "no USER in the final stage"
    assert user[-1].split(":")[0] not in ("root", "0"), user[-1]
    assert "6066" in [rest for word, rest in stage if word == "EXPOSE"]
    assert words["ENTRYPOINT"] == '["logfog"]'
    assert words["CMD"] == '["worker", "--config", "/etc/logfog/logfog.yaml"]'
    health = words["HEALTHCHECK"]
    assert "/healthz" in health and "python" in health and "curl" not in health


def test_dockerfile_is_multi_stage_and_installs_the_package() -> None:
    instructions = _dockerfile_instructions()
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert len(stages) >= 2
    assert any("pip install ." in rest for word, rest in instructions if word == "RUN")
    for word, rest in instructions:
        if word == "COPY" and "--from=" not in rest:
            *sources, _target = shlex.split(rest)
            for source in sources:
                assert (ROOT / source).exists(), f"COPY source {source} missing in the context"


def test_dockerfile_bakes_in_no_secret() -> None:
    secretish = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL", re.I)
    for word, rest in _dockerfile_instructions():
        if word in ("ENV", "ARG"):
            assert not secretish.search(rest), f"{word} {rest}"
        if word == "COPY":
            assert not re.search(r"\.env\b|secret|\.key\b|\.pem\b", rest), rest


def test_the_build_backend_floor_can_build_the_project() -> None:
    """pyproject.toml's license = "Apache-2.0" (a PEP 639 string) needs setuptools >= 77,
    but the build system allowed setuptools>=68: the audit built with 76.1.0 (no build
    isolation, as in an offline image build) and metadata generation failed
    ("`project.license` must be valid exactly by one definition"). Checked statically:
    a real build needs the network and time."""
    import tomllib

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert isinstance(data["project"]["license"], str)
    (requirement,) = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    floor = re.fullmatch(r"setuptools\s*>=\s*(\d+)(\.\d+)*", requirement)
    assert floor and int(floor.group(1)) >= 77, requirement


def test_docker_ignore_keeps_the_context_small() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [line.strip() for line in ignore if line.strip() and not line.startswith("#")]
    assert rules[0] == "*", "allowlist: ignore everything first"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for word, rest in _dockerfile_instructions():
        if word == "COPY" and "--from=" not in rest:
            *sources, _target = shlex.split(rest)
            assert set(sources) <= allowed, f"COPY {sources} but the ignore file drops them"


# ----------------------------------------------------------------------- compose


def _compose() -> dict[str, Any]:
    compose = _docs(COMPOSE)[0]
    assert isinstance(compose.get("services"), dict)
    return compose


def _compose_path(value: str) -> Path:
    return (COMPOSE_DIR / value).resolve()


def test_compose_builds_the_dockerfile_and_mounts_existing_files() -> None:
    services = _compose()["services"]
    built = 0
    for name, service in services.items():
        build = service.get("build")
        if build is not None:
            context = _compose_path(build["context"])
            assert context == ROOT, f"{name}: build context must be the repo root"
            assert (context / build["dockerfile"]).resolve() == DOCKERFILE
            built += 1
        else:
            assert service.get("image"), f"{name}: neither image nor build"
        for volume in service.get("volumes", []):
            if isinstance(volume, dict) and volume.get("type") == "bind":
                assert _compose_path(volume["source"]).exists(), (name, volume["source"])
                assert volume.get("read_only") is True, f"{name}: {volume['target']} writable"
    assert built >= 2
    worker_config = next(v for v in services["worker"]["volumes"]
                         if v["target"] == "/etc/logfog/logfog.yaml")  # fmt: skip
    assert _compose_path(worker_config["source"]) == CONFIG


def test_compose_kafka_is_kraft_with_host_and_network_listeners() -> None:
    kafka = _compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert not kafka["image"].endswith(":latest")
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    assert "kafka:" in advertised and "localhost:" in advertised
    assert str(env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"]).lower() == "false"
    assert kafka["healthcheck"]["test"]


def test_compose_services_order_and_scale() -> None:
    services = _compose()["services"]
    assert services["topics"]["command"][:2] == ["topics", "create"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    worker = services["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert "6066" in str(worker["ports"])
    assert "shipper" in services["shipper"]["profiles"]
    # Optional, behind a profile: for run_in: aggregator (with run_in: worker it refuses).
    aggregator = services["aggregator"]
    assert aggregator["profiles"] == ["aggregator"] and aggregator["command"][0] == "aggregator"
    assert "LOGFOG_MASTER_KEY" not in aggregator["environment"]
    assert aggregator["environment"]["LOGFOG_WEB_PORT"] in str(aggregator["ports"])
    shipper_args = services["shipper"]["entrypoint"] + services["shipper"]["command"]
    assert "ship" in shipper_args
    sample = next(a for a in shipper_args if a.startswith("/samples/"))
    mounts = {v["target"]: v["source"] for v in services["shipper"]["volumes"]}
    assert (_compose_path(mounts["/samples"]) / sample.removeprefix("/samples/")).is_file()


class _ComposeLoader(yaml.SafeLoader):
    """Compose's merge tags (!override, !reset) as plain values."""


for _tag in ("!override", "!reset"):
    _ComposeLoader.add_constructor(
        _tag,
        lambda loader, node: (
            loader.construct_sequence(node)
            if isinstance(node, yaml.SequenceNode)
            else loader.construct_mapping(node)
        ),
    )


def test_compose_production_overlay_uses_sasl_ssl_with_mounted_files(tmp_path: Path) -> None:
    overlay = yaml.load(
        (COMPOSE_DIR / "compose.production.yaml").read_text(encoding="utf-8"), _ComposeLoader
    )
    spec = importlib.util.spec_from_file_location("render_configmap", K8S / "render_configmap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    production = COMPOSE_DIR / "logfog.production.yaml"
    assert production.read_text(encoding="utf-8") == module.render_compose(
        CONFIG.read_text(encoding="utf-8")
    ), "stale: run .venv/bin/python deploy/k8s/render_configmap.py"
    config, _ = load_file(production)
    security = config["kafka"]["security"]
    assert security["protocol"] == "SASL_SSL" and security["password"].startswith("file:")
    assert config["kafka"]["create_topics"] is False and config["kafka"]["replication"] == 3
    needed = {security["ca_file"], security["password"].removeprefix("file:")}
    for name in ("topics", "worker", "aggregator", "shipper"):
        service = overlay["services"][name]
        mounts = {v["target"]: v for v in service["volumes"]}
        assert _compose_path(mounts["/etc/logfog/logfog.yaml"]["source"]) == production
        assert needed <= set(mounts), name
        assert all(v["read_only"] is True for v in mounts.values()), name
        assert "LOGFOG_BOOTSTRAP" in service["environment"], name
        assert not any("PASSWORD" in key for key in service["environment"]), name
    assert "secrets/" in (COMPOSE_DIR / ".gitignore").read_text(encoding="utf-8")


def test_compose_env_vars_are_read_by_logfog_and_the_key_is_not_inline() -> None:
    known = _known_logfog_env()
    services = _compose()["services"]
    for name, service in services.items():
        for var, value in (service.get("environment") or {}).items():
            if var.startswith("LOGFOG_"):
                assert var in known, f"{name}: logfog never reads {var}"
            if var.startswith("LOGFOG_MASTER_KEY"):
                assert re.fullmatch(rf"\$\{{{var}(:?[?-].*)?\}}", str(value)), value
    assert "LOGFOG_BOOTSTRAP" in services["worker"]["environment"]
    assert "LOGFOG_MASTER_KEY" in services["worker"]["environment"]


def test_compose_env_example_is_a_placeholder() -> None:
    lines = (COMPOSE_DIR / ".env.example").read_text(encoding="utf-8").splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert set(values) <= _known_logfog_env()
    assert "LOGFOG_MASTER_KEY" in values
    assert not re.fullmatch(r"[0-9a-fA-F]{64,}", values["LOGFOG_MASTER_KEY"].strip())
    gitignore = (COMPOSE_DIR / ".gitignore").read_text(encoding="utf-8").split()
    assert ".env" in gitignore


def test_the_optional_aggregator_deployment_holds_no_key_and_fits_its_partitions() -> None:
    from streams.cli import build_parser

    deployment = _one("Deployment", K8S / "aggregator.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "aggregator" and args.config == "/etc/logfog/logfog.yaml"
    # Least privilege: no master key, no geo database (it compiles no rules).
    assert all("secretKeyRef" not in e.get("valueFrom", {}) for e in container.get("env", []))
    assert {v["name"] for v in pod["volumes"]} == {"config", "data", "tmp", "kafka-auth"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert {"startupProbe", "livenessProbe", "readinessProbe", "resources"} <= set(container)
    assert container["ports"][0]["containerPort"] == int(
        next(e["value"] for e in container["env"] if e["name"] == "LOGFOG_WEB_PORT")
    )
    from streams.config import load_file

    config, _ = load_file(ROOT / "config" / "logfog.yaml")
    assert deployment["spec"]["replicas"] <= config["aggregates"]["input"]["partitions"]


def test_deploy_readme_env_table_lists_every_variable_logfog_reads() -> None:
    """An audit (docs D4): the table "Environment read by `streams/`" left out
    LOGFOG_AGGREGATOR_WEB_PORT (set in deployment.yaml and compose) and
    LOGFOG_STOP_TIMEOUT (bounds the SIGTERM stop, and so the grace period)."""
    read = _known_logfog_env() - {"LOGFOG_PARENT_PID"}  # internal: set by the worker
    text = (DEPLOY / "README.md").read_text(encoding="utf-8")
    table = text.split("Environment\nread by `streams/`:", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `?(LOGFOG_[A-Z0-9_]+)", table, re.M))
    documented |= set(re.findall(r"`(LOGFOG_[A-Z0-9_]+)`", table))
    assert sorted(read - documented) == []


def test_deploy_readme_quotes_the_readmes_throughput_figures() -> None:
    """An audit (docs D8): deploy/README put the cost of ``run_in: worker`` at 42-47%
    citing the README, which says 28-45%, and called the batched rate (~35-40k lines/s)
    "pure pipeline", which the README measures at ~70k."""
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    deploy = " ".join((DEPLOY / "README.md").read_text(encoding="utf-8").split())
    ours = re.search(
        r"In the worker's own process \(`run_in: worker`\) the aggregation costs (\d+-\d+)%",
        readme,
    )
    theirs = re.search(r"`run_in: worker`\) the aggregation costs the worker (\d+-\d+)%", deploy)
    assert ours and theirs
    assert theirs.group(1) == ours.group(1)
    batched = re.search(
        r"\*\*Batched: 75,000 lines/s\.\*\* [^;]+; (\d+-\d+k) at full speed", readme
    )
    assert batched and f"{batched.group(1)} lines/s end to end" in deploy
    for text in (deploy, (K8S / "deployment.yaml").read_text(encoding="utf-8")):
        assert "lines/s of pure pipeline" not in text
        assert "35-40k" not in text


def test_the_network_policy_admits_only_the_web_ports_of_logfogs_pods() -> None:
    """The web pages have no authentication and their live counters can show single
    requests on a quiet site (an audit): the policy lets only the monitoring namespace
    reach the ports the worker and the aggregators declare, and no other ingress."""
    (policy,) = _docs(K8S / "networkpolicy.yaml")
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    assert spec["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "logfog"}
    (rule,) = spec["ingress"]
    assert [f.keys() for f in rule["from"]] == [{"namespaceSelector": 1}.keys()]
    declared = {
        port["containerPort"]
        for name in ("deployment.yaml", "aggregator.yaml")
        for doc in _docs(K8S / name)
        if doc["kind"] == "Deployment"
        for container in doc["spec"]["template"]["spec"]["containers"]
        for port in container.get("ports", [])
    }
    assert {p["port"] for p in rule["ports"]} == declared == {6066, 6067}
