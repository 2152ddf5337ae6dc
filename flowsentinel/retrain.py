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

from consumers.decode import InputMessage, decode_messages
from consumers.feedback import VerdictError, parse_verdict
from detector.artifact import TrainedModel
from detector.pipeline import Detector
from detector.schema import RecordBatch
from detector.thresholds import make_thresholder

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


def judged_positions(
    alerts: Iterable[InputMessage], verdicts: Iterable[InputMessage]
) -> dict[str, set[Position]]:
    """The records analysts judged, by verdict: each verdict's alert (or every alert of its episode) mapped to
    the record it was raised on. Messages that are not alerts or verdicts are skipped."""
    by_alert: dict[str, Position] = {}
    by_episode: dict[str, list[Position]] = {}
    for m in alerts:
        try:
            event = json.loads(m.value or b"")
            src = event["source"]
            pos = (str(src["topic"]), int(src["partition"]), int(src["offset"]))
            by_alert[str(event["id"])] = pos
            by_episode.setdefault(str(event["episode_id"]), []).append(pos)
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
    out: dict[str, set[Position]] = {"attack": set(), "benign": set()}
    for m in verdicts:
        try:
            v = parse_verdict(m.value)
        except VerdictError:
            continue
        if v.alert_id and v.alert_id in by_alert:
            out[v.verdict].add(by_alert[v.alert_id])
        out[v.verdict].update(by_episode.get(v.episode_id, []) if v.episode_id else [])
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
    batch, kept, dead = decode_messages(messages, model.schema, max_bytes=max_bytes, allow_extra_fields=True)
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
    positions = [(m.topic, m.partition, m.offset) for m in kept]
    benign = np.fromiter((p in judged["benign"] for p in positions), dtype=bool, count=len(positions))
    attack = np.fromiter((p in judged["attack"] for p in positions), dtype=bool, count=len(positions))
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
    from detector.train import TrainConfig, train

    known = set(TrainConfig.__dataclass_fields__)
    values = {k: v for k, v in (live.training.get("config") or {}).items() if k in known}
    values.update(overrides)
    data = RecordBatch.concat([b for b in (original, recent) if len(b)])
    started = time.monotonic()
    model = train(data, TrainConfig(**values), progress=progress)
    log.info("candidate trained on %d records in %.1fs", len(data), time.monotonic() - started)
    return model
