"""`chatstream run` that cannot start says why in one line, leaves no client open, and exits
with the code that tells a supervisor (its own, or Kubernetes) whether to try again: 1 for
brokers it cannot reach or that refuse it, 2 for a configuration it refuses. No broker listens
at the address, except where a test says otherwise."""

from __future__ import annotations

import subprocess
import sys

import pytest

_UNREACHABLE = "127.0.0.1:9"


def _run(workers: int, servers: str = _UNREACHABLE, **env: str
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from stream.app.cli import main; main()", "run",
         "--workers", str(workers)],
        env={"KAFKA_BOOTSTRAP_SERVERS": servers, "PATH": "/usr/bin:/bin",
             "CHATSTREAM_LOG_LEVEL": "WARNING", **env},
        capture_output=True, text=True, timeout=120)


def _clean(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "Unclosed" not in stderr, stderr


def test_unreachable_brokers_are_one_line_and_exit_1():
    result = _run(1)
    assert result.returncode == 1
    _clean(result.stderr)
    ours = [line for line in result.stderr.splitlines() if line.startswith("chatstream")]
    assert ours == [f"chatstream run: cannot reach the brokers at {_UNREACHABLE} "
                    "(KAFKA_BOOTSTRAP_SERVERS): "
                    "KafkaConnectionError: Unable to bootstrap from "
                    "[('127.0.0.1', 9, <AddressFamily.AF_INET: 2>)]"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_plugin_that_cannot_load_is_refused_before_any_broker_is_asked(workers):
    """The processors are built before any client connects: the plugin's error comes first
    (not the unreachable brokers'), and a supervisor restarts nothing, as a restart would be
    refused the same."""
    result = _run(workers, CHATSTREAM_PROCESSOR_PLUGINS="no_such_module:factory")
    assert result.returncode == 2
    _clean(result.stderr)
    assert "cannot reach the brokers" not in result.stderr
    refusals = [line for line in result.stderr.splitlines()
                if "invalid CHATSTREAM_PROCESSOR_PLUGINS entry 'no_such_module:factory'" in line]
    assert 1 <= len(refusals) <= workers, result.stderr
    assert "restarting" not in result.stderr


@pytest.mark.kafka
def test_brokers_that_refuse_an_idempotent_producer_are_one_line_with_the_way_out(kafka_broker):
    """The embedded broker answers InitProducerId with an error: the member says so, and which
    setting to change, instead of a traceback that says only UnknownError."""
    if kafka_broker.pid is None:
        pytest.skip("Apache Kafka accepts idempotent producers")
    servers = kafka_broker.bootstrap_servers
    result = _run(1, servers, CHATSTREAM_ENABLE_IDEMPOTENCE="true")
    assert result.returncode == 1
    _clean(result.stderr)
    ours = [line for line in result.stderr.splitlines() if line.startswith("chatstream")]
    assert ours == [f"chatstream run: the brokers at {servers} (KAFKA_BOOTSTRAP_SERVERS) refused "
                    "the client: [Error -1] UnknownError (CHATSTREAM_ENABLE_IDEMPOTENCE=true: "
                    "brokers without idempotent producers refuse it; set it to false for them)"]
