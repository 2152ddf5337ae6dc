"""Throughput, latency and memory of one detector process against a local Kafka-protocol broker.

1. **Backlog throughput**: produce a fixed backlog of synthetic KDD records (JSON, lz4); then, round after
   round, a bare consumer of each Kafka client library (confluent-kafka, kafka-python) that only parses
   each value with orjson reads it, and one ``flowsentinel detect`` process on each library, timed from its
   first scored record until every offset is committed. Reported: the rates and their ratios (a detector
   against the bare client it runs on, confluent-kafka against kafka-python), in the same run.
2. **Latency at a fixed offered rate**: a producer offers N records/s for a while; the detector's
   ``flowsentinel_end_to_end_latency_seconds`` histogram (Kafka timestamp → verdict committed) gives
   p50/p99 (interpolated within buckets, as Prometheus' histogram_quantile does).
3. **Memory under many keys**: records from 100,000 distinct hosts at a fixed rate for a long run; the
   detector's RSS is sampled every 10 s (flat = last sample within 10% of the one after warm-up).

    python -m benchmarks.throughput                  # all three; writes benchmarks/results/throughput.json
    python -m benchmarks.throughput --memory-minutes 10
    python -m benchmarks.throughput --only backlog --rounds 3

Uses the embedded broker (Tansu) unless --bootstrap-servers is given.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from flowsentinel.broker import EmbeddedBroker, free_port
from flowsentinel.detector.artifact import save_artifact
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.kafka.admin import ensure_topics
from flowsentinel.producers.publisher import Pacer, Publisher, publish, replay_producer
from flowsentinel.producers.synthetic import SyntheticTraffic, normal_training_records, to_batch
from flowsentinel.testing import consumer_lags, scrape

ROOT = Path(__file__).resolve().parent.parent


def quantile_from_buckets(m: dict[str, float], name: str, q: float) -> float:
    buckets = sorted(
        (
            (float(k.split('le="')[1].rstrip('"}')), v)
            for k, v in m.items()
            if k.startswith(name + "_bucket{")
        ),
        key=lambda b: b[0],
    )
    total = buckets[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * (rank - prev_count) / max(count - prev_count, 1e-9)
        prev_le, prev_count = le, count
    return float("nan")


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_detector(
    bootstrap: str,
    topic: str,
    group: str,
    model: Path,
    port: int,
    log: Path,
    *,
    checkout: Path = ROOT,
    env: dict[str, str] | None = None,
    **extra: str,
) -> subprocess.Popen:
    args = [
        sys.executable,
        "-m",
        "flowsentinel",
        "detect",
        "--bootstrap-servers",
        bootstrap,
        "--input-topic",
        topic,
        "--alerts-topic",
        topic + ".alerts",
        "--dead-letter-topic",
        topic + ".dead",
        "--group",
        group,
        "--model",
        str(model),
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        "--session-timeout-ms",
        "6000",
        "--heartbeat-interval-ms",
        "1000",
        "--risk",
        "0.002",
        "--state-dir",
        str(log.parent / "state"),
    ]
    for k, v in extra.items():
        args += ["--" + k.replace("_", "-"), v]
    return subprocess.Popen(
        args, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=checkout, env={**os.environ, **(env or {})}
    )


def wait_metric(port: int, key: str, target: float, timeout: float) -> dict[str, float]:
    """Scrape until ``key`` reaches ``target``: once a second, every 0.1 s when within 10% of it (each
    scrape costs the detector CPU; at five a second it was 4% of a backlog run, where Prometheus scrapes
    every 15 s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = 0.0
        try:
            m = scrape(port)
            value = m.get(key, 0)
            if value >= target:
                return m
        except OSError:
            pass
        time.sleep(0.1 if value >= 0.9 * target else 1.0)
    raise TimeoutError(f"{key} did not reach {target}")


def produce(
    bootstrap: str,
    topic: str,
    n: int,
    *,
    rate: float | None,
    hosts: int,
    seed: int,
    stop: threading.Event | None = None,
    client: str = "kafka-python",
) -> dict:
    """Synthetic records into ``topic``; ``client``: the library the producer writes through."""
    gen = SyntheticTraffic(seed=seed, hosts=hosts, attack_every_s=30.0)
    pub = Publisher(topic, replay_producer(bootstrap, client=client, compression="lz4", linger_ms=20))
    summary = publish(
        gen.stream(rate=rate or 50_000, chunk=2000, limit=n),
        pub,
        Pacer(rate=rate),
        key_field="src_host",
        ts_field="ts",
        should_stop=(stop.is_set if stop else lambda: False),
    )
    pub.close()
    return summary.as_dict()


def bare_consumer_rate(bootstrap: str, topic: str, n: int, client: str, group: str) -> float:
    """Records/s of a bare consumer of ``client`` that only parses each value with orjson: from its first
    record to its ``n``-th (the ceiling a detector on that client is judged against, same backlog)."""
    import orjson

    count, first = 0, 0.0
    deadline = time.monotonic() + 300
    if client == "confluent":
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                      "heartbeat.interval.ms": 1000})  # fmt: skip
        c.subscribe([topic])
        try:
            while count < n and time.monotonic() < deadline:
                for m in c.consume(500, 1.0):
                    if m.error() is None:
                        orjson.loads(m.value() or b"")
                        first = first or time.monotonic()
                        count += 1
        finally:
            c.close()
    else:
        from kafka import KafkaConsumer

        k = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                          auto_offset_reset="earliest", session_timeout_ms=6000, heartbeat_interval_ms=1000,
                          max_poll_records=500)  # fmt: skip
        try:
            while count < n and time.monotonic() < deadline:
                for records in k.poll(timeout_ms=1000).values():
                    for r in records:
                        orjson.loads(r.value)
                        first = first or time.monotonic()
                        count += 1
        finally:
            k.close()
    if count < n:
        raise TimeoutError(f"bare {client} consumer read {count} of {n} records")
    return (n - 1) / (time.monotonic() - first)


def bench_backlog(bootstrap: str, model: Path, workdir: Path, n: int, rounds: int) -> dict:
    """One backlog, read round after round by a bare consumer of each client library and by ``detect`` on
    each (its own consumer group each time): the ratios are the figures, this machine's speed drifts."""
    topic = f"bench-backlog-{int(time.time())}"
    ensure_topics(bootstrap, {topic: 4, topic + ".alerts": 1, topic + ".dead": 1})
    prod = produce(bootstrap, topic, n, rate=None, hosts=2000, seed=1)
    runs: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {}
    for r in range(rounds):
        for client in ("confluent", "kafka-python"):
            label = f"bare {client}"
            rate = bare_consumer_rate(bootstrap, topic, n, client, f"bench-bare-{client}-{r}")
            runs.setdefault(label, []).append(rate)
            print(f"  round {r + 1}: {label}: {rate:,.0f} records/s", flush=True)
        for client in ("confluent", "kafka-python"):
            label = f"detect {client}"
            port = free_port()
            proc = start_detector(
                bootstrap, topic, f"bench-backlog-{client}-{r}", model, port, workdir / f"backlog-{client}.log",
                kafka_client=client,
            )  # fmt: skip
            try:
                _, rate = time_backlog(port, n)
                rss.setdefault(label, []).append(rss_mib(proc.pid))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
            runs.setdefault(label, []).append(rate)
            print(f"  round {r + 1}: {label}: {rate:,.0f} records/s", flush=True)
    mean = {label: sum(v) / len(v) for label, v in runs.items()}
    return {
        "records": n,
        "rounds": rounds,
        "producer": prod,
        "records_per_second": {label: round(m) for label, m in mean.items()},
        "runs": {label: [round(x) for x in v] for label, v in runs.items()},
        "rss_mib_end": {label: round(max(v)) for label, v in rss.items()},
        "ratios": {
            "detect confluent / bare confluent": round(mean["detect confluent"] / mean["bare confluent"], 3),
            "detect kafka-python / bare kafka-python": round(
                mean["detect kafka-python"] / mean["bare kafka-python"], 3
            ),
            "detect confluent / detect kafka-python": round(
                mean["detect confluent"] / mean["detect kafka-python"], 3
            ),
        },
    }


def time_backlog(port: int, n: int) -> tuple[float, float]:
    """(seconds, records/s) of a detector working through a backlog of ``n`` records: from its first
    scored record until every record is scored and every partition's lag is 0 (committed)."""
    wait_metric(port, "flowsentinel_records_scored_total", 1, 120)
    t0 = time.monotonic()
    first = scrape(port)["flowsentinel_records_scored_total"]
    wait_metric(port, "flowsentinel_records_scored_total", n, 900)
    while True:
        lags = list(consumer_lags(scrape(port)).values())
        if lags and all(v == 0 for v in lags):
            break
        time.sleep(0.1)
    elapsed = time.monotonic() - t0
    return elapsed, (n - first) / elapsed


def bench_latency(
    bootstrap: str, model: Path, workdir: Path, rate: float, seconds: float, client: str, producer: str
) -> dict:
    topic = f"bench-latency-{int(time.time())}"
    ensure_topics(bootstrap, {topic: 4, topic + ".alerts": 1, topic + ".dead": 1})
    port = free_port()
    proc = start_detector(
        bootstrap, topic, "bench-latency", model, port, workdir / "latency.log", kafka_client=client
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if scrape(port).get("flowsentinel_assigned_partitions", 0) == 4:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        n = int(rate * seconds)
        prod = produce(bootstrap, topic, n, rate=rate, hosts=2000, seed=2, client=producer)
        m = wait_metric(port, "flowsentinel_records_scored_total", n, 120)
        time.sleep(1.0)
        m = scrape(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    name = "flowsentinel_end_to_end_latency_seconds"
    batch = "flowsentinel_batch_duration_seconds"  # the detector's own part: poll returned → committed
    return {
        "kafka_client": client,
        "producer_client": producer,
        "offered_rate": rate,
        "seconds": seconds,
        "records": n,
        "achieved_producer_rate": prod["records_per_second"],
        "p50_seconds": round(quantile_from_buckets(m, name, 0.5), 4),
        "p99_seconds": round(quantile_from_buckets(m, name, 0.99), 4),
        "mean_seconds": round(m[name + "_sum"] / m[name + "_count"], 4),
        "batches": int(m[batch + "_count"]),
        "records_per_batch": round(m["flowsentinel_records_consumed_total"] / max(m[batch + "_count"], 1), 1),
        "batch_p50_seconds": round(quantile_from_buckets(m, batch, 0.5), 4),
        "batch_p99_seconds": round(quantile_from_buckets(m, batch, 0.99), 4),
    }


def bench_memory(
    bootstrap: str, model: Path, workdir: Path, rate: float, minutes: float, keys: int, client: str
) -> dict:
    topic = f"bench-memory-{int(time.time())}"
    ensure_topics(bootstrap, {topic: 4, topic + ".alerts": 1, topic + ".dead": 1})
    port = free_port()
    proc = start_detector(
        bootstrap, topic, "bench-memory", model, port, workdir / "memory.log", kafka_client=client
    )
    stop = threading.Event()
    n = int(rate * minutes * 60)
    producer = threading.Thread(
        target=produce,
        args=(bootstrap, topic, n),
        kwargs={"rate": rate, "hosts": keys, "seed": 3, "stop": stop},
        daemon=True,
    )
    samples = []
    try:
        wait_metric(port, "flowsentinel_assigned_partitions", 4, 60)
        producer.start()
        t0 = time.monotonic()
        while time.monotonic() - t0 < minutes * 60:
            time.sleep(10)
            m = scrape(port)
            samples.append(
                {
                    "t": round(time.monotonic() - t0),
                    "rss_mib": round(rss_mib(proc.pid), 1),
                    "scored": m["flowsentinel_records_scored_total"],
                    "window_keys": m["flowsentinel_window_keys"],
                    # records behind; a growing lag means the figures are no longer at the offered rate
                    "lag": sum(consumer_lags(m).values()),
                }
            )
            print("  memory", samples[-1], flush=True)
    finally:
        stop.set()
        producer.join(30)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    warm = next((s for s in samples if s["t"] >= 60), samples[0])
    last = samples[-1]
    return {
        "kafka_client": client,
        "rate": rate,
        "minutes": minutes,
        "distinct_keys": keys,
        "samples": samples,
        "rss_after_warmup_mib": warm["rss_mib"],
        "rss_end_mib": last["rss_mib"],
        "growth_after_warmup": round(last["rss_mib"] / warm["rss_mib"] - 1, 4),
        "max_lag": max(s["lag"] for s in samples),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap-servers", default=None)
    ap.add_argument("--backlog", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=2, help="backlog: rounds of the four readers")
    ap.add_argument("--latency-rate", type=float, default=5_000)
    ap.add_argument("--latency-seconds", type=float, default=60)
    ap.add_argument("--memory-minutes", type=float, default=10)
    ap.add_argument("--memory-rate", type=float, default=2_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--only", choices=("backlog", "latency", "memory"), default=None)
    ap.add_argument(
        "--producer-client",
        choices=("confluent", "kafka-python"),
        default="kafka-python",
        help="latency: the library the benchmark's own producer writes through (it shares the cores)",
    )
    ap.add_argument(
        "--kafka-client",
        choices=("confluent", "kafka-python"),
        default="confluent",
        help="latency and memory",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "throughput.json"))
    args = ap.parse_args()
    workdir = ROOT / "models" / "bench-throughput"
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = workdir / "model"
    model = train(to_batch(normal_training_records(30_000, seed=1)), TrainConfig(epochs=5), progress=False)
    save_artifact(model, model_dir)
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "model": {
            "window": model.config.window,
            "hidden": model.config.hidden,
            "latent": model.config.latent,
            "features": model.config.n_features,
        },
    }
    broker = None
    if args.bootstrap_servers:
        bootstrap = args.bootstrap_servers
    else:
        broker = EmbeddedBroker(log_path=workdir / "tansu.log").start()
        bootstrap = broker.bootstrap
    results["broker"] = "embedded Tansu" if broker else bootstrap
    out = Path(args.out)
    if out.exists():
        previous = json.loads(out.read_text())
        results.update({k: v for k, v in previous.items() if k in ("backlog", "latency", "memory")})
    try:
        if args.only in (None, "backlog"):
            results["backlog"] = bench_backlog(bootstrap, model_dir, workdir, args.backlog, args.rounds)
            print("backlog:", json.dumps(results["backlog"]), flush=True)
        if args.only in (None, "latency"):
            results["latency"] = bench_latency(
                bootstrap,
                model_dir,
                workdir,
                args.latency_rate,
                args.latency_seconds,
                args.kafka_client,
                args.producer_client,
            )
            print("latency:", json.dumps(results["latency"]), flush=True)
        if args.only in (None, "memory"):
            results["memory"] = bench_memory(
                bootstrap,
                model_dir,
                workdir,
                args.memory_rate,
                args.memory_minutes,
                args.keys,
                args.kafka_client,
            )
            print(
                "memory:",
                json.dumps({k: v for k, v in results["memory"].items() if k != "samples"}),
                flush=True,
            )
    finally:
        if broker is not None:
            broker.stop()
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
