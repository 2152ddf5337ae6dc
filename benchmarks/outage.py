"""A one-minute broker outage, survived: the service waits, says so, and resumes with nothing lost.

Starts its own embedded broker and a detector service (in this process), scores 1,000 records, freezes
the broker (SIGSTOP) for --seconds (65), sampling /readyz, /healthz and flowsentinel_broker_up every 2 s,
resumes it (SIGCONT), produces 1,000 more records and times until all are scored and committed.

    python -m benchmarks.outage [--seconds 65]      # writes benchmarks/results/outage.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from flowsentinel.broker import EmbeddedBroker
from flowsentinel.consumers.main import start_service
from flowsentinel.consumers.settings import Settings
from flowsentinel.detector.artifact import save_artifact
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.kafka.admin import ensure_topics
from flowsentinel.producers.synthetic import normal_training_records, to_batch
from flowsentinel.testing import (
    committed,
    highwater,
    http_status,
    produce_records,
    scrape,
    wait_for,
)

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=65.0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "outage.json"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    model_dir = ROOT / "models" / "bench-outage"
    save_artifact(train(to_batch(normal_training_records(10_000, seed=1)), TrainConfig(epochs=3), progress=False),
                  model_dir)  # fmt: skip
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, {"records": 4, "alerts": 1, "dead": 1})
        settings = Settings(bootstrap_servers=broker.bootstrap, input_topic="records", alerts_topic="alerts",
                            dead_letter_topic="dead", group="outage", model=str(model_dir), metrics_port=0,
                            metrics_host="127.0.0.1", session_timeout_ms=6000, heartbeat_interval_ms=1000,
                            state_dir="")  # fmt: skip
        produce_records(broker.bootstrap, "records", normal_training_records(1000, seed=2))
        running = start_service(settings)
        port = running.server.port
        wait_for(lambda: running.service.scored >= 1000, 60, "first 1,000 scored")
        samples = []
        t0 = time.monotonic()
        broker.pause()
        while time.monotonic() - t0 < args.seconds:
            m = scrape(port)
            samples.append({"t": round(time.monotonic() - t0), "readyz": http_status(port, "/readyz"),
                            "healthz": http_status(port, "/healthz"), "broker_up": m["flowsentinel_broker_up"]})  # fmt: skip
            time.sleep(2)
        broker.resume()
        t1 = time.monotonic()
        produce_records(broker.bootstrap, "records", normal_training_records(1000, seed=3))
        wait_for(lambda: running.service.scored >= 2000, 120, "second 1,000 scored")
        hw = highwater(broker.bootstrap, "records")
        wait_for(lambda: committed(broker.bootstrap, "outage", "records") == hw, 60, "all committed")
        recovered = time.monotonic() - t1
        alive = running.thread.is_alive()
        running.shutdown()
    result = {"outage_seconds": args.seconds, "samples": samples,
              "seconds_to_score_and_commit_after_resume": round(recovered, 1), "loop_alive": alive,
              "scored": running.service.scored, "committed_equals_highwater": True}  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    states = sorted({(s["readyz"], s["healthz"], s["broker_up"]) for s in samples})
    print(f"during the outage (readyz, healthz, broker_up): {states}")
    print(f"after resume: all records scored and committed in {recovered:.1f}s; loop alive: {alive}")


if __name__ == "__main__":
    main()
