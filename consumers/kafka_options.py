"""Kafka client options passed through to the service's consumer and producer (``kafka_options``).

The setting holds ``KEY=VALUE`` entries separated by ``;`` or new lines (``--kafka-option`` may be given
several times). A key names a kafka-python client option, in its spelling (``group_instance_id``) or Kafka's
(``group.instance.id``); ``consumer.KEY`` or ``producer.KEY`` gives it to one client only, a bare key to
every client that has the option. Values are read as whole numbers, numbers, ``true``/``false`` or text;
``partition_assignment_strategy`` takes assignor names (``cooperative-sticky``, ``sticky``, ``range``,
``roundrobin``, comma-separated).

Options the service sets itself are refused with the setting to use instead, or why it is fixed (offsets
are committed by the service after a batch's alerts are acknowledged, so ``enable_auto_commit`` would break
at-least-once). Unknown keys are refused with the client's option names, so a typo is one clear line at
start rather than an option silently ignored. With ``kafka_client`` confluent, a key kafka-python does not
know is passed to librdkafka in Kafka's dotted spelling (``socket.keepalive.enable``, ``debug``), to both
clients unless prefixed; librdkafka refuses a name it does not know when the service starts.
"""

from __future__ import annotations

import re
from typing import Any

from flowsentinel.detector.errors import ConfigError

CLIENTS = ("consumer", "producer")
# consumer options about group membership: not given to a consumer outside the group (the feedback reader)
GROUP_ONLY_OPTIONS = frozenset({"group_instance_id", "partition_assignment_strategy"})

# options the service sets: the setting to use instead, or why the value is fixed
MANAGED = {
    "bootstrap_servers": "use bootstrap_servers",
    "client_id": "use client_id",
    "group_id": "use group",
    "auto_offset_reset": "use auto_offset_reset",
    "session_timeout_ms": "use session_timeout_ms",
    "heartbeat_interval_ms": "use heartbeat_interval_ms",
    "max_poll_interval_ms": "use max_poll_interval_ms",
    "max_poll_records": "use batch_size",
    "fetch_max_wait_ms": "use fetch_max_wait_ms",
    "compression_type": "use compression",
    "security_protocol": "use security_protocol",
    "sasl_mechanism": "use sasl_mechanism",
    "sasl_plain_username": "use sasl_username",
    "sasl_plain_password": "use sasl_password (from the environment or a config file)",
    "ssl_cafile": "use ssl_cafile",
    "ssl_certfile": "use ssl_certfile",
    "ssl_keyfile": "use ssl_keyfile",
    "ssl_password": "use ssl_password",
    "ssl_check_hostname": "use ssl_check_hostname",
    "ssl_context": "built from the ssl_* settings",
    "enable_auto_commit": "the service commits offsets itself, after a batch's output is acknowledged",
    "acks": "fixed at 'all': a batch's offsets are committed only once its output is on every replica",
    "max_request_size": "derived from dead_letter_max_bytes",
    "key_deserializer": "the service reads raw bytes",
    "value_deserializer": "the service reads raw bytes",
    "key_serializer": "the service writes bytes",
    "value_serializer": "the service writes bytes",
    "default_offset_commit_callback": "not a value a setting can hold",
    "selector": "not a value a setting can hold",
    "kafka_client": "not a value a setting can hold",
    "metric_reporters": "not a value a setting can hold",
    "sasl_oauth_token_provider": "not a value a setting can hold",
    "socket_options": "not a value a setting can hold",
    "partitioner": "not a value a setting can hold",
    "transactional_id": "the service does not produce in transactions",
}
_ENTRY = re.compile(r"\s*(?:(consumer|producer)\.)?([A-Za-z][A-Za-z0-9_.]*)\s*=(.*)", re.S)
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _known() -> dict[str, frozenset[str]]:
    from kafka import KafkaConsumer, KafkaProducer

    return {
        "consumer": frozenset(KafkaConsumer.DEFAULT_CONFIG),
        "producer": frozenset(KafkaProducer.DEFAULT_CONFIG),
    }


def _assignors(text: str) -> tuple[Any, ...]:
    from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
    from kafka.coordinator.assignors.range import RangePartitionAssignor
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor

    names = {
        "cooperative-sticky": CooperativeStickyAssignor,
        "sticky": StickyPartitionAssignor,
        "range": RangePartitionAssignor,
        "roundrobin": RoundRobinPartitionAssignor,
    }
    out = []
    for name in (n.strip().lower() for n in text.split(",")):
        if name not in names:
            raise ValueError(f"assignor {name!r}: use one of {', '.join(names)}")
        out.append(names[name])
    return tuple(out)


def _value(key: str, text: str) -> Any:
    text = text.strip()
    if key == "partition_assignment_strategy":
        return _assignors(text)
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_kafka_options(text: str, client: str = "kafka-python") -> dict[str, dict[str, Any]]:
    """``{"consumer": {...}, "producer": {...}}`` from the setting's text, for ``client`` (``kafka-python``
    or ``confluent``); ConfigError naming the entry."""
    known = _known()
    out: dict[str, dict[str, Any]] = {c: {} for c in CLIENTS}
    for raw in re.split(r"[;\n]", text):
        if not raw.strip():
            continue
        m = _ENTRY.fullmatch(raw)
        if m is None:
            raise ConfigError(f"setting kafka_options = {raw.strip()!r}: not KEY=VALUE")
        only, key = m.group(1), m.group(2).replace(".", "_").lower()
        where = f"setting kafka_options = {raw.strip()!r}: {key}"
        if key in MANAGED:
            raise ConfigError(f"{where} is set by the service: {MANAGED[key]}")
        clients = [only] if only else [c for c in CLIENTS if key in known[c]]
        if client == "confluent" and not any(key in known[c] for c in CLIENTS):
            clients = [only] if only else list(CLIENTS)  # librdkafka's own: it checks the name itself
        elif not clients or any(key not in known[c] for c in clients):
            target = only or "consumer or producer"
            raise ConfigError(f"{where} is not a {target} option of kafka-python (see its KafkaConsumer and "
                              "KafkaProducer documentation for the names)")  # fmt: skip
        try:
            value = _value(key, m.group(3))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for c in clients:
            out[c][key] = value
    return out
