"""deploy/compose and deploy/k8s agree with the code: settings, ports, files, versions.

Docker and a cluster are not needed: the files are read as Compose and Kubernetes would read
them (YAML with anchors, env files), and checked against engine/settings.py, the local stack's
own configs and the pages' paths. ``kubectl kustomize`` runs when kubectl is installed.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_files import (
    COMPOSE,
    COMPOSE_DIR,
    DEPLOY,
    K8S,
    MONITORING,
    ROOT,
    compose,
    container_env_names,
    containers,
    dockerfile_env,
    dockerfile_lines,
    env_file,
    environment,
    k8s_documents,
    kustomization,
    named_port,
    scrape_jobs,
)

from engine.activation.delivery.config import load_destinations
from engine.settings import SECRET_SETTINGS, Settings, load_settings
from engine.stack import kafka as kafka_server
from engine.stack import redis as redis_server
from engine.web_auth import PROBE_PATHS

DEFAULTS = Settings.model_construct()  # the documented defaults, whatever SEGFLOW_* the shell sets
WEB, DELIVER_WEB = DEFAULTS.web_port, DEFAULTS.deliver_web_port
SEGFLOW_SERVICES = ("worker-1", "worker-2", "learner", "deliver")


def setting_name(variable: str) -> str:
    return variable.removeprefix("SEGFLOW_").lower()


def secret_variables() -> set[str]:
    """Variables the destinations files read (secret_env, headers_env): not settings."""
    names = set()
    for path in (DEPLOY / "examples" / "destinations.yaml", K8S / "destinations.yaml"):
        for destination in yaml.safe_load(path.read_text()).values():
            names.add(destination.get("secret_env"))
            names.update((destination.get("headers_env") or {}).values())
    return {name for name in names if name}


SECRET_FILES = {f"{name}_file" for name in SECRET_SETTINGS}
"""Settings naming a secret's file: the deployment mounts it, so it is not on this machine."""


def assert_settings(variables: dict[str, str], where: str) -> None:
    """Every SEGFLOW_* name is a setting (or a destination secret) and every literal value valid
    (a secret's file only has to be an absolute path: it exists where the deployment mounts it)."""
    fields = set(Settings.model_fields)
    secrets = secret_variables()
    values: dict[str, Any] = {}
    for variable, value in variables.items():
        if not variable.startswith("SEGFLOW_") or variable in secrets:
            continue
        name = setting_name(variable)
        assert name in fields, f"{where}: {variable} is not a setting of engine/settings.py"
        if name in SECRET_FILES:
            assert Path(value).is_absolute(), f"{where}: {variable}={value} is not an absolute path"
        elif "${" not in value:
            values[name] = value
    load_settings(read_profile=False, **values)  # SettingsError names the first invalid one


@pytest.fixture(autouse=True)
def no_segflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SEGFLOW_"):
            monkeypatch.delenv(name)


# -- compose ---------------------------------------------------------------------------------------


def test_compose_settings_are_real_and_valid() -> None:
    services = compose()["services"]
    for name in SEGFLOW_SERVICES:
        assert_settings(environment(services[name]), f"compose service {name}")
    assert_settings(dockerfile_env(), "Dockerfile")


def test_compose_services_volumes_and_mounts_exist() -> None:
    spec = compose()
    services, volumes = spec["services"], set(spec.get("volumes") or {})
    assert {"kafka", "redis", "worker-1", "worker-2", "learner", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on") or []:
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for mount in service.get("volumes") or []:
            source = mount.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} mounts undeclared volume {source}"
        build = service.get("build")
        if build:
            assert (COMPOSE_DIR / build["context"] / build["dockerfile"]).is_file()


def test_compose_ports_agree_with_the_settings() -> None:
    services = compose()["services"]
    for name in SEGFLOW_SERVICES:
        env = environment(services[name])
        assert int(env["SEGFLOW_WEB_PORT"]) == WEB and int(env["SEGFLOW_DELIVER_WEB_PORT"]) == DELIVER_WEB
    for name in ("worker-1", "worker-2"):
        assert f"127.0.0.1:{WEB}/segflow/health" in " ".join(services[name]["healthcheck"]["test"])
    assert f"127.0.0.1:{DELIVER_WEB}/segflow/health" in " ".join(services["deliver"]["healthcheck"]["test"])
    assert f"127.0.0.1:{WEB}:{WEB}" in services["worker-1"]["ports"]
    # The host's CLI reaches the compose broker and Redis with the default settings.
    assert f"127.0.0.1:{DEFAULTS.kafka_port}:{DEFAULTS.kafka_port}" in services["kafka"]["ports"]
    assert (
        f"HOST://127.0.0.1:{DEFAULTS.kafka_port}"
        in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    )
    assert DEFAULTS.redis_url.startswith(f"redis://127.0.0.1:{DEFAULTS.redis_port}/")
    assert f"127.0.0.1:{DEFAULTS.redis_port}:6379" in services["redis"]["ports"]
    jobs = scrape_jobs(MONITORING / "prometheus.yml")
    assert jobs["segflow-worker"]["static_configs"][0]["targets"] == [f"worker-1:{WEB}", f"worker-2:{WEB}"]
    assert jobs["segflow-deliver"]["static_configs"][0]["targets"] == [f"deliver:{DELIVER_WEB}"]
    assert all(
        job["metrics_path"] == "/segflow/metrics" for name, job in jobs.items() if name != "segflow-ready"
    )
    ready = jobs["segflow-ready"]["static_configs"][0]["targets"]
    assert ready == [f"http://worker-{i}:{WEB}/segflow/ready" for i in (1, 2)]
    assert {"blackbox", "prometheus", "grafana"} <= set(services)


COMPOSE_TOKEN = "/run/secrets/web-token"


def test_compose_pages_need_the_token_that_prometheus_presents() -> None:
    spec = compose()
    services = spec["services"]
    assert spec["secrets"]["web-token"] == {"file": "./web-token"}
    assert "deploy/compose/web-token" in (ROOT / ".gitignore").read_text().splitlines()
    for name in (*SEGFLOW_SERVICES, "prometheus"):
        assert "web-token" in services[name]["secrets"], name
    for name in SEGFLOW_SERVICES:
        assert environment(services[name])["SEGFLOW_WEB_TOKEN_FILE"] == COMPOSE_TOKEN, name
    jobs = scrape_jobs(MONITORING / "prometheus.yml")
    for name in ("segflow-worker", "segflow-deliver"):
        assert jobs[name]["authorization"] == {"type": "Bearer", "credentials_file": COMPOSE_TOKEN}
    # The probes reach open pages only: the healthchecks and the blackbox exporter send no token.
    assert "authorization" not in jobs["segflow-ready"]
    for target in jobs["segflow-ready"]["static_configs"][0]["targets"]:
        assert "/" + target.split("/", 3)[3] in PROBE_PATHS
    for name in ("worker-1", "worker-2", "deliver"):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert any(path in test for path in PROBE_PATHS), name


def test_compose_kafka_is_the_pinned_version_configured_as_the_local_broker() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{kafka_server.pinned_version()}"
    env = kafka["environment"]
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    as_properties = {k.removeprefix("KAFKA_").lower().replace("_", "."): str(v) for k, v in env.items()}
    template = (DEPLOY / "local" / "server.properties.template").read_text().splitlines()
    local = dict(line.split("=", 1) for line in template if line and not line.startswith("#"))
    # Addresses differ (placeholders locally), and compose has one more listener, for the host.
    for key, value in local.items():
        if "$" in value or key == "listener.security.protocol.map":
            continue
        assert as_properties.get(key) == value, f"compose kafka {key}={as_properties.get(key)}, local {value}"


def test_compose_redis_runs_with_the_local_stacks_options() -> None:
    command = compose()["services"]["redis"]["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    conf = redis_server.render_redis_conf(DEFAULTS).splitlines()
    for line in conf:
        key, _, value = line.partition(" ")
        if key in ("appendonly", "appendfsync", "save", "hash-max-listpack-value"):
            assert options[f"--{key}"] == value.strip('"'), key


def test_dockerfile_builds_the_package_as_pyproject_declares_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {args[0] for args in dockerfile_lines("COPY")} | {
        name for args in dockerfile_lines("COPY") for name in args[:-1]
    }
    for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        assert pattern.rstrip("*") in copied, f"the Dockerfile does not copy {pattern}"
    assert {"pyproject.toml", project["project"]["readme"]} <= copied
    for source in copied:
        assert (ROOT / source).exists(), source
    (base,) = dockerfile_lines("FROM")
    version = base[0].split(":")[1].split("-")[0]
    assert tuple(int(p) for p in version.split(".")) >= (3, 11)  # requires-python
    assert project["project"]["requires-python"] == ">=3.11"
    assert {int(p) for args in dockerfile_lines("EXPOSE") for p in args} == {WEB, DELIVER_WEB}
    assert dockerfile_lines("ENTRYPOINT") == [['["segflow"]']]


# -- Kubernetes ------------------------------------------------------------------------------------


def test_k8s_settings_are_real_and_valid() -> None:
    settings_file = env_file(K8S / "segflow.env")
    assert_settings(settings_file, "deploy/k8s/segflow.env")
    profile = load_settings(K8S / "segflow.env")  # the same file also reads as a profile
    assert profile.web_port == WEB and profile.learner_embedded is False
    for path, document in k8s_documents():
        for container in containers(document):
            names = container_env_names(container)
            literal = {e["name"]: str(e.get("value", "${from}")) for e in container.get("env", [])}
            assert_settings(literal, f"{path.name} {container['name']}")
            assert len(names) == len(set(names))
            assert "SEGFLOW_CHECKPOINT_KEY" not in settings_file  # a Secret, never the ConfigMap


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for _, d in k8s_documents() if d["kind"] == "Deployment"}


def test_k8s_worker_probes_and_ports() -> None:
    (worker,) = containers(deployments()["segflow-worker"])
    assert worker["args"][0] == "worker"
    assert named_port(worker, "metrics") == WEB
    assert worker["readinessProbe"]["httpGet"] == {"path": "/segflow/ready", "port": "metrics"}
    assert worker["livenessProbe"]["httpGet"] == {"path": "/segflow/health", "port": "metrics"}
    assert worker["startupProbe"]["httpGet"]["path"] == "/segflow/health"
    grace = float(worker["args"][worker["args"].index("--grace") + 1])
    assert (
        deployments()["segflow-worker"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > grace
    )
    (deliver,) = containers(deployments()["segflow-deliver"])
    assert named_port(deliver, "metrics") == DELIVER_WEB
    assert deliver["livenessProbe"]["httpGet"] == {"path": "/segflow/health", "port": "metrics"}
    assert "SEGFLOW_DESTINATIONS_FILE" in container_env_names(deliver)


def test_k8s_pages_need_the_token_and_probes_do_not() -> None:
    for name in ("segflow-worker", "segflow-deliver"):
        (container,) = containers(deployments()[name])
        (entry,) = [e for e in container["env"] if e["name"] == "SEGFLOW_WEB_TOKEN"]
        assert entry["valueFrom"]["secretKeyRef"] == {"name": "segflow-secrets", "key": "web-token"}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            if probe in container:
                assert container[probe]["httpGet"]["path"] in PROBE_PATHS, (name, probe)
    assert "--from-literal=web-token=" in (ROOT / "README.md").read_text()
    (job,) = scrape_jobs(MONITORING / "prometheus-k8s.yml").values()
    assert job["authorization"]["type"] == "Bearer" and job["authorization"]["credentials_file"]
    assert "SEGFLOW_WEB_TOKEN" not in env_file(K8S / "segflow.env")  # a Secret, never the ConfigMap


def test_k8s_learner_is_one_fenced_replica_and_workers_do_not_embed_it() -> None:
    learner = deployments()["segflow-learner"]
    assert learner["spec"]["replicas"] == 1
    (container,) = containers(learner)
    assert container["args"] == ["learner"]
    assert env_file(K8S / "segflow.env")["SEGFLOW_LEARNER_EMBEDDED"] == "false"


def test_k8s_metrics_service_selects_worker_and_deliver_pods() -> None:
    (service,) = [d for _, d in k8s_documents() if d["kind"] == "Service"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["targetPort"] == "metrics"
    selector = service["spec"]["selector"]
    selected = {
        name
        for name, d in deployments().items()
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    }
    assert selected == {"segflow-worker", "segflow-deliver"}
    relabels = scrape_jobs(MONITORING / "prometheus-k8s.yml")["segflow"]["relabel_configs"]
    by_port = {r["regex"]: r["replacement"] for r in relabels}
    assert by_port == {f".*:{WEB}": "segflow-worker", f".*:{DELIVER_WEB}": "segflow-deliver"}


def test_k8s_mounts_match_the_configured_paths() -> None:
    settings_file = env_file(K8S / "segflow.env")
    rules_dir = str(Path(settings_file["SEGFLOW_RULES_FILE"]).parent)
    generated = {g["name"]: g for g in kustomization()["configMapGenerator"]}
    assert Path(settings_file["SEGFLOW_RULES_FILE"]).name in generated["segflow-rules"]["files"]
    for name, deployment in deployments().items():
        spec = deployment["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
        assert settings_file["SEGFLOW_STACK_DIR"] in mounts, name
        assert container["envFrom"] == [{"configMapRef": {"name": "segflow-settings"}}]
        if name != "segflow-deliver":
            assert mounts[rules_dir]["configMap"]["name"] == "segflow-rules", name
    (deliver,) = containers(deployments()["segflow-deliver"])
    destinations = next(e["value"] for e in deliver["env"] if e["name"] == "SEGFLOW_DESTINATIONS_FILE")
    assert Path(destinations).name in generated["segflow-destinations"]["files"]


def test_shipped_rules_and_destinations_load() -> None:
    shipped = (ROOT / "engine" / "rules" / "default_rules.yaml").read_text()
    assert (K8S / "rules.yaml").read_text() == shipped, (
        "deploy/k8s/rules.yaml is the ConfigMap's copy of the shipped rules: "
        "cp engine/rules/default_rules.yaml deploy/k8s/rules.yaml"
    )
    secrets = dict.fromkeys(secret_variables(), "s3cret")
    assert load_destinations(K8S / "destinations.yaml", secrets)
    assert load_destinations(DEPLOY / "examples" / "destinations.yaml", secrets)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kustomize_builds_every_object() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=False
    )
    assert built.returncode == 0, built.stderr
    objects = [d for d in yaml.safe_load_all(built.stdout) if d]
    kinds = sorted(f"{d['kind']}/{d['metadata']['name'].rsplit('-', 1)[0]}" for d in objects)
    assert kinds.count("Deployment/segflow") == 3 and "Service/segflow" in kinds
    assert all(d["metadata"].get("namespace", "segflow") == "segflow" for d in objects)
    settings_map = next(d for d in objects if d["metadata"]["name"].startswith("segflow-settings-"))
    assert settings_map["data"] == env_file(K8S / "segflow.env")
    assert COMPOSE.exists()


def test_the_containers_bind_reaches_both_web_servers(tmp_path: Path) -> None:
    from engine.activation.delivery.counters import DeliveryCounters
    from engine.activation.delivery.metrics import MetricsServer
    from engine.app import faust_app

    bind = dockerfile_env()["SEGFLOW_WEB_BIND"]
    assert bind == "0.0.0.0" and DEFAULTS.web_bind == "127.0.0.1"
    settings = load_settings(read_profile=False, stack_dir=tmp_path, web_bind=bind)
    assert faust_app(settings, "web-data").conf.web_bind == bind
    assert MetricsServer(DeliveryCounters(), DELIVER_WEB, settings.web_bind).host == bind
