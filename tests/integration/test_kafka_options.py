"""Client options passed through on the real broker: static membership (group.instance.id) and cooperative
rebalancing (partition_assignment_strategy=cooperative-sticky), two instances of one group."""

from __future__ import annotations

import logging

import pytest

from flowsentinel.consumers.main import start_service
from tests.integration.test_service import attack_stream
from tests.support import create_topics, make_settings, produce_records, scrape, wait_for

pytestmark = pytest.mark.integration


def options(member: str) -> str:
    return f"group.instance.id={member};partition_assignment_strategy=cooperative-sticky"


def test_static_cooperative_members_share_the_partitions_and_score_everything(
    bootstrap, names, model_dir, caplog, kafka_client
):
    caplog.set_level(logging.INFO, logger="kafka.coordinator")
    create_topics(bootstrap, names, partitions=4)
    records = attack_stream(3000, 100)
    over = {"kafka_client": kafka_client}
    a = start_service(make_settings(bootstrap, names, model_dir, kafka_options=options("detector-a"), **over))
    b = start_service(make_settings(bootstrap, names, model_dir, kafka_options=options("detector-b"), **over))
    try:
        wait_for(
            lambda: (
                a.service.state.assigned + b.service.state.assigned == 4
                and a.service.state.assigned > 0
                and b.service.state.assigned > 0
            ),
            60,
            "the four partitions shared between the two members",
        )
        produce_records(bootstrap, names["input"], records)
        wait_for(lambda: a.service.scored + b.service.scored >= len(records), 60, "every record scored")
        ma, mb = scrape(a.server.port), scrape(b.server.port)
    finally:
        a.shutdown()
        b.shutdown()
    # (at least once: a record whose batch was not committed when its partition moved is scored again)
    assert a.service.scored + b.service.scored >= len(records)
    assert ma["flowsentinel_assigned_partitions"] + mb["flowsentinel_assigned_partitions"] == 4
    if kafka_client != "kafka-python":  # librdkafka says which protocol it joined with only in debug logs
        return
    joined = [r.getMessage() for r in caplog.records if "Successfully joined group" in r.getMessage()]
    assert joined and all("protocol: cooperative-sticky" in j for j in joined), joined
    assert any("Cooperative rebalance complete" in r.getMessage() for r in caplog.records)
