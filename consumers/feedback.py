"""Analysts' verdicts in: the feedback topic, the alerts they judge, and the verdict memory they teach.

A verdict is one JSON message on the feedback topic (``flowsentinel.feedback`` by default)::

    {"alert_id": "5f0c…", "verdict": "attack", "label": "neptune", "analyst": "kim", "at": "2026-12-03T10:00:00Z"}
    {"episode_id": "5f0c…", "verdict": "benign"}

``alert_id`` is the ``id`` of an alert message (one event of an episode); ``episode_id`` judges every alert
message of the episode. ``verdict`` is ``attack`` or ``benign``; ``label``, ``analyst`` and ``at`` are
optional (text, at most 200 characters; ``at`` is informational, the message's Kafka timestamp dates it).

Every instance of the group must learn every verdict, and a verdict may judge an alert another instance
raised. So each instance reads, outside the group (its own positions, no commits), both the feedback topic
and the alerts topic: each alert message carries what a verdict needs (``raw_score`` and
``field_shares``: the record's profile), kept in a bounded store (``feedback_store_entries`` alert
messages, the oldest forgotten). A verdict whose id is not (yet) in the store waits for the alerts read in
the next polls (a bounded queue), then counts as ``unknown`` and is logged once. A malformed verdict is
dead-lettered with reason ``bad_verdict`` (by every instance that reads it: at least once, as everything
here). The store, the memory and the read positions save to the state directory and survive a restart.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowsentinel.consumers.alerts import alert_body
from flowsentinel.consumers.decode import DeadLetter, InputMessage
from flowsentinel.detector.feedback import VERDICTS, VerdictMemory, shares_profile
from flowsentinel.detector.text import printable, shown

log = logging.getLogger(__name__)

MAX_VERDICT_BYTES = 4_096
_ID = re.compile(r"[0-9a-f]{24}")
_TEXT_FIELDS = ("label", "analyst", "at", "note")
PENDING_POLLS = 20  # polls an unmatched verdict waits for its alert to be read
MAX_PENDING = 10_000


class VerdictError(ValueError):
    """A feedback message that is not a verdict; the text says why."""


@dataclass(frozen=True)
class Verdict:
    verdict: str
    alert_id: str = ""
    episode_id: str = ""
    label: str = ""
    analyst: str = ""


def parse_verdict(value: bytes | None) -> Verdict:
    """One feedback message → a :class:`Verdict`, or :class:`VerdictError` naming what is wrong."""
    if not value:
        raise VerdictError("empty message")
    if len(value) > MAX_VERDICT_BYTES:
        raise VerdictError(f"message of {len(value):,} bytes exceeds {MAX_VERDICT_BYTES:,}")
    try:
        obj = json.loads(value)
    except (ValueError, RecursionError) as exc:
        raise VerdictError(f"not valid UTF-8 JSON: {type(exc).__name__}") from None
    if not isinstance(obj, dict):
        raise VerdictError(f"JSON {type(obj).__name__} where an object was expected")
    verdict = obj.get("verdict")
    if verdict not in VERDICTS:
        raise VerdictError(f"verdict {shown(verdict)}: expected one of {', '.join(VERDICTS)}")
    ids = {k: obj.get(k) for k in ("alert_id", "episode_id") if obj.get(k) is not None}
    if len(ids) != 1:
        raise VerdictError("give exactly one of alert_id and episode_id")
    ((kind, ident),) = ids.items()
    if not (isinstance(ident, str) and _ID.fullmatch(ident)):
        raise VerdictError(f"{kind} {shown(ident)}: expected the 24 hex characters of an alert message's id")
    text = {}
    for k in _TEXT_FIELDS:
        v = obj.get(k)
        if v is not None and not (isinstance(v, str) and len(v) <= 200):
            raise VerdictError(f"{k} {shown(v)}: expected text of at most 200 characters")
        text[k] = v or ""
    return Verdict(verdict=verdict, label=text["label"], analyst=text["analyst"], **{kind: ident})


class AlertStore:
    """Alert message id → (episode id, profile), the ``capacity`` most recent; episode id → its messages."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[str, tuple[str, np.ndarray]] = OrderedDict()
        self.episodes: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes + 120 for _, p in self.entries.values())

    def add(self, alert_id: str, episode_id: str, profile: np.ndarray) -> None:
        if alert_id in self.entries:
            return
        self.entries[alert_id] = (episode_id, profile.astype(np.float32))
        self.episodes.setdefault(episode_id, []).append(alert_id)
        while len(self.entries) > self.capacity:
            old, (ep, _) = self.entries.popitem(last=False)
            ids = self.episodes.get(ep, [])
            if old in ids:
                ids.remove(old)
            if not ids:
                self.episodes.pop(ep, None)

    def profiles(self, v: Verdict) -> np.ndarray | None:
        """The profiles a verdict judges, or None if its id is not in the store."""
        if v.alert_id:
            entry = self.entries.get(v.alert_id)
            return None if entry is None else entry[1][None, :].astype(np.float64)
        ids = self.episodes.get(v.episode_id)
        if not ids:
            return None
        return np.vstack([self.entries[i][1] for i in ids]).astype(np.float64)

    def state_dict(self) -> dict[str, Any]:
        return {
            "capacity": self.capacity,
            "entries": [
                [i, ep, np.round(p.astype(np.float64), 5).tolist()] for i, (ep, p) in self.entries.items()
            ],
        }

    def load_state_dict(self, state: dict[str, Any], width: int) -> None:
        store = AlertStore(self.capacity)
        for alert_id, episode_id, profile in state["entries"]:
            row = np.asarray(profile, dtype=np.float64)
            if row.shape != (width,) or not np.isfinite(row).all():
                raise ValueError("alert store: a profile of the wrong size")
            store.add(str(alert_id), str(episode_id), row)
        self.entries, self.episodes = store.entries, store.episodes


class FeedbackState:
    """The verdict memory, the alert store and what to do with a polled message of either topic. Kafka-free:
    the service polls, this decides."""

    def __init__(self, memory: VerdictMemory, field_names: list[str], store_entries: int) -> None:
        self.memory = memory
        self.field_names = field_names
        self.store = AlertStore(store_entries)
        self.pending: list[tuple[Verdict, float, int]] = []  # (verdict, time, polls waited)
        self.counts = {"applied": 0, "unknown": 0, "malformed": 0}
        self.applied_profiles = 0
        self.judged: list[tuple[str | None, str | None, str]] = []  # (alert id, episode id, verdict) applied
        self._logged_unknown = False

    def on_alert(self, value: bytes | None) -> None:
        """An alert message (by this instance or another): remember its profile. One without a profile (an
        older version) or not parseable is skipped: alert messages are not verdicts."""
        try:
            event = alert_body(json.loads(value or b""))
            shares, score = event["field_shares"], float(event["raw_score"])
            if not (isinstance(shares, dict) and math.isfinite(score) and score > 0):
                return
            profile = shares_profile(shares, self.field_names, score, self.memory.policy.score_weight)
            self.store.add(str(event["id"]), str(event["episode_id"]), profile)
        except (ValueError, KeyError, TypeError, RecursionError):
            return

    def on_verdict(self, message: InputMessage, at: float) -> DeadLetter | None:
        """A feedback message: applied now, queued until its alert is read, or a dead letter if malformed."""
        try:
            v = parse_verdict(message.value)
        except VerdictError as exc:
            self.counts["malformed"] += 1
            return DeadLetter(message, "bad_verdict", f"{message.position}: {exc}")
        if not self._apply(v, at):
            self.pending.append((v, at, 0))
            del self.pending[:-MAX_PENDING]
        return None

    def retry_pending(self) -> None:
        """After a poll: apply the verdicts whose alerts have been read since; give up on the old ones."""
        still = []
        for v, at, waited in self.pending:
            if self._apply(v, at):
                continue
            if waited + 1 < PENDING_POLLS:
                still.append((v, at, waited + 1))
                continue
            self.counts["unknown"] += 1
            if not self._logged_unknown:  # once: a replayed topic could hold thousands
                self._logged_unknown = True
                log.warning(
                    "verdict for unknown or expired %s %s (not among the last %d alert messages read); "
                    'counted in flowsentinel_feedback_verdicts_total{result="unknown"}, not logged again',
                    "alert" if v.alert_id else "episode",
                    printable(v.alert_id or v.episode_id),
                    self.store.capacity,
                )
        self.pending = still

    def _apply(self, v: Verdict, at: float) -> bool:
        rows = self.store.profiles(v)
        if rows is None:
            return False
        self.memory.learn(rows, v.verdict, at=at, label=v.label)
        self.judged.append((v.alert_id, v.episode_id, v.verdict))
        del self.judged[:-MAX_PENDING]  # drained after each poll by whoever wants them (the shadow)
        self.counts["applied"] += 1
        self.applied_profiles += len(rows)
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"memory": self.memory.state_dict(), "store": self.store.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory.load_state_dict(state["memory"])
        self.store.load_state_dict(state["store"], self.memory.n_fields + 1)
