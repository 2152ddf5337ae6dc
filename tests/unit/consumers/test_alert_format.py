"""The alert message's published forms: format 2 and its ECS mapping, each checked against the JSON Schema
in docs/, and which episodes reach the alerts topic under min_publish_severity."""

from __future__ import annotations

import jsonschema
import pytest

from flowsentinel.consumers.alerts import (
    ECS_SEVERITY,
    AlertRecord,
    EpisodeTracker,
    alert_body,
    publishable,
    to_ecs,
)
from tests.support import check_alert

OBSERVER = {"name": "flowsentinel", "hostname": "detector-0", "version": "0.1.0"}


def tracker() -> EpisodeTracker:
    return EpisodeTracker(
        schema="kdd",
        model_version="v1",
        quiet_s=10,
        update_s=5,
        clock=lambda: 1_700_000_000.0,
        observer=OBSERVER,
    )


def record(key: str, offset: int, score: float, label: str | None = "neptune") -> AlertRecord:
    return AlertRecord(key=key, partition=3, topic="in", offset=offset, score=score, threshold=0.5,
                       top_features=[("service", 0.41), ("src_bytes", 0.2)], event_time=1_699_999_999.5,
                       kafka_timestamp_ms=1_700_000_000_000, label=label,
                       top_values=("private", 0.0))  # fmt: skip


def test_format_2_names_the_kafka_position_the_observer_and_the_top_values():
    (msg,) = tracker().observe([record("10.0.3.7", 88, 30.0)])
    check_alert(msg)
    assert msg["alert_format"] == 2 and "source" not in msg
    assert msg["kafka"] == {"topic": "in", "partition": 3, "offset": 88} == msg["first_kafka"]
    assert msg["observer"] == OBSERVER
    assert msg["top_features"] == [
        {"field": "service", "share": 0.41, "value": "private"},
        {"field": "src_bytes", "share": 0.2, "value": 0.0},
    ]


def test_ecs_form_carries_the_alert_whole_and_maps_what_a_siem_indexes():
    t = tracker()
    (msg,) = t.observe([record("10.0.3.7", 88, 30.0)])
    doc = check_alert(to_ecs(msg))
    assert doc["@timestamp"] == msg["detected_at"] and doc["event"]["kind"] == "alert"
    assert doc["event"]["severity"] == ECS_SEVERITY["critical"] == 99 and doc["event"]["id"] == msg["id"]
    assert doc["event"]["action"] == "episode-opened" and doc["event"]["start"] == msg["event_time"]
    assert doc["source"] == {"address": "10.0.3.7", "ip": "10.0.3.7"}
    assert doc["observer"]["hostname"] == "detector-0" and doc["observer"]["type"] == "ids"
    assert alert_body(doc) == msg and alert_body(msg) == msg
    # a key that is not an IP address stays an address only; IPv6 is written canonically
    (other,) = tracker().observe([record("db-primary", 1, 0.8, label=None)])
    assert to_ecs(other)["source"] == {"address": "db-primary"} and "labels" not in to_ecs(other)
    (v6,) = tracker().observe([record("2001:DB8::0:1", 2, 0.8)])
    assert check_alert(to_ecs(v6))["source"]["ip"] == "2001:db8::1"


def test_the_schema_refuses_what_format_2_does_not_promise():
    (msg,) = tracker().observe([record("h", 1, 3.0)])
    for broken in ({**msg, "source": msg["kafka"]}, {**msg, "alert_format": 1}, {**msg, "severity": "huge"}):
        with pytest.raises(jsonschema.ValidationError):
            check_alert(broken)


def test_min_publish_severity_withholds_an_episode_until_it_reaches_the_level():
    clock = [1000.0]
    t = EpisodeTracker(schema="kdd", model_version="v1", quiet_s=10, update_s=5, clock=lambda: clock[0])
    low = t.observe([record("a", 1, 0.6)])  # 1.2x the threshold: low
    clock[0] += 1
    risen = t.observe([record("a", 2, 3.0)])  # 6x: high, an update
    assert [publishable(m, "medium") for m in low + risen] == [False, True]
    assert all(publishable(m, "low") for m in low + risen)
    (quiet_low,) = tracker().observe([record("b", 1, 0.6)])
    assert not publishable(quiet_low, "medium") and not publishable(quiet_low, "critical")


def test_the_service_publishes_medium_episodes_and_up_unless_told_otherwise():
    from flowsentinel.consumers.settings import Settings
    from flowsentinel.detector.errors import ConfigError

    assert Settings().min_publish_severity == "medium" and Settings().alert_format == "flowsentinel"
    with pytest.raises(ConfigError, match="min_publish_severity"):
        Settings(min_publish_severity="severe")
    with pytest.raises(ConfigError, match="alert_format"):
        Settings(alert_format="ocsf")
