"""Alert messages and episodes.

A record above the threshold is an *alert*. Consecutive alerts of one entity key (in one input topic)
form an *episode*; the alerts topic carries episode events, not one message per record, so a flood of
100,000 attack records is a handful of messages:

- ``opened`` — the first alert of a key (after a quiet period);
- ``updated`` — when the episode's severity rises, or at most every ``update_s`` while alerts continue;
- ``closed`` — after ``quiet_s`` seconds without an alert for the key (or at shutdown, when the partition
  of its first alert is revoked, or when more than ``max_open`` episodes are open — the oldest closes —
  with the reason).

Every message id is derived from the topic, partition and offset of the record that triggered it (and the
event), so a replay after a crash yields the same ids and consumers can de-duplicate. The episode id is
the id of its ``opened`` message. The open episodes of a partition travel with its committed offset (the
commit's metadata, :meth:`EpisodeTracker.state_for`): whoever resumes the partition — this process after a
crash, or another instance — continues them (:meth:`EpisodeTracker.restore`), so a replay never opens an
episode a second time under a new id.

Alert message (JSON, format 2: ``docs/alert.schema.json``), example::

    {"alert_format": 2, "id": "5f0c…", "event": "opened", "episode_id": "5f0c…", "key": "10.0.3.7",
     "schema": "kdd", "model_version": "3a9e51c2b7d0", "score": 0.84, "threshold": 0.012,
     "severity": "critical", "top_features": [{"field": "service", "share": 0.41, "value": "private"}, …],
     "event_time": "2026-11-29T17:40:02Z", "kafka_timestamp": "2026-11-29T17:40:02.113Z",
     "detected_at": "2026-11-29T17:40:02.190Z",
     "kafka": {"topic": "flowsentinel.records", "partition": 2, "offset": 88412}, "first_kafka": {…},
     "observer": {"name": "flowsentinel", "hostname": "detector-0", "version": "0.1.0"},
     "alerts_in_episode": 1, "max_score": 0.84, "max_severity": "critical", "label": "neptune"}

``kafka`` is where the record that raised it lies (format 1 called it ``source``, which in ECS and OCSF means
the network source). :func:`to_ecs` maps a message onto the Elastic Common Schema for a SIEM
(``docs/alert-ecs.schema.json``): ECS fields at the top, this message whole under ``flowsentinel``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SEVERITIES = ("low", "medium", "high", "critical")
ALERT_FORMAT = 2  # the alert message's version (docs/alert.schema.json); 1 had no version field
# ECS event.severity for each severity (ECS leaves the scale to the source: these are Elastic's risk bands)
ECS_SEVERITY = {"low": 21, "medium": 47, "high": 73, "critical": 99}
ECS_VERSION = "8.11.0"
# Kafka brokers refuse commit metadata over offset.metadata.max.bytes (4,096 by default): the open episodes of
# a partition are written in at most this many bytes, the most recently active first
EPISODE_STATE_BYTES = 3_800
# score / threshold ratio at which each severity starts
SEVERITY_RATIOS = (1.0, 2.0, 5.0, 20.0)


def severity(score: float, threshold: float) -> str:
    ratio = score / threshold if threshold > 0 else math.inf
    level = 0
    for i, start in enumerate(SEVERITY_RATIOS):
        if ratio >= start:
            level = i
    return SEVERITIES[level]


def message_id(topic: str, partition: int, offset: int, event: str) -> str:
    return hashlib.sha256(f"{topic}/{partition}/{offset}/{event}".encode()).hexdigest()[:24]


def iso(ts: float | None) -> str | None:
    if ts is None or not math.isfinite(ts):
        return None
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class AlertRecord:
    """What the service knows about one record that crossed the threshold."""

    key: str
    partition: int
    topic: str
    offset: int
    score: float
    threshold: float
    top_features: list[tuple[str, float]]
    event_time: float | None
    kafka_timestamp_ms: int
    label: str | None = None
    raw_score: float | None = None  # before verdicts adjusted it (None: not adjusted)
    field_shares: dict[str, float] | None = None  # every field's share of the error: what a verdict learns
    top_values: tuple[Any, ...] = ()  # the record's value of each of top_features' fields

    @property
    def kafka(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass
class Episode:
    id: str
    key: str
    partition: int
    first: AlertRecord
    last: AlertRecord
    alerts: int = 1
    max_score: float = 0.0
    max_severity: str = "low"
    last_alert_clock: float = 0.0
    last_emit_clock: float = 0.0
    pending: bool = False  # alerts arrived since the last message
    labels: dict[str, int] = field(default_factory=dict)


class EpisodeTracker:
    def __init__(
        self,
        *,
        schema: str,
        model_version: str,
        quiet_s: float,
        update_s: float,
        clock: Callable[[], float],
        max_open: int = 10_000,
        observer: dict[str, str] | None = None,
    ) -> None:
        self.schema = schema
        self.observer = observer or {}
        self.model_version = model_version
        self.quiet_s = quiet_s
        self.update_s = update_s
        self.clock = clock
        self.max_open = max_open
        # by (input topic, key): one host's episode per topic it is seen in; insertion order = opening order
        self.open: dict[tuple[str, str], Episode] = {}

    def observe(self, alerts: Iterable[AlertRecord]) -> list[dict[str, Any]]:
        """Fold a batch's alerts (in stream order) into episodes; return the messages to publish."""
        out: list[dict[str, Any]] = []
        now = self.clock()
        for a in alerts:
            sev = severity(a.score, a.threshold)
            ep = self.open.get((a.topic, a.key))
            if ep is None:
                ep_id = message_id(a.topic, a.partition, a.offset, "opened")
                ep = Episode(
                    id=ep_id,
                    key=a.key,
                    partition=a.partition,
                    first=a,
                    last=a,
                    max_score=a.score,
                    max_severity=sev,
                    last_alert_clock=now,
                    last_emit_clock=now,
                )
                self._count_label(ep, a)
                if len(self.open) >= self.max_open:  # memory stays bounded under a many-source attack
                    out.append(self._close(next(iter(self.open)), "capacity", now))
                self.open[a.topic, a.key] = ep
                out.append(self._message(ep, a, "opened", now))
                continue
            escalated = SEVERITIES.index(sev) > SEVERITIES.index(ep.max_severity)
            ep.alerts += 1
            ep.last = a
            ep.last_alert_clock = now
            ep.max_score = max(ep.max_score, a.score)
            self._count_label(ep, a)
            if escalated:
                ep.max_severity = sev
            if escalated or now - ep.last_emit_clock >= self.update_s:
                ep.last_emit_clock = now
                ep.pending = False
                out.append(self._message(ep, a, "updated", now))
            else:
                ep.pending = True
        return out

    def expire(self) -> list[dict[str, Any]]:
        """Close the episodes that have been quiet for ``quiet_s``."""
        now = self.clock()
        quiet = [k for k, ep in self.open.items() if now - ep.last_alert_clock >= self.quiet_s]
        return [self._close(k, "quiet", now) for k in quiet]

    def drop_where(self, predicate: Callable[[Episode], bool]) -> int:
        """Forget the matching episodes without a message (they are handed over to whoever resumes them)."""
        keys = [k for k, ep in self.open.items() if predicate(ep)]
        for k in keys:
            del self.open[k]
        return len(keys)

    def close_where(self, predicate: Callable[[Episode], bool], reason: str) -> list[dict[str, Any]]:
        now = self.clock()
        keys = [k for k, ep in self.open.items() if predicate(ep)]
        return [self._close(k, reason, now) for k in keys]

    def state_for(self, topic: str, partition: int) -> str:
        """The open episodes whose first alert came from ``topic``/``partition``, as compact JSON of at most
        :data:`EPISODE_STATE_BYTES` (the most recently active kept if they do not all fit): what the commit
        of the partition's offset carries, for :meth:`restore`."""
        eps = [ep for (t, _), ep in self.open.items() if t == topic and ep.partition == partition]
        if not eps:
            return ""
        eps.sort(key=lambda ep: ep.last_alert_clock, reverse=True)
        rows: list[str] = []
        size = len('{"v":1,"e":[]}')
        for ep in eps:
            f, last = ep.first, ep.last
            row = json.dumps(
                [ep.key, ep.id, f.offset, f.kafka_timestamp_ms, last.offset, round(last.score, 6),
                 round(last.threshold, 6), ep.alerts, round(ep.max_score, 6), SEVERITIES.index(ep.max_severity),
                 round(ep.last_alert_clock, 3), round(ep.last_emit_clock, 3)],
                separators=(",", ":"), ensure_ascii=True,
            )  # fmt: skip
            if size + len(row) + 1 > EPISODE_STATE_BYTES:
                break
            rows.append(row)
            size += len(row) + 1
        return '{"v":1,"e":[' + ",".join(rows) + "]}"

    def restore(self, topic: str, partition: int, state: str | None) -> int:
        """Reopen the episodes :meth:`state_for` wrote for ``topic``/``partition`` (keys already open here
        are left alone). Returns how many. Anything unreadable is ignored: at worst an episode opens anew."""
        try:
            data = json.loads(state or "{}")
            rows = data.get("e", []) if isinstance(data, dict) and data.get("v") == 1 else []
        except (ValueError, RecursionError):
            return 0
        restored = 0
        for row in rows:
            try:
                key, ep_id, f_off, f_ts, l_off, score, threshold, n, max_score, sev, last_alert, last_emit = (
                    row
                )
                first = AlertRecord(str(key), partition, topic, int(f_off), float(score), float(threshold), [],
                                    None, int(f_ts))  # fmt: skip
                last = AlertRecord(str(key), partition, topic, int(l_off), float(score), float(threshold), [],
                                   None, 0)  # fmt: skip
                ep = Episode(id=str(ep_id), key=str(key), partition=partition, first=first, last=last,
                             alerts=int(n), max_score=float(max_score), max_severity=SEVERITIES[int(sev)],
                             last_alert_clock=float(last_alert), last_emit_clock=float(last_emit))  # fmt: skip
            except (ValueError, TypeError, IndexError):
                continue
            if (topic, ep.key) in self.open or len(self.open) >= self.max_open:
                continue
            self.open[topic, ep.key] = ep
            restored += 1
        return restored

    def _close(self, key: tuple[str, str], reason: str, now: float) -> dict[str, Any]:
        ep = self.open.pop(key)
        msg = self._message(ep, ep.last, "closed", now)
        msg["close_reason"] = reason
        msg["duration_s"] = round(max(ep.last_alert_clock - self._opened_clock(ep), 0.0), 3)
        return msg

    @staticmethod
    def _opened_clock(ep: Episode) -> float:
        return ep.first.kafka_timestamp_ms / 1000.0 if ep.first.kafka_timestamp_ms else ep.last_alert_clock

    @staticmethod
    def _count_label(ep: Episode, a: AlertRecord) -> None:
        if a.label:
            ep.labels[a.label] = ep.labels.get(a.label, 0) + 1

    def _message(self, ep: Episode, a: AlertRecord, event: str, now: float) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "alert_format": ALERT_FORMAT,
            "id": message_id(a.topic, a.partition, a.offset, event),
            "event": event,
            "episode_id": ep.id,
            "key": ep.key,
            "schema": self.schema,
            "model_version": self.model_version,
            "score": a.score,
            "threshold": a.threshold,
            "severity": severity(a.score, a.threshold),
            "top_features": [
                {
                    "field": f,
                    "share": round(s, 4),
                    **({"value": a.top_values[i]} if i < len(a.top_values) else {}),
                }
                for i, (f, s) in enumerate(a.top_features)
            ],
            "event_time": iso(a.event_time),
            "kafka_timestamp": iso(a.kafka_timestamp_ms / 1000.0) if a.kafka_timestamp_ms else None,
            "detected_at": iso(now),
            "kafka": a.kafka,
            "first_kafka": ep.first.kafka,
            "observer": self.observer,
            "alerts_in_episode": ep.alerts,
            "max_score": ep.max_score,
            "max_severity": ep.max_severity,
        }
        if a.field_shares is not None:
            msg["raw_score"] = a.score if a.raw_score is None else a.raw_score
            msg["field_shares"] = a.field_shares
        if a.label is not None:
            msg["label"] = a.label
        if ep.labels:
            msg["labels_in_episode"] = dict(ep.labels)
        return msg


def alert_body(message: Any) -> Any:
    """The flowsentinel alert in a message of either form: the ECS form (:func:`to_ecs`) carries it under
    ``flowsentinel``."""
    if isinstance(message, dict) and isinstance(message.get("flowsentinel"), dict):
        return message["flowsentinel"]
    return message


def publishable(message: dict[str, Any], min_severity: str) -> bool:
    """Whether an episode message reaches the alerts topic: its episode has reached ``min_severity``."""
    return SEVERITIES.index(message["max_severity"]) >= SEVERITIES.index(min_severity)


def _ip(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def to_ecs(msg: dict[str, Any]) -> dict[str, Any]:
    """An alert message as an Elastic Common Schema document (``event.kind: alert``): ``@timestamp`` when
    detected, ``event.severity`` numeric (:data:`ECS_SEVERITY`), ``source.address`` the entity key and
    ``source.ip`` where the key is an IP address, ``observer`` the detector instance, the top features with
    their values under ``flowsentinel.top_features``, and the whole message under ``flowsentinel``."""
    start = msg.get("event_time") or msg.get("kafka_timestamp")
    doc: dict[str, Any] = {
        "@timestamp": msg["detected_at"],
        "ecs": {"version": ECS_VERSION},
        "message": (
            f"flowsentinel {msg['severity']} anomaly from {msg['key']}: score {msg['score']:.4g}, "
            f"{msg['score'] / msg['threshold'] if msg['threshold'] > 0 else math.inf:.3g}x the threshold"
        ),
        "event": {
            "kind": "alert",
            "category": ["network"],
            "type": ["info"],
            "module": "flowsentinel",
            "dataset": "flowsentinel.alert",
            "action": f"episode-{msg['event']}",
            "id": msg["id"],
            "severity": ECS_SEVERITY[msg["severity"]],
            "risk_score": round(min(100.0, 100.0 * msg["score"] / (msg["score"] + msg["threshold"])), 2)
            if msg["threshold"] > 0
            else 100.0,
            "created": msg["detected_at"],
            **({"start": start} if start else {}),
        },
        "source": {"address": msg["key"], **({"ip": ip} if (ip := _ip(msg["key"])) else {})},
        "observer": {
            "vendor": "flowsentinel",
            "product": "flowsentinel",
            "type": "ids",
            **{k: v for k, v in msg.get("observer", {}).items() if k in ("name", "hostname", "version")},
        },
        "rule": {
            "name": "flowsentinel anomaly score",
            "version": msg["model_version"],
            "ruleset": msg["schema"],
        },
        "flowsentinel": msg,
    }
    if msg.get("label"):
        doc["labels"] = {"flowsentinel_label": msg["label"]}
    return doc
