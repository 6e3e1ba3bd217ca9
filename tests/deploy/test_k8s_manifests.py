"""infra/k8s: core resources against a pinned Kubernetes schema (kubernetes-validate, strict), the
KEDA ScaledObject against a vendored trimmed schema, and how the resources refer to each other."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from deploy_files import (
    HTTP_PORT_ENV,
    K8S_DIR,
    SCHEMAS_DIR,
    SHUTDOWN_TIMEOUT_ENV,
    configmap_data,
    container,
    env_entries,
    k8s_documents,
    k8s_one,
    kustomization,
    pod_spec,
    setting_default,
    workloads,
)

# The oldest Kubernetes minor still supported upstream when these manifests were written: a field
# newer than it fails here. Raise it when that version leaves support.
KUBERNETES_VERSION = "1.32.0"
# Custom resources kubernetes-validate has no schema for, and the schema that checks each instead.
CRD_SCHEMAS = {("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.schema.json"}
SASL_SECRET_ENV = ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")


def _core_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(name, doc) for name, doc in k8s_documents()
            if (doc["apiVersion"], doc["kind"]) not in CRD_SCHEMAS]


def _doc_id(item: tuple[str, dict[str, Any]]) -> str:
    name, doc = item
    return f"{name}:{doc['kind']}/{doc['metadata']['name']}"


def _crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    return json.loads((SCHEMAS_DIR / CRD_SCHEMAS[(api_version, kind)]).read_text())


def _statefulset() -> dict[str, Any]:
    return k8s_one("StatefulSet")


def _member() -> dict[str, Any]:
    return container(_statefulset(), "chatstream")


def _container_port(spec: dict[str, Any], port: int | str) -> int:
    """A probe's or Service's port (number or name) resolved to the container's port number."""
    for item in spec.get("ports") or []:
        if port in (item.get("name"), item["containerPort"]):
            return int(item["containerPort"])
    raise AssertionError(f"port {port!r} is not a port of container {spec['name']}")


def _shutdown_timeout() -> float:
    return float(configmap_data().get(SHUTDOWN_TIMEOUT_ENV, setting_default(SHUTDOWN_TIMEOUT_ENV)))


def test_kustomization_lists_every_manifest() -> None:
    """Every YAML file in infra/k8s is a kustomization resource and every resource exists."""
    on_disk = {path.name for path in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization()["resources"]) == on_disk


def test_kustomization_can_retarget_every_image() -> None:
    """Each container image is named in the kustomization's `images`, so one edit moves them all."""
    names = {entry["name"] for entry in kustomization()["images"]}
    for workload in workloads():
        for spec in pod_spec(workload)["containers"]:
            assert spec["image"].rsplit(":", 1)[0] in names, spec["image"]


@pytest.mark.parametrize("item", _core_documents(), ids=_doc_id)
def test_manifest_is_valid_for_the_pinned_kubernetes(item: tuple[str, dict[str, Any]]) -> None:
    """kubernetes-validate (strict: unknown fields rejected) accepts the resource."""
    _, doc = item
    checked = kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    assert checked == KUBERNETES_VERSION.rsplit(".", 1)[0]


def test_kubernetes_validate_rejects_a_misspelt_field() -> None:
    """The same strict validation fails on the StatefulSet with a misspelt pod spec field."""
    broken = copy.deepcopy(_statefulset())
    spec = pod_spec(broken)
    spec["terminationGracePeriod"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_only_known_custom_resources_skip_kubernetes_validate() -> None:
    """Every resource kubernetes-validate cannot check has a vendored schema of its own."""
    for _, doc in k8s_documents():
        key = (doc["apiVersion"], doc["kind"])
        if key in CRD_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{key} has no Kubernetes schema and no entry in CRD_SCHEMAS")


def test_scaledobject_matches_the_trimmed_keda_schema() -> None:
    """The ScaledObject validates against tests/deploy/schemas/scaledobject.schema.json."""
    scaled = k8s_one("ScaledObject")
    schema = _crd_schema(scaled["apiVersion"], scaled["kind"])
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in jsonschema.Draft202012Validator(schema).iter_errors(scaled)]
    assert errors == []


@pytest.mark.parametrize("breakage", ["numeric lag threshold", "misspelt field", "no triggers"])
def test_keda_schema_rejects_broken_scaledobjects(breakage: str) -> None:
    """The vendored schema fails a lagThreshold given as a number, an unknown field, no triggers."""
    broken = copy.deepcopy(k8s_one("ScaledObject"))
    if breakage == "numeric lag threshold":
        broken["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 50
    elif breakage == "misspelt field":
        broken["spec"]["maxReplicas"] = broken["spec"].pop("maxReplicaCount")
    else:
        broken["spec"]["triggers"] = []
    schema = _crd_schema(broken["apiVersion"], broken["kind"])
    assert not jsonschema.Draft202012Validator(schema).is_valid(broken)


def test_scaledobject_scales_the_members_on_the_groups_lag() -> None:
    """KEDA's kafka trigger watches the ConfigMap's brokers, group and inbound topic."""
    scaled = k8s_one("ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    statefulset = _statefulset()
    assert (target.get("kind"), target["name"]) == ("StatefulSet", statefulset["metadata"]["name"])
    triggers = scaled["spec"]["triggers"]
    assert [t["type"] for t in triggers] == ["kafka"]
    metadata = triggers[0]["metadata"]
    settings = configmap_data()
    assert metadata["bootstrapServers"] == settings["KAFKA_BOOTSTRAP_SERVERS"]
    assert metadata["consumerGroup"] == settings.get("CHATSTREAM_GROUP_ID",
                                                     setting_default("CHATSTREAM_GROUP_ID"))
    assert metadata["topic"] == settings.get("CHATSTREAM_INBOUND_TOPIC",
                                             setting_default("CHATSTREAM_INBOUND_TOPIC"))
    assert int(metadata["lagThreshold"]) > 0


def test_replicas_are_capped_at_the_partition_count() -> None:
    """maxReplicaCount equals CHATSTREAM_PARTITIONS; the StatefulSet leaves replicas to KEDA."""
    spec = k8s_one("ScaledObject")["spec"]
    partitions = int(configmap_data().get("CHATSTREAM_PARTITIONS",
                                          setting_default("CHATSTREAM_PARTITIONS")))
    assert spec["maxReplicaCount"] == partitions
    assert 1 <= spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"]
    assert "replicas" not in _statefulset()["spec"]


def test_static_membership_uses_the_pod_name() -> None:
    """CHATSTREAM_GROUP_INSTANCE_ID comes from metadata.name of a StatefulSet's pod."""
    entry = env_entries(_member())["CHATSTREAM_GROUP_INSTANCE_ID"]
    assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "CHATSTREAM_GROUP_INSTANCE_ID" not in configmap_data()


def test_probes_use_readyz_and_healthz_on_the_http_port() -> None:
    """Readiness GETs /readyz, liveness /healthz, both on the port chatstream serves (0.0.0.0)."""
    member = _member()
    settings = configmap_data()
    http_port = int(settings[HTTP_PORT_ENV])
    assert settings["CHATSTREAM_HTTP_HOST"] == "0.0.0.0"
    readiness = member["readinessProbe"]["httpGet"]
    liveness = member["livenessProbe"]["httpGet"]
    assert readiness["path"] == "/readyz"
    assert liveness["path"] == "/healthz"
    assert _container_port(member, readiness["port"]) == http_port
    assert _container_port(member, liveness["port"]) == http_port


def test_termination_grace_exceeds_the_shutdown_timeout() -> None:
    """terminationGracePeriodSeconds leaves the drain its CHATSTREAM_SHUTDOWN_TIMEOUT_SECONDS."""
    grace = pod_spec(_statefulset())["terminationGracePeriodSeconds"]
    assert grace > _shutdown_timeout()


@pytest.mark.parametrize("workload", workloads(), ids=lambda w: f"{w['kind']}/{w['metadata']['name']}")
def test_settings_come_from_the_configmap_and_credentials_from_an_optional_secret(
        workload: dict[str, Any]) -> None:
    """Each chatstream container reads the ConfigMap whole and SASL credentials by secretKeyRef."""
    configmap_name = k8s_one("ConfigMap")["metadata"]["name"]
    for spec in pod_spec(workload)["containers"]:
        assert {"configMapRef": {"name": configmap_name}} in spec["envFrom"]
        env = env_entries(spec)
        for name in SASL_SECRET_ENV:
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["optional"] is True
            assert ref["name"] and ref["key"]


@pytest.mark.parametrize("workload", workloads(), ids=lambda w: f"{w['kind']}/{w['metadata']['name']}")
def test_every_container_has_requests_and_limits(workload: dict[str, Any]) -> None:
    """CPU and memory requests and limits are set, and no limit is below its request."""
    units = {"Mi": 2**20, "Gi": 2**30, "m": 0.001, "": 1}

    def quantity(text: str | int) -> float:
        number = str(text).rstrip("MiGm")
        return float(number) * units[str(text)[len(number):]]

    for spec in pod_spec(workload)["containers"]:
        resources = spec["resources"]
        for kind in ("cpu", "memory"):
            assert quantity(resources["limits"][kind]) >= quantity(resources["requests"][kind])


def test_member_sizing_matches_the_benchmark_target() -> None:
    """A member requests 250m CPU and 256Mi (the ~250 MB peak RSS target) with 1 CPU / 512Mi limits."""
    resources = _member()["resources"]
    assert resources["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert resources["limits"] == {"cpu": "1", "memory": "512Mi"}


def test_headless_service_reaches_every_member() -> None:
    """The governing Service is headless, selects the pods, lists unready ones, targets the port."""
    service = k8s_one("Service")
    statefulset = _statefulset()
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= labels.items()
    http_port = int(configmap_data()[HTTP_PORT_ENV])
    assert [_container_port(_member(), p["targetPort"]) for p in service["spec"]["ports"]] == [http_port]


def test_disruption_budget_covers_the_members() -> None:
    """The PodDisruptionBudget selects the member pods and lets at most one go at a time."""
    budget = k8s_one("PodDisruptionBudget")
    labels = _statefulset()["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert budget["spec"]["maxUnavailable"] == 1
