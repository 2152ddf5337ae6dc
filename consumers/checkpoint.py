"""The order that makes the service at-least-once: publish a batch's alerts and dead letters, flush until the
broker has acknowledged every one, and only then commit the batch's offsets.

A :class:`Checkpoint` holds the messages not yet acknowledged (``pending``) across batches and outages. A
message whose send failed is sent again; one still in flight is waited for, never sent twice by this
instance (a redelivered batch after a crash may publish again: alert ids are stable, consumers dedupe). A
commit that the group refuses after a rebalance is given up (the records will be redelivered to whoever
owns the partition now); any other commit failure is retried until it succeeds or the service stops.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from flowsentinel.consumers.metrics import Metrics
from flowsentinel.kafka.client import (
    CommitRejected,
    Committed,
    Delivery,
    GroupConsumer,
    KafkaFailure,
    Partition,
    Producer,
)

log = logging.getLogger(__name__)

Outgoing = tuple[str, bytes | None, bytes, Any]
"""One message to publish: topic, key, value, headers."""


class Checkpoint:
    """``on_outage`` is called whenever Kafka did not answer as it should (a send not acknowledged, a commit
    failed): the service marks the broker down there and keeps its liveness heartbeat fresh, since waiting
    out an outage is not a stall."""

    def __init__(
        self,
        producer: Producer,
        consumer: GroupConsumer,
        metrics: Metrics,
        *,
        on_outage: Callable[[], None] = lambda: None,
    ) -> None:
        self.producer = producer
        self.consumer = consumer
        self.metrics = metrics
        self.on_outage = on_outage
        self.pending: list[Outgoing] = []

    def add(self, messages: Iterable[Outgoing]) -> None:
        self.pending.extend(messages)

    def deliver(self, stop: threading.Event | None = None) -> bool:
        """Send everything pending and wait until the broker has acknowledged it, through outages.

        Returns False only if asked to stop (``stop`` set) before everything was delivered; what was not
        delivered stays pending.
        """
        in_flight: list[tuple[Outgoing, Delivery | None]] = [(item, None) for item in self.pending]
        delay = 0.5
        last_error = ""
        while in_flight:
            resent = []
            for item, sent in in_flight:
                if sent is None or sent.failed:
                    if sent is not None:
                        last_error = f"{item[0]}: {sent.error}"
                    topic, key, value, headers = item
                    try:
                        sent = self.producer.send(topic, key, value, headers)
                    except KafkaFailure as exc:  # buffer full / metadata unavailable during an outage
                        last_error = f"{topic}: {exc}"
                        sent = None
                resent.append((item, sent))
            self.producer.flush(5.0)
            in_flight = [
                (item, sent) for item, sent in resent if sent is None or not sent.done or sent.failed
            ]
            self.pending = [item for item, _ in in_flight]
            if not in_flight:
                return True
            self.on_outage()
            self.metrics.produce_failures.inc()
            log.warning(
                "%d alert/dead-letter message(s) not yet acknowledged (last error: %s); waiting",
                len(in_flight),
                last_error or "none reported yet",
            )
            if stop is not None and stop.wait(delay):
                log.error(
                    "stopping with %d unpublished message(s); their batch stays uncommitted", len(in_flight)
                )
                return False
            delay = min(delay * 2, 5.0)
        return True

    def deliver_within(self, seconds: float) -> bool:
        """:meth:`deliver`, giving up after ``seconds`` (inside a rebalance callback, or at shutdown: never
        wait out a whole outage there)."""
        deadline = threading.Event()
        timer = threading.Timer(seconds, deadline.set)
        timer.start()
        try:
            return self.deliver(deadline)
        finally:
            timer.cancel()

    def commit(self, offsets: dict[Partition, Committed], stop: threading.Event | None = None) -> bool:
        """Commit ``offsets``; True once committed. False where the group refused it after a rebalance (the
        partitions may be another member's now) or where asked to stop while retrying."""
        delay = 0.5
        while True:
            try:
                self.consumer.commit(offsets)
                return True
            except CommitRejected as exc:
                self.metrics.commit_failures.inc()
                log.warning("commit failed after a rebalance (records will be redelivered): %s", exc)
                return False
            except KafkaFailure as exc:
                self.metrics.commit_failures.inc()
                self.on_outage()
                log.warning("commit failed (%s); retrying in %.1fs", exc, delay)
                if stop is not None and stop.wait(delay):
                    return False
                delay = min(delay * 2, 10.0)
