"""Retrain, shadow, promote, roll back on the real broker: a host starts a new, normal application the live
model alerts on; an analyst calls the episode benign (kcat); `flowsentinel retrain` builds a candidate from
the topic and that verdict; the running service scores it in shadow (publishing nothing), promotes it by the
rule once the verdicts agree, and goes back to the old model on `flowsentinel models rollback`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid

import pytest

from flowsentinel.consumers.main import start_service
from flowsentinel.detector.store import ModelStore
from flowsentinel.kafka.admin import ensure_topics
from flowsentinel.producers.synthetic import normal_training_records
from tests.integration.test_processes import kcat_send
from tests.integration.test_service import attack_stream
from tests.support import (
    create_topics,
    make_settings,
    produce_records,
    read_topic,
    scrape,
    wait_for,
)

pytestmark = pytest.mark.integration

NEW_APP = "198.51.100.7"


def _new_app(n: int, seed: int) -> list[dict]:
    """Normal records of one host, on a service the training data never held."""
    return [
        dict(r, src_host=NEW_APP, service="IRC", flag="RSTR", ts=time.time())
        for r in normal_training_records(n, seed=seed)
    ]


def _episodes_of(bootstrap: str, topic: str, host: str) -> set[str]:
    return {a["episode_id"] for a in map(json.loads, (m.value for m in read_topic(bootstrap, topic, settle=1.0)))
            if a["key"] == host}  # fmt: skip


def _cli(*args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "flowsentinel", *args], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_retrain_runs_in_shadow_is_promoted_by_the_rule_and_rolled_back(
    bootstrap, names, model_dir, tmp_path
):
    names["feedback"] = f"fb-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, names)
    ensure_topics(bootstrap, {names["feedback"]: 1})
    store = ModelStore(tmp_path / "store")
    live = store.add(model_dir)
    store.set("live", live)
    settings = make_settings(
        bootstrap, names, model_dir, model="", model_store=str(store.root), feedback_topic=names["feedback"],
        state_dir=str(tmp_path / "state"), reload_check_s=0.3, shadow_promote="auto", shadow_min_records=1_000,
        shadow_min_verdicts=2,
        feedback_max_cut=1.0,  # benign verdicts do not lower the live scores: the new app keeps alerting live
    )  # fmt: skip
    produce_records(bootstrap, names["input"], normal_training_records(1500, seed=3) + _new_app(600, seed=4))
    running = start_service(settings)
    port = running.server.port
    try:
        wait_for(lambda: running.service.scored >= 2100, 60, "first records scored")
        first = wait_for(lambda: _episodes_of(bootstrap, names["alerts"], NEW_APP), 20, "the new app alerted")
        verdicts = [json.dumps({"episode_id": e, "verdict": "benign", "analyst": "t"}) for e in sorted(first)]
        kcat_send(bootstrap, names["feedback"], verdicts)
        wait_for(lambda: running.service.feedback.counts["applied"] >= len(first), 30, "verdicts applied")
        summary = json.loads(
            _cli(
                "retrain",
                "--model-store",
                str(store.root),
                "--synthetic",
                "6000",
                "--epochs",
                "4",
                "--quiet",
                "--bootstrap-servers",
                bootstrap,
                "--topic",
                names["input"],
                "--alerts-topic",
                names["alerts"],
                "--feedback-topic",
                names["feedback"],
            )
        )
        candidate = summary["shadow"]
        assert summary["recent"]["benign_verdicts"] > 0 and store.version_of("shadow") == candidate
        wait_for(lambda: running.service.shadow is not None, 20, "shadow started")
        assert scrape(port)[f'flowsentinel_shadow_info{{version="{candidate}"}}'] == 1
        # more of the same: the new app again (judged benign) and an attack (judged attack)
        produce_records(bootstrap, names["input"], attack_stream(1200, 60, seed=5) + _new_app(300, seed=6))
        judged: set[str] = set(first)
        deadline = time.monotonic() + 90
        while store.version_of("live") != candidate and time.monotonic() < deadline:
            messages = [json.loads(m.value) for m in read_topic(bootstrap, names["alerts"], settle=1.0)]
            new = [a for a in messages if a["key"] in (NEW_APP, "203.0.113.66") and a["id"] not in judged]
            lines = []
            for a in new:
                judged.add(a["id"])
                verdict = "benign" if a["key"] == NEW_APP else "attack"
                lines.append(json.dumps({"alert_id": a["id"], "verdict": verdict}))
            if lines:
                kcat_send(bootstrap, names["feedback"], lines)
            time.sleep(1.0)
        assert store.version_of("live") == candidate, running.service.shadow and running.service.shadow.stats
        wait_for(lambda: running.service.model.version == candidate, 20, "the promoted model taken")
        m = scrape(port)
        assert m["flowsentinel_shadow_promotions_total"] == 1
        assert m["flowsentinel_shadow_records_scored_total"] >= 1_000
        messages = [json.loads(m.value) for m in read_topic(bootstrap, names["alerts"], settle=1.0)]
        published = sum(v for k, v in m.items() if k.startswith("flowsentinel_episode_events_total{"))
        assert len(messages) == published  # every alert message is the live model's: the shadow sent none
        _cli("models", "rollback", str(store.root), "--reason", "test")
        wait_for(lambda: running.service.model.version == live, 20, "rolled back")
    finally:
        running.shutdown()
    history = [h["action"] for h in store.history()]
    assert history[-2:] == ["rollback", "rollback"] and "promote" in history and "retrain" in history
