"""`chatstream broker` on a port that something already listens on: one line and exit 1, not a
"running" broker that is gone the moment after (the other listener answered its probe)."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.kafka


def test_a_port_in_use_is_refused_before_the_broker_starts(kafka_broker):
    if kafka_broker.pid is None:
        pytest.skip("the test broker is not on this machine's loopback")
    port = kafka_broker.bootstrap_servers.rpartition(":")[2]
    result = subprocess.run(
        [sys.executable, "-c", "from stream.app.cli import main; main()", "broker", "--port",
         port], capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 1
    assert result.stdout == ""  # no address printed for a broker that is not there
    assert result.stderr.splitlines() == [
        f"chatstream broker: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another broker there? choose another port, or 0 for a free one)"]
