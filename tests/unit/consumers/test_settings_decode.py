from __future__ import annotations

import json

import pytest

from consumers.decode import InputMessage, decode_messages
from consumers.settings import Secret, Settings
from detector.errors import ConfigError
from detector.schema import builtin_schema
from producers.synthetic import normal_training_records


def test_precedence_defaults_file_env_cli(tmp_path):
    cfg = tmp_path / "fs.toml"
    cfg.write_text('group = "from-file"\nrisk = 0.05\nbatch_size = 100\n')
    env = {"FLOWSENTINEL_RISK": "0.02", "FLOWSENTINEL_BATCH_SIZE": "300"}
    s = Settings.load({"batch_size": "700", "config": str(cfg)}, environ=env)
    assert (s.group, s.risk, s.batch_size) == ("from-file", 0.02, 700)
    assert s.input_topic == "flowsentinel.records"  # default


def test_errors_name_setting_value_and_source(tmp_path):
    with pytest.raises(ConfigError, match=r"setting risk = 'x' \(from environment FLOWSENTINEL_RISK\)"):
        Settings.load({}, environ={"FLOWSENTINEL_RISK": "x"})
    with pytest.raises(ConfigError, match=r"setting risk = 0.7: must be in \(0, 0.5\) \(from command line\)"):
        Settings.load({"risk": "0.7"}, environ={})
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        (tmp_path / "c.toml").write_text("colour = 1\n")
        Settings.load({"config": str(tmp_path / "c.toml")}, environ={})
    with pytest.raises(ConfigError, match="must all differ"):
        Settings(input_topic="a", alerts_topic="a")
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        Settings(security_protocol="SASL_SSL")


def test_secrets_are_masked_but_passed_through():
    s = Settings.load({"sasl_password": "hunter2", "sasl_mechanism": "PLAIN", "security_protocol": "SASL_SSL"},
                      environ={})  # fmt: skip
    assert isinstance(s.sasl_password, Secret)
    assert s.effective()["sasl_password"] == "***"
    assert "hunter2" not in repr(s)
    assert s.kafka_common()["sasl_plain_password"] == "hunter2"


def msg(value: bytes, offset: int = 0) -> InputMessage:
    return InputMessage("in", 0, offset, None, value, 0)


def test_decode_sorts_good_from_bad_with_reason_codes():
    schema = builtin_schema("kdd")
    good = normal_training_records(3, seed=1)
    bad_value = dict(good[0], src_bytes=-1)
    messages = [msg(json.dumps(good[0]).encode(), 0), msg(b"{", 1), msg(json.dumps(bad_value).encode(), 2),
                msg(json.dumps(good[1]).encode(), 3), msg(b"x" * 100, 4)]  # fmt: skip
    batch, kept, dead = decode_messages(messages, schema, max_bytes=10_000)
    assert [m.offset for m in kept] == [0, 3] and len(batch) == 2
    assert [(d.message.offset, d.reason) for d in dead] == [
        (1, "not_json"),
        (2, "negative_value"),
        (4, "not_json"),
    ]
    assert dead[1].detail.startswith("in[0]@2: field 'src_bytes' = -1")
    _, _, dead = decode_messages([msg(b"x" * 100)], schema, max_bytes=50)
    assert dead[0].reason == "oversized"
