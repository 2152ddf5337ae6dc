"""``flowsentinel demo``: the whole pipeline on one machine with nothing configured.

Starts an embedded Kafka-protocol broker (unless ``--bootstrap-servers`` names one), creates the topics,
trains a small model on synthetic normal traffic (unless ``--model`` is given), starts the detector
service and the synthetic producer, and shows live what is happening — records/s, alert episodes as they
open and close, where /metrics is — until Ctrl+C (or ``--duration``), then shuts everything down.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowsentinel import environment
from flowsentinel.progress import progress_bar

if TYPE_CHECKING:
    from flowsentinel.broker import EmbeddedBroker

log = logging.getLogger(__name__)

RECORDS, ALERTS, DEAD = "flowsentinel.records", "flowsentinel.alerts", "flowsentinel.dead-letter"


class Interrupted(Exception):
    """Ctrl+C during a phase that does not poll the stop flag itself (training)."""


def _stoppable(progress: Callable[..., Any], stop: threading.Event) -> Callable[..., Any]:
    """``progress`` whose bar raises :class:`Interrupted` at its next step once ``stop`` is set: training
    reports a step every batch, so the first Ctrl+C stops it within a batch."""

    def factory(**kw: Any) -> Any:
        bar = progress(**kw)
        update = bar.update

        def checked(n: int = 1) -> Any:
            if stop.is_set():
                bar.close()
                raise Interrupted
            return update(n)

        bar.update = checked
        return bar

    return factory


def _train_demo_model(workdir: Path, stop: threading.Event) -> Path:
    from flowsentinel.detector.artifact import load_artifact, save_artifact
    from flowsentinel.detector.errors import ArtifactError
    from flowsentinel.detector.train import TrainConfig, train
    from flowsentinel.producers.synthetic import normal_training_records, to_batch

    out = workdir / "model"
    try:
        load_artifact(out)
        print(f"using the demo model in {out}", flush=True)
        return out
    except ArtifactError:
        pass
    print("training a demo model on 60,000 synthetic normal records …", flush=True)
    batch = to_batch(normal_training_records(60_000, seed=1, hosts=500))
    model = train(batch, TrainConfig(epochs=15, seed=0), progress=_stoppable(progress_bar, stop))
    save_artifact(model, out)
    print(f"model {model.version} saved to {out} ({model.training['seconds']:.0f}s)", flush=True)
    return out


def _watch_alerts(
    bootstrap: str, stop: threading.Event, counts: dict[str, int], show_low: bool, security: dict[str, Any]
) -> None:
    """Print alert episodes as they open, escalate and close. Unless ``show_low``, an episode is listed only
    once its severity reaches medium (score at least 2x the threshold); low-only episodes (at q, the normal
    traffic's own tail) are counted in ``counts['low_only']`` instead, so the attacks stay readable."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=500, **security
    )
    tps = [TopicPartition(ALERTS, p) for p in sorted(consumer.partitions_for_topic(ALERTS) or {0})]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    listed: set[str] = set()  # episode ids printed so far
    while not stop.is_set():
        for batch in consumer.poll(timeout_ms=500).values():
            for msg in batch:
                event = json.loads(msg.value)
                kind, episode = event["event"], event["episode_id"]
                labels = event.get("labels_in_episode") or {}
                truth = f" (truth: {', '.join(labels)})" if labels else ""
                top = ", ".join(f["field"] for f in event["top_features"])
                if kind in ("opened", "updated") and episode not in listed:
                    if not show_low and event["max_severity"] == "low":
                        continue
                    listed.add(episode)
                    verb = "OPENED" if kind == "opened" else "RAISED"
                    print(
                        f"  ⚠ episode {verb:<8}key={event['key']:<15} severity={event['severity']:<8} "
                        f"score={event['score']:.3g} > {event['threshold']:.3g}  why: {top}{truth}",
                        flush=True,
                    )
                elif kind == "closed":
                    if episode not in listed:
                        counts["low_only"] = counts.get("low_only", 0) + 1
                        continue
                    listed.discard(episode)
                    print(
                        f"  ✓ episode closed  key={event['key']:<15} {event['alerts_in_episode']} alert(s), "
                        f"max severity {event['max_severity']} ({event.get('close_reason')}){truth}",
                        flush=True,
                    )
    consumer.close()


def run_demo(args: argparse.Namespace) -> int:
    from flowsentinel.broker import EmbeddedBroker
    from flowsentinel.consumers.main import start_service
    from flowsentinel.consumers.settings import Settings
    from flowsentinel.kafka.admin import ensure_topics
    from flowsentinel.kafka.connection import SECURITY_SETTINGS, client_security
    from flowsentinel.producers.publisher import Pacer, Publisher, publish, replay_producer
    from flowsentinel.producers.synthetic import SyntheticTraffic

    logging.getLogger("kafka").setLevel(logging.ERROR)
    workdir = Path(args.workdir)
    broker: EmbeddedBroker | None = None
    security: dict[str, Any] = {}  # client options
    security_settings: dict[str, Any] = {}  # the same, as the service's settings
    # the first Ctrl+C (or SIGTERM) stops whatever phase is running and cleans up; a second exits at once,
    # killing the embedded broker first (it runs in its own session: nothing else would stop it)
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: _second_interrupt(stop, broker))
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    running = None
    publisher = None
    threads: list[threading.Thread] = []
    try:
        if args.bootstrap_servers:
            bootstrap = args.bootstrap_servers
            chosen, security = client_security(bootstrap, vars(args), environment.for_command("demo"))
            security_settings = {name: getattr(chosen, name) for name in SECURITY_SETTINGS}
        else:
            broker = EmbeddedBroker(log_path=None)
            broker.start()
            bootstrap = broker.bootstrap
            print(f"embedded Kafka-protocol broker (Tansu) on {bootstrap}", flush=True)
        if stop.is_set():
            raise Interrupted
        ensure_topics(bootstrap, {RECORDS: 4, ALERTS: 1, DEAD: 1}, security=security)
        model_dir = Path(args.model) if args.model else _train_demo_model(workdir, stop)
        if stop.is_set():
            raise Interrupted
        settings = Settings(
            bootstrap_servers=bootstrap,
            input_topic=RECORDS,
            alerts_topic=ALERTS,
            dead_letter_topic=DEAD,
            group="flowsentinel-demo",
            model=str(model_dir),
            metrics_port=args.metrics_port,
            metrics_host="127.0.0.1",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            episode_quiet_s=5.0,
            episode_update_s=10.0,
            state_dir=str(workdir / "state"),
            risk=0.002,
            min_publish_severity="low",  # the demo counts the low-only episodes on its status line
            **security_settings,
        )
        running = start_service(settings)
        print(
            f"detector service up: metrics at http://127.0.0.1:{running.server.port}/metrics "
            f"(also /healthz, /readyz)",
            flush=True,
        )
        gen = SyntheticTraffic(seed=int(time.time()), attack_every_s=args.attack_every)
        publisher = Publisher(RECORDS, replay_producer(bootstrap, compression="lz4", security=security))

        def produce() -> None:
            publish(
                gen.stream(rate=args.rate, chunk=100),
                publisher,
                Pacer(rate=args.rate),
                key_field="src_host",
                ts_field="ts",
                should_stop=stop.is_set,
            )

        counts: dict[str, int] = {}
        threads = [
            threading.Thread(target=produce, daemon=True, name="demo-producer"),
            threading.Thread(
                target=_watch_alerts, args=(bootstrap, stop, counts, args.show_low, security), daemon=True
            ),
        ]
        for t in threads:
            t.start()
        print(
            f"synthetic traffic at {args.rate:.0f} records/s, an attack episode every {args.attack_every:.0f}s; "
            "Ctrl+C to stop\n",
            flush=True,
        )
        started = time.monotonic()
        last_scored, last_t = 0, started
        while not stop.wait(5.0):
            now = time.monotonic()
            svc = running.service
            rate = (svc.scored - last_scored) / (now - last_t)
            last_scored, last_t = svc.scored, now
            th = svc.detector.thresholder
            ep = gen.current_episode
            print(
                f"[{now - started:5.0f}s] sent {publisher.summary.sent:,}  scored {svc.scored:,} ({rate:,.0f}/s)  "
                f"alerts {th.alerts:,}  episodes open {len(svc.episodes.open)}  threshold {th.threshold:.3g}"
                + ("" if args.show_low else f"  low-only episodes closed {counts.get('low_only', 0):,}")
                + (f"  — injecting {ep}" if ep else ""),
                flush=True,
            )
            if args.duration and now - started >= args.duration:
                break
    except Interrupted:
        pass
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        if publisher is not None:
            publisher.close()
        if running is not None:
            running.shutdown()
        logging.getLogger("kafka").setLevel(logging.CRITICAL)  # clients notice the broker going away
        if broker is not None:
            broker.stop()
    print(f"stopped cleanly: {running.service.scored if running else 0:,} records scored", flush=True)
    return 0


def _second_interrupt(stop: threading.Event, broker: EmbeddedBroker | None) -> None:
    if stop.is_set():
        print("interrupted twice: exiting now", file=sys.stderr)
        import os

        if broker is not None:
            broker.kill()
        os._exit(130)
    print("\nstopping … (Ctrl+C again to exit at once)", flush=True)
    stop.set()
