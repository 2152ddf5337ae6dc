"""HTTP endpoints of the service: ``/metrics`` (Prometheus), ``/healthz`` (liveness), ``/readyz``.

``/healthz`` is 200 while the consume loop keeps turning (its heartbeat is recent) — a wedged loop gets
the process restarted. ``/readyz`` is 200 only while partitions are assigned and the broker is reachable.

The server cannot be held: a connection costs no thread until its request head has arrived (it waits in a
selector, at most ``head_timeout_s``, and at most ``max_waiting`` of them — the oldest is closed for a new
one); then one of ``workers`` threads answers it and closes it. A thousand idle or trickling connections
leave /healthz answering and the thread count fixed.
"""

from __future__ import annotations

import contextlib
import errno
import io
import selectors
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from flowsentinel.consumers.service import LoopState
from flowsentinel.detector.errors import ConfigError


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
            def setup(self) -> None:  # the request head was read already (see _BoundedServer)
                sock, head = self.request
                self.request = self.connection = sock
                sock.settimeout(IO_TIMEOUT_S)
                self.rfile = io.BytesIO(head)
                self.wfile = sock.makefile("wb")

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
            self._server = _BoundedServer((host, port), Handler)
        except socket.gaierror as exc:
            raise ConfigError(f"setting metrics_host = {host!r}: cannot resolve it: {exc.strerror}") from None
        except OSError as exc:  # most often a second instance on the same host and port
            hint = " (another instance? 0 picks a free port)" if exc.errno == errno.EADDRINUSE else ""
            raise ConfigError(
                f"setting metrics_port = {port}: cannot listen on {host}:{port}: {exc.strerror}{hint}"
            ) from None
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


IO_TIMEOUT_S = 10.0  # a worker writes an answer to a client at most this long


class _BoundedServer(HTTPServer):
    """An HTTP server whose threads and connections are bounded (see the module docstring)."""

    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: Any,
        *,
        workers: int = 4,
        max_waiting: int = 1_024,
        head_timeout_s: float = 10.0,
        max_head_bytes: int = 16_384,
    ) -> None:
        self.max_waiting, self.head_timeout_s, self.max_head_bytes = (
            max_waiting,
            head_timeout_s,
            max_head_bytes,
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flowsentinel-http")
        self._selector = selectors.DefaultSelector()
        self._new: list[tuple[socket.socket, Any]] = []
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        # waiting connection -> (deadline, head so far, client address), oldest first
        self._waiting: OrderedDict[socket.socket, tuple[float, bytearray, Any]] = OrderedDict()
        self._closed = threading.Event()
        self._waiter = threading.Thread(
            target=self._wait_for_heads, name="flowsentinel-http-wait", daemon=True
        )
        self._waiter.start()
        super().__init__(address, handler)  # (a bind that fails calls server_close: all set up before)

    def process_request(self, request: Any, client_address: Any) -> None:
        """(The accepting thread.) Hand the connection to the waiting thread; no thread of its own."""
        request.setblocking(False)
        with self._lock:
            self._new.append((request, client_address))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # full (it is being woken anyway) or closed
            self._wake_w.send(b"\0")

    def _wait_for_heads(self) -> None:
        while not self._closed.is_set():
            for key, _ in self._selector.select(timeout=0.5):
                if key.fileobj is self._wake_r:
                    self._take_new()
                else:
                    self._read_head(key.fileobj)  # type: ignore[arg-type]
            now = time.monotonic()
            while self._waiting:
                sock, (deadline, _, _) = next(iter(self._waiting.items()))
                if deadline > now:
                    break
                self._drop(sock)

    def _take_new(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        with self._lock:
            new, self._new = self._new, []
        for sock, address in new:
            while len(self._waiting) >= self.max_waiting:
                self._drop(next(iter(self._waiting)))
            self._waiting[sock] = (time.monotonic() + self.head_timeout_s, bytearray(), address)
            self._selector.register(sock, selectors.EVENT_READ)

    def _read_head(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        _, head, address = self._waiting[sock]
        head += data
        if b"\r\n\r\n" in head or b"\n\n" in head or len(head) >= self.max_head_bytes:
            self._selector.unregister(sock)
            del self._waiting[sock]
            sock.setblocking(True)
            self._pool.submit(self._answer, sock, bytes(head), address)

    def _answer(self, sock: socket.socket, head: bytes, address: Any) -> None:
        try:
            self.RequestHandlerClass((sock, head), address, self)  # type: ignore[arg-type]
        except Exception:  # a client that went away mid-answer
            pass
        finally:
            self.shutdown_request(sock)

    def _drop(self, sock: socket.socket) -> None:
        self._waiting.pop(sock, None)
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(sock)
        self.shutdown_request(sock)

    def server_close(self) -> None:
        super().server_close()
        self._closed.set()
        self._wake()
        self._waiter.join(5.0)
        for sock in list(self._waiting):
            self._drop(sock)
        self._pool.shutdown(wait=False)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()
