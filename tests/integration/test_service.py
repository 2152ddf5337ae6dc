"""The detector service against a real broker: alerts, dead letters, metrics, rebalances, outages."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from flowsentinel.consumers.main import start_service
from flowsentinel.producers.synthetic import SyntheticTraffic, normal_training_records
from tests.support import (
    committed,
    consumer_lags,
    create_topics,
    highwater,
    http_status,
    make_settings,
    produce_raw,
    produce_records,
    read_topic,
    scrape,
    wait_for,
)

pytestmark = pytest.mark.integration

ALERT_FIELDS = {
    "id",
    "event",
    "episode_id",
    "key",
    "schema",
    "model_version",
    "score",
    "threshold",
    "severity",
    "top_features",
    "event_time",
    "kafka_timestamp",
    "detected_at",
    "kafka",
    "first_kafka",
    "observer",
    "alerts_in_episode",
    "max_score",
    "max_severity",
}


def attack_stream(n_normal: int, n_attack: int, kind: str = "neptune", seed: int = 3) -> list[dict]:
    """Normal traffic with one attack episode in the middle, from one attacker host."""
    gen = SyntheticTraffic(seed=seed, attack_every_s=0, hosts=100)
    normal = gen.records(n_normal, start=time.time() - 60, rate=1000)
    from flowsentinel.producers.synthetic import _attack

    attack = []
    for _ in range(n_attack):
        r = _attack(gen.rng, kind)
        r.update(src_host="203.0.113.66", label=kind, ts=time.time(), schema="kdd", schema_version=1)
        attack.append(r)
    half = n_normal // 2
    return normal[:half] + attack + normal[half:]


def test_records_in_alerts_out_with_the_documented_schema(bootstrap, names, model_dir):
    create_topics(bootstrap, names)
    records = attack_stream(1500, 200)
    produce_records(bootstrap, names["input"], records)
    running = start_service(make_settings(bootstrap, names, model_dir))
    try:
        wait_for(lambda: running.service.scored >= len(records), 60, "all records scored")
        alerts = [json.loads(m.value) for m in read_topic(bootstrap, names["alerts"], settle=3.0, timeout=20)]
    finally:
        running.shutdown()
    assert alerts, "an attack episode must produce alert messages"
    for a in alerts:
        assert set(a) >= ALERT_FIELDS, ALERT_FIELDS - set(a)
        assert a["event"] in ("opened", "updated", "closed")
        assert a["severity"] in ("low", "medium", "high", "critical")
        assert a["score"] > a["threshold"] > 0
        assert a["kafka"]["topic"] == names["input"] and a["kafka"]["offset"] >= 0
        assert len(a["top_features"]) == 3 and all(0 <= f["share"] <= 1 for f in a["top_features"])
    attacker = [a for a in alerts if a["key"] == "203.0.113.66"]
    opened = [a for a in attacker if a["event"] == "opened"]
    assert len(opened) == 1, "one attack is one episode, not hundreds of messages"
    assert opened[0]["labels_in_episode"] == {"neptune": 1}
    assert len(attacker) <= 10, f"{len(attacker)} messages for one 200-record attack"
    closed = [a for a in attacker if a["event"] == "closed"]
    assert closed and closed[-1]["alerts_in_episode"] >= 190
    false_keys = {a["key"] for a in alerts if a["event"] == "opened"} - {"203.0.113.66"}
    assert len(false_keys) <= 10  # risk q = 0.002 on 1,500 normal records


def test_ecs_alerts_of_medium_episodes_and_up_with_every_episode_counted(bootstrap, names, model_dir):
    create_topics(bootstrap, names)
    records = attack_stream(1500, 200)
    produce_records(bootstrap, names["input"], records)
    settings = make_settings(bootstrap, names, model_dir, alert_format="ecs", min_publish_severity="medium")
    running = start_service(settings)
    try:
        wait_for(lambda: running.service.scored >= len(records), 60, "all records scored")
        docs = [json.loads(m.value) for m in read_topic(bootstrap, names["alerts"], settle=3.0, timeout=20)]
        wait_for(lambda: not running.service.episodes.open, 20, "every episode closed")
        m = scrape(running.server.port)
    finally:
        running.shutdown()
    assert docs and all(d["event"]["kind"] == "alert" for d in docs)  # (read_topic checked the ECS schema)
    attacker = [d for d in docs if d["source"]["address"] == "203.0.113.66"]
    assert (
        attacker[0]["source"]["ip"] == "203.0.113.66" and attacker[0]["event"]["action"] == "episode-opened"
    )
    assert all(d["flowsentinel"]["max_severity"] != "low" for d in docs)
    published = len(docs)
    counted = sum(v for k, v in m.items() if k.startswith("flowsentinel_episode_events_total"))
    withheld = m["flowsentinel_episode_messages_withheld_total"]
    assert withheld > 0, "the normal traffic's own tail opens low episodes at q = 0.002"
    assert counted >= published + withheld  # (episodes closed at shutdown come on top)


POISON = [
    (b"not json at all", "not_json"),
    (b"\xff\xfe\x00", "not_json"),
    (b"[1, 2, 3]", "not_object"),
    (b"", "empty"),
    (json.dumps({"schema": "cicflowmeter", "x": 1}).encode(), "wrong_schema"),
    ("schema_version", "unsupported_version"),
    ("missing", "missing_field"),
    ("extra", "unexpected_field"),
    ("nan", "non_finite"),
    ("negative", "negative_value"),
    ("text", "wrong_type"),
    ("oversized", "oversized"),
    (b"[" * 60_000, "not_json"),  # deeper than Python's recursion limit: once stopped the service
    ("huge_integer", "not_json"),  # more digits than int() takes: the same
]


def poison_value(kind: str | bytes, good: dict) -> bytes:
    if isinstance(kind, bytes):
        return kind
    r = dict(good)
    if kind == "schema_version":
        r["schema_version"] = 99
    elif kind == "missing":
        del r["src_bytes"]
    elif kind == "extra":
        r["comment"] = "hello"
    elif kind == "nan":
        return json.dumps(r).replace(f'"src_bytes": {r["src_bytes"]}', '"src_bytes": NaN').encode()
    elif kind == "negative":
        r["dst_bytes"] = -10
    elif kind == "text":
        r["count"] = "many"
    elif kind == "oversized":
        r["label"] = "x" * 100_000
    elif kind == "huge_integer":
        return json.dumps(r).replace(f'"src_bytes": {r["src_bytes"]}', '"src_bytes": ' + "9" * 5000).encode()
    return json.dumps(r).encode()


def test_poison_records_go_to_the_dead_letter_topic_and_the_stream_continues(
    bootstrap, names, model_dir, kafka_client
):
    create_topics(bootstrap, names, partitions=1)
    good = normal_training_records(25 * len(POISON) + 50, seed=9)
    messages: list[tuple[bytes | None, bytes]] = []
    for i, r in enumerate(good):
        messages.append((b"k", json.dumps(r).encode()))
        if i % 25 == 0 and i // 25 < len(POISON):
            kind, _ = POISON[i // 25]
            messages.append((b"poison", poison_value(kind, r)))
    produce_raw(bootstrap, names["input"], messages)
    running = start_service(make_settings(bootstrap, names, model_dir, kafka_client=kafka_client))
    try:
        wait_for(lambda: running.service.scored >= len(good), 60, "all good records scored")
        dead = read_topic(bootstrap, names["dead"], expect=len(POISON), timeout=20)
        wait_for(
            lambda: sum(committed(bootstrap, names["group"], names["input"]).values()) == len(messages),
            20,
            "offsets committed past the poison",
        )
        metrics = scrape(running.server.port)
        assert running.thread.is_alive()
    finally:
        running.shutdown()
    assert running.service.scored == len(good)
    reasons = [dict(m.headers)["flowsentinel.error.reason"].decode() for m in dead]
    assert sorted(reasons) == sorted(r for _, r in POISON)
    sent = {poison_value(k, good[i * 25]) for i, (k, _) in enumerate(POISON)}
    assert {m.value for m in dead} == sent, "the original bytes travel to the dead-letter topic"
    for m in dead:
        h = dict(m.headers)
        assert h["flowsentinel.source.topic"].decode() == names["input"]
        assert int(h["flowsentinel.source.offset"]) >= 0
        assert h["flowsentinel.error.detail"].decode().startswith(f"{names['input']}[0]@")
    for _, reason in POISON:
        assert metrics[f'flowsentinel_records_invalid_total{{reason="{reason}"}}'] >= 1


def test_metrics_endpoint_tells_what_happened(bootstrap, names, model_dir):
    create_topics(bootstrap, names)
    records = attack_stream(800, 100, kind="smurf")
    produce_records(bootstrap, names["input"], records)
    produce_raw(bootstrap, names["input"], [(None, b"{broken")] * 3)
    running = start_service(make_settings(bootstrap, names, model_dir))
    port = running.server.port
    try:
        wait_for(lambda: running.service.scored >= len(records), 60, "all records scored")
        wait_for(
            lambda: scrape(port).get("flowsentinel_records_consumed_total", 0) >= len(records) + 3,
            10,
            "consumed counter",
        )
        wait_for(lambda: http_status(port, "/readyz") == 200, 15, "ready")
        m = scrape(port)
        health = http_status(port, "/healthz")
        missing = http_status(port, "/nope")
    finally:
        running.shutdown()
    assert m["flowsentinel_records_consumed_total"] == len(records) + 3
    assert m["flowsentinel_records_scored_total"] == len(records)
    assert m['flowsentinel_records_invalid_total{reason="not_json"}'] == 3
    alerts = sum(v for k, v in m.items() if k.startswith("flowsentinel_alerts_total{"))
    assert alerts >= 95
    assert m["flowsentinel_score_count"] == len(records)
    assert m["flowsentinel_end_to_end_latency_seconds_count"] == len(records) + 3
    assert m["flowsentinel_threshold"] > 0
    assert m["flowsentinel_assigned_partitions"] == 4
    assert m["flowsentinel_broker_up"] == 1 and m["flowsentinel_ready"] == 1
    assert m["flowsentinel_window_keys"] >= 50
    assert m["process_resident_memory_bytes"] > 10e6  # the process collector: memory is watchable
    lags = consumer_lags(m)
    assert len(lags) == 4 and all(v == 0 for v in lags.values())
    assert any(k.startswith("flowsentinel_model_info{") for k in m)
    assert m['flowsentinel_episode_events_total{event="opened"}'] >= 1
    assert health == 200 and missing == 404
    for key in m:  # labels from small fixed sets only: never a host
        assert "203.0.113" not in key and "10.0." not in key


def test_several_input_topics_are_consumed_with_episodes_and_lag_per_topic(bootstrap, names, model_dir):
    """--input-topic A,B: one host attacking in both topics is one episode per topic, every record of both is
    scored and committed, and the lag gauge has a sample per topic and partition (partition numbers repeat
    across topics: keyed by partition alone, two topics' windows, episodes and lag would mix)."""
    other = {**names, "input": names["input"] + "-b"}
    create_topics(bootstrap, names, partitions=2)
    create_topics(bootstrap, other, partitions=3)
    first, second = attack_stream(600, 80, kind="neptune"), attack_stream(500, 80, kind="smurf", seed=4)
    produce_records(bootstrap, names["input"], first)
    produce_records(bootstrap, other["input"], second)
    running = start_service(
        make_settings(bootstrap, names, model_dir, input_topic=f"{names['input']},{other['input']}")
    )
    port = running.server.port
    try:
        wait_for(lambda: running.service.scored >= len(first) + len(second), 60, "both topics scored")
        wait_for(lambda: len(consumer_lags(scrape(port))) == 5, 10, "lag of every partition")
        m = scrape(port)
        alerts = [json.loads(v.value) for v in read_topic(bootstrap, names["alerts"], settle=3.0, timeout=20)]
    finally:
        running.shutdown()
    assert running.service.scored == len(first) + len(second)
    for topic in (names["input"], other["input"]):
        assert committed(bootstrap, names["group"], topic) == highwater(bootstrap, topic), topic
    assert m["flowsentinel_assigned_partitions"] == 5
    lags = consumer_lags(m)
    for topic, parts in ((names["input"], 2), (other["input"], 3)):
        mine = [k for k in lags if f'topic="{topic}"' in k]
        assert len(mine) == parts and all(lags[k] == 0 for k in mine), lags
    opened = [a for a in alerts if a["key"] == "203.0.113.66" and a["event"] == "opened"]
    assert sorted(a["kafka"]["topic"] for a in opened) == sorted([names["input"], other["input"]])
    assert {a["kafka"]["topic"]: a["labels_in_episode"] for a in opened} == {
        names["input"]: {"neptune": 1},
        other["input"]: {"smurf": 1},
    }


def test_two_instances_split_the_partitions_and_score_every_record_once(
    bootstrap, names, model_dir, kafka_client
):
    create_topics(bootstrap, names, partitions=4)
    records = normal_training_records(4000, seed=5, hosts=120)
    a = start_service(make_settings(bootstrap, names, model_dir, kafka_client=kafka_client))
    b = start_service(make_settings(bootstrap, names, model_dir, kafka_client=kafka_client))
    try:
        wait_for(
            lambda: (
                a.service.state.assigned + b.service.state.assigned == 4
                and a.service.state.assigned
                and b.service.state.assigned
            ),
            60,
            "partitions split across both",
        )
        produce_records(bootstrap, names["input"], records)
        wait_for(lambda: a.service.scored + b.service.scored >= len(records), 60, "all records scored")
        time.sleep(2)  # anything scored twice would show up now
    finally:
        a.shutdown()
        b.shutdown()
    assert a.service.scored + b.service.scored == len(records)
    assert a.service.scored > 0 and b.service.scored > 0


def test_threshold_state_survives_a_restart(bootstrap, names, model_dir, tmp_path):
    create_topics(bootstrap, names)
    settings = make_settings(bootstrap, names, model_dir, state_dir=str(tmp_path / "state"))
    produce_records(bootstrap, names["input"], normal_training_records(1500, seed=6))
    first = start_service(settings)
    try:
        wait_for(lambda: first.service.scored >= 1500, 60, "first run scored")
    finally:
        first.shutdown()
    seen = first.service.detector.thresholder.seen
    state = first.service.detector.thresholder.state_dict()
    assert seen == 1500
    second = start_service(settings)
    try:
        assert second.service.detector.thresholder.state_dict() == state
    finally:
        second.shutdown()
    # a changed risk or shift policy is not undone by the snapshot taken under the old one
    for change in ({"shift_max_rise": 1.5}, {"risk": 0.005}):  # the first differs in the policy only
        changed = settings.replace(**change)
        third = start_service(changed)
        try:
            th = third.service.detector.thresholder
            assert th.seen == 0
            assert (th.q, th.policy.max_rise) == (changed.risk, changed.shift_max_rise)
        finally:
            third.shutdown()


def test_model_directory_change_is_reloaded_between_batches(bootstrap, names, model_dir, tmp_path):
    import shutil

    from flowsentinel.detector.artifact import load_artifact, save_artifact
    from flowsentinel.detector.train import TrainConfig, train
    from flowsentinel.producers.synthetic import to_batch

    live = tmp_path / "live-model"
    shutil.copytree(model_dir, live)
    create_topics(bootstrap, names)
    running = start_service(make_settings(bootstrap, names, live, reload_check_s=0.5))
    try:
        old = running.service.model.version
        wait_for(lambda: running.service.state.assigned, 30, "assignment")
        new_model = train(
            to_batch(normal_training_records(2000, seed=77)),
            TrainConfig(window=4, hidden=8, latent=4, epochs=2, seed=1),
            progress=False,
        )
        time.sleep(1.1)  # a later mtime than the first save on coarse filesystems
        save_artifact(new_model, live)
        wait_for(lambda: running.service.model.version != old, 20, "model reloaded")
        produce_records(bootstrap, names["input"], normal_training_records(200, seed=8))
        wait_for(lambda: running.service.scored >= 200, 30, "scoring with the new model")
        m = scrape(running.server.port)
    finally:
        running.shutdown()
    assert running.service.model.version == load_artifact(live).version
    assert m['flowsentinel_model_reloads_total{result="ok"}'] == 1
    assert f'flowsentinel_model_info{{schema="kdd",version="{running.service.model.version}"}}' in m


def test_broken_models_dropped_into_a_running_service_are_refused_and_scoring_goes_on(
    bootstrap, names, model_dir, tmp_path
):
    """Each crafted metadata that used to kill the service on a hot reload (a RecursionError, a schema that
    is a list, a scoring entry that is a string, an 864 TB allocation) is refused with a metric; the old
    model scores on, and a good model put there afterwards is taken."""
    import shutil

    from flowsentinel.detector.artifact import METADATA, WEIGHTS, load_artifact
    from tests.artifacts import BROKEN, write_broken

    live = tmp_path / "live-model"
    shutil.copytree(model_dir, live)
    create_topics(bootstrap, names)
    running = start_service(make_settings(bootstrap, names, live, reload_check_s=0.2))
    port = running.server.port
    try:
        version = running.service.model.version
        wait_for(lambda: running.service.state.assigned, 30, "assignment")
        assert scrape(port)['flowsentinel_model_reloads_total{result="refused"}'] == 0
        for n, case in enumerate(sorted(BROKEN), start=1):
            staged = write_broken(Path(model_dir), tmp_path / "staged", case)
            for name in (WEIGHTS, METADATA):
                shutil.copy(staged / name, live / name)
            wait_for(
                lambda n=n: scrape(port)['flowsentinel_model_reloads_total{result="refused"}'] == n,
                20,
                f"{case} refused",
            )
            produce_records(bootstrap, names["input"], normal_training_records(50, seed=n))
            wait_for(lambda n=n: running.service.scored >= 50 * n, 30, f"scoring after {case}")
            assert running.thread.is_alive() and running.service.model.version == version
        for name in (WEIGHTS, METADATA):
            shutil.copy(Path(model_dir) / name, live / name)
        wait_for(
            lambda: scrape(port)['flowsentinel_model_reloads_total{result="unchanged"}'] == 1, 20, "good"
        )
    finally:
        running.shutdown()
    assert running.service.model.version == load_artifact(model_dir).version == version


def test_a_broker_outage_is_waited_out_and_nothing_is_lost(own_broker, names, model_dir, kafka_client):
    bootstrap = own_broker.bootstrap
    create_topics(bootstrap, names)
    first = normal_training_records(1000, seed=10)
    produce_records(bootstrap, names["input"], first)
    running = start_service(make_settings(bootstrap, names, model_dir, kafka_client=kafka_client))
    port = running.server.port
    try:
        wait_for(lambda: running.service.scored >= 1000, 60, "first half scored")
        wait_for(lambda: http_status(port, "/readyz") == 200, 15, "ready before the outage")
        own_broker.pause()
        try:
            wait_for(lambda: http_status(port, "/readyz") == 503, 30, "not ready during the outage")
            assert scrape(port)["flowsentinel_broker_up"] == 0
            assert http_status(port, "/healthz") == 200  # alive: waiting is not a fault
            time.sleep(8)  # longer than the session timeout: the group must be rebuilt afterwards
        finally:
            own_broker.resume()
        assert running.thread.is_alive()
        second = normal_training_records(1000, seed=11)
        produce_records(bootstrap, names["input"], second)
        wait_for(lambda: running.service.scored >= 2000, 90, "second half scored after the outage")
        wait_for(lambda: http_status(port, "/readyz") == 200, 30, "ready again")
        hw = highwater(bootstrap, names["input"])
        wait_for(
            lambda: committed(bootstrap, names["group"], names["input"]) == hw, 30, "all offsets committed"
        )
    finally:
        running.shutdown()
    assert running.service.scored >= 2000


def test_end_to_end_latency_is_observed_from_kafka_timestamps(bootstrap, names, model_dir):
    create_topics(bootstrap, names)
    running = start_service(make_settings(bootstrap, names, model_dir))
    try:
        wait_for(lambda: running.service.state.assigned, 30, "assignment")
        produce_records(bootstrap, names["input"], normal_training_records(300, seed=12))
        wait_for(lambda: running.service.scored >= 300, 30, "scored")
        m = scrape(running.server.port)
    finally:
        running.shutdown()
    mean = (
        m["flowsentinel_end_to_end_latency_seconds_sum"] / m["flowsentinel_end_to_end_latency_seconds_count"]
    )
    assert 0 <= mean < 30 and math.isfinite(mean)


def test_missing_output_topics_are_named_at_start(bootstrap, names, model_dir, caplog):
    from flowsentinel.kafka.admin import ensure_topics

    ensure_topics(bootstrap, {names["input"]: 2})  # the alerts and dead-letter topics are not created
    caplog.set_level("WARNING", logger="flowsentinel.consumers.service")
    running = start_service(make_settings(bootstrap, names, model_dir))
    try:
        wait_for(lambda: running.service.state.started, 30, "the service connected")
    finally:
        running.shutdown()
    warned = [r.getMessage() for r in caplog.records if "do not exist" in r.getMessage()]
    assert len(warned) == 1, caplog.text
    assert repr(names["alerts"]) in warned[0] and repr(names["dead"]) in warned[0]
    assert repr(names["input"]) not in warned[0]


def test_a_record_too_large_for_the_dead_letter_topic_is_cut_and_the_stream_goes_on(
    bootstrap, names, model_dir
):
    """A 3 MB message (the input topic accepted it) once wedged the service: its dead letter was larger than
    the producer's request limit, so it was never acknowledged and its batch never committed."""
    from kafka import KafkaProducer

    create_topics(bootstrap, names, partitions=1)
    good = normal_training_records(20, seed=12)
    huge = b'{"schema": "kdd", "junk": "' + b"x" * 3_000_000 + b'"}'
    p = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=8_000_000, enable_idempotence=False)
    for i, r in enumerate(good):
        p.send(names["input"], key=b"k", value=json.dumps(r).encode())
        if i == 10:
            p.send(names["input"], key=b"h" * 10_000, value=huge)
    p.flush()
    p.close()
    running = start_service(make_settings(bootstrap, names, model_dir))
    try:
        wait_for(lambda: running.service.scored >= len(good), 60, "the records after it scored")
        wait_for(
            lambda: sum(committed(bootstrap, names["group"], names["input"]).values()) == len(good) + 1,
            30,
            "committed past it",
        )
        dead = read_topic(bootstrap, names["dead"], expect=1, timeout=20)
    finally:
        running.shutdown()
    assert len(dead) == 1
    h = {k: v.decode() for k, v in dead[0].headers}
    assert h["flowsentinel.error.reason"] == "oversized"
    assert h["flowsentinel.truncated.value_bytes"] == str(len(huge))
    assert dead[0].value == huge[:900_000]
    assert h["flowsentinel.truncated.key_bytes"] == "10000" and dead[0].key == b"h" * 4096
    assert h["flowsentinel.source.offset"] == "11"
