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
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from throughput import produce, start_detector, time_backlog  # noqa: E402  (benchmarks/ is sys.path[0] when run as a script)

from detector.artifact import save_artifact  # noqa: E402
from detector.train import TrainConfig, train  # noqa: E402
from flowsentinel.broker import EmbeddedBroker, free_port  # noqa: E402
from flowsentinel.kafka_admin import ensure_topics  # noqa: E402
from producers.synthetic import normal_training_records, to_batch  # noqa: E402


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
        Path(args.out).write_text(json.dumps({"backlog": args.backlog, "variants": summary}, indent=1) + "\n")


if __name__ == "__main__":
    main()
