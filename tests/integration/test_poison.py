"""Records shaped to stop the service, against a real broker: each ends scored or dead-lettered with its reason,
the group commits past it, and the service stays up."""

from __future__ import annotations

import json

import pytest

from flowsentinel.consumers.main import start_service
from flowsentinel.producers.synthetic import normal_training_records
from tests.integration.test_processes import kcat_send
from tests.integration.test_service import attack_stream
from tests.support import (
    committed,
    create_topics,
    make_settings,
    produce_raw,
    read_topic,
    scrape,
    wait_for,
)

pytestmark = pytest.mark.integration


def _committed_total(bootstrap: str, names: dict[str, str]) -> int:
    return sum(committed(bootstrap, names["group"], names["input"]).values())


def test_a_record_whose_key_is_a_lone_surrogate_is_alerted_published_and_committed(
    bootstrap, names, model_dir
):
    """``"src_host": "\\ud800evil"`` is valid JSON; its key once made publishing the alert raise
    UnicodeEncodeError before the commit, so every instance of the group died on it, for good."""
    create_topics(bootstrap, names, partitions=1)
    records = attack_stream(600, 60)
    messages = []
    for r in records:
        value = json.dumps(r)
        if r.get("label") == "neptune":
            value = value.replace('"203.0.113.66"', '"\\ud800evil\\n\\u0000"')
        messages.append((b"\xff\xfe raw key, not UTF-8", value.encode()))
    produce_raw(bootstrap, names["input"], messages)
    running = start_service(make_settings(bootstrap, names, model_dir, batch_size=100))
    try:
        wait_for(lambda: running.service.scored >= len(records), 60, "every record scored")
        wait_for(lambda: _committed_total(bootstrap, names) == len(records), 20, "every offset committed")
        alerts = read_topic(bootstrap, names["alerts"], settle=3.0, timeout=20)
        assert running.thread.is_alive()
        scrape(running.server.port)  # /metrics still renders
    finally:
        running.shutdown()
    # the surrogate escaped (UTF-8 cannot carry it); the newline and NUL are valid UTF-8 and stay
    evil = [m for m in alerts if m.key == b"\\ud800evil\n\x00"]
    assert evil, sorted({m.key for m in alerts})
    for m in evil:
        event = json.loads(m.value)  # strict UTF-8 JSON a SIEM can parse
        assert event["key"] == "\\ud800evil\n\x00"
        assert event["labels_in_episode"] == {"neptune": event["alerts_in_episode"]}
    assert any(json.loads(m.value)["event"] == "closed" for m in evil), "closed at shutdown too"


def test_a_record_that_makes_scoring_raise_is_dead_lettered_once_and_the_group_moves_on(
    bootstrap, names, model_dir, kafka_client
):
    """The crash-loop breaker, on principle: any exception while handling a batch (here one injected into
    scoring for one key) isolates that record as ``internal_error``; the rest of its batch is scored, the
    offsets are committed past it, and a restarted service does not meet it again."""
    create_topics(bootstrap, names, partitions=1)
    running = start_service(
        make_settings(bootstrap, names, model_dir, batch_size=500, kafka_client=kafka_client)
    )
    detector = running.service.detector
    real = detector.process_batch

    def process_batch(batch, **kw):
        if "10.66.66.66" in set(batch.keys.tolist()):
            raise RuntimeError("injected: scoring this record fails")
        return real(batch, **kw)

    detector.process_batch = process_batch  # type: ignore[method-assign]
    good = normal_training_records(1_200, seed=5)
    good[700]["src_host"] = "10.66.66.66"
    produce_raw(bootstrap, names["input"], [(b"k", json.dumps(r).encode()) for r in good])
    try:
        wait_for(lambda: running.service.scored >= len(good) - 1, 60, "every other record scored")
        dead = read_topic(bootstrap, names["dead"], expect=1, timeout=20)
        wait_for(lambda: _committed_total(bootstrap, names) == len(good), 20, "offsets committed past it")
        m = scrape(running.server.port)
        assert running.thread.is_alive()
    finally:
        running.shutdown()
    assert running.service.scored == len(good) - 1
    assert len(dead) == 1
    h = dict(dead[0].headers)
    assert h["flowsentinel.error.reason"] == b"internal_error"
    assert b"RuntimeError" in h["flowsentinel.error.detail"] and b"injected" in h["flowsentinel.error.detail"]
    assert int(h["flowsentinel.source.offset"]) == 700
    assert json.loads(dead[0].value)["src_host"] == "10.66.66.66", "the original bytes are dead-lettered"
    assert m['flowsentinel_records_invalid_total{reason="internal_error"}'] == 1

    # a restart (same group; scoring that record would still raise) does not meet it again
    more = normal_training_records(100, seed=6)
    produce_raw(bootstrap, names["input"], [(b"k", json.dumps(r).encode()) for r in more])
    again = start_service(make_settings(bootstrap, names, model_dir, kafka_client=kafka_client))
    again.service.detector.process_batch = process_batch  # type: ignore[method-assign]
    try:
        wait_for(lambda: again.service.scored >= len(more), 60, "the new records scored")
        wait_for(lambda: _committed_total(bootstrap, names) == len(good) + len(more), 20, "committed")
    finally:
        again.shutdown()
    assert again.service.scored == len(more)
    assert len(read_topic(bootstrap, names["dead"], timeout=10, settle=1.0)) == 1


def test_tombstones_from_another_client_are_dead_lettered(bootstrap, names, model_dir):
    """kafka-python cannot send a message with neither key nor value (``Need at least one: key or value``);
    kcat -Z can. Both kinds of tombstone, and one with a key only, are dead-lettered as ``empty``."""
    create_topics(bootstrap, names, partitions=1)
    good = normal_training_records(20, seed=8)
    lines = (
        [f"k:{json.dumps(r)}" for r in good[:10]]
        + [":", "somekey:", ":"]
        + [f"k:{json.dumps(r)}" for r in good[10:]]
    )
    kcat_send(bootstrap, names["input"], lines, "-Z", "-K:")
    running = start_service(make_settings(bootstrap, names, model_dir))
    try:
        wait_for(lambda: running.service.scored >= len(good), 60, "the good records scored")
        dead = read_topic(bootstrap, names["dead"], expect=3, timeout=20)
        wait_for(lambda: _committed_total(bootstrap, names) == len(good) + 3, 20, "committed past them")
    finally:
        running.shutdown()
    assert [dict(m.headers)["flowsentinel.error.reason"] for m in dead] == [b"empty"] * 3
    assert [m.key for m in dead] == [None, b"somekey", None]
