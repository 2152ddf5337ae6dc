"""``flowsentinel retrain``: a candidate model from the original training data and recent normal traffic, put in a
model store as the shadow.

Recent normal traffic is read from the input topic (the last ``--recent`` records of each partition) and
decoded as the service decodes it; of those records it keeps the ones the live model did not alert on
(scored in stream order with the live model and its online threshold, as the service would) plus the ones
analysts judged ``benign``: a verdict on the feedback topic names an alert (or an episode), the alerts topic
says which record each alert was raised on. A record judged ``attack`` anywhere is never kept. Labels the
records may carry are not read: an operator's recent traffic has none.
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np

from flowsentinel.consumers.alerts import alert_body
from flowsentinel.consumers.decode import InputMessage, decode_messages
from flowsentinel.consumers.feedback import VerdictError, parse_verdict
from flowsentinel.detector.artifact import TrainedModel
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.schema import RecordBatch
from flowsentinel.detector.thresholds import make_thresholder

log = logging.getLogger(__name__)

Position = tuple[str, int, int]


def read_topic(
    options: dict[str, Any], topic: str, last: int | None, idle_s: float = 3.0
) -> list[InputMessage]:
    """Every message of ``topic`` (the last ``last`` of each partition if given), read from the beginning until
    the topic has been quiet for ``idle_s``: end offsets are not asked for (not every broker answers them
    reliably), so a topic still being written to is read up to where it was when reading caught up."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        group_id=None, enable_auto_commit=False, consumer_timeout_ms=int(idle_s * 1000), **options
    )
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        kept: dict[int, deque[InputMessage]] = {tp.partition: deque(maxlen=last) for tp in tps}
        for r in consumer:  # ends after idle_s without a record
            kept[r.partition].append(
                InputMessage(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
            )
    finally:
        consumer.close()
    return [m for p in sorted(kept) for m in kept[p]]


# (topic, partition, entity key, first offset, last offset): the records of one key an episode spans
Span = tuple[str, int, str, int, int]


def _position(src: Any) -> Position:
    return (str(src["topic"]), int(src["partition"]), int(src["offset"]))


def judged_positions(alerts: Iterable[InputMessage], verdicts: Iterable[InputMessage]) -> dict[str, set[Any]]:
    """What analysts judged, by verdict: a verdict on an alert judges the record it was raised on (a
    :data:`Position`); a verdict on an episode judges every record of the episode's key from its first alert
    to its last (a :data:`Span`: an episode's alert messages are throttled, its records are not). Messages
    that are not alerts or verdicts are skipped."""
    by_alert: dict[str, Position] = {}
    spans: dict[str, Span] = {}
    for m in alerts:
        try:
            event = alert_body(json.loads(m.value or b""))
            here = event["kafka"] if "kafka" in event else event["source"]  # (format 1 called it source)
            pos, first = (
                _position(here),
                _position(event.get("first_kafka") or event.get("first_source") or here),
            )
            by_alert[str(event["id"])] = pos
            ep = str(event["episode_id"])
            lo, hi = min(first[2], pos[2]), max(first[2], pos[2])
            if ep in spans:
                lo, hi = min(lo, spans[ep][3]), max(hi, spans[ep][4])
            spans[ep] = (pos[0], pos[1], str(event["key"]), lo, hi)
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
    out: dict[str, set[Any]] = {"attack": set(), "benign": set()}
    for m in verdicts:
        try:
            v = parse_verdict(m.value)
        except VerdictError:
            continue
        if v.alert_id and v.alert_id in by_alert:
            out[v.verdict].add(by_alert[v.alert_id])
        if v.episode_id and v.episode_id in spans:
            out[v.verdict].add(spans[v.episode_id])
    return out


def _judged(judged: set[Any], kept: list[InputMessage], keys: Any) -> np.ndarray:
    positions = {j for j in judged if len(j) == 3}
    spans = [j for j in judged if len(j) == 5]
    out = np.zeros(len(kept), dtype=bool)
    for i, (m, key) in enumerate(zip(kept, keys, strict=True)):
        out[i] = (m.topic, m.partition, m.offset) in positions or any(
            t == m.topic and p == m.partition and k == str(key) and lo <= m.offset <= hi
            for t, p, k, lo, hi in spans
        )
    return out


def recent_normal(
    model: TrainedModel,
    messages: list[InputMessage],
    judged: dict[str, set[Position]],
    *,
    risk: float,
    max_bytes: int = 65_536,
) -> tuple[RecordBatch, dict[str, int]]:
    """The records of ``messages`` to retrain on: those the live model does not alert on, plus those judged
    benign, minus those judged attack. Returns them and the counts of each kind."""
    batch, kept, dead = decode_messages(
        messages, model.schema, max_bytes=max_bytes, allow_extra_fields=True, schema_field="optional"
    )
    counts = {"read": len(messages), "dead_lettered": len(dead), "alerted": 0, "benign_verdicts": 0}
    if len(batch) == 0:
        return batch, {**counts, "kept": 0}
    det = Detector(model, make_thresholder("spot", risk))
    window_keys = [(m.topic, m.partition, k) for m, k in zip(kept, batch.keys, strict=True)]
    alerted = np.zeros(len(batch), dtype=bool)
    step = 5_000
    for start in range(0, len(batch), step):  # in stream order, as the service scores
        rows = np.arange(start, min(start + step, len(batch)))
        v = det.process_batch(batch.take(rows), window_keys=[window_keys[i] for i in rows])
        alerted[rows] = np.asarray(v.alerts, dtype=bool)
    benign, attack = _judged(judged["benign"], kept, batch.keys), _judged(judged["attack"], kept, batch.keys)
    keep = (~alerted | benign) & ~attack
    counts.update(
        alerted=int(alerted.sum()), benign_verdicts=int((benign & alerted).sum()), kept=int(keep.sum())
    )
    return batch.take(np.flatnonzero(keep)), counts


def retrain(
    live: TrainedModel,
    original: RecordBatch,
    recent: RecordBatch,
    *,
    overrides: dict[str, Any],
    progress: Any = False,
) -> TrainedModel:
    """Train a candidate with the live model's own training settings (``overrides`` on top) on the original
    normal records and the recent ones."""
    from flowsentinel.detector.train import TrainConfig, train

    known = set(TrainConfig.__dataclass_fields__)
    values = {k: v for k, v in (live.training.get("config") or {}).items() if k in known}
    values.update(overrides)
    data = RecordBatch.concat([b for b in (original, recent) if len(b)])
    started = time.monotonic()
    model = train(data, TrainConfig(**values), progress=progress)
    log.info("candidate trained on %d records in %.1fs", len(data), time.monotonic() - started)
    return model
