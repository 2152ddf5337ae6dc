from __future__ import annotations

from flowsentinel.consumers.alerts import AlertRecord, EpisodeTracker, message_id, severity


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def alert(
    key: str,
    offset: int,
    score: float = 1.0,
    threshold: float = 0.5,
    label: str | None = None,
    topic: str = "in",
) -> AlertRecord:
    return AlertRecord(key=key, partition=0, topic=topic, offset=offset, score=score, threshold=threshold,
                       top_features=[("src_bytes", 0.6)], event_time=None, kafka_timestamp_ms=1_000_000,
                       label=label)  # fmt: skip


def test_severity_bands():
    assert [severity(s, 1.0) for s in (1.1, 2.0, 5.0, 20.0, 300.0)] == [
        "low",
        "medium",
        "high",
        "critical",
        "critical",
    ]


def test_a_run_of_alerts_is_one_episode_opened_updated_closed():
    clock = Clock()
    t = EpisodeTracker(schema="kdd", model_version="v1", quiet_s=10, update_s=5, clock=clock)
    msgs = t.observe([alert("h", i, label="neptune") for i in range(100)])
    assert [m["event"] for m in msgs] == ["opened"]
    assert msgs[0]["id"] == msgs[0]["episode_id"] == message_id("in", 0, 0, "opened")
    clock.t += 6
    msgs = t.observe([alert("h", 100, score=30.0, label="neptune")])  # severity rises to critical
    assert [m["event"] for m in msgs] == ["updated"] and msgs[0]["max_severity"] == "critical"
    clock.t += 9
    assert t.expire() == []
    clock.t += 2
    (closed,) = t.expire()
    assert closed["event"] == "closed" and closed["close_reason"] == "quiet"
    assert closed["alerts_in_episode"] == 101 and closed["labels_in_episode"] == {"neptune": 101}
    assert closed["first_kafka"]["offset"] == 0 and closed["kafka"]["offset"] == 100


def test_ids_depend_only_on_the_triggering_record():
    a = EpisodeTracker(schema="kdd", model_version="v1", quiet_s=10, update_s=5, clock=Clock())
    b = EpisodeTracker(schema="kdd", model_version="v2", quiet_s=99, update_s=1, clock=Clock())
    assert a.observe([alert("h", 7)])[0]["id"] == b.observe([alert("h", 7)])[0]["id"]


def test_open_episodes_are_bounded():
    t = EpisodeTracker(schema="kdd", model_version="v1", quiet_s=60, update_s=5, clock=Clock(), max_open=100)
    msgs = t.observe([alert(f"10.0.{i // 250}.{i % 250}", i) for i in range(1000)])
    assert len(t.open) == 100
    closed = [m for m in msgs if m["event"] == "closed"]
    assert len(closed) == 900 and {m["close_reason"] for m in closed} == {"capacity"}


def test_one_key_in_two_input_topics_is_two_episodes():
    """Windows are per (topic, partition, key) and a topic's partitions may sit on another instance: an
    episode is per topic and key too, and revoking one topic's partition closes only that topic's."""
    t = EpisodeTracker(schema="kdd", model_version="v1", quiet_s=60, update_s=5, clock=Clock())
    msgs = t.observe([alert("h", 0, topic="a"), alert("h", 0, topic="b"), alert("h", 1, topic="a")])
    assert [(m["event"], m["kafka"]["topic"]) for m in msgs] == [("opened", "a"), ("opened", "b")]
    assert msgs[0]["id"] != msgs[1]["id"]
    (closed,) = t.close_where(lambda ep: ep.first.topic == "b", "rebalance")
    assert closed["kafka"]["topic"] == "b" and list(t.open) == [("a", "h")]


def test_open_episodes_travel_with_the_commit_and_resume_under_the_same_ids():
    from flowsentinel.consumers.alerts import EPISODE_STATE_BYTES

    clock = Clock()
    before = EpisodeTracker(schema="kdd", model_version="v1", quiet_s=10, update_s=5, clock=clock)
    opened = before.observe([alert("h", 7), alert("g", 8, score=30.0)])
    state = before.state_for("in", 0)
    assert before.state_for("in", 1) == "" and before.state_for("other", 0) == ""
    after = EpisodeTracker(schema="kdd", model_version="v1", quiet_s=10, update_s=5, clock=clock)
    assert after.restore("in", 0, state) == 2
    clock.t += 6
    msgs = after.observe([alert("h", 9)])
    assert [m["event"] for m in msgs] == ["updated"] and msgs[0]["episode_id"] == opened[0]["id"]
    assert msgs[0]["alerts_in_episode"] == 2 and msgs[0]["first_kafka"]["offset"] == 7
    clock.t += 11
    closed = {m["key"]: m for m in after.expire()}
    assert closed["g"]["id"] == message_id("in", 0, 8, "closed") and closed["g"]["max_severity"] == "critical"
    # bounded for the broker's metadata limit; anything unreadable restores nothing
    many = EpisodeTracker(schema="kdd", model_version="v1", quiet_s=10, update_s=5, clock=clock)
    many.observe([alert(f"10.0.{i // 256}.{i % 256}", i) for i in range(1_000)])
    assert len(many.state_for("in", 0)) <= EPISODE_STATE_BYTES
    for junk in ("", "not json", "[[[", '{"v":2,"e":[]}', '{"v":1,"e":[[1,2]]}', "[" * 5000):
        assert (
            EpisodeTracker(schema="kdd", model_version="v1", quiet_s=10, update_s=5, clock=clock).restore(
                "in", 0, junk
            )
            == 0
        )
