"""The two Kafka client libraries give the same results: one stream, scored once through confluent-kafka
and once through kafka-python (each its own consumer group and alerts topic), must give the same alert
messages — ids, scores, thresholds, episodes, attributions — the same dead letters, and the same commits.
One input partition, so that both read the records in one order (scoring and the threshold are sequential
per record, not per poll batch)."""

from __future__ import annotations

import json

import pytest

from flowsentinel.consumers.main import start_service
from tests.integration.test_service import attack_stream
from tests.support import (
    committed,
    create_topics,
    highwater,
    make_settings,
    produce_raw,
    read_topic,
    wait_for,
)

pytestmark = pytest.mark.integration

# what an alert says about the records; the rest is when and by whom it was written
_COMPARED = ("id", "event", "episode_id", "key", "score", "threshold", "kafka", "first_kafka",
             "alerts_in_episode", "labels_in_episode", "top_features", "severity")  # fmt: skip


def _score_once(bootstrap: str, names: dict, model_dir, client: str, n: int, end: dict) -> tuple:
    own = {**names, "group": f"{names['group']}-{client}", "alerts": f"{names['alerts']}-{client}",
           "dead": f"{names['dead']}-{client}"}  # fmt: skip
    create_topics(bootstrap, own, partitions=1)
    settings = make_settings(
        bootstrap, own, model_dir, kafka_client=client, episode_quiet_s=600.0, episode_update_s=600.0
    )
    running = start_service(settings)
    try:
        wait_for(lambda: running.service.scored >= n, 90, f"every record scored ({client})")
        wait_for(lambda: committed(bootstrap, own["group"], names["input"]) == end, 30, "committed")
    finally:
        running.shutdown()  # closes the open episodes: their "closed" messages are compared too
    alerts = [json.loads(m.value) for m in read_topic(bootstrap, own["alerts"], settle=2.0)]
    dead = read_topic(bootstrap, own["dead"], expect=3, timeout=20)
    return (
        running.service.scored,
        [{k: a.get(k) for k in _COMPARED} for a in alerts],
        [(m.value, dict(m.headers)["flowsentinel.error.reason"]) for m in dead],
        committed(bootstrap, own["group"], names["input"]),
    )


def test_confluent_and_kafka_python_give_the_same_alerts_dead_letters_and_commits(
    bootstrap, names, model_dir
):
    create_topics(bootstrap, names, partitions=1)
    records = attack_stream(2500, 300, seed=12) + attack_stream(2000, 200, kind="portsweep", seed=13)
    messages = [(str(r["src_host"]).encode(), json.dumps(r).encode()) for r in records]
    messages[100:100] = [(b"poison", b"not json"), (None, b""), (b"k", b'{"schema": "kdd"}')]
    produce_raw(bootstrap, names["input"], messages)
    end = highwater(bootstrap, names["input"])
    seen = {
        c: _score_once(bootstrap, names, model_dir, c, len(records), end)
        for c in ("confluent", "kafka-python")
    }
    assert seen["confluent"][1], "the attacks raise alerts"
    assert seen["confluent"][2] and seen["confluent"][3] == end
    assert seen["confluent"] == seen["kafka-python"]
