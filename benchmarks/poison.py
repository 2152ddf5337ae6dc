"""Poison records against one detector process on a real broker: what they cost, and that nothing is lost.

1. **Drain rate with poison** (default): for each poison kind — deep nesting (a field nested 1,000 levels),
   a huge value (a 60 KB string in a numeric field), a surrogate key (``"src_host": "\\ud800…"``: scored and
   alerted, not dead-lettered), binary garbage, a wrong schema, a tombstone (a key and no value) — a backlog
   of ``--records`` synthetic KDD records with one in every 1,000 and one in every 100 replaced by poison,
   drained by one ``flowsentinel detect`` process; each poisoned run is paired with a clean run of the same
   size just before it (this machine's speed drifts), ``--rounds`` pairs, and the ratio is poisoned / clean
   records per second (median over the pairs), timed from the first consumed record until every record is
   consumed and every partition's lag is 0.
2. **Fuzz** (``--fuzz N``): N messages from ``flowsentinel/fuzzing.py``'s generator (every way of breaking a
   record it knows, arbitrary keys) through the broker and the detector; then checks that the process never
   died, the group committed the end of every partition, and every message was either scored or is on the
   dead-letter topic once with a reason from the fixed set (none ``internal_error``).

    python -m benchmarks.poison                       # writes benchmarks/results/poison.json
    python -m benchmarks.poison --fuzz 100000 --only fuzz
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.throughput import start_detector, wait_metric
from flowsentinel.broker import EmbeddedBroker, free_port
from flowsentinel.consumers.decode import REASONS
from flowsentinel.detector.artifact import save_artifact
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.fuzzing import fuzz_messages
from flowsentinel.kafka.admin import ensure_topics
from flowsentinel.producers.synthetic import SyntheticTraffic, normal_training_records, to_batch
from flowsentinel.testing import committed, consumer_lags, read_topic, scrape

ROOT = Path(__file__).resolve().parent.parent


KINDS = ("deep_nesting", "huge_value", "surrogate_key", "binary_garbage", "wrong_schema", "tombstone")
PARTITIONS = 4


def poison(kind: str, record: dict[str, Any], rng: random.Random) -> bytes | None:
    text = json.dumps(record)
    if kind == "deep_nesting":
        return text.replace(
            f'"src_bytes": {json.dumps(record["src_bytes"])}', '"src_bytes": ' + "[" * 1000 + "1" + "]" * 1000
        ).encode()
    if kind == "huge_value":
        return json.dumps(dict(record, src_bytes="9" * 60_000)).encode()
    if kind == "surrogate_key":
        return text.replace(
            f'"src_host": {json.dumps(record["src_host"])}', '"src_host": "\\ud800evil"'
        ).encode()
    if kind == "binary_garbage":
        return rng.randbytes(300)
    if kind == "wrong_schema":
        return json.dumps(dict(record, schema="cicflowmeter")).encode()
    if kind == "tombstone":
        return None
    raise ValueError(kind)


def backlog(n: int, kind: str | None, every: int, seed: int) -> list[tuple[bytes | None, bytes | None]]:
    """``n`` (key, value) messages of synthetic traffic, one in every ``every`` replaced by ``kind``."""
    rng = random.Random(seed)
    records = SyntheticTraffic(seed=seed, hosts=2000, attack_every_s=30.0).records(
        n, start=time.time(), rate=5000
    )
    out: list[tuple[bytes | None, bytes | None]] = []
    for i, r in enumerate(records):
        value: bytes | None = json.dumps(r).encode()
        if kind is not None and i % every == every // 2:
            value = poison(kind, r, rng)
        out.append((r["src_host"].encode(), value))
    return out


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]) -> None:
    from kafka import KafkaProducer

    p = KafkaProducer(
        bootstrap_servers=bootstrap,
        linger_ms=20,
        compression_type="lz4",
        enable_idempotence=False,
        max_request_size=4_000_000,
    )
    for key, value in messages:
        if key is None and value is None:
            key = b""  # kafka-python refuses a message with neither (the integration tests use kcat -Z)
        p.send(topic, key=key, value=value)
    p.flush()
    p.close()


def first_consumed(port: int, timeout: float = 120.0) -> float:
    """Poll /metrics every 50 ms until the detector has consumed something; what it has consumed by then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = scrape(port).get("flowsentinel_records_consumed_total", 0.0)
        except OSError:
            value = 0.0
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError("the detector consumed nothing")


def drain(bootstrap: str, model: Path, workdir: Path, messages: list, name: str) -> dict[str, Any]:
    """Produce ``messages`` to a new topic, start one detector on it, time the drain, stop it (SIGTERM)."""
    topic = f"poison-{name}-{time.time_ns()}"
    ensure_topics(bootstrap, {topic: PARTITIONS, topic + ".alerts": 1, topic + ".dead": 1})
    produce(bootstrap, topic, messages)
    port = free_port()
    proc = start_detector(bootstrap, topic, topic, model, port, workdir / f"{name}.log")
    n = len(messages)
    try:
        first = first_consumed(port)
        t0 = time.monotonic()
        wait_metric(port, "flowsentinel_records_consumed_total", n, 900)
        while True:
            m = scrape(port)
            lags = list(consumer_lags(m).values())
            if lags and all(v == 0 for v in lags):
                break
            time.sleep(0.1)
        elapsed = time.monotonic() - t0
        alive = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    invalid = {
        k.split('"')[1]: int(v)
        for k, v in m.items()
        if k.startswith("flowsentinel_records_invalid_total{") and v
    }
    return {
        "topic": topic,
        "records": n,
        "seconds": round(elapsed, 2),
        "records_per_second": round((n - first) / elapsed),
        "scored": int(m["flowsentinel_records_scored_total"]),
        "dead_lettered": invalid,
        "alive_at_end": alive,
        "exit_code": code,
    }


def bench_kinds(
    bootstrap: str, model: Path, workdir: Path, n: int, kinds: list[str], rounds: int
) -> dict[str, Any]:
    """Each (kind, rate): ``rounds`` pairs of a clean run and a poisoned run just after it; the median of the
    pairs' ratios (single pairs swing by a quarter on this machine, clean against clean)."""
    out: dict[str, Any] = {}
    for kind in kinds:
        for every in (1000, 100):
            pairs = []
            for r in range(rounds):
                clean = drain(bootstrap, model, workdir, backlog(n, None, every, seed=1 + r), "clean")
                bad = drain(bootstrap, model, workdir, backlog(n, kind, every, seed=1 + r), kind)
                pairs.append((clean, bad))
            ratios = sorted(b["records_per_second"] / c["records_per_second"] for c, b in pairs)
            ratio = ratios[len(ratios) // 2]
            floor = 0.8 if every == 1000 else 0.5
            out[f"{kind}/1_per_{every}"] = {
                "clean_records_per_second": [c["records_per_second"] for c, _ in pairs],
                "poisoned_records_per_second": [b["records_per_second"] for _, b in pairs],
                "ratios": [round(x, 3) for x in ratios],
                "median_ratio": round(ratio, 3),
                "floor": floor,
                "meets_floor": ratio >= floor,
                "dead_lettered": pairs[0][1]["dead_lettered"],
                "scored": pairs[0][1]["scored"],
                "all_exited_0": all(c["exit_code"] == 0 and b["exit_code"] == 0 for c, b in pairs),
            }
            print(
                f"{kind:15s} 1/{every:<5d} ratios {[round(x, 2) for x in ratios]} median {ratio:.2f} "
                f"(floor {floor})  dead {pairs[0][1]['dead_lettered']}",
                flush=True,
            )
    return out


def bench_fuzz(bootstrap: str, model: Path, workdir: Path, n: int, seed: int) -> dict[str, Any]:
    goods = normal_training_records(5_000, seed=seed)
    messages = fuzz_messages(random.Random(seed), goods, n)
    topic_run = drain(bootstrap, model, workdir, messages, "fuzz")
    topic = topic_run["topic"]
    ends = committed(bootstrap, topic, topic)  # the group is named after the topic
    dead = read_topic(bootstrap, topic + ".dead", expect=n - topic_run["scored"], timeout=300, settle=5.0)
    reasons: dict[str, int] = {}
    for m in dead:
        reason = dict(m.headers)["flowsentinel.error.reason"].decode()
        reasons[reason] = reasons.get(reason, 0) + 1
    sources = {
        (
            int(dict(m.headers)["flowsentinel.source.partition"]),
            int(dict(m.headers)["flowsentinel.source.offset"]),
        )
        for m in dead
    }
    result = {
        **topic_run,
        "committed": sum(ends.values()),
        "dead_letter_messages": len(dead),
        "distinct_dead_letter_sources": len(sources),
        "reasons": dict(sorted(reasons.items())),
        "unknown_reasons": sorted(set(reasons) - set(REASONS)),
    }
    result["nothing_lost"] = (
        result["committed"] == n
        and topic_run["scored"] + len(sources) == n
        and result["alive_at_end"]
        and topic_run["exit_code"] == 0
        and not result["unknown_reasons"]
    )
    print("fuzz:", json.dumps({k: v for k, v in result.items() if k != "topic"}), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=60_000, help="records per drain run")
    ap.add_argument("--kinds", default=",".join(KINDS))
    ap.add_argument("--rounds", type=int, default=3, help="clean/poisoned pairs per kind and rate")
    ap.add_argument("--fuzz", type=int, default=100_000, help="fuzzed messages in the fuzz run")
    ap.add_argument("--only", choices=("kinds", "fuzz"), default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "poison.json"))
    args = ap.parse_args()
    workdir = ROOT / "models" / "bench-poison"
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = workdir / "model"
    if not (model_dir / "metadata.json").is_file():
        model = train(
            to_batch(normal_training_records(30_000, seed=1)), TrainConfig(epochs=5), progress=False
        )
        save_artifact(model, model_dir)
    out = Path(args.out)
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    with EmbeddedBroker(log_path=workdir / "tansu.log") as broker:
        if args.only in (None, "kinds"):
            results["kinds"] = bench_kinds(
                broker.bootstrap, model_dir, workdir, args.records, args.kinds.split(","), args.rounds
            )
            results["kinds_measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if args.only in (None, "fuzz"):
            results["fuzz"] = bench_fuzz(broker.bootstrap, model_dir, workdir, args.fuzz, args.seed)
            results["fuzz_measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["command"] = "python -m benchmarks.poison " + " ".join(sys.argv[1:])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
