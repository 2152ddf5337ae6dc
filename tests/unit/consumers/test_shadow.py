"""A candidate model in shadow: scored beside the live one, publishing nothing, promoted by the stated rule,
rolled back by command. The service's Kafka-free seam: batches go to ``process``, alert and verdict messages
to the feedback state, as the poll loop hands them over (the real-broker test is in tests/integration)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from flowsentinel.consumers.decode import InputMessage
from flowsentinel.consumers.metrics import Metrics
from flowsentinel.consumers.service import DetectorService
from flowsentinel.consumers.settings import Settings
from flowsentinel.consumers.shadow import PromotionRule, ShadowStats, promotion_decision
from flowsentinel.detector.schema import RecordBatch, parse_table
from flowsentinel.detector.store import ModelStore
from flowsentinel.producers.publisher import batch_to_records
from tests.support import TOY, toy_table

NEW_APP = "10.9.9.9"  # a host that starts a new, normal application the live model never saw
ATTACKER = "10.6.6.6"


def _records(n: int, seed: int, *, host: str | None = None, service: str | None = None, attack: float = 0.0):
    table = toy_table(n, np.random.default_rng(seed), attack_rate=attack)
    if host:
        table["host"] = [host] * n
    if service:
        table["service"] = [service] * n
    return parse_table(TOY, table, [f"row {i}" for i in range(n)])


@pytest.fixture(scope="module")
def candidate():
    """Trained on the live model's data and the new application's normal traffic."""
    from flowsentinel.detector.train import TrainConfig, train

    batch = RecordBatch.concat([_records(3000, 1), _records(600, 2, service="ssh")])
    cfg = TrainConfig(window=4, hidden=16, latent=4, members=1, epochs=12, batch_size=128, lr=5e-3, seed=3)
    return train(batch, cfg, progress=False)


def _messages(batch: RecordBatch, start: int) -> list[InputMessage]:
    values = [json.dumps(r).encode() for r in batch_to_records(batch)]
    return [InputMessage("in", 0, start + i, None, v, 0) for i, v in enumerate(values)]


def _verdict(offset: int, alert_id: str, verdict: str) -> InputMessage:
    return InputMessage(
        "fb", 0, offset, None, json.dumps({"alert_id": alert_id, "verdict": verdict}).encode(), 0
    )


def test_the_rule_says_why_not_until_every_condition_holds():
    rule = PromotionRule(min_records=100, min_verdicts=4, min_attack_kept=0.95)
    stats = ShadowStats(scored=50)
    assert promotion_decision(stats, rule)[1].startswith("too few records")
    stats.scored = 1000
    stats.verdicts = {"attack": [2, 2], "benign": [1, 1]}
    assert promotion_decision(stats, rule)[1].startswith("too few verdicts")
    stats.verdicts = {"attack": [1, 2], "benign": [0, 2]}
    assert promotion_decision(stats, rule)[1].startswith("loses confirmed attacks")
    stats.verdicts = {"attack": [2, 2], "benign": [2, 2]}
    assert promotion_decision(stats, rule)[1].startswith("drops no confirmed false alarm")
    stats.verdicts = {"attack": [2, 2], "benign": [0, 2]}
    stats.live_alerted, stats.shadow_alerted = 10, 11
    assert promotion_decision(stats, rule)[1].startswith("alerts more")
    stats.shadow_alerted = 9
    ok, why = promotion_decision(stats, rule)
    assert ok and "confirmed attacks kept 2/2" in why and "still flagged 0/2" in why


def test_a_shadow_publishes_nothing_is_promoted_by_the_rule_and_rolled_back_by_command(
    tiny_model, candidate, tmp_path
):
    store = ModelStore(tmp_path / "store")
    live = store.add(tiny_model)
    store.set("live", live)
    registry = CollectorRegistry()
    settings = Settings(
        model_store=str(store.root),
        state_dir=str(tmp_path / "state"),
        shadow_promote="auto",
        shadow_min_records=1_000,
        shadow_min_verdicts=2,  # two keys judged, one episode each: their opened messages (an update
        # message comes only when the severity rises or after episode_update_s)
        reload_check_s=0.001,
    )
    service = DetectorService(settings, Metrics.create(registry))
    assert service.shadow is None and service.model.version == live
    store.set("shadow", store.add(candidate))
    service.check_model(now=True)
    assert service.shadow is not None and service.shadow.version == candidate.version
    sample = registry.get_sample_value

    offset, verdicts, published = 0, 0, []
    for seed in range(10, 14):
        batch = RecordBatch.concat(
            [
                _records(400, seed),
                _records(40, seed + 50, host=NEW_APP, service="ssh"),
                _records(40, seed + 90, host=ATTACKER, attack=1.0),
            ]
        )
        done = service.process(_messages(batch, offset))
        events, dead = done.events, done.dead_letters
        offset += len(batch)
        assert not dead
        published += events
        for e in events:  # the alerts topic, read back by the side consumer
            service.feedback.on_alert(json.dumps(e).encode())
            if e["key"] in (NEW_APP, ATTACKER):
                verdict = "benign" if e["key"] == NEW_APP else "attack"
                service.feedback.on_verdict(_verdict(verdicts, e["id"], verdict), at=0.0)
                verdicts += 1
        service.tally_shadow()
        if service.shadow is not None:
            stats = service.shadow.stats
            assert stats.scored == offset
        service.slot.maybe_promote()
        if service.shadow is None:
            break
    assert all(e["model_version"] == live for e in published)  # nothing from the shadow
    assert sample("flowsentinel_shadow_records_scored_total") == offset
    assert sample("flowsentinel_shadow_verdicts_total", {"verdict": "benign", "shadow": "quiet"}) > 0
    assert sample("flowsentinel_shadow_verdicts_total", {"verdict": "attack", "shadow": "flagged"}) > 0
    assert sample("flowsentinel_shadow_promotions_total") == 1
    assert store.version_of("live") == candidate.version and store.version_of("previous") == live
    assert store.version_of("shadow") is None and store.history()[-1]["reason"].startswith("auto: meets")
    service.episodes.open.clear()  # (no producer here to publish their closing messages to)
    service.check_model()
    assert service.model.version == candidate.version

    assert store.rollback(reason="test") == (candidate.version, live)
    service.episodes.open.clear()  # (no producer here to publish their closing messages to)
    service.check_model(now=True)
    assert service.model.version == live and service.shadow is None
