"""Backlog throughput of two (or more) checkouts, A/B on one broker: the way to judge a speed change here.

This machine's speed moves by a third within the hour, so two ``throughput.py`` runs an hour apart cannot
tell a 20% change from the weather. This script produces one backlog of synthetic KDD records once, then
starts ``flowsentinel detect`` from each checkout in turn (each under its own consumer group, so each
reads the whole backlog), round after round, and reports records/s per run and the mean per checkout.
Every detector scores with the same model, trained once here.

    git worktree add ../before HEAD~3
    python -m benchmarks.throughput_ab --rounds 3 before=../before after=.
    python -m benchmarks.throughput_ab one=.:FLOWSENTINEL_TORCH_THREADS=1 two=.:FLOWSENTINEL_TORCH_THREADS=2
    python -m benchmarks.throughput_ab --verdicts-per-10k 100 \
        off=.:FLOWSENTINEL_FEEDBACK_TOPIC= on=.:FLOWSENTINEL_FEEDBACK_TOPIC=throughput-ab.feedback

``--verdicts-per-10k N`` first runs one detector over the backlog (feedback on, so that its alerts carry
what a verdict joins to; q = 0.02, so that there are enough alerts to judge), then writes N verdicts per
10,000 backlog records to ``throughput-ab.feedback``, each on one of those alerts (``attack`` where the
alert's record was an attack, else ``benign``). A variant whose ``FLOWSENTINEL_FEEDBACK_TOPIC`` names that
topic reads them, and the alerts they judge, while it works
through the backlog: its verdict memory fills as it goes (up to its capacity of each kind).

A variant is ``LABEL=CHECKOUT[:VAR=VALUE,...]``, the variables added to that detector's environment. The
interpreter is this one (the checkouts share its installed packages). Writes ``--out`` if given.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer, KafkaProducer

from benchmarks.throughput import produce, start_detector, time_backlog
from flowsentinel.broker import EmbeddedBroker, free_port
from flowsentinel.detector.artifact import save_artifact
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.kafka.admin import ensure_topics
from flowsentinel.producers.synthetic import normal_training_records, to_batch

ROOT = Path(__file__).resolve().parent.parent


def variant(text: str) -> tuple[str, Path, dict[str, str]]:
    label, sep, rest = text.partition("=")
    checkout, _, env = rest.partition(":")
    if not (label and sep and checkout):
        raise argparse.ArgumentTypeError(f"variant {text!r}: expected LABEL=CHECKOUT[:VAR=VALUE,...]")
    path = Path(checkout).resolve()
    if not (path / "flowsentinel" / "__main__.py").is_file():
        raise argparse.ArgumentTypeError(f"variant {text!r}: {path} is not a flowsentinel checkout")
    pairs = [e.partition("=") for e in env.split(",") if e]
    if any(not (k and s) for k, s, _ in pairs):
        raise argparse.ArgumentTypeError(f"variant {text!r}: environment must be VAR=VALUE,...")
    return label, path, {k: v for k, _, v in pairs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+", type=variant, metavar="LABEL=CHECKOUT[:VAR=VALUE,...]")
    ap.add_argument("--backlog", type=int, default=150_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--verdicts-per-10k", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if len({label for label, _, _ in args.variants}) != len(args.variants):
        ap.error("variant labels must differ")
    work = Path(tempfile.mkdtemp(prefix="flowsentinel-ab-"))
    model = train(to_batch(normal_training_records(30_000, seed=1)), TrainConfig(epochs=5), progress=False)
    save_artifact(model, work / "model")
    rates: dict[str, list[int]] = {label: [] for label, _, _ in args.variants}
    with EmbeddedBroker(log_path=work / "tansu.log") as broker:
        topic = "throughput-ab"
        ensure_topics(
            broker.bootstrap, {topic: 4, topic + ".alerts": 1, topic + ".dead": 1, topic + ".feedback": 1}
        )
        produce(broker.bootstrap, topic, args.backlog, rate=None, hosts=2000, seed=1)
        verdicts = 0
        if args.verdicts_per_10k:
            verdicts = seed_verdicts(
                broker.bootstrap, topic, work, args.backlog, args.backlog * args.verdicts_per_10k // 10_000
            )
        for r in range(args.rounds):
            for label, checkout, env in args.variants:
                log, port = work / f"{label}-{r}.log", free_port()
                proc = start_detector(broker.bootstrap, topic, f"{label}-{r}", work / "model", port, log,
                                      checkout=checkout, env=env, state_dir=str(log.with_suffix(".state")))  # fmt: skip
                try:
                    rate = time_backlog(port, args.backlog)[1]
                finally:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(60)
                rates[label].append(round(rate))
                print(f"round {r + 1}: {label} {rate:,.0f} records/s", flush=True)
    summary = {label: {"runs": v, "mean": round(sum(v) / len(v))} for label, v in rates.items()}
    print(json.dumps(summary))
    if args.out:
        result = {"backlog": args.backlog, "verdicts": verdicts, "variants": summary,
                  "command": "python -m benchmarks.throughput_ab " + " ".join(sys.argv[1:]),
                  "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


def seed_verdicts(bootstrap: str, topic: str, work: Path, backlog: int, n: int) -> int:
    """Raise alerts on the backlog with one detector (feedback off), then write ``n`` verdicts on them to
    ``TOPIC.feedback``, spread evenly over the alerts. Returns the number written."""
    log, port = work / "seed.log", free_port()
    proc = start_detector(bootstrap, topic, "seed-verdicts", work / "model", port, log,
                          env={"FLOWSENTINEL_FEEDBACK_TOPIC": topic + ".feedback"}, state_dir=str(work / "seed.state"), risk="0.02")  # fmt: skip
    try:
        time_backlog(port, backlog)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    consumer = KafkaConsumer(topic + ".alerts", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5_000)  # fmt: skip
    alerts = [json.loads(m.value) for m in consumer]
    consumer.close()
    if not alerts:
        raise SystemExit("the seeding detector raised no alerts: no verdicts to send")
    alerts = [a for a in alerts if "field_shares" in a]  # what a verdict can join to
    pick = [alerts[i] for i in np.linspace(0, len(alerts) - 1, min(n, len(alerts))).astype(int)]
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for a in pick:
        verdict = "benign" if a.get("label", "normal") == "normal" else "attack"
        producer.send(topic + ".feedback", json.dumps({"alert_id": a["id"], "verdict": verdict}).encode())
    producer.flush()
    producer.close()
    attacks = sum(1 for a in pick if a.get("label", "normal") != "normal")
    print(f"{len(pick)} verdicts ({attacks} attack) on {len(alerts)} alert messages written to {topic}.feedback",
          flush=True)  # fmt: skip
    return len(pick)


if __name__ == "__main__":
    main()
