"""The Kafka clients the service uses, behind one small interface, in two implementations.

- ``kafka-python``: pure Python, the project's named dependency, always there.
- ``confluent``: confluent-kafka, a binding of librdkafka (C). Fetching, decompressing and splitting
  record batches happens in C: a bare consumer reads 88,000 records/s here against kafka-python's 61,000,
  and ``detect`` on it 1.35 times kafka-python's rate (docs/figures.md, 2026-12-04).

``kafka_client = auto`` (the default) takes confluent-kafka where it is installed, else kafka-python.
Both give the service the same things: a group consumer whose rebalance callbacks run inside
:meth:`GroupConsumer.poll`, offsets committed with metadata only when the service says so, a consumer
outside the group for the alerts and feedback topics, and a producer whose every send returns a
:class:`Delivery` the service waits on before it commits. Failures of the outside world are
:class:`KafkaFailure` (retried or waited out by the service), a commit the group refused after a
rebalance is :class:`CommitRejected`, and a client setting that cannot work is a ConfigError.

The ``kafka_options`` setting names options in kafka-python's spelling or Kafka's
(:mod:`consumers.kafka_options`); for confluent-kafka they are passed in Kafka's dotted spelling, which is
librdkafka's for the options both share (an option librdkafka lacks is a ConfigError at start, naming it).
"""

from __future__ import annotations

import importlib.util
import logging
import operator
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from flowsentinel.detector.errors import ConfigError, FlowSentinelError

log = logging.getLogger(__name__)

KAFKA_CLIENTS = ("auto", "confluent", "kafka-python")


class InputMessage(NamedTuple):
    """One consumed Kafka message (a named tuple: the service makes one per record, so it must be cheap)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int

    @property
    def position(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


class Partition(NamedTuple):
    topic: str
    partition: int


class Committed(NamedTuple):
    """A committed (or to-be-committed) offset, with the metadata string stored beside it."""

    offset: int
    metadata: str


class KafkaFailure(FlowSentinelError):
    """A call to Kafka failed (an outage, a time-out, a broker error); trying again may succeed."""

    retriable = True


class CommitRejected(KafkaFailure):
    """The group rebalanced: the partitions may be another member's now, and will be read again there."""


class Delivery:
    """One sent message: ``done`` once the broker acknowledged it or the client gave up (``error``)."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: str = ""

    @property
    def failed(self) -> bool:
        return self.done and bool(self.error)


Rebalance = Callable[[set[Partition]], None]
Polled = dict[Partition, list[InputMessage]]


class GroupConsumer(Protocol):
    """A consumer in the service's group (or, built with ``group=None``, outside any group)."""

    def subscribe(self, topics: list[str], on_assigned: Rebalance, on_revoked: Rebalance) -> None: ...
    def poll(self, timeout_s: float, max_records: int) -> Polled: ...
    def assignment(self) -> set[Partition]: ...
    def assign(self, partitions: Mapping[Partition, int | None]) -> None: ...
    def committed(self, tp: Partition) -> Committed | None: ...
    def commit(self, offsets: Mapping[Partition, Committed]) -> None: ...
    def position(self, tp: Partition) -> int | None: ...
    def highwater(self, tp: Partition) -> int | None: ...
    def topics(self) -> set[str]: ...
    def partitions_for(self, topic: str) -> set[int]: ...
    def coordinator_alive(self, within_s: float) -> bool: ...
    def close(self) -> None: ...


class Producer(Protocol):
    def send(self, topic: str, key: bytes | None, value: bytes, headers: Any) -> Delivery: ...
    def flush(self, timeout_s: float) -> None: ...
    def close(self, timeout_s: float) -> None: ...


def confluent_available() -> bool:
    return importlib.util.find_spec("confluent_kafka") is not None


def resolve_client(choice: str) -> str:
    """``confluent`` or ``kafka-python`` for the setting's value; ConfigError if confluent-kafka is asked
    for and not installed."""
    if choice == "auto":
        return "confluent" if confluent_available() else "kafka-python"
    if choice == "confluent" and not confluent_available():
        raise ConfigError(
            "setting kafka_client = 'confluent': confluent-kafka is not installed "
            "(pip install confluent-kafka, or kafka_client = kafka-python)"
        )
    return choice


class ClientConfig(NamedTuple):
    """What both implementations are built from (the service's settings, already checked)."""

    bootstrap_servers: str
    client_id: str
    security: dict[
        str, Any
    ]  # kafka-python's options for them (flowsentinel.kafka.connection.Connection.options)
    # the same as settings: protocol, file paths, mechanism, user; passwords as Secrets (never in a repr)
    security_files: dict[str, Any]
    extra: dict[str, dict[str, Any]]  # kafka_options, parsed: {"consumer": {...}, "producer": {...}}


# ---------------------------------------------------------------------------------------------- kafka-python
# a kafka-python ConsumerRecord's fields, in InputMessage's order
_RECORD_FIELDS = operator.attrgetter("topic", "partition", "offset", "key", "value", "timestamp")


def _kafka_python_common(cfg: ClientConfig) -> dict[str, Any]:
    return {
        **cfg.security,
        "bootstrap_servers": [s.strip() for s in cfg.bootstrap_servers.split(",")],
        "client_id": cfg.client_id,
    }


class KafkaPythonConsumer:
    def __init__(self, cfg: ClientConfig, group: str | None, options: dict[str, Any]) -> None:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaConfigurationError, KafkaError

        self._errors = KafkaError
        try:
            self._c = KafkaConsumer(**{
                **_kafka_python_common(cfg), "group_id": group, "enable_auto_commit": False, **options
            })  # fmt: skip
        except KafkaConfigurationError as exc:
            raise ConfigError(f"Kafka client settings: {exc}") from None
        except KafkaError as exc:
            raise KafkaFailure(str(exc)) from None

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kafka.errors import CommitFailedError

        try:
            return fn(*args, **kwargs)
        except CommitFailedError as exc:
            raise CommitRejected(str(exc)) from None
        except self._errors as exc:
            raise KafkaFailure(f"{type(exc).__name__}: {exc}") from None

    def subscribe(self, topics: list[str], on_assigned: Rebalance, on_revoked: Rebalance) -> None:
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        class _Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Any) -> None:
                on_revoked({Partition(tp.topic, tp.partition) for tp in revoked})

            def on_partitions_assigned(self, assigned: Any) -> None:
                on_assigned({Partition(tp.topic, tp.partition) for tp in assigned})

        self._call(self._c.subscribe, topics, listener=_Listener())

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        polled = self._call(self._c.poll, timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return {  # one message per record, made in C (map, attrgetter, _make): this runs per record
            Partition(tp.topic, tp.partition): list(map(InputMessage._make, map(_RECORD_FIELDS, records)))
            for tp, records in polled.items()
        }

    def assignment(self) -> set[Partition]:
        return {Partition(tp.topic, tp.partition) for tp in self._c.assignment()}

    def assign(self, partitions: Mapping[Partition, int | None]) -> None:
        from kafka import TopicPartition

        self._call(self._c.assign, [TopicPartition(*tp) for tp in partitions])
        for tp, offset in partitions.items():
            if offset is not None:
                self._call(self._c.seek, TopicPartition(*tp), offset)

    def committed(self, tp: Partition) -> Committed | None:
        from kafka import TopicPartition

        got = self._call(self._c.committed, TopicPartition(*tp), metadata=True)
        offset = getattr(got, "offset", None)
        if offset is None or offset < 0:
            return None
        return Committed(offset, getattr(got, "metadata", None) or "")

    def commit(self, offsets: Mapping[Partition, Committed]) -> None:
        from kafka.structs import OffsetAndMetadata, TopicPartition

        self._call(
            self._c.commit,
            {TopicPartition(*tp): OffsetAndMetadata(c.offset, c.metadata, -1) for tp, c in offsets.items()},
            timeout_ms=5_000,
        )

    def position(self, tp: Partition) -> int | None:
        from kafka import TopicPartition

        try:
            pos = self._c.position(TopicPartition(*tp), timeout_ms=0)
        except (self._errors, TypeError):
            return None
        return pos if isinstance(pos, int) else None

    def highwater(self, tp: Partition) -> int | None:
        from kafka import TopicPartition

        hw = self._c.highwater(TopicPartition(*tp))
        return hw if isinstance(hw, int) else None

    def topics(self) -> set[str]:
        return set(self._call(self._c.topics))

    def partitions_for(self, topic: str) -> set[int]:
        return set(self._call(self._c.partitions_for_topic, topic) or ())

    def coordinator_alive(self, within_s: float) -> bool:
        groups = self._c.metrics()
        ago = groups.get("consumer-coordinator-metrics", {}).get("last-heartbeat-seconds-ago", float("inf"))
        if ago == float("inf"):  # not in the group yet: alive if we got an assignment
            return bool(self._c.assignment())
        return bool(ago < within_s)

    def close(self) -> None:
        self._c.close(autocommit=False)


class KafkaPythonProducer:
    def __init__(self, cfg: ClientConfig, options: dict[str, Any]) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaConfigurationError, KafkaError

        self._errors = KafkaError
        try:
            self._p = KafkaProducer(**{**_kafka_python_common(cfg), **options})
        except KafkaConfigurationError as exc:
            raise ConfigError(f"Kafka client settings: {exc}") from None
        except KafkaError as exc:
            raise KafkaFailure(str(exc)) from None

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Any) -> Delivery:
        d = Delivery()

        def ok(_: Any) -> None:
            d.done = True

        def failed(exc: BaseException) -> None:
            d.error = f"{type(exc).__name__}: {exc}"
            d.done = True

        try:
            fut = self._p.send(topic, key=key, value=value, headers=headers)
        except self._errors as exc:  # buffer full / metadata unavailable during an outage
            raise KafkaFailure(f"{type(exc).__name__}: {exc}") from None
        fut.add_callback(ok)
        fut.add_errback(failed)
        return d

    def flush(self, timeout_s: float) -> None:
        try:
            self._p.flush(timeout=timeout_s)
        except self._errors as exc:
            log.debug("flush not complete: %s", exc)

    def close(self, timeout_s: float) -> None:
        self._p.close(timeout=timeout_s)


# ---------------------------------------------------------------------------------------------- confluent
# kafka-python's assignor names → librdkafka's partition.assignment.strategy values
_ASSIGNORS = {
    "CooperativeStickyAssignor": "cooperative-sticky",
    "StickyPartitionAssignor": "cooperative-sticky",  # librdkafka has no eager sticky
    "RangePartitionAssignor": "range",
    "RoundRobinPartitionAssignor": "roundrobin",
}
# errors after which a commit cannot succeed for this member: the group moved on
_REBALANCED = ("REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "FENCED_INSTANCE_ID")


def _reveal(secret: Any) -> str:
    """The text of a :class:`flowsentinel.kafka.secret.Secret` (or of a plain string)."""
    return str(secret.reveal()) if hasattr(secret, "reveal") else str(secret)


def confluent_config(cfg: ClientConfig, options: Mapping[str, Any]) -> dict[str, Any]:
    """librdkafka configuration from the connection settings and kafka_options (kafka-python spelling)."""
    sec = cfg.security_files
    out: dict[str, Any] = {
        "bootstrap.servers": ",".join(s.strip() for s in cfg.bootstrap_servers.split(",")),
        "client.id": cfg.client_id,
        "security.protocol": sec["security_protocol"],
        "logger": logging.getLogger("flowsentinel.librdkafka"),
    }
    if sec["security_protocol"] in ("SSL", "SASL_SSL"):
        if sec["ssl_cafile"]:
            out["ssl.ca.location"] = sec["ssl_cafile"]
        else:
            out["ssl.ca.location"] = "probe"  # the system's CAs, as kafka-python's context loads them
        if sec["ssl_certfile"]:
            out["ssl.certificate.location"] = sec["ssl_certfile"]
            out["ssl.key.location"] = sec["ssl_keyfile"] or sec["ssl_certfile"]
        if sec["ssl_password"]:
            out["ssl.key.password"] = _reveal(sec["ssl_password"])
        out["ssl.endpoint.identification.algorithm"] = "https" if sec["ssl_check_hostname"] else "none"
    if sec["sasl_mechanism"]:
        out["sasl.mechanism"] = sec["sasl_mechanism"]
        out["sasl.username"] = sec["sasl_username"]
        out["sasl.password"] = _reveal(sec["sasl_password"])
    return out | librdkafka_options(options)


def librdkafka_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """Client options in kafka-python's spelling (the service's own and kafka_options' alike) as librdkafka
    names and values: renamed where the names differ, assignors by name, no codec as "none", and the
    options librdkafka has no counterpart for left out."""
    out: dict[str, Any] = {}
    for key, value in options.items():
        if key in _KAFKA_PYTHON_ONLY:
            continue
        if key == "partition_assignment_strategy":
            value = ",".join(dict.fromkeys(_ASSIGNORS.get(a.__name__, a.__name__) for a in value))
        elif key == "compression_type" and value is None:
            value = "none"
        out[_RENAMED.get(key, key).replace("_", ".")] = value
    return out


def _failure(exc: Exception) -> KafkaFailure:
    """A confluent-kafka KafkaException as the layer's failure (CommitRejected after a rebalance)."""
    err: Any = exc.args[0] if exc.args else None
    name = err.name() if hasattr(err, "name") else ""
    text = err.str() if hasattr(err, "str") else str(exc)
    if name in _REBALANCED:
        return CommitRejected(f"{name}: {text}")
    return KafkaFailure(f"{name or 'KafkaException'}: {text}")


def _confluent(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from confluent_kafka import KafkaException

    try:
        return fn(*args, **kwargs)
    except KafkaException as exc:
        raise _failure(exc) from None
    except BufferError as exc:
        raise KafkaFailure(f"the producer's queue is full: {exc}") from None


def _build(
    kind: str, config: dict[str, Any], refused: str = "Kafka client settings (confluent-kafka)"
) -> Any:
    """A confluent-kafka ``Consumer`` or ``Producer``; a configuration librdkafka refuses is a ConfigError
    (``refused``: what its message starts with)."""
    import confluent_kafka

    try:
        return getattr(confluent_kafka, kind)(config)
    except (confluent_kafka.KafkaException, ValueError, TypeError) as exc:
        text = exc.args[0].str() if exc.args and hasattr(exc.args[0], "str") else str(exc)
        raise ConfigError(f"{refused}: {text}") from None


class ConfluentConsumer:
    def __init__(self, cfg: ClientConfig, group: str | None, options: dict[str, Any]) -> None:
        self._alive_at = 0.0  # when the statistics last showed a broker answering
        self._stats_seen = False
        config = confluent_config(cfg, options)
        # a consumer outside the group still needs a group id to exist; it never joins or commits
        config["group.id"] = group or f"{cfg.client_id}.reader"
        config["enable.auto.commit"] = False
        config["enable.auto.offset.store"] = False
        config.setdefault("statistics.interval.ms", 1000)
        config["stats_cb"] = self._on_stats
        self._c = _build("Consumer", config)
        self._assigned: set[Partition] = set()

    def _on_stats(self, text: str) -> None:
        import json

        self._stats_seen = True
        try:
            brokers = json.loads(text).get("brokers", {})
        except ValueError:
            return
        # rxidle: µs since the broker last sent anything (heartbeats, fetches): the coordinator answers
        # a heartbeat every heartbeat_interval_ms while the group is up
        idle = [b.get("rxidle", -1) for b in brokers.values() if b.get("state") == "UP"]
        idle = [i for i in idle if i >= 0]
        if idle:
            self._alive_at = time.monotonic() - min(idle) / 1e6

    def subscribe(self, topics: list[str], on_assigned: Rebalance, on_revoked: Rebalance) -> None:
        def assigned(_: Any, parts: list[Any]) -> None:
            now = {Partition(p.topic, p.partition) for p in parts}
            self._assigned |= now
            on_assigned(now)

        def revoked(_: Any, parts: list[Any]) -> None:
            gone = {Partition(p.topic, p.partition) for p in parts}
            on_revoked(gone)
            self._assigned -= gone

        _confluent(self._c.subscribe, topics, on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    def poll(self, timeout_s: float, max_records: int) -> Polled:
        # consume() waits out its whole timeout unless max_records arrive: take what is there, and only
        # when nothing is, wait (up to timeout_s) for the first message and then take what came with it
        got = _confluent(self._c.consume, max_records, 0)
        if not got:
            first = _confluent(self._c.poll, timeout_s)
            if first is None:
                return {}
            got = [first, *_confluent(self._c.consume, max_records - 1, 0)] if max_records > 1 else [first]
        out: Polled = {}
        make = InputMessage
        for m in got:
            err = m.error()
            if err is not None:
                if err.name() == "_PARTITION_EOF":
                    continue
                if err.fatal() or not err.retriable():
                    log.warning("consumer: %s", err.str())
                continue
            topic, part = m.topic(), m.partition()
            kind, ts = m.timestamp()
            out.setdefault(Partition(topic, part), []).append(
                make(topic, part, m.offset(), m.key(), m.value(), ts if kind else -1)
            )
        return out

    def assignment(self) -> set[Partition]:
        return {Partition(p.topic, p.partition) for p in _confluent(self._c.assignment)}

    def assign(self, partitions: Mapping[Partition, int | None]) -> None:
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        _confluent(
            self._c.assign,
            [
                TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING if o is None else o)
                for tp, o in partitions.items()
            ],
        )

    def committed(self, tp: Partition) -> Committed | None:
        from confluent_kafka import TopicPartition

        got = _confluent(self._c.committed, [TopicPartition(tp.topic, tp.partition)], timeout=10)
        if not got or got[0].offset < 0:
            return None
        return Committed(got[0].offset, got[0].metadata or "")

    def commit(self, offsets: Mapping[Partition, Committed]) -> None:
        from confluent_kafka import TopicPartition

        parts = [
            TopicPartition(tp.topic, tp.partition, c.offset, metadata=c.metadata) for tp, c in offsets.items()
        ]
        result = _confluent(self._c.commit, offsets=parts, asynchronous=False)
        for p in result or ():
            if p.error is not None:
                name = p.error.name()
                if name in _REBALANCED:
                    raise CommitRejected(f"{p.topic}-{p.partition}: {p.error.str()}")
                raise KafkaFailure(f"commit of {p.topic}-{p.partition}: {p.error.str()}")

    def position(self, tp: Partition) -> int | None:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            got = self._c.position([TopicPartition(tp.topic, tp.partition)])
        except KafkaException:
            return None
        return got[0].offset if got and got[0].offset >= 0 else None

    def highwater(self, tp: Partition) -> int | None:
        from confluent_kafka import KafkaException, TopicPartition

        try:
            _, high = self._c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), cached=True)
        except KafkaException:
            return None
        return high if isinstance(high, int) and high >= 0 else None

    def topics(self) -> set[str]:
        return set(_confluent(self._c.list_topics, timeout=10).topics)

    def partitions_for(self, topic: str) -> set[int]:
        # the whole cluster's metadata: asking for one topic by name may create it on some brokers
        meta = _confluent(self._c.list_topics, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return set()
        return set(meta.partitions)

    def coordinator_alive(self, within_s: float) -> bool:
        if not self._stats_seen:  # no statistics yet: alive if we got an assignment
            return bool(self._assigned)
        return time.monotonic() - self._alive_at < within_s

    def close(self) -> None:
        self._c.close()


class ConfluentProducer:
    def __init__(self, cfg: ClientConfig, options: dict[str, Any], block_s: float = 10.0) -> None:
        from confluent_kafka import KafkaException

        self._kafka_exception = KafkaException
        self._p = _build("Producer", confluent_config(cfg, options))
        self._block_s = block_s  # how long a send waits for room in a full queue (kafka-python: max_block_ms)
        self._sent = 0

    def send(self, topic: str, key: bytes | None, value: bytes, headers: Any) -> Delivery:
        d = Delivery()

        def delivered(err: Any, _: Any) -> None:
            if err is not None:
                d.error = err.str()
            d.done = True

        deadline = None
        while True:
            try:
                self._p.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
                break
            except BufferError:  # the local queue is full: serve deliveries until there is room
                deadline = deadline or time.monotonic() + self._block_s
                if time.monotonic() >= deadline:
                    raise KafkaFailure(
                        f"the producer's queue stayed full for {self._block_s:.0f} s"
                    ) from None
                self._p.poll(0.05)
            except self._kafka_exception as exc:
                raise _failure(exc) from None
        self._sent += 1
        if self._sent % 1000 == 0:
            self._p.poll(0)  # delivery callbacks run only inside poll/flush
        return d

    def flush(self, timeout_s: float) -> None:
        self._p.flush(timeout_s)

    def close(self, timeout_s: float) -> None:
        self._p.flush(timeout_s)


# ---------------------------------------------------------------------------------------------- factory
# kafka-python option names → librdkafka's, where they differ beyond "_" → "."
_RENAMED = {
    "fetch_max_wait_ms": "fetch_wait_max_ms",
    "max_request_size": "message_max_bytes",
}


def check_confluent_options(extra: Mapping[str, Mapping[str, Any]]) -> None:
    """Let librdkafka check kafka_options' names and values now (ConfigError naming the first it refuses),
    by building clients that know no broker: nothing connects."""
    quiet = logging.getLogger("flowsentinel.librdkafka")
    refused = "setting kafka_options: librdkafka refuses it"
    consumer = librdkafka_options(extra.get("consumer", {}))
    if consumer:
        _build("Consumer", {"group.id": "check", "logger": quiet, **consumer}, refused).close()
    producer = librdkafka_options(extra.get("producer", {}))
    if producer:
        _build("Producer", {"logger": quiet, **producer}, refused).flush(0)


def make_consumer(
    client: str, cfg: ClientConfig, group: str | None, options: dict[str, Any]
) -> GroupConsumer:
    """A consumer of ``client`` (resolved: ``confluent`` or ``kafka-python``); ``options`` in kafka-python's
    spelling (the service's own and kafka_options' alike)."""
    if client == "confluent":
        return ConfluentConsumer(cfg, group, options)
    return KafkaPythonConsumer(cfg, group, options)


def make_producer(client: str, cfg: ClientConfig, options: dict[str, Any]) -> Producer:
    if client == "confluent":
        return ConfluentProducer(cfg, options, block_s=options.get("max_block_ms", 10_000) / 1000)
    return KafkaPythonProducer(cfg, options)


# options the service gives kafka-python that have no librdkafka counterpart (their effect is built in,
# or done another way there: max_poll_records is consume()'s count)
_KAFKA_PYTHON_ONLY = frozenset({"max_poll_records", "max_block_ms"})
