"""The connection settings every command shares, on their own: from flags over FLOWSENTINEL_* variables,
checked once (the error names the setting, its value, masked where secret, and where it came from), turned
into client options once; detect's settings hold the same connection."""

from __future__ import annotations

from dataclasses import fields

import pytest

from flowsentinel.consumers.settings import Settings
from flowsentinel.detector.errors import ConfigError
from flowsentinel.kafka.conn import KafkaUnreachable
from flowsentinel.kafka.connection import CONNECTION_SETTINGS, Connection, client_security
from flowsentinel.kafka.secret import Secret


def test_flags_win_over_the_environment_and_other_keys_are_not_read():
    env = {
        "FLOWSENTINEL_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "FLOWSENTINEL_SASL_MECHANISM": "PLAIN",
        "FLOWSENTINEL_SASL_USERNAME": "from-env",
        "FLOWSENTINEL_SASL_PASSWORD": "pw",
        "FLOWSENTINEL_SSL_CHECK_HOSTNAME": "no",
        "FLOWSENTINEL_RISK": "not a connection setting",
    }
    c = Connection.from_flags({"sasl_username": "from-flag", "sasl_mechanism": None, "risk": "x"}, env)
    assert (c.security_protocol, c.sasl_mechanism, c.sasl_username) == (
        "SASL_PLAINTEXT",
        "PLAIN",
        "from-flag",
    )
    assert c.ssl_check_hostname is False and isinstance(c.sasl_password, Secret)
    assert "pw" not in repr(c) and c.options()["sasl_plain_password"] == "pw"
    assert type(c.options()["sasl_plain_password"]) is str  # the client gets plain text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bootstrap_servers": "kafka"}, "setting bootstrap_servers = 'kafka': expected HOST:PORT"),
        ({"kafka_client": "java"}, "setting kafka_client = 'java': must be one of"),
        ({"security_protocol": "TLS"}, "setting security_protocol = 'TLS': must be PLAINTEXT, SSL"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"},
            "setting sasl_username = '': is required",
        ),
        (
            {"sasl_password": "hunter2"},
            "setting sasl_password = ***: is set but security_protocol is PLAINTEXT",
        ),
        (
            {"ssl_cafile": "/no/such/ca.pem"},
            "setting ssl_cafile = '/no/such/ca.pem': is set but security_protocol",
        ),
        ({"client_id": "a\nb"}, "setting client_id = 'a\\nb': holds a control character"),
    ],
)
def test_a_bad_connection_is_one_error_naming_the_setting(values, message):
    with pytest.raises(ConfigError) as err:
        Connection(**values)
    assert message in str(err.value) and "hunter2" not in str(err.value)
    with pytest.raises(ConfigError) as same:  # detect's settings check the same way
        Settings(**values)
    assert str(same.value) == str(err.value)


def test_an_invalid_value_says_where_it_came_from():
    with pytest.raises(ConfigError, match=r"\(from environment FLOWSENTINEL_SECURITY_PROTOCOL\)"):
        Connection.from_flags({}, {"FLOWSENTINEL_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(
        ConfigError, match=r"ssl_check_hostname = 'maybe' \(from command line\): expected bool"
    ):
        Connection.from_flags({"ssl_check_hostname": "maybe"}, {})


def test_detects_settings_hold_the_same_connection():
    s = Settings(bootstrap_servers="k1:9092,k2:9092", client_id="det-1", kafka_client="kafka-python")
    assert isinstance(s, Connection) and set(CONNECTION_SETTINGS) <= {f.name for f in fields(s)}
    assert s.kafka_common()["bootstrap_servers"] == ["k1:9092", "k2:9092"]
    assert s.client_config(security={}).client_id == "det-1"


def test_client_security_probes_the_brokers_and_names_why_none_answers():
    with pytest.raises(KafkaUnreachable):
        client_security("127.0.0.1:1", {}, {})
