"""HTTP endpoints of the service: ``/metrics`` (Prometheus), ``/healthz`` (liveness), ``/readyz``.

``/healthz`` is 200 while the consume loop keeps turning (its heartbeat is recent) — a wedged loop gets
the process restarted. ``/readyz`` is 200 only while partitions are assigned and the broker is reachable.
"""

from __future__ import annotations

import errno
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from consumers.service import LoopState
from detector.errors import ConfigError


class HealthServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        state: LoopState,
        *,
        host: str = "0.0.0.0",
        port: int = 9464,
        stale_after_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok, why = outer.live()
                    self._send(200 if ok else 503, why.encode(), "text/plain; charset=utf-8")
                elif path == "/readyz":
                    ok, why = outer.ready()
                    self._send(200 if ok else 503, why.encode(), "text/plain; charset=utf-8")
                else:
                    self._send(
                        404, b"not found: try /metrics, /healthz, /readyz\n", "text/plain; charset=utf-8"
                    )

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:  # quiet: scrapes are not news
                pass

        self.state = state
        self.stale_after_s = stale_after_s
        self.clock = clock
        try:
            self._server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:  # most often a second instance on the same host and port
            hint = " (another instance? 0 picks a free port)" if exc.errno == errno.EADDRINUSE else ""
            raise ConfigError(
                f"setting metrics_port = {port}: cannot listen on {host}:{port}: {exc.strerror}{hint}"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="flowsentinel-http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def live(self) -> tuple[bool, str]:
        if not self.state.started:
            return True, "starting\n"
        age = self.clock() - self.state.heartbeat
        if age > self.stale_after_s:
            return False, f"consume loop stalled for {age:.0f}s\n"
        return True, "ok\n"

    def ready(self) -> tuple[bool, str]:
        if self.state.waiting_for:
            return False, f"waiting for Kafka: {self.state.waiting_for}\n"
        if not self.state.started:
            return False, "starting\n"
        if not self.state.broker_ok:
            return False, "broker unreachable\n"
        if not self.state.assigned:
            return False, "no partitions assigned\n"
        return True, f"ok: {self.state.assigned} partition(s)\n"

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
