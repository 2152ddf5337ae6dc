"""The checkpoint's order and its retries, Kafka-free: a producer and a consumer that fail as a broker in an
outage does, scripted here (the integration suite runs the same code against a real broker that is paused,
killed and rebalanced; what it cannot do on cue is fail exactly the third send)."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry

from flowsentinel.consumers.checkpoint import Checkpoint
from flowsentinel.consumers.metrics import Metrics
from flowsentinel.kafka.client import CommitRejected, Committed, Delivery, KafkaFailure, Partition


class ScriptedProducer:
    """Each send's fate comes from ``script`` (per value): "ok", "fail" (delivery fails), "raise" (send
    raises), "hang" (in flight until the next flush). Unlisted values are acknowledged."""

    def __init__(self, script: dict[bytes, list[str]]) -> None:
        self.script = script
        self.sent: list[bytes] = []
        self.hanging: list[Delivery] = []
        self.flushed_once: list[Delivery] = []

    def send(self, topic, key, value, headers) -> Delivery:
        fate = self.script.get(value, []).pop(0) if self.script.get(value) else "ok"
        if fate == "raise":
            raise KafkaFailure("buffer full")
        self.sent.append(value)
        d = Delivery()
        if fate == "fail":
            d.error, d.done = "broker down", True
        elif fate == "hang":
            self.hanging.append(d)
        else:
            d.done = True
        return d

    def flush(self, timeout_s: float) -> None:
        """A hanging delivery stays in flight through one flush and is acknowledged in the next."""
        for d in self.flushed_once:
            d.done = True
        self.flushed_once, self.hanging = self.hanging, []

    def close(self, timeout_s: float) -> None:
        pass


class ScriptedConsumer:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.committed: list[dict] = []

    def commit(self, offsets) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.committed.append(offsets)


def checkpoint(producer, consumer=None) -> tuple[Checkpoint, Metrics, list[str]]:
    outages: list[str] = []
    metrics = Metrics.create(CollectorRegistry())
    cp = Checkpoint(
        producer, consumer or ScriptedConsumer([]), metrics, on_outage=lambda: outages.append("x")
    )
    return cp, metrics, outages


def value(metric) -> float:
    return metric._value.get()


def messages(*values: bytes):
    return [("alerts", b"k", v, None) for v in values]


def test_everything_is_acknowledged_once_and_only_failed_sends_are_sent_again(monkeypatch):
    monkeypatch.setattr(threading.Event, "wait", lambda self, t=None: False)  # no real back-off sleeps
    producer = ScriptedProducer({b"b": ["fail", "fail"], b"c": ["raise"], b"d": ["hang"]})
    cp, metrics, outages = checkpoint(producer)
    cp.add(messages(b"a", b"b", b"c", b"d"))
    assert cp.deliver(threading.Event())
    assert sorted(producer.sent) == [b"a", b"b", b"b", b"b", b"c", b"d"]  # d waited for, never re-sent
    assert cp.pending == []
    assert value(metrics.produce_failures) == len(outages) == 2


def test_asked_to_stop_during_an_outage_it_keeps_what_was_not_delivered():
    producer = ScriptedProducer({b"b": ["fail"] * 100})
    cp, _, outages = checkpoint(producer)
    cp.add(messages(b"a", b"b"))
    stop = threading.Event()
    stop.set()
    assert not cp.deliver(stop)
    assert [m[2] for m in cp.pending] == [b"b"] and outages
    producer.script.clear()  # the broker is back
    assert cp.deliver(None) and cp.pending == []


def test_deliver_within_gives_up_after_its_time():
    producer = ScriptedProducer({b"a": ["fail"] * 1000})
    cp, _, _ = checkpoint(producer)
    cp.add(messages(b"a"))
    assert not cp.deliver_within(0.2)
    assert len(cp.pending) == 1


def test_a_commit_is_retried_through_failures_and_given_up_after_a_rebalance(monkeypatch):
    monkeypatch.setattr(threading.Event, "wait", lambda self, t=None: False)
    offsets = {Partition("in", 0): Committed(10, "")}
    consumer = ScriptedConsumer([KafkaFailure("coordinator not available"), KafkaFailure("timeout")])
    cp, metrics, outages = checkpoint(ScriptedProducer({}), consumer)
    assert cp.commit(offsets, threading.Event())
    assert consumer.committed == [offsets] and value(metrics.commit_failures) == len(outages) == 2

    consumer.failures = [CommitRejected("REBALANCE_IN_PROGRESS")]
    assert not cp.commit(offsets, threading.Event())
    assert consumer.committed == [offsets] and value(metrics.commit_failures) == 3
    assert len(outages) == 2  # a rebalance is not an outage


def test_a_commit_retrying_through_an_outage_stops_when_asked():
    consumer = ScriptedConsumer([KafkaFailure("timeout")] * 1000)
    cp, _, _ = checkpoint(ScriptedProducer({}), consumer)
    stop = threading.Event()
    stop.set()
    assert not cp.commit({Partition("in", 0): Committed(1, "")}, stop)
    assert consumer.committed == []
