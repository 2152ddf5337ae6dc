"""Backlog throughput of two (or more) checkouts, A/B on one broker: the way to judge a speed change here.

This machine's speed moves by a third within the hour, so two ``throughput.py`` runs an hour apart cannot
tell a 20% change from the weather. This script produces one backlog of synthetic KDD records once, then
starts ``flowsentinel detect`` from each checkout in turn (each under its own consumer group, so each
reads the whole backlog), round after round, and reports records/s per run and the mean per checkout.
Every detector scores with the same model, trained once here.

    git worktree add ../before HEAD~3
    python benchmarks/throughput_ab.py --rounds 3 before=../before after=.
    python benchmarks/throughput_ab.py one=.:FLOWSENTINEL_TORCH_THREADS=1 two=.:FLOWSENTINEL_TORCH_THREADS=2

A variant is ``LABEL=CHECKOUT[:VAR=VALUE,...]``, the variables added to that detector's environment. The
interpreter is this one (the checkouts share its installed packages). Writes ``--out`` if given.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from throughput import produce  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

from detector.artifact import save_artifact  # noqa: E402
from detector.train import TrainConfig, train  # noqa: E402
from flowsentinel.broker import EmbeddedBroker, free_port  # noqa: E402
from flowsentinel.kafka_admin import ensure_topics  # noqa: E402
from producers.synthetic import normal_training_records, to_batch  # noqa: E402
from tests.integration.conftest import consumer_lags, scrape  # noqa: E402


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


def metrics(port: int) -> dict[str, float]:
    try:
        return scrape(port)
    except OSError:
        return {}


def one_run(
    bootstrap: str,
    topic: str,
    group: str,
    model: Path,
    checkout: Path,
    env: dict[str, str],
    n: int,
    log: Path,
) -> float:
    """Records/s from the first scored record until every partition's lag is 0."""
    port = free_port()
    args = [sys.executable, "-m", "flowsentinel", "detect", "--bootstrap-servers", bootstrap,
            "--input-topic", topic, "--alerts-topic", topic + ".alerts", "--dead-letter-topic", topic + ".dead",
            "--group", group, "--model", str(model), "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
            "--session-timeout-ms", "6000", "--heartbeat-interval-ms", "1000", "--risk", "0.002",
            "--state-dir", str(log.with_suffix(".state"))]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(
            args, cwd=checkout, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 180
        while metrics(port).get("flowsentinel_records_scored_total", 0) < 1:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"detector from {checkout} scored nothing; see {log}")
            time.sleep(0.05)
        t0 = time.monotonic()
        first = metrics(port)["flowsentinel_records_scored_total"]
        while True:  # scrapes cost the detector CPU: once a second, every 0.1 s near the end
            m = metrics(port)
            scored = m.get("flowsentinel_records_scored_total", 0)
            lags = list(consumer_lags(m).values())
            if scored >= n and lags and all(v == 0 for v in lags):
                break
            time.sleep(0.1 if scored > 0.9 * n else 1.0)
        return (n - first) / (time.monotonic() - t0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+", type=variant, metavar="LABEL=CHECKOUT[:VAR=VALUE,...]")
    ap.add_argument("--backlog", type=int, default=150_000)
    ap.add_argument("--rounds", type=int, default=3)
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
        ensure_topics(broker.bootstrap, {topic: 4, topic + ".alerts": 1, topic + ".dead": 1})
        produce(broker.bootstrap, topic, args.backlog, rate=None, hosts=2000, seed=1)
        for r in range(args.rounds):
            for label, checkout, env in args.variants:
                rate = one_run(broker.bootstrap, topic, f"{label}-{r}", work / "model", checkout, env,
                               args.backlog, work / f"{label}-{r}.log")  # fmt: skip
                rates[label].append(round(rate))
                print(f"round {r + 1}: {label} {rate:,.0f} records/s", flush=True)
    summary = {label: {"runs": v, "mean": round(sum(v) / len(v))} for label, v in rates.items()}
    print(json.dumps(summary))
    if args.out:
        Path(args.out).write_text(json.dumps({"backlog": args.backlog, "variants": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
