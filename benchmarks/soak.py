"""Chaos soak: detectors in one group lose nothing through crashes, restarts, rebalances, outages and reloads.

Starts its own embedded broker, a producer of synthetic traffic (attack episodes included) with one poison
record (not JSON) in every 500, and ``--instances`` ``flowsentinel detect`` processes in one group. For
``--minutes``, every ``--every`` seconds (seeded jitter) it does one of:

- ``kill``: SIGKILL a detector and start a new one (a crash);
- ``restart``: SIGTERM a detector (it must drain and exit 0) and start a new one;
- ``scale``: start one more detector, or stop the extra one (a rebalance);
- ``pause``: SIGSTOP the broker for 5-20 s, then SIGCONT (an outage);
- ``reload``: write the other model into the detectors' model directory, or send SIGHUP.

Then it stops producing, waits until the group has committed the end of every partition, and checks: the
committed offsets equal the end offsets (every record scored, its alerts and dead letters published, at
least once), every poison record is on the dead-letter topic, alert messages that share an id are the
same event of the same key (a replay repeats ids, it does not invent new ones), and every SIGTERM ended
with exit status 0. Figures and the action log go to ``benchmarks/results/soak.json``.

    python -m benchmarks.soak [--minutes 10] [--rate 1000] [--instances 2] [--every 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.throughput import rss_mib, start_detector
from flowsentinel.broker import EmbeddedBroker, free_port
from flowsentinel.detector.artifact import load_artifact, save_artifact
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.kafka.admin import ensure_topics
from flowsentinel.producers.publisher import Pacer
from flowsentinel.producers.synthetic import SyntheticTraffic, normal_training_records, to_batch
from flowsentinel.testing import committed, read_topic, wait_for

ROOT = Path(__file__).resolve().parent.parent


POISON_EVERY = 500
PARTITIONS = 4


class Producer(threading.Thread):
    """Synthetic records at ``rate``/s, keyed by host, one poison message in every POISON_EVERY; remembers
    the end offset of every partition and where each poison record landed (from the send callbacks)."""

    def __init__(self, bootstrap: str, topic: str, rate: float, seed: int) -> None:
        super().__init__(daemon=True)
        from kafka import KafkaProducer

        self.topic, self.rate = topic, rate
        self.gen = SyntheticTraffic(seed=seed, hosts=500, attack_every_s=30.0)
        self.kafka = KafkaProducer(
            bootstrap_servers=bootstrap, linger_ms=20, enable_idempotence=False, compression_type="lz4"
        )
        self.stop = threading.Event()
        self.sent = self.poison_sent = 0
        self.ends: dict[int, int] = {}
        self.poison: set[tuple[int, int]] = set()
        self.failed: list[str] = []
        self._lock = threading.Lock()

    def _delivered(self, poison: bool) -> Any:
        def done(meta: Any) -> None:
            with self._lock:
                self.ends[meta.partition] = max(self.ends.get(meta.partition, 0), meta.offset + 1)
                if poison:
                    self.poison.add((meta.partition, meta.offset))

        return done

    def run(self) -> None:
        pacer = Pacer(rate=self.rate)
        for chunk in self.gen.stream(rate=self.rate, chunk=100):
            if self.stop.is_set():
                break
            for r in chunk:
                pacer.wait(None)
                self.sent += 1
                poison = self.sent % POISON_EVERY == 0
                value = b"not json: soak poison" if poison else json.dumps(r).encode()
                future = self.kafka.send(self.topic, key=str(r["src_host"]).encode(), value=value)
                future.add_callback(self._delivered(poison))
                future.add_errback(lambda exc: self.failed.append(repr(exc)))
                self.poison_sent += poison
        self.kafka.flush(timeout=120)
        self.kafka.close(timeout=30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--instances", type=int, default=2)
    ap.add_argument("--every", type=float, default=20.0, help="seconds between actions (jittered)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "soak.json"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    work = ROOT / "models" / "bench-soak"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    small = TrainConfig(hidden=32, latent=8, members=1, epochs=3)
    models = []
    for i in (1, 2):  # two models to switch between: a reload is a real change of version
        m = train(to_batch(normal_training_records(10_000, seed=i)), small, progress=False)
        save_artifact(m, work / f"model-{i}")
        models.append(work / f"model-{i}")
    live = work / "live"
    shutil.copytree(models[0], live)
    log: list[dict[str, Any]] = []
    exits: list[dict[str, Any]] = []
    started_at = time.monotonic()

    def note(action: str, **what: Any) -> None:
        log.append({"t": round(time.monotonic() - started_at, 1), "action": action, **what})
        print(f"[{log[-1]['t']:7.1f}s] {action} {what}", flush=True)

    with EmbeddedBroker(log_path=work / "tansu.log") as broker:
        topic, group = "soak", "soak-group"
        ensure_topics(broker.bootstrap, {topic: PARTITIONS, topic + ".alerts": 1, topic + ".dead": 1})
        detectors: dict[int, subprocess.Popen] = {}
        serial = 0

        def start() -> None:
            nonlocal serial
            serial += 1
            detectors[serial] = start_detector(
                broker.bootstrap, topic, group, live, free_port(), work / f"detect-{serial}.log",
                reload_check_s="1", shutdown_timeout_s="30",
            )  # fmt: skip
            note("start", detector=serial)

        def stop(n: int, sig: signal.Signals) -> None:
            proc = detectors.pop(n)
            proc.send_signal(sig)
            rc = proc.wait(90)
            exits.append({"detector": n, "signal": sig.name, "exit": rc})
            note("stop", detector=n, signal=sig.name, exit=rc)

        for _ in range(args.instances):
            start()
        producer = Producer(broker.bootstrap, topic, args.rate, args.seed)
        producer.start()
        model_turn = 0
        deadline = started_at + args.minutes * 60
        while time.monotonic() < deadline:
            time.sleep(args.every * rng.uniform(0.5, 1.5))
            action = rng.choice(("kill", "restart", "scale", "pause", "reload"))
            if action in ("kill", "restart"):
                stop(rng.choice(sorted(detectors)), signal.SIGKILL if action == "kill" else signal.SIGTERM)
                start()
            elif action == "scale":
                if len(detectors) > args.instances:
                    stop(max(detectors), signal.SIGTERM)
                else:
                    start()
            elif action == "pause":
                seconds = rng.uniform(5, 20)
                note("pause", seconds=round(seconds, 1))
                broker.pause()
                time.sleep(seconds)
                broker.resume()
            elif rng.random() < 0.5:
                model_turn ^= 1
                save_artifact(load_artifact(models[model_turn]), live)  # written over the live directory
                note("reload", how="rewrite", model=model_turn + 1)
            else:
                for proc in detectors.values():
                    proc.send_signal(signal.SIGHUP)
                note("reload", how="SIGHUP")
        producer.stop.set()
        producer.join(180)
        note("producer stopped", sent=producer.sent, poison=producer.poison_sent, failed=len(producer.failed))
        ends = dict(producer.ends)

        def caught_up() -> bool:
            return committed(broker.bootstrap, group, topic) == ends

        t_drain = time.monotonic()
        wait_for(caught_up, 300, "the group to commit the end of every partition", interval=2.0)
        drain_s = time.monotonic() - t_drain
        rss = {n: round(rss_mib(p.pid)) for n, p in detectors.items()}
        dead = read_topic(broker.bootstrap, topic + ".dead", settle=3.0, timeout=60)
        alerts = read_topic(broker.bootstrap, topic + ".alerts", settle=3.0, timeout=60)
        for n in sorted(detectors):
            stop(n, signal.SIGTERM)

    def header(msg: Any, name: str) -> str:
        return dict(msg.headers)[name].decode()

    dead_at = {
        (int(header(m, "flowsentinel.source.partition")), int(header(m, "flowsentinel.source.offset")))
        for m in dead
    }
    by_id: dict[str, set[tuple[str, str]]] = {}
    for m in alerts:
        a = json.loads(m.value)
        by_id.setdefault(a["id"], set()).add((a["event"], a["key"]))
    sigterm_exits = [e for e in exits if e["signal"] == "SIGTERM"]
    missing_poison = len(producer.poison - dead_at)
    conflicting = sum(len(v) > 1 for v in by_id.values())
    result: dict[str, Any] = {
        "settings": vars(args),
        "records_sent": producer.sent,
        "poison_sent": producer.poison_sent,
        "producer_failures": producer.failed[:5],
        "end_offsets": ends,
        "committed_equals_end": True,  # else wait_for raised
        "drain_seconds_after_producer_stopped": round(drain_s, 1),
        "dead_letters": len(dead),
        "poison_missing_from_dead_letters": missing_poison,
        "alert_messages": len(alerts),
        "alert_ids": len(by_id),
        "alert_ids_with_conflicting_content": conflicting,
        "sigterm_exits": sigterm_exits,
        "detector_rss_mib_at_end": rss,
        "actions": log,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    ok = (
        not missing_poison
        and not conflicting
        and all(e["exit"] == 0 for e in sigterm_exits)
        and not producer.failed
    )
    result["passed"] = ok
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    summary = {k: v for k, v in result.items() if k not in ("actions", "settings", "end_offsets")}
    print(json.dumps(summary, indent=1))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
