"""Publish records into Kafka: the only module under producers/ that talks to it.

A :class:`Publisher` writes through a producer of the Kafka layer (:mod:`flowsentinel.kafka.client`, the
one the service uses): :func:`replay_producer` makes it for kafka-python or librdkafka (``produce`` takes
librdkafka where confluent-kafka is installed, as the service does).

Records are JSON objects (the schema's field names plus ``schema`` and ``schema_version``), keyed by the
schema's entity key so one host's records stay in one partition (and its window on one detector
instance). Pacing: as fast as possible, a fixed rate, or the records' own timestamps at real time or a
multiple of it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from flowsentinel.detector.errors import ConfigError
from flowsentinel.detector.schema import GLOBAL_KEY, RecordBatch
from flowsentinel.detector.text import utf8
from flowsentinel.kafka.client import ClientConfig, Delivery, KafkaFailure, Producer, make_producer

log = logging.getLogger(__name__)


def timestamp_value(seconds: float, kind: str) -> float | int | str:
    """A time in epoch seconds written as a schema of ``kind`` reads it: ISO-8601 text (UTC, microseconds)
    for ``datetime``, whole milliseconds or nanoseconds for ``epoch_ms`` / ``epoch_ns``, seconds for
    ``epoch``. (Seconds in a datetime field were dead-lettered as ``bad_timestamp`` by the detector.)"""
    if kind == "datetime":
        return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="microseconds")
    if kind == "epoch_ms":
        return round(seconds * 1e3)
    if kind == "epoch_ns":
        return round(seconds * 1e9)
    return seconds


def batch_to_records(batch: RecordBatch) -> list[dict[str, Any]]:
    """Validated records → JSON-ready dicts (integral numbers written as integers)."""
    s = batch.schema
    out: list[dict[str, Any]] = []
    num = batch.numeric
    integral = np.all(num == np.floor(num), axis=0)
    cols: dict[str, list[Any]] = {}
    for j, name in enumerate(s.numeric):
        col = num[:, j]
        cols[name] = col.astype(np.int64).tolist() if integral[j] else col.tolist()
    for j, name in enumerate(s.categorical):
        cols[name] = batch.categorical[:, j].tolist()
    for i in range(len(batch)):
        rec: dict[str, Any] = {name: values[i] for name, values in cols.items()}
        if s.key is not None and batch.keys[i] != GLOBAL_KEY:
            rec[s.key] = batch.keys[i]
        if s.timestamp is not None and math.isfinite(batch.timestamps[i]):
            rec[s.timestamp] = timestamp_value(float(batch.timestamps[i]), s.timestamp_kind)
        if s.label is not None and batch.labels is not None:
            rec[s.label] = batch.labels[i]
        rec["schema"] = s.name
        rec["schema_version"] = s.version
        out.append(rec)
    return out


@dataclass
class Pacer:
    """When each record may be sent. ``rate`` (records/s) or ``speedup`` (× the records' own clock);
    neither: as fast as possible."""

    rate: float | None = None
    speedup: float | None = None
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    _start: float | None = field(default=None, init=False)
    _first_ts: float | None = field(default=None, init=False)
    _sent: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.rate is not None and self.speedup is not None:
            raise ConfigError("give --rate or --speedup, not both")
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise ConfigError(f"rate = {self.rate!r} must be a positive number of records per second")
        if self.speedup is not None and not (math.isfinite(self.speedup) and self.speedup > 0):
            raise ConfigError(f"speedup = {self.speedup!r} must be a positive factor")

    def wait(self, timestamp: float | None) -> None:
        """Block until the next record is due."""
        now = self.clock()
        if self._start is None:
            self._start = now
        due = None
        if self.rate is not None:
            due = self._start + self._sent / self.rate
        elif self.speedup is not None:
            if timestamp is None or not math.isfinite(timestamp):
                raise ConfigError(
                    "--speedup/--realtime need records with timestamps; this schema/file has none"
                )
            if self._first_ts is None:
                self._first_ts = timestamp
            due = self._start + max(timestamp - self._first_ts, 0.0) / self.speedup
        self._sent += 1
        if due is not None and due - now > 0.001:
            self.sleep(due - now)

    def restart_clock(self) -> None:
        """Start a new timeline (a new pass of --loop)."""
        self._start = None
        self._first_ts = None
        self._sent = 0


@dataclass
class PublishSummary:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_reasons: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    first_errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "skipped": self.skipped,
            "skipped_reasons": self.skipped_reasons,
            "seconds": round(self.seconds, 2),
            "records_per_second": round(self.sent / self.seconds) if self.seconds > 0 else None,
        }


def replay_producer(
    bootstrap_servers: str,
    *,
    client: str = "kafka-python",
    compression: str = "lz4",
    linger_ms: int = 20,
    batch_bytes: int = 256 * 1024,
    security: dict[str, Any] | None = None,
    config: ClientConfig | None = None,
) -> Producer:
    """A producer of the Kafka layer configured for replay (batching, compression, every replica acks).
    ``client``: ``kafka-python`` or ``confluent`` (resolved); ``config``: the connection and security from
    a command's settings (``Settings.client_config``), else ``bootstrap_servers`` with kafka-python's
    ``security`` options only."""
    if config is None:
        config = ClientConfig(bootstrap_servers, "flowsentinel-produce", dict(security or {}), {}, {})
    options = {
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": linger_ms,
        "batch_size": batch_bytes,
        "compression_type": None if compression == "none" else compression,
        "max_block_ms": 30_000,
    }
    try:
        return make_producer(client, config, options)
    except RuntimeError as exc:  # e.g. missing compression codec library
        raise ConfigError(f"compression = {compression!r}: {exc}") from None
    except KafkaFailure as exc:
        raise ConfigError(f"cannot connect to Kafka at {bootstrap_servers!r}: {exc}") from None


class Publisher:
    """Records to one topic through a producer of the Kafka layer (:func:`replay_producer`), with delivery
    accounting: a record whose delivery fails (or is never acknowledged before :meth:`close`) is counted
    failed, with the first few reasons."""

    # deliveries kept before the finished ones are counted and dropped
    _SWEEP_EVERY = 10_000

    def __init__(self, topic: str, producer: Producer) -> None:
        self.topic = topic
        self.summary = PublishSummary()
        self._client = producer
        self._deliveries: list[Delivery] = []

    def _on_error(self, exc: BaseException) -> None:
        self.summary.failed += 1
        self.summary.sent -= 1
        if len(self.summary.first_errors) < 5:
            self.summary.first_errors.append(str(exc))

    def send(self, record: dict[str, Any], key: str | None) -> None:
        value = json.dumps(record, separators=(",", ":")).encode()
        self._deliveries.append(self._client.send(self.topic, utf8(key) if key else None, value, None))
        self.summary.sent += 1
        if len(self._deliveries) >= self._SWEEP_EVERY:
            self._sweep(final=False)

    def _sweep(self, *, final: bool) -> None:
        """Count the failed deliveries among those done and drop them; at the end (``final``), one never
        acknowledged counts as failed too."""
        pending = []
        for d in self._deliveries:
            if d.failed or (final and not d.done):
                self._on_error(RuntimeError(d.error or "not acknowledged before the producer closed"))
            elif not d.done:
                pending.append(d)
        self._deliveries = pending

    def flush(self, timeout: float | None = None) -> None:
        self._client.flush(30.0 if timeout is None else timeout)
        self._sweep(final=False)

    def close(self) -> None:
        try:
            self._client.flush(30.0)
        finally:
            self._sweep(final=True)
            self._client.close(10.0)


def publish(
    batches: Iterable[RecordBatch | list[dict[str, Any]]],
    publisher: Publisher,
    pacer: Pacer,
    *,
    key_field: str | None,
    ts_field: str | None,
    limit: int | None = None,
    on_progress: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> PublishSummary:
    """Send records from ``batches`` (validated file batches or ready dicts) until exhausted/limit/stop."""
    summary = publisher.summary
    started = time.monotonic()
    count = 0
    for batch in batches:
        if isinstance(batch, RecordBatch):
            for err in batch.rejected:
                summary.skipped += 1
                summary.skipped_reasons[err.code] = summary.skipped_reasons.get(err.code, 0) + 1
                if len(summary.first_errors) < 5:
                    summary.first_errors.append(str(err))
            records: Iterator[dict[str, Any]] | list[dict[str, Any]] = batch_to_records(batch)
        else:
            records = batch
        for rec in records:
            if should_stop() or (limit is not None and count >= limit):
                summary.seconds = time.monotonic() - started
                publisher.flush()
                return summary
            pacer.wait(rec.get(ts_field) if ts_field else None)
            key = rec.get(key_field) if key_field else None
            publisher.send(rec, str(key) if key is not None else None)
            count += 1
            if on_progress is not None:
                on_progress(1)
    publisher.flush()
    summary.seconds = time.monotonic() - started
    return summary
