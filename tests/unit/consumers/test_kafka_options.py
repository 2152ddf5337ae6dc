"""``kafka_options``: Kafka client options passed through to the service's consumer and producer, from a flag,
the environment or a config file, refused with a clear line when the service owns them or they do not exist."""

from __future__ import annotations

import pytest
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor

from flowsentinel.cli import build_parser
from flowsentinel.consumers.kafka_options import parse_kafka_options
from flowsentinel.consumers.settings import Settings
from flowsentinel.detector.errors import ConfigError


def test_both_spellings_scoped_or_shared_and_typed_values():
    got = parse_kafka_options(
        "group.instance.id=detector-0; partition_assignment_strategy=cooperative-sticky,range\n"
        "consumer.fetch_min_bytes=1024;producer.linger_ms=20;metadata_max_age_ms=60000;"
        "check_crcs=false; client_rack = eu-west-1a"
    )
    c, p = got["consumer"], got["producer"]
    assert c["group_instance_id"] == "detector-0" and c["client_rack"] == "eu-west-1a"
    assert c["partition_assignment_strategy"] == (CooperativeStickyAssignor, RangePartitionAssignor)
    assert c["fetch_min_bytes"] == 1024 and c["check_crcs"] is False and "fetch_min_bytes" not in p
    assert p == {"linger_ms": 20, "metadata_max_age_ms": 60000}  # (a shared key goes where it exists)
    assert c["metadata_max_age_ms"] == 60000
    assert parse_kafka_options("") == {"consumer": {}, "producer": {}}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("enable.auto.commit=true", "the service commits offsets itself"),
        ("group_id=other", "use group"),
        ("acks=1", "fixed at 'all'"),
        ("ssl_cafile=/x", "use ssl_cafile"),
        ("sasl.plain.password=x", "use sasl_password"),
        ("group.instanse.id=x", "not a consumer or producer option of kafka-python"),
        ("producer.group_instance_id=x", "not a producer option"),
        (
            "partition_assignment_strategy=cooperative",
            "assignor 'cooperative': use one of cooperative-sticky",
        ),
        ("no equals sign", "not KEY=VALUE"),
    ],
)
def test_refused_with_the_reason(text, says):
    with pytest.raises(ConfigError, match=says):
        Settings(kafka_options=text, kafka_client="kafka-python")
    if "kafka-python" in says:  # a name kafka-python lacks may be librdkafka's: librdkafka judges it
        says = 'librdkafka refuses it: No such configuration property: "group.instanse.id"'
    with pytest.raises(ConfigError, match=says):
        Settings(kafka_options=text, kafka_client="confluent")


def test_with_confluent_librdkafkas_own_options_pass_and_its_values_are_checked():
    s = Settings(kafka_options="debug=cgrp;consumer.fetch.queue.backoff.ms=50", kafka_client="confluent")
    extra = s.client_config(security={}).extra
    assert extra["consumer"] == {"debug": "cgrp", "fetch_queue_backoff_ms": 50}
    assert extra["producer"] == {"debug": "cgrp"}
    with pytest.raises(ConfigError, match="librdkafka refuses it.*debug"):
        Settings(kafka_options="debug=everything-please", kafka_client="confluent")


def test_flag_environment_and_config_file_are_one_setting(tmp_path):
    args = build_parser().parse_args(
        ["detect", "--kafka-option", "group.instance.id=d-1", "--kafka-option", "producer.linger_ms=7"]
    )
    from_flag = Settings.load({"kafka_options": args.kafka_options}, environ={})
    from_env = Settings.load(
        {}, environ={"FLOWSENTINEL_KAFKA_OPTIONS": "group.instance.id=d-1;producer.linger_ms=7"}
    )
    config = tmp_path / "detect.toml"
    config.write_text('[flowsentinel.kafka_options]\ngroup.instance.id = "d-1"\n"producer.linger_ms" = 7\n')
    from_file = Settings.load({}, environ={}, config_file=str(config))
    options = {s.kafka_options for s in (from_flag, from_env, from_file)}
    assert len({str(parse_kafka_options(o)) for o in options}) == 1
    assert parse_kafka_options(from_file.kafka_options)["consumer"] == {"group_instance_id": "d-1"}
    with pytest.raises(
        ConfigError, match=r"enable_auto_commit.*\(from environment FLOWSENTINEL_KAFKA_OPTIONS\)"
    ):
        Settings.load({}, environ={"FLOWSENTINEL_KAFKA_OPTIONS": "enable.auto.commit=true"})
