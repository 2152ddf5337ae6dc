"""Wiring of ``flowsentinel detect``: settings → detector → Kafka → HTTP server → signals → run.

SIGTERM or SIGINT: finish the batch, flush, commit, snapshot, exit 0 (a watchdog forces exit 1 if that
takes longer than ``shutdown_timeout_s``). A second SIGINT exits at once (130). SIGHUP reloads the model.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType

from prometheus_client import CollectorRegistry

from flowsentinel.consumers.http import HealthServer
from flowsentinel.consumers.metrics import Metrics
from flowsentinel.consumers.service import DetectorService
from flowsentinel.consumers.settings import Settings
from flowsentinel.detector.artifact import TrainedModel

log = logging.getLogger(__name__)


@dataclass
class RunningService:
    service: DetectorService
    server: HealthServer
    thread: threading.Thread
    stop: threading.Event
    registry: CollectorRegistry

    def shutdown(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self.thread.join(timeout)
        self.server.stop()


def start_service(settings: Settings, *, model: TrainedModel | None = None) -> RunningService:
    """Build the service and its HTTP endpoints and run the loop in a background thread."""
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    service = DetectorService(settings, metrics, model=model)
    server = HealthServer(
        registry, service.state, host=settings.metrics_host, port=settings.metrics_port
    ).start()
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), name="flowsentinel-detector", daemon=True)
    thread.start()
    return RunningService(service, server, thread, stop, registry)


def run_detect(settings: Settings, *, stop: threading.Event | None = None) -> int:
    """Run the service until SIGTERM/SIGINT (or ``stop``). The signals are handled from the start: one that
    arrives while the model loads or Kafka is awaited is a clean stop too (exit 0)."""
    stop = stop or threading.Event()
    reload = threading.Event()
    _install_signals(stop, reload, settings.shutdown_timeout_s)
    if stop.is_set():  # asked to stop before the handlers were ours
        _start_watchdog(settings.shutdown_timeout_s)
    log.info("effective configuration: %s", settings.effective())
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    service = DetectorService(settings, metrics)
    service.reload_requested = reload
    if stop.is_set():
        log.info("stopped during start-up")
        return 0
    server = HealthServer(
        registry, service.state, host=settings.metrics_host, port=settings.metrics_port
    ).start()
    log.info(
        "metrics on http://%s:%d/metrics (health: /healthz, /readyz)", settings.metrics_host, server.port
    )
    try:
        service.run(stop)
    finally:
        server.stop()
    return 0


def _start_watchdog(timeout_s: float) -> None:
    watchdog = threading.Timer(timeout_s, _force_exit, args=(timeout_s,))
    watchdog.daemon = True
    watchdog.start()


def _install_signals(stop: threading.Event, reload: threading.Event, timeout_s: float) -> None:
    def on_stop(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            if signum == signal.SIGINT:
                os._exit(130)  # second Ctrl+C: out now
            return
        log.info("received %s: finishing the batch, flushing, committing", signal.Signals(signum).name)
        stop.set()
        _start_watchdog(timeout_s)

    def on_hup(signum: int, frame: FrameType | None) -> None:
        log.info("received SIGHUP: reloading the model between batches")
        reload.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, on_hup)


def _force_exit(timeout_s: float) -> None:
    log.error("shutdown took longer than %.0fs; exiting without a clean close", timeout_s)
    os._exit(1)
