from __future__ import annotations

import json

import pytest

from flowsentinel.consumers.decode import InputMessage, decode_messages
from flowsentinel.consumers.settings import Settings
from flowsentinel.detector.errors import ConfigError
from flowsentinel.detector.schema import builtin_schema
from flowsentinel.kafka.secret import Secret
from flowsentinel.producers.synthetic import normal_training_records


def test_precedence_defaults_file_env_cli(tmp_path):
    cfg = tmp_path / "fs.toml"
    cfg.write_text('group = "from-file"\nrisk = 0.05\nbatch_size = 100\n')
    env = {"FLOWSENTINEL_RISK": "0.02", "FLOWSENTINEL_BATCH_SIZE": "300"}
    s = Settings.load({"batch_size": "700", "config": str(cfg)}, environ=env)
    assert (s.group, s.risk, s.batch_size) == ("from-file", 0.02, 700)
    assert s.input_topic == "flowsentinel.records"  # default


def test_input_topic_takes_several_topics_separated_by_commas():
    s = Settings.load({"input_topic": "site-a, site-b"}, environ={})
    assert s.input_topics == ("site-a", "site-b")
    assert Settings().input_topics == ("flowsentinel.records",)
    for value, message in [
        ("a,,b", r"input_topic = 'a,,b': a Kafka topic name is .* \(several: separated by commas\)"),
        ("a,b,a", r"input_topic = 'a,b,a': names a topic twice"),
        (
            "a,flowsentinel.alerts",
            r"input_topic = 'a,flowsentinel.alerts': includes the alerts_topic: .*must all differ",
        ),
    ]:
        with pytest.raises(ConfigError, match=message):
            Settings.load({"input_topic": value}, environ={})


def test_errors_name_setting_value_and_source(tmp_path):
    with pytest.raises(ConfigError, match=r"setting risk = 'x' \(from environment FLOWSENTINEL_RISK\)"):
        Settings.load({}, environ={"FLOWSENTINEL_RISK": "x"})
    with pytest.raises(ConfigError, match=r"setting risk = 0.7: must be in \(0, 0.5\) \(from command line\)"):
        Settings.load({"risk": "0.7"}, environ={})
    with pytest.raises(ConfigError, match="unknown setting 'colour'"):
        (tmp_path / "c.toml").write_text("colour = 1\n")
        Settings.load({"config": str(tmp_path / "c.toml")}, environ={})
    with pytest.raises(
        ConfigError, match="setting input_topic = 'a': includes the alerts_topic: .*must all differ"
    ):
        Settings(input_topic="a", alerts_topic="a")
    with pytest.raises(ConfigError, match="setting dead_letter_topic = 'x': is the alerts_topic too"):
        Settings(alerts_topic="x", dead_letter_topic="x")
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        Settings(security_protocol="SASL_SSL")


def test_secrets_are_masked_but_passed_through():
    s = Settings.load({"sasl_password": "hunter2", "sasl_mechanism": "PLAIN", "security_protocol": "SASL_SSL",
                       "sasl_username": "svc"},
                      environ={})  # fmt: skip
    assert isinstance(s.sasl_password, Secret)
    assert s.effective()["sasl_password"] == "***"
    assert "hunter2" not in repr(s)
    assert s.kafka_common()["sasl_plain_password"] == "hunter2"
    assert type(s.kafka_common()["sasl_plain_password"]) is str  # the client gets plain text


def test_a_secret_never_shows_itself_as_text():
    """str(), %-formatting, f-strings, str.format and logging show the mask; only reveal() gives the value."""
    import logging

    secret = Secret("hunter2")
    shown = [str(secret), "%s" % secret, f"{secret}", f"{secret:>10}", "{}".format(secret), repr(secret),  # noqa: UP031, UP032
             logging.LogRecord("x", logging.INFO, "", 0, "password %s", (secret,), None).getMessage()]  # fmt: skip
    assert not any("hunter2" in text for text in shown), shown
    assert secret.reveal() == "hunter2" and type(secret.reveal()) is str
    assert str(Secret("")) == "" and secret == "hunter2"  # still compares as its text


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


@pytest.mark.parametrize(
    "values, message",
    [
        ({"security_protocol": "TLS"}, "security_protocol = 'TLS': must be PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI", "sasl_username": "u"},
         "sasl_mechanism = 'GSSAPI': must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN"}, "sasl_username = '': is required"),
        ({"sasl_mechanism": "PLAIN"}, "sasl_mechanism = 'PLAIN': is set but security_protocol is PLAINTEXT"),
        ({"sasl_password": "x"}, r"sasl_password = \*\*\*: is set but security_protocol is PLAINTEXT"),
        ({"ssl_cafile": "ca.pem"}, "ssl_cafile = 'ca.pem': is set but security_protocol is PLAINTEXT"),
        ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"}, "ssl_cafile = '/no/such/ca.pem': no such file"),
    ],
)  # fmt: skip
def test_kafka_security_settings_are_checked_with_one_line(values, message):
    with pytest.raises(ConfigError, match=message):
        Settings.load(values, environ={})


def test_tls_files_that_do_not_load_name_the_setting(tmp_path):

    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="ssl_cafile = .*junk.pem.*cannot load CA certificates"):
        Settings(security_protocol="SSL", ssl_cafile=str(junk)).options()
    with pytest.raises(ConfigError, match="ssl_certfile = .*junk.pem.*cannot load the client certificate"):
        Settings(security_protocol="SSL", ssl_certfile=str(junk)).options()
    with pytest.raises(ConfigError, match="ssl_keyfile = .*needs ssl_certfile"):
        Settings(security_protocol="SSL", ssl_keyfile=str(junk))
    opts = Settings(security_protocol="SSL", ssl_check_hostname=False).options()
    assert opts["ssl_context"].check_hostname is False  # the system CAs, no hostname check


def test_boolean_settings_can_be_turned_off_from_the_command_line():
    from flowsentinel.cli import build_parser

    args = build_parser().parse_args(["detect", "--no-ssl-check-hostname", "--allow-extra-fields"])
    assert (args.ssl_check_hostname, args.allow_extra_fields) == (False, True)
    args = build_parser().parse_args(["produce", "synthetic", "--security-protocol", "SSL"])
    assert (args.security_protocol, args.ssl_check_hostname) == ("SSL", None)  # unset: the default holds


def test_a_compression_codec_that_is_not_installed_is_one_line(monkeypatch):
    from kafka import codec

    monkeypatch.setattr(codec, "has_snappy", lambda: False)  # whether or not it is installed here
    with pytest.raises(
        ConfigError, match=r"compression = 'snappy': the snappy codec is not installed \(pip install"
    ):
        Settings.load({"compression": "snappy"}, environ={})
    monkeypatch.setattr(codec, "has_snappy", lambda: True)
    assert Settings.load({"compression": "snappy"}, environ={}).compression == "snappy"


@pytest.mark.parametrize(
    "value",
    [
        b"[" * 60_000,  # deeper than Python's recursion limit
        b'{"schema": "kdd", "src_bytes": ' + b"9" * 5_000 + b"}",  # more digits than int() takes
    ],
    ids=["deep-nesting", "huge-integer"],
)
def test_json_that_makes_the_parser_raise_is_not_json(value):
    """Both once escaped decode_messages: one such message stopped the service, and again at every restart."""
    batch, kept, dead = decode_messages([msg(value)], builtin_schema("kdd"), max_bytes=100_000)
    assert len(batch) == 0 and not kept
    assert [d.reason for d in dead] == ["not_json"]


@pytest.mark.parametrize(("field", "reason"), [("src_bytes", "non_finite"), ("ts", "bad_timestamp")])
@pytest.mark.parametrize("sign", ["", "-"])
def test_an_integer_beyond_float_range_is_judged_by_its_field_not_isolated(field, reason, sign):
    """JSON allows 400 digits, Python's json parses them to an int that numpy and pandas cannot convert:
    such a value once made parse_table raise, so the service's guard dead-lettered it as 'invalid' after
    decoding each message of the batch alone. It is infinite, as the text '1e999' is."""
    schema = builtin_schema("kdd")
    good = [dict(r, ts=1.7e9 + i) for i, r in enumerate(normal_training_records(3, seed=1))]
    huge = json.dumps(good[1]).replace(f'"{field}": ', f'"{field}": {sign}1{"0" * 400} and ', 1)
    huge = huge.replace(" and " + json.dumps(good[1][field]), "", 1)
    assert len(huge) > 400 and json.loads(huge)[field] == int(f"{sign}1{'0' * 400}")
    messages = [
        msg(json.dumps(good[0]).encode(), 0),
        msg(huge.encode(), 1),
        msg(json.dumps(good[2]).encode(), 2),
    ]
    batch, kept, dead = decode_messages(messages, schema, max_bytes=10_000)
    assert [m.offset for m in kept] == [0, 2] and len(batch) == 2
    assert [(d.message.offset, d.reason) for d in dead] == [(1, reason)]
    assert f"field '{field}' = {sign}1000" in dead[0].detail and "(40" in dead[0].detail
    assert len(dead[0].detail) < 250


def test_a_message_that_makes_decoding_raise_is_isolated_and_the_rest_scored(tiny_model, monkeypatch):
    """The crash-loop breaker behind decode_messages: whatever raises there is dead-lettered as internal_error,
    alone (simulated here by a decoder that fails on one message; no real input is known to do it)."""
    from prometheus_client import CollectorRegistry

    import flowsentinel.consumers.service as service_module
    from flowsentinel.consumers.metrics import Metrics
    from flowsentinel.consumers.service import DetectorService

    real = service_module.decode_messages

    def flaky(messages, *args, **kwargs):
        if any(m.value == b"boom" for m in messages):
            raise RuntimeError("decoder defect")
        return real(messages, *args, **kwargs)

    monkeypatch.setattr(service_module, "decode_messages", flaky)
    service = DetectorService(Settings(state_dir=""), Metrics.create(CollectorRegistry()), model=tiny_model)
    from flowsentinel.producers.publisher import batch_to_records
    from tests.support import toy_batch

    good = [json.dumps(r).encode() for r in batch_to_records(toy_batch(4, seed=5))]  # the toy model's schema
    messages = [msg(v, i) for i, v in enumerate([good[0], good[1], b"boom", good[2], b"{", good[3]])]
    dead = service.process(messages).dead_letters
    assert service.scored == 4
    assert [(d.message.offset, d.reason) for d in dead] == [(2, "internal_error"), (4, "not_json")]
    assert "raised RuntimeError: decoder defect" in dead[0].detail


def test_revoking_one_topics_partition_drops_its_windows_and_no_other_topics(tiny_model):
    """Two input topics both have a partition 0: the windows of the same key in each are apart, and a
    revoked (topic, partition) takes only its own."""
    from prometheus_client import CollectorRegistry

    from flowsentinel.consumers.metrics import Metrics
    from flowsentinel.consumers.service import DetectorService
    from flowsentinel.producers.publisher import batch_to_records
    from tests.support import toy_batch

    service = DetectorService(Settings(state_dir=""), Metrics.create(CollectorRegistry()), model=tiny_model)
    values = [json.dumps(r).encode() for r in batch_to_records(toy_batch(40, seed=5))]
    service.process([InputMessage(t, 0, i, None, v, 0) for t in ("a", "b") for i, v in enumerate(values)])
    windows = service.detector.windows
    keys = set(windows.keys())
    assert {k[:2] for k in keys} == {("a", 0), ("b", 0)}
    assert {k[2] for k in keys if k[0] == "a"} == {k[2] for k in keys if k[0] == "b"}  # the same hosts
    service.episodes.open.clear()  # (no producer here to publish their closing messages to)
    service.on_revoked({("b", 0)})
    assert set(windows.keys()) == {k for k in keys if k[0] == "a"}


def test_a_reload_of_the_same_model_keeps_the_live_state_and_a_switch_back_restores_it(tiny_model, tmp_path):
    """A SIGHUP, or a deployment that rewrites the same model files, used to reinstall the model: the adapted
    threshold went back to its calibration start, every window was dropped and every open episode closed (to
    reopen at once). Now the same version keeps it all; a new version snapshots the old one's threshold
    first, so switching back restores it."""
    from prometheus_client import CollectorRegistry

    from flowsentinel.consumers.metrics import Metrics
    from flowsentinel.consumers.service import DetectorService
    from flowsentinel.detector.artifact import save_artifact
    from flowsentinel.detector.train import TrainConfig, train
    from flowsentinel.producers.publisher import batch_to_records
    from tests.support import toy_batch

    live = tmp_path / "model"
    save_artifact(tiny_model, live)
    registry = CollectorRegistry()
    service = DetectorService(
        Settings(model=str(live), state_dir=str(tmp_path / "state")), Metrics.create(registry)
    )
    values = [json.dumps(r).encode() for r in batch_to_records(toy_batch(300, seed=5))]
    service.process([msg(v, i) for i, v in enumerate(values)])
    detector, seen = service.detector, service.detector.thresholder.seen

    def reload() -> None:
        service.episodes.open.clear()  # (no producer here to publish their closing messages to)
        service.reload_requested.set()  # as SIGHUP does
        service.check_model()

    save_artifact(tiny_model, live)  # the same files again
    reload()
    assert service.detector is detector and len(detector.windows) > 0
    assert registry.get_sample_value("flowsentinel_model_reloads_total", {"result": "unchanged"}) == 1
    other = train(toy_batch(500, seed=2), TrainConfig(hidden=8, latent=4, members=1, epochs=1, seed=9),
                  progress=False)  # fmt: skip
    save_artifact(other, live)
    reload()
    assert service.model.version == other.version != tiny_model.version
    assert service.detector.thresholder.seen != seen
    save_artifact(tiny_model, live)
    reload()
    assert service.model.version == tiny_model.version and service.detector.thresholder.seen == seen
    assert registry.get_sample_value("flowsentinel_model_reloads_total", {"result": "ok"}) == 2


def test_long_entity_keys_are_bounded_and_stay_distinct():
    """A key is held per window and sent in alerts: 10,000-character keys must not cost 10 KB each."""
    good = normal_training_records(2, seed=6)
    values = [json.dumps(dict(r, src_host=c * 10_000)).encode() for r, c in zip(good, "ab", strict=True)]
    batch, kept, dead = decode_messages([msg(v, i) for i, v in enumerate(values)], builtin_schema("kdd"),
                                        max_bytes=100_000)  # fmt: skip
    assert not dead and len(kept) == 2
    assert [len(k) for k in batch.keys] == [218, 218] and batch.keys[0] != batch.keys[1]
    assert batch.keys[0].startswith("a" * 200)


def test_a_metrics_port_in_use_is_one_line_naming_it():
    import socket

    from prometheus_client import CollectorRegistry

    from flowsentinel.consumers.http import HealthServer
    from flowsentinel.consumers.service import LoopState

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match=rf"metrics_port = {port}: .*in use \(another instance\?"):
            HealthServer(CollectorRegistry(), LoopState(), host="127.0.0.1", port=port)


def test_a_state_dir_that_cannot_be_written_is_one_line_at_start_and_a_warning_later(
    tiny_model, tmp_path, caplog
):
    from prometheus_client import CollectorRegistry

    from flowsentinel.consumers.metrics import Metrics
    from flowsentinel.consumers.service import DetectorService

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(
        ConfigError, match=r"setting state_dir = '.*a-file/state': cannot write threshold snapshots"
    ):
        DetectorService(
            Settings(state_dir=str(blocker / "state")), Metrics.create(CollectorRegistry()), model=tiny_model
        )
    state = tmp_path / "state"
    registry = CollectorRegistry()
    service = DetectorService(Settings(state_dir=str(state)), Metrics.create(registry), model=tiny_model)
    state.rmdir()
    state.write_text("the directory went away and a file took its place")  # as a full disk would fail
    service.snapshot_threshold()  # does not raise: scoring goes on
    assert "could not save the threshold snapshot" in caplog.text
    assert registry.get_sample_value("flowsentinel_threshold_snapshot_failures_total") == 1


@pytest.mark.parametrize(
    "field, value, reason",
    [
        ("service", ["http"], "wrong_type"),  # once a SchemaError out of decode_messages for the whole batch
        ("service", {"name": "http"}, "wrong_type"),  # once accepted as the category "{'name': 'http'}"
        ("src_bytes", [1, 2], "wrong_type"),
        ("src_host", {"ip": "10.0.0.1"}, "wrong_type"),
        ("label", ["normal"], "wrong_type"),
        ("ts", [1], "bad_timestamp"),
    ],
)
def test_a_json_array_or_object_where_a_field_wants_one_value_rejects_that_record_only(field, value, reason):
    good = normal_training_records(3, seed=8)
    values = [json.dumps(good[0]), json.dumps(dict(good[1], **{field: value})), json.dumps(good[2])]
    batch, kept, dead = decode_messages([msg(v.encode(), i) for i, v in enumerate(values)], builtin_schema("kdd"),
                                        max_bytes=100_000)  # fmt: skip
    assert [m.offset for m in kept] == [0, 2] and len(batch) == 2
    assert [(d.message.offset, d.reason) for d in dead] == [(1, reason)]
    assert f"field '{field}'" in dead[0].detail


def test_settling_the_heap_frees_old_cycles_and_freezes_the_rest():
    """At start and after a model reload the service freezes its long-lived objects; what was garbage by
    then (an old model's reference cycles) must be freed first, not frozen for good."""
    import gc
    import weakref

    from flowsentinel.consumers.service import settle_heap

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the cyclic collector frees it
    gone = weakref.ref(a)
    del a, b
    try:
        settle_heap()
        assert gone() is None
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


@pytest.mark.parametrize("least", ["low", "critical"])
def test_process_is_the_loop_without_kafka(tiny_model, least):
    """``DetectorService.process``: a batch in, its episode events, dead letters and the Kafka messages the
    loop would produce out — the alert messages at or above min_publish_severity, then the dead letters."""
    from prometheus_client import CollectorRegistry

    from flowsentinel.consumers.metrics import Metrics
    from flowsentinel.consumers.service import DetectorService
    from flowsentinel.producers.publisher import batch_to_records
    from tests.support import toy_batch

    settings = Settings(state_dir="", risk=0.05, min_publish_severity=least)
    service = DetectorService(settings, Metrics.create(CollectorRegistry()), model=tiny_model)
    records = [json.dumps(r).encode() for r in batch_to_records(toy_batch(300, seed=7, attack_rate=0.2))]
    values = [*records[:150], b"{", b"", *records[150:]]
    done = service.process([InputMessage("in", 0, i, None, v, 0) for i, v in enumerate(values)])
    assert service.scored == 300 and [d.reason for d in done.dead_letters] == ["not_json", "empty"]
    assert done.events and {e["event"] for e in done.events} <= {"opened", "updated", "closed"}
    alerts = [m for m in done.outgoing if m[0] == settings.alerts_topic]
    dead = [m for m in done.outgoing if m[0] == settings.dead_letter_topic]
    shown = [e for e in done.events if least == "low" or e["max_severity"] == "critical"]
    assert len(alerts) == len(shown) and [json.loads(m[2])["id"] for m in alerts] == [e["id"] for e in shown]
    assert [dict(m[3])["flowsentinel.error.reason"] for m in dead] == [b"not_json", b"empty"]
    assert done.outgoing == alerts + dead
