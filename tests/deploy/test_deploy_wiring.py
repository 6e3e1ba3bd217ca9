"""How the deployment files refer to each other: addresses name listeners that exist, services are
supervised, scaling and shutdown work, and every variable chatstream is given is one it reads."""

from __future__ import annotations

import re
from typing import Any

import pytest
from deploy_files import (
    HTTP_PORT_ENV,
    JAEGER_CONFIG,
    OTLP_PORTS,
    OTLP_RECEIVER_PROTOCOLS,
    PROMETHEUS_CONFIG,
    SHUTDOWN_TIMEOUT_ENV,
    chatstream_services,
    configmap_data,
    duration_seconds,
    endpoint_port,
    env_entries,
    environment,
    host_ports,
    k8s_documents,
    known_env_names,
    listeners,
    load_yaml,
    mounts,
    pod_spec,
    port_entries,
    services,
    setting_default,
    setting_env_names,
    url_host_port,
    workloads,
)

# Services that run to completion: `topics` once before the members, `bot` on demand.
ONE_SHOT = {"topics", "bot"}
# Restart policies that bring a long-running container back after a crash or a daemon restart.
SUPERVISED = {"always", "unless-stopped", "on-failure"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|API_KEY|TOKEN|SASL_USERNAME", re.IGNORECASE)


def _member() -> dict[str, Any]:
    return services()["chatstream"]


def _member_env() -> dict[str, str]:
    return environment(_member())


def _k8s_env_names() -> dict[str, set[str]]:
    """Variable names given to each chatstream container in infra/k8s (ConfigMap included)."""
    names = {}
    for workload in workloads():
        for spec in pod_spec(workload)["containers"]:
            key = f"{workload['kind']}/{workload['metadata']['name']}/{spec['name']}"
            names[key] = set(configmap_data()) | set(env_entries(spec))
    return names


def _compose_env_names() -> dict[str, set[str]]:
    return {name: set(environment(svc)) for name, svc in chatstream_services().items()}


def _clear_setting_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in setting_env_names():
        monkeypatch.delenv(name, raising=False)


# --- compose: addresses ---------------------------------------------------------------------

@pytest.mark.parametrize("service", sorted(chatstream_services()))
def test_bootstrap_servers_name_an_advertised_kafka_listener(service: str) -> None:
    """Each KAFKA_BOOTSTRAP_SERVERS entry is a compose service's advertised, bound listener."""
    bootstrap = environment(services()[service])["KAFKA_BOOTSTRAP_SERVERS"]
    for host, port in host_ports(bootstrap):
        assert host in services(), f"{host} is not a compose service"
        broker_env = environment(services()[host])
        advertised = listeners(broker_env["KAFKA_ADVERTISED_LISTENERS"])
        names = [name for name, address in advertised.items() if address == (host, port)]
        assert names, f"{host}:{port} is not an advertised listener of {host}"
        bound = listeners(broker_env["KAFKA_LISTENERS"])
        assert bound[names[0]][1] == port, f"listener {names[0]} is not bound on {port}"


def test_host_listener_is_published_on_its_advertised_port() -> None:
    """The listener advertised as localhost:P is reachable from the host on port P."""
    kafka = services()["kafka"]
    env = environment(kafka)
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    bound = listeners(env["KAFKA_LISTENERS"])
    host_side = {name: port for name, (host, port) in advertised.items() if host == "localhost"}
    assert host_side, "no listener advertised to the host"
    published = {(p["published"], p["target"]) for p in port_entries(kafka)}
    for name, port in host_side.items():
        assert (str(port), bound[name][1]) in published


@pytest.mark.parametrize("service", sorted(chatstream_services()))
def test_otlp_endpoint_reaches_jaegers_receiver(service: str) -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT names the Jaeger service on the OTLP port of its protocol."""
    env = environment(services()[service])
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    host, port = url_host_port(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert host in services(), f"{host} is not a compose service"
    assert port == OTLP_PORTS[protocol]
    jaeger = services()[host]
    config_path = jaeger["command"][jaeger["command"].index("--config") + 1]
    assert mounts(jaeger)[config_path] == "./infra/jaeger.yaml"
    config = load_yaml(JAEGER_CONFIG)
    receiver = config["receivers"]["otlp"]["protocols"][OTLP_RECEIVER_PROTOCOLS[protocol]]
    assert endpoint_port(receiver["endpoint"]) == port
    assert "otlp" in config["service"]["pipelines"]["traces"]["receivers"]


def test_prometheus_discovers_every_member_by_service_name() -> None:
    """Prometheus resolves the chatstream service's A records and scrapes CHATSTREAM_HTTP_PORT."""
    prometheus = services()["prometheus"]
    assert mounts(prometheus)["/etc/prometheus/prometheus.yml"] == "./infra/prometheus.yml"
    config = load_yaml(PROMETHEUS_CONFIG)
    http_port = int(_member_env()[HTTP_PORT_ENV])
    discovered = [sd for job in config["scrape_configs"] for sd in job.get("dns_sd_configs", [])]
    assert any("chatstream" in sd["names"] and sd.get("type", "SRV") == "A"
               and sd["port"] == http_port for sd in discovered)
    assert str(http_port) in [str(port) for port in _member().get("expose", [])]


# --- compose: supervision, scaling, shutdown -------------------------------------------------

def test_long_running_services_have_a_healthcheck_and_a_restart_policy() -> None:
    """Every service but the one-shot ones is health-checked and restarted by Docker."""
    assert set(services()) >= ONE_SHOT
    for name, service in services().items():
        if name in ONE_SHOT:
            assert service.get("restart", "no") == "no", f"one-shot {name} must not loop"
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
        assert service.get("restart") in SUPERVISED, f"{name} has no restart policy"


def test_members_start_once_topics_exist() -> None:
    """`topics ensure` runs after Kafka is healthy, and members only after it exited 0."""
    topics = services()["topics"]
    assert topics["command"] == ["topics", "ensure"]
    assert topics["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert _member()["depends_on"]["topics"]["condition"] == "service_completed_successfully"


def test_chatstream_publishes_no_fixed_host_port() -> None:
    """No replica claims a fixed host port or name, so `--scale chatstream=N` can start them all."""
    member = _member()
    assert "container_name" not in member and "hostname" not in member
    entries = port_entries(member)
    assert all(entry["published"] is None for entry in entries), entries
    assert {entry["target"] for entry in entries} <= {int(_member_env()[HTTP_PORT_ENV])}


def test_chatstream_healthcheck_asks_readyz_without_curl() -> None:
    """The members' health check GETs /readyz on CHATSTREAM_HTTP_PORT with Python's urllib."""
    test = _member()["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    assert "urllib.request" in test[3]
    assert f"http://127.0.0.1:{_member_env()[HTTP_PORT_ENV]}/readyz" in test[3]


def test_stop_grace_period_exceeds_the_shutdown_timeout() -> None:
    """Docker waits longer than CHATSTREAM_SHUTDOWN_TIMEOUT_SECONDS before it kills a member."""
    timeout = float(_member_env().get(SHUTDOWN_TIMEOUT_ENV, setting_default(SHUTDOWN_TIMEOUT_ENV)))
    assert duration_seconds(_member()["stop_grace_period"]) > timeout


# --- Kubernetes: addresses ------------------------------------------------------------------

def test_k8s_addresses_are_well_formed() -> None:
    """The ConfigMap's brokers are host:port and its OTLP endpoint uses its protocol's port."""
    settings = configmap_data()
    assert host_ports(settings["KAFKA_BOOTSTRAP_SERVERS"])
    protocol = settings.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    _, port = url_host_port(settings["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert port == OTLP_PORTS[protocol]


# --- both: variable names, values and secrets ----------------------------------------------

def test_chatstream_variables_are_real_settings() -> None:
    """Every CHATSTREAM_* name in compose and infra/k8s is read by stream.settings.Settings."""
    used = {name for service in services().values() for name in environment(service)}
    used |= {name for names in _k8s_env_names().values() for name in names}
    unknown = {name for name in used if name.startswith("CHATSTREAM_")} - known_env_names()
    assert unknown == set()


def test_member_variables_are_settings_or_opentelemetry_ones() -> None:
    """Each variable a chatstream container gets is a setting or an OTEL_* name the SDK reads."""
    for where, names in {**_compose_env_names(), **_k8s_env_names()}.items():
        assert names - known_env_names() == set(), where


@pytest.mark.parametrize("source", ["compose", "k8s"])
def test_settings_accept_every_value_given(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """stream.settings loads the compose environment and the ConfigMap without an error."""
    from stream.settings import load_settings

    _clear_setting_env(monkeypatch)
    if source == "compose":
        given = [environment(svc) for svc in chatstream_services().values()]
    else:
        given = [configmap_data()]
    for values in given:
        settings = load_settings(**{k: v for k, v in values.items() if k in setting_env_names()})
        assert settings.http_port == int(values[HTTP_PORT_ENV])


def test_no_secret_values_in_the_files() -> None:
    """Passwords, keys and SASL users never appear as values: k8s takes them from a Secret."""
    for name, service in services().items():
        for key, value in environment(service).items():
            assert not (SECRET_NAME.search(key) and value), f"{name}: {key} has a value"
    assert not [key for key in configmap_data() if SECRET_NAME.search(key)]
    for workload in workloads():
        for spec in pod_spec(workload)["containers"]:
            for key, entry in env_entries(spec).items():
                if SECRET_NAME.search(key):
                    assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], key
    assert not [doc for _, doc in k8s_documents() if doc["kind"] == "Secret"]
