"""Verdict messages, the alert store and the feedback state, Kafka-free."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowsentinel.consumers.decode import InputMessage
from flowsentinel.consumers.feedback import AlertStore, FeedbackState, VerdictError, parse_verdict
from flowsentinel.detector.feedback import VerdictMemory

ID = "0123456789abcdef01234567"
EP = "fedcba9876543210fedcba98"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"", "empty"),
        (b"{", "not valid"),
        (b"[1]", "JSON list"),
        (json.dumps({"alert_id": ID}).encode(), "verdict None"),
        (json.dumps({"alert_id": ID, "verdict": "maybe"}).encode(), "verdict 'maybe'"),
        (json.dumps({"verdict": "attack"}).encode(), "exactly one"),
        (json.dumps({"alert_id": ID, "episode_id": EP, "verdict": "attack"}).encode(), "exactly one"),
        (json.dumps({"alert_id": "x" * 24, "verdict": "attack"}).encode(), "24 hex"),
        (json.dumps({"alert_id": ID, "verdict": "attack", "label": ["a"]}).encode(), "label"),
        (json.dumps({"alert_id": ID, "verdict": "attack", "analyst": "x" * 300}).encode(), "analyst"),
        (b"[" * 4000, "not valid"),
        (b"x" * 5000, "exceeds"),
    ],
)
def test_a_malformed_verdict_is_refused_with_the_reason(value, why):
    with pytest.raises(VerdictError, match=why):
        parse_verdict(value)


def test_a_verdict_names_an_alert_or_an_episode():
    v = parse_verdict(
        json.dumps({"episode_id": EP, "verdict": "benign", "analyst": "kim", "at": "now"}).encode()
    )
    assert (v.episode_id, v.alert_id, v.verdict, v.analyst) == (EP, "", "benign", "kim")


def _alert(alert_id: str, episode_id: str, shares: dict[str, float], score: float = 2.0) -> bytes:
    return json.dumps(
        {"id": alert_id, "episode_id": episode_id, "raw_score": score, "field_shares": shares}
    ).encode()


def test_verdicts_join_the_alerts_they_judge_and_wait_for_alerts_not_read_yet():
    names = ["a", "b", "c"]
    fb = FeedbackState(VerdictMemory(3), names, store_entries=100)
    fb.on_alert(_alert(ID, EP, {"a": 0.9, "b": 0.1}))
    fb.on_alert(_alert("1" * 24, EP, {"a": 0.8, "c": 0.2}))
    fb.on_alert(b"not an alert")  # skipped, not an error
    msg = InputMessage("fb", 0, 0, None, json.dumps({"episode_id": EP, "verdict": "attack"}).encode(), 0)
    assert fb.on_verdict(msg, at=1.0) is None
    assert fb.counts["applied"] == 1 and fb.applied_profiles == 2 and len(fb.memory.protos["attack"]) >= 1
    later = "2" * 24
    msg = InputMessage("fb", 0, 1, None, json.dumps({"alert_id": later, "verdict": "benign"}).encode(), 0)
    assert fb.on_verdict(msg, at=2.0) is None and len(fb.pending) == 1
    fb.on_alert(_alert(later, "3" * 24, {"b": 1.0}))
    fb.retry_pending()
    assert fb.counts["applied"] == 2 and not fb.pending
    bad = InputMessage("fb", 0, 2, None, b"{}", 0)
    dead = fb.on_verdict(bad, at=3.0)
    assert dead is not None and dead.reason == "bad_verdict" and fb.counts["malformed"] == 1
    gone = InputMessage("fb", 0, 3, None, json.dumps({"alert_id": "9" * 24, "verdict": "attack"}).encode(), 0)
    fb.on_verdict(gone, at=4.0)
    for _ in range(25):
        fb.retry_pending()
    assert fb.counts["unknown"] == 1 and not fb.pending


def test_the_alert_store_is_bounded_and_round_trips():
    store = AlertStore(capacity=3)
    for i in range(5):
        store.add(f"{i:024x}", EP, np.full(4, float(i)))
    assert len(store) == 3 and len(store.episodes[EP]) == 3
    copy = AlertStore(capacity=3)
    copy.load_state_dict(json.loads(json.dumps(store.state_dict())), width=4)
    assert list(copy.entries) == list(store.entries)
