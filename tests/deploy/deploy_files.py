"""Readers for the deployment files checked by tests/deploy: compose, Kubernetes, settings names.

Everything here is offline and read-only: the files are parsed, nothing is started.
"""

from __future__ import annotations

import re
import sys
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "infra" / "Dockerfile"
JAEGER_CONFIG = ROOT / "infra" / "jaeger.yaml"
PROMETHEUS_CONFIG = ROOT / "infra" / "prometheus.yml"
K8S_DIR = ROOT / "infra" / "k8s"
SCHEMAS_DIR = Path(__file__).resolve().parent / "schemas"
VENV_BIN = Path(sys.executable).parent

# The Dockerfile every chatstream container is built from.
CHATSTREAM_DOCKERFILE = "infra/Dockerfile"
SHUTDOWN_TIMEOUT_ENV = "CHATSTREAM_SHUTDOWN_TIMEOUT_SECONDS"
HTTP_PORT_ENV = "CHATSTREAM_HTTP_PORT"
# OTLP's well-known ports, by OTEL_EXPORTER_OTLP_PROTOCOL.
OTLP_PORTS = {"http/protobuf": 4318, "http/json": 4318, "grpc": 4317}
OTLP_RECEIVER_PROTOCOLS = {"http/protobuf": "http", "http/json": "http", "grpc": "grpc"}

PENDING_SETTINGS: frozenset[str] = frozenset()  # names the files may use before a setting reads them


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


# --- settings ---------------------------------------------------------------------------------

def setting_env_names() -> frozenset[str]:
    """Every environment variable name Settings reads (the validation aliases of its fields)."""
    from stream.settings import variable_names

    return variable_names()


def setting_default(env_name: str) -> Any:
    """The default of the Settings field read from ``env_name``."""
    from pydantic import AliasChoices

    from stream.settings import Settings

    for field in Settings.model_fields.values():
        alias = field.validation_alias
        choices = alias.choices if isinstance(alias, AliasChoices) else [alias]
        if env_name in choices:
            return field.default
    raise KeyError(env_name)


@cache
def otel_env_names() -> frozenset[str]:
    """The OTEL_* variables the OpenTelemetry API and SDK installed here know."""
    import opentelemetry.environment_variables as api_env
    import opentelemetry.sdk.environment_variables as sdk_env

    return frozenset(name for module in (api_env, sdk_env) for name in dir(module)
                     if name.startswith("OTEL_"))


def known_env_names() -> frozenset[str]:
    return setting_env_names() | otel_env_names() | PENDING_SETTINGS


# --- compose ----------------------------------------------------------------------------------

@cache
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two compose forms it uses."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def chatstream_services() -> dict[str, dict[str, Any]]:
    """Services running the chatstream image (built from infra/Dockerfile)."""
    return {name: svc for name, svc in services().items()
            if isinstance(svc.get("build"), dict)
            and svc["build"].get("dockerfile") == CHATSTREAM_DOCKERFILE}


def duration_seconds(text: str) -> float:
    """A compose duration ("30s", "1m30s", "1h") in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a compose duration: {text!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def port_entries(service: dict[str, Any]) -> list[dict[str, Any]]:
    """A service's `ports` in long form: target, published (None if unset), host_ip."""
    entries = []
    for item in service.get("ports") or []:
        if isinstance(item, dict):
            published = item.get("published")
            entries.append({"target": int(item["target"]),
                            "published": None if published in (None, "") else str(published),
                            "host_ip": item.get("host_ip")})
            continue
        spec = str(item).split("/")[0]
        fields = spec.rsplit(":", 2)
        target = fields[-1]
        published = fields[-2] if len(fields) >= 2 else None
        host_ip = fields[0] if len(fields) == 3 else None
        entries.append({"target": int(target), "published": published or None, "host_ip": host_ip})
    return entries


def listeners(value: str) -> dict[str, tuple[str, int]]:
    """Kafka listener lists ("NAME://host:port,…") as {NAME: (host, port)}."""
    result = {}
    for item in value.split(","):
        name, address = item.strip().split("://", 1)
        host, _, port = address.rpartition(":")
        result[name] = (host, int(port))
    return result


def host_ports(bootstrap_servers: str) -> list[tuple[str, int]]:
    pairs = []
    for item in bootstrap_servers.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"not host:port: {item!r}")
        pairs.append((host, int(port)))
    return pairs


def url_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"URL without host or port: {url!r}")
    return parts.hostname, parts.port


def endpoint_port(endpoint: str) -> int:
    """The port of a collector-style endpoint ("0.0.0.0:4318")."""
    return int(endpoint.rpartition(":")[2])


def mounts(service: dict[str, Any]) -> dict[str, str]:
    """A service's bind mounts as {container path: host path}."""
    result = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            result[volume["target"]] = volume["source"]
        else:
            source, target = str(volume).split(":")[:2]
            result[target] = source
    return result


# --- Kubernetes -------------------------------------------------------------------------------

def kustomization() -> dict[str, Any]:
    return load_yaml(K8S_DIR / "kustomization.yaml")


@cache
def k8s_documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file name, document) for every resource the kustomization lists, in its order."""
    return tuple((name, doc) for name in kustomization()["resources"]
                 for doc in load_yaml_documents(K8S_DIR / name))


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents() if doc["kind"] == kind]


def k8s_one(kind: str) -> dict[str, Any]:
    found = k8s_kind(kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def configmap_data() -> dict[str, str]:
    return k8s_one("ConfigMap")["data"]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    matches = [c for c in pod_spec(workload)["containers"] if c["name"] == name]
    assert len(matches) == 1, f"no single container {name!r}"
    return matches[0]


def env_entries(container_spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container_spec.get("env") or []}


def workloads() -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_documents()
            if doc["kind"] in ("StatefulSet", "Deployment", "Job", "DaemonSet")]
