"""Alert ids stable across replays, on the real broker: the service is stopped between publishing a batch's
alerts and committing its offsets — at every batch of an attack episode in turn — and a new instance replays
from the last commit. The episode must open once, under one id, however the replay falls: its open state
travels with the committed offset."""

from __future__ import annotations

import json
import threading

import pytest
from prometheus_client import CollectorRegistry

from flowsentinel.consumers.metrics import Metrics
from flowsentinel.consumers.service import DetectorService
from tests.integration.test_service import attack_stream
from tests.support import create_topics, make_settings, produce_records, read_topic

pytestmark = pytest.mark.integration

ATTACKER = "203.0.113.66"


class Crash(Exception):
    """Raised instead of committing: the process dies with its alerts published and its offsets not."""


def _crash_at(service: DetectorService, crash_at_commit: int | None) -> None:
    """Make the connected ``service``'s checkpoint raise :class:`Crash` at its ``crash_at_commit``-th commit."""
    assert service.checkpoint is not None
    commit, calls = service.checkpoint.commit, [0]

    def commit_or_crash(offsets, stop):
        calls[0] += 1
        if crash_at_commit is not None and calls[0] >= crash_at_commit:
            raise Crash
        return commit(offsets, stop)

    service.checkpoint.commit = commit_or_crash  # type: ignore[method-assign]


def test_a_crash_between_publishing_and_committing_never_reopens_an_episode(
    bootstrap, names, model_dir, tmp_path, kafka_client
):
    create_topics(bootstrap, names)
    records = attack_stream(200, 300, seed=7)  # one attacker's episode, the whole stream in 5 batches of 100
    produce_records(bootstrap, names["input"], records)
    settings = make_settings(
        bootstrap, names, model_dir, batch_size=100, episode_quiet_s=600.0, episode_update_s=0.001,
        state_dir=str(tmp_path / "state"), feedback_topic="", poll_timeout_ms=200, kafka_client=kafka_client,
    )  # fmt: skip
    stop = threading.Event()
    # the first instance dies at its first commit; each next one commits one batch and dies at the next: a
    # crash after every batch of the stream in turn; the last one reads to the end
    crashes = 0
    for crash_at in (1, *[2] * 8, None):
        service = DetectorService(settings, Metrics.create(CollectorRegistry()))
        assert service.connect_when_reachable(stop)
        _crash_at(service, crash_at)
        idle = 0
        try:
            for _ in range(300):
                # idle polls since the assignment (librdkafka delivers the records a poll after it)
                idle = 0 if service.step(stop) or not service.state.assigned else idle + 1
                if idle >= 5:  # the end of the topic, for a while
                    break
        except Crash:
            crashes += 1
        finally:
            if crash_at is None:
                service.shutdown()
            else:  # a crash: what was published stays, nothing is committed or closed; only the group is
                # left at once (no session timeout to wait out), without the revocation's work
                service.checkpoint.deliver_within(10.0)
                service.on_revoked = lambda partitions: None  # type: ignore[method-assign]
                service.close()
    assert crashes >= 5  # one per batch of 100 of the 500 records
    alerts = [json.loads(m.value) for m in read_topic(bootstrap, names["alerts"], settle=2.0)]
    attacker = [a for a in alerts if a["key"] == ATTACKER]
    assert attacker, "no alert for the attack"
    assert {a["episode_id"] for a in attacker} == {attacker[0]["episode_id"]}
    opened = {a["id"] for a in attacker if a["event"] == "opened"}
    assert len(opened) == 1 and opened == {attacker[0]["episode_id"]}
    by_id: dict[str, set[tuple]] = {}
    for a in attacker:  # one id, one event at one source record
        by_id.setdefault(a["id"], set()).add((a["event"], json.dumps(a["kafka"], sort_keys=True)))
    assert all(len(v) == 1 for v in by_id.values())
