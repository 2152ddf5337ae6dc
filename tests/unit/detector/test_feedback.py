"""The verdict memory: no verdicts change nothing, verdicts move similar records, bad feedback is bounded."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowsentinel.detector.feedback import FeedbackPolicy, VerdictMemory, profiles
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.thresholds import make_thresholder
from tests.support import toy_batch


def test_with_no_verdicts_the_scores_are_bit_identical(tiny_model):
    batch = toy_batch(1500, seed=41, attack_rate=0.1)
    plain = Detector(tiny_model, make_thresholder("spot", 0.01))
    with_memory = Detector(
        tiny_model,
        make_thresholder("spot", 0.01),
        feedback=VerdictMemory(len(tiny_model.encoder.field_names)),
    )
    a, b = plain.process_batch(batch), with_memory.process_batch(batch, now=123.0)
    assert a.scores.tobytes() == b.scores.tobytes() and b.raw_scores is None
    assert (a.alerts == b.alerts).all()
    assert plain.thresholder.state_dict() == with_memory.thresholder.state_dict()


def _flood_and_normal(tiny_model):
    batch = toy_batch(3000, seed=42, attack_rate=0.1)
    det = Detector(tiny_model, make_thresholder("spot", 0.01))
    raw, err, _ = det.score_many(batch)
    attack = ~batch.is_normal
    return raw, err, attack


def test_an_attack_verdict_raises_similar_records_and_a_benign_one_lowers_them(tiny_model):
    raw, err, attack = _flood_and_normal(tiny_model)
    mem = VerdictMemory(err.shape[1])
    i = int(np.flatnonzero(attack)[0])
    mem.learn(profiles(err[i : i + 1], raw[i : i + 1]), "attack", at=0)
    adjusted = mem.adjust(raw, err, now=0)
    gain = adjusted / raw
    assert np.median(gain[attack]) > 10 and np.median(gain[~attack]) < 1.5  # the family, not everything

    normal_alerts = np.flatnonzero(~attack & (raw > np.quantile(raw[~attack], 0.99)))
    mem2 = VerdictMemory(err.shape[1])
    mem2.learn(profiles(err[normal_alerts[:5]], raw[normal_alerts[:5]]), "benign", at=0)
    cut = mem2.adjust(raw, err, now=0) / raw
    assert cut[normal_alerts].min() >= 0.1 - 1e-12 and np.median(cut[normal_alerts]) < 0.5
    # the flood is further from those false alarms than they are from each other: cut less, still alerted
    assert np.median(cut[attack]) > 2 * np.median(cut[normal_alerts])
    threshold = Detector(tiny_model, make_thresholder("spot", 0.01)).thresholder.threshold
    assert ((raw * cut)[attack] > threshold).mean() > 0.9


def test_a_flood_of_wrong_benign_verdicts_cannot_silence_an_attack_family(tiny_model):
    """1,000 poisoned 'benign' verdicts on flood alerts: the family's scores are cut by at most max_cut (it is
    still far above the threshold), they take one prototype's room, the cut fades with the half-life, and one
    true attack verdict outranks them at once."""
    raw, err, attack = _flood_and_normal(tiny_model)
    det = Detector(tiny_model, make_thresholder("spot", 0.01))
    threshold = det.thresholder.threshold
    flood = np.flatnonzero(attack)
    assert (raw[flood] > threshold).mean() > 0.95
    policy = FeedbackPolicy(half_life=10_000.0)
    mem = VerdictMemory(err.shape[1], policy)
    rng = np.random.default_rng(0)
    for k in rng.choice(flood, size=1000):
        mem.learn(profiles(err[k : k + 1], raw[k : k + 1]), "benign", at=0)
    assert mem.verdicts["benign"] == 1000 and len(mem.protos["benign"]) < 50
    now = mem.adjust(raw, err, now=0)
    assert (now[flood] >= 0.1 * raw[flood] - 1e-12).all()
    assert (now[flood] > threshold).mean() > 0.9, "still alerted right after the poisoning"
    later = mem.adjust(raw, err, now=10_000.0)  # one half-life on: the cut in log space halves
    assert np.allclose(np.log(later[flood] / raw[flood]), 0.5 * np.log(now[flood] / raw[flood]), atol=1e-9)
    mem.learn(profiles(err[flood[:1]], raw[flood[:1]]), "attack", at=0)
    assert np.median(mem.adjust(raw, err, now=0)[flood] / raw[flood]) > 5


def test_the_state_round_trips_through_json(tiny_model):
    raw, err, attack = _flood_and_normal(tiny_model)
    mem = VerdictMemory(err.shape[1], FeedbackPolicy(capacity=8))
    for k in range(40):
        mem.learn(profiles(err[k : k + 1], raw[k : k + 1]), "attack" if attack[k] else "benign", at=float(k))
    copy = VerdictMemory(err.shape[1], FeedbackPolicy(capacity=8))
    copy.load_state_dict(json.loads(json.dumps(mem.state_dict())))
    assert len(copy) == len(mem) <= 16
    assert np.allclose(copy.adjust(raw, err, now=50.0), mem.adjust(raw, err, now=50.0), rtol=1e-5)
    with pytest.raises(ValueError, match="fields"):
        VerdictMemory(err.shape[1] + 1).load_state_dict(mem.state_dict())
