"""The Publisher writing through a producer of the Kafka layer: every record is counted sent or failed, with the
reason, however the deliveries end. Offline: a broker that is not there."""

from __future__ import annotations

from flowsentinel.consumers.settings import Settings
from flowsentinel.kafka.client import make_producer
from flowsentinel.producers.publisher import Publisher


def test_undeliverable_records_are_counted_failed_with_the_reason():
    cfg = Settings(bootstrap_servers="127.0.0.1:1").client_config(security={})
    client = make_producer(
        "confluent", cfg, {"acks": "all", "message_timeout_ms": 300, "compression_type": None}
    )
    publisher = Publisher("nowhere", client)
    for i in range(25):
        publisher.send({"i": i}, key=f"k{i}")
    publisher.close()
    s = publisher.summary
    assert (s.sent, s.failed) == (0, 25)
    assert s.first_errors and "timed out" in s.first_errors[0].lower()


def test_finished_deliveries_are_swept_as_they_go():
    cfg = Settings(bootstrap_servers="127.0.0.1:1").client_config(security={})
    client = make_producer("confluent", cfg, {"message_timeout_ms": 200, "compression_type": None})
    publisher = Publisher("nowhere", client)
    publisher._SWEEP_EVERY = 10
    for i in range(10):
        publisher.send({"i": i}, key=None)
    publisher.flush(5.0)  # the deliveries time out within it
    assert publisher.summary.failed == 10 and not publisher._deliveries
    publisher.close()
    assert publisher.summary.failed == 10  # counted once
