"""Readers of the deployment files under deploy/ (compose, k8s, monitoring) for the consistency tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE = COMPOSE_DIR / "docker-compose.yaml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
K8S = DEPLOY / "k8s"
MONITORING = DEPLOY / "monitoring"
ALERTS = MONITORING / "alerts.yml"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "segflow.json"
DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"


def compose() -> dict[str, Any]:
    """docker-compose.yaml, anchors and merge keys resolved."""
    return dict(yaml.safe_load(COMPOSE.read_text()))


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A compose service's environment as a dict (either form compose accepts)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def k8s_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    """Every Kubernetes object of deploy/k8s (the kustomization itself and data files excluded)."""
    for path in sorted(K8S.glob("*.yaml")):
        if path.name in ("kustomization.yaml", "rules.yaml", "destinations.yaml"):
            continue
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                yield path, document


def kustomization() -> dict[str, Any]:
    """deploy/k8s/kustomization.yaml."""
    return dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))


def env_file(path: Path) -> dict[str, str]:
    """A KEY=value file (a profile, deploy/k8s/segflow.env) as python-dotenv reads it."""
    return {k: v or "" for k, v in dotenv_values(path).items()}


def containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The containers of a Deployment (none for other kinds)."""
    if document.get("kind") != "Deployment":
        return []
    return list(document["spec"]["template"]["spec"]["containers"])


def container_env_names(container: dict[str, Any]) -> list[str]:
    """Names of the container's ``env`` entries."""
    return [entry["name"] for entry in container.get("env", [])]


def named_port(container: dict[str, Any], name: str) -> int:
    """The number of the container port called ``name``."""
    return next(int(p["containerPort"]) for p in container["ports"] if p["name"] == name)


def dockerfile_env() -> dict[str, str]:
    """The ENV settings of the Dockerfile (``ENV A=1 \\`` continuation lines joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            found.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return found


def dockerfile_lines(instruction: str) -> list[list[str]]:
    """The arguments of every ``instruction`` line of the Dockerfile."""
    return [
        line.split()[1:] for line in DOCKERFILE.read_text().splitlines() if line.startswith(f"{instruction} ")
    ]


def alert_rules() -> list[dict[str, Any]]:
    """Every rule of deploy/monitoring/alerts.yml."""
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    """The Grafana dashboard JSON."""
    return dict(json.loads(DASHBOARD.read_text()))


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel of the dashboard (rows' nested panels included)."""
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_exprs() -> list[str]:
    """Every query of the dashboard's panels."""
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def scrape_jobs(path: Path) -> dict[str, dict[str, Any]]:
    """The scrape configs of a prometheus.yml by job name."""
    return {job["job_name"]: job for job in yaml.safe_load(path.read_text())["scrape_configs"]}
