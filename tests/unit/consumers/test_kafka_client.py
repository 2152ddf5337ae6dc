"""The Kafka client layer: which library ``kafka_client`` picks, and the librdkafka configuration the
confluent implementation is given (security settings, kafka_options renamed). Offline: building a client
connects to nothing until it is used. (Both implementations on a real broker: tests/integration.)"""

from __future__ import annotations

import pytest

from flowsentinel.consumers.settings import Settings
from flowsentinel.detector.errors import ConfigError
from flowsentinel.kafka.client import (
    ClientConfig,
    ConfluentConsumer,
    Delivery,
    confluent_config,
    make_consumer,
    make_producer,
    resolve_client,
)
from flowsentinel.kafka.secret import Secret


def test_auto_takes_confluent_where_installed_and_a_name_is_taken_as_given():
    assert resolve_client("auto") == "confluent"  # a dependency: installed here
    assert resolve_client("kafka-python") == "kafka-python"
    assert resolve_client("confluent") == "confluent"
    with pytest.raises(ConfigError, match="kafka_client"):
        Settings(kafka_client="rdkafka")


def test_the_setting_is_a_flag_and_a_variable_of_detect():
    assert Settings.load({"kafka_client": "kafka-python"}, environ={}).kafka_client == "kafka-python"
    env = {"FLOWSENTINEL_KAFKA_CLIENT": "confluent"}
    assert Settings.load({}, environ=env).kafka_client == "confluent"


def _config(tmp_path, **over) -> ClientConfig:
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text("not read here\n")
    values = dict(
        bootstrap_servers=" a:9093, b:9093",
        security_protocol="SASL_SSL",
        ssl_cafile=str(tmp_path / "ca.pem"),
        ssl_certfile=str(tmp_path / "client.pem"),
        ssl_keyfile=str(tmp_path / "client.key"),
        ssl_password=Secret("key-pass"),
        ssl_check_hostname=False,
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="detector",
        sasl_password=Secret("sasl-pass"),
        kafka_options="consumer.group.instance.id=d-0;partition_assignment_strategy=cooperative-sticky;"
        "producer.linger_ms=7",
    )
    values.update(over)
    s = Settings(**values)
    return s.client_config(security={})  # kafka-python's options are not what is checked here


def test_security_settings_map_to_librdkafka_names_and_secrets_stay_out_of_reprs(tmp_path):
    cfg = _config(tmp_path)
    assert "key-pass" not in repr(cfg) and "sasl-pass" not in repr(cfg)
    out = confluent_config(cfg, cfg.extra["consumer"])
    assert out["bootstrap.servers"] == "a:9093,b:9093"
    assert out["security.protocol"] == "SASL_SSL"
    assert out["ssl.ca.location"] == str(tmp_path / "ca.pem")
    assert out["ssl.certificate.location"] == str(tmp_path / "client.pem")
    assert out["ssl.key.location"] == str(tmp_path / "client.key")
    assert out["ssl.key.password"] == "key-pass"
    assert out["ssl.endpoint.identification.algorithm"] == "none"
    assert (out["sasl.mechanism"], out["sasl.username"], out["sasl.password"]) == (
        "SCRAM-SHA-512",
        "detector",
        "sasl-pass",
    )
    assert out["group.instance.id"] == "d-0"
    assert out["partition.assignment.strategy"] == "cooperative-sticky"
    assert "linger.ms" not in out  # a producer option, not the consumer's
    assert confluent_config(cfg, cfg.extra["producer"])["linger.ms"] == 7


def test_without_tls_no_ssl_option_is_set(tmp_path):
    cfg = _config(
        tmp_path,
        security_protocol="PLAINTEXT",
        ssl_cafile="",
        ssl_certfile="",
        ssl_keyfile="",
        ssl_password=Secret(""),
        sasl_mechanism="",
        sasl_username="",
        sasl_password=Secret(""),
        kafka_options="",
    )
    out = confluent_config(cfg, {})
    assert not [k for k in out if k.startswith(("ssl.", "sasl."))]


def test_the_services_options_are_renamed_for_librdkafka_and_unknown_ones_fail_with_a_clear_error():
    cfg = Settings(bootstrap_servers="127.0.0.1:1").client_config(security={})
    consumer = make_consumer(
        "confluent",
        cfg,
        "g",
        {
            "fetch_max_wait_ms": 100,
            "max_poll_records": 500,
            "session_timeout_ms": 6000,
            "auto_offset_reset": "earliest",
        },
    )
    assert isinstance(consumer, ConfluentConsumer)
    consumer.close()
    producer = make_producer(
        "confluent",
        cfg,
        {"acks": "all", "compression_type": None, "max_request_size": 2_000_000, "max_block_ms": 1},
    )
    producer.close(0.1)
    with pytest.raises(ConfigError, match="confluent-kafka.*no.such"):
        make_consumer("confluent", cfg, "g", {"no_such_option": 1})


def test_a_delivery_is_failed_only_once_done_with_an_error():
    d = Delivery()
    assert not d.done and not d.failed
    d.error, d.done = "boom", True
    assert d.failed
