"""The one settings object of the detector service, merged from the values it is given.

Precedence, lowest to highest: defaults < config file (TOML; ``--config`` or ``FLOWSENTINEL_CONFIG``) <
environment ``FLOWSENTINEL_<FLAG>`` < command-line flags. The environment is handed in as a mapping (the
command line's :mod:`flowsentinel.environment` reads it): nothing here looks at ``os.environ``. Every value
is validated at start; an invalid one is reported in one line naming the setting, its source and the value.
Secrets (SASL password, SSL key password, model key) are held as
:class:`~flowsentinel.kafka.secret.Secret` and shown masked in the effective configuration that is logged.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from flowsentinel.consumers.alerts import SEVERITIES
from flowsentinel.consumers.decode import SCHEMA_FIELD_MODES
from flowsentinel.consumers.kafka_options import parse_kafka_options
from flowsentinel.detector.errors import ConfigError
from flowsentinel.detector.feedback import FeedbackPolicy
from flowsentinel.detector.thresholds import AdaptPolicy
from flowsentinel.kafka.client import ClientConfig, check_confluent_options, resolve_client
from flowsentinel.kafka.connection import (
    ENV_PREFIX,
    Connection,
    coerce_setting,
    field_kind,
    with_source,
)
from flowsentinel.kafka.secret import Secret

_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")

# Every numeric setting's bounds (inclusive; OPEN_AT_ZERO: must also be above 0). Wide enough for any real
# deployment; narrow enough that a typo is refused at start instead of failing later (100,000 torch threads
# die at the first batch, a 1e300 s shutdown timeout overflows the watchdog's timer).
DAY_S = 86_400.0
NUMERIC_BOUNDS: dict[str, tuple[float, float]] = {
    "risk": (0.0, 0.5),
    "quarantine": (100, 10_000_000),
    "shift_max_alert_share": (0.0, 1_000.0),
    "shift_max_rise": (1.0, 1_000.0),
    "max_keys": (1, 100_000_000),
    "torch_threads": (1, 256),
    "metrics_port": (0, 65_535),
    "batch_size": (1, 1_000_000),
    "poll_timeout_ms": (1, 60_000),
    "fetch_max_wait_ms": (1, 60_000),
    "max_record_bytes": (1, 100 << 20),
    "dead_letter_max_bytes": (1_024, 100 << 20),
    "episode_quiet_s": (0.0, 30 * DAY_S),
    "episode_update_s": (0.0, 30 * DAY_S),
    "feedback_half_life_s": (0.0, 3_650 * DAY_S),
    "feedback_max_gain": (1.0, 1e6),
    "feedback_max_cut": (0.0, 1.0),
    "feedback_store_entries": (1, 10_000_000),
    "snapshot_interval_s": (0.0, DAY_S),
    "reload_check_s": (0.0, DAY_S),
    "session_timeout_ms": (1, 3_600_000),
    "heartbeat_interval_ms": (1, 3_600_000),
    "max_poll_interval_ms": (1, 86_400_000),
    "shutdown_timeout_s": (0.0, 3_600.0),
    "shadow_min_records": (1, 10**12),
    "shadow_min_verdicts": (0, 10**9),
    "shadow_min_attack_kept": (0.0, 1.0),
    "model_max_params": (1_000, 2_000_000_000),
}
OPEN_AT_ZERO = {
    "risk", "episode_quiet_s", "episode_update_s", "feedback_half_life_s", "feedback_max_cut",
    "snapshot_interval_s", "reload_check_s", "shutdown_timeout_s",
}  # fmt: skip
NUMERIC_UNITS = {
    **{n: " seconds" for n in NUMERIC_BOUNDS if n.endswith("_s")},
    **{n: " milliseconds" for n in NUMERIC_BOUNDS if n.endswith("_ms")},
    **{n: " bytes" for n in NUMERIC_BOUNDS if n.endswith("_bytes")},
    "metrics_port": " (0 picks a free port)",
    "shift_max_alert_share": " (0 turns the rule off)",
    "feedback_max_cut": " (1: no cut)",
    "feedback_max_gain": " (1: no gain)",
}


@dataclass(frozen=True)
class Settings(Connection):
    """``detect``'s settings: the connection (:class:`~flowsentinel.kafka.connection.Connection`: bootstrap
    servers, client id and library, TLS, SASL; checked there) and the rest of the service's."""

    input_topic: str = "flowsentinel.records"
    alerts_topic: str = "flowsentinel.alerts"
    dead_letter_topic: str = "flowsentinel.dead-letter"
    group: str = "flowsentinel-detector"
    model: str = ""
    thresholder: str = "spot"
    risk: float = 0.01
    quarantine: int = 5_000
    # opt-in re-baselining of an upward shift of another shape (0 = off): at most this many x q of the
    # quarantine alerted; the threshold then rises at most shift_max_rise x. See detector.thresholds
    shift_max_alert_share: float = 0.0
    shift_max_rise: float = 2.0
    max_keys: int = 50_000
    # torch's threads for scoring. One: measured at 5,000 records/s offered with a producer and the broker
    # on the same two cores, the end-to-end p99 was 191 ms with one thread and 621 ms with two (idle
    # threads spin, taking the cores the Kafka client, the broker and the producer need); with the
    # machine to itself and a deep backlog, two gave about 10% more. More cores: add instances
    torch_threads: int = 1
    # loopback by default: /metrics and the health checks are not for the whole network unless asked (the
    # container image, compose and the systemd example set 0.0.0.0 for a Prometheus elsewhere to scrape)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9464
    batch_size: int = 2_000
    poll_timeout_ms: int = 500
    fetch_max_wait_ms: int = 100
    max_record_bytes: int = 65_536
    # a dead letter carries at most this much of the original value (the rest is cut, its size in a header):
    # one oversized record must not be too large for the dead-letter topic and wedge the service
    dead_letter_max_bytes: int = 900_000
    allow_extra_fields: bool = False
    # "optional": a record without a "schema" field is taken to be the model's (exporters such as Suricata
    # and goflow2 write untagged records); one that names another schema is still dead-lettered
    schema_field: str = "required"
    # episodes reach the alerts topic once they reach this severity (all are counted in the metrics)
    min_publish_severity: str = "medium"
    alert_format: str = "flowsentinel"  # or "ecs": Elastic Common Schema documents (consumers.alerts.to_ecs)
    episode_quiet_s: float = 60.0
    episode_update_s: float = 30.0
    # analysts' verdicts (consumers.feedback); "" turns the feedback loop off
    feedback_topic: str = "flowsentinel.feedback"
    feedback_half_life_s: float = 7 * 86_400.0  # a verdict's weight halves every this many seconds
    feedback_max_gain: float = 20.0  # a record like a confirmed attack: its score x at most this
    feedback_max_cut: float = 0.1  # a record like a confirmed false alarm: its score x at least this
    feedback_store_entries: int = 100_000  # alert messages remembered for verdicts to judge
    state_dir: str = "~/.local/state/flowsentinel"  # threshold snapshots; "" turns persistence off
    snapshot_interval_s: float = 30.0
    reload_check_s: float = 5.0
    # a model store (detector.store): scores with STORE/live, runs STORE/shadow beside it when there is one
    model_store: str = ""
    shadow_promote: str = "manual"  # or "auto": promote the shadow when it meets the rule below
    shadow_min_records: int = 20_000
    shadow_min_verdicts: int = 20
    shadow_min_attack_kept: float = 0.95
    # models: refused (at start and on reload) above this many parameters, or unsigned when require_signed
    model_max_params: int = 50_000_000
    require_signed: bool = False
    model_key_file: str = ""  # the HMAC key that signed the models (or model_key, from the environment)
    model_key: Secret = field(default_factory=lambda: Secret(""))
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    auto_offset_reset: str = "earliest"
    compression: str = "none"
    shutdown_timeout_s: float = 20.0
    # KEY=VALUE;... passed to the Kafka consumer and producer (consumers.kafka_options)
    kafka_options: str = ""
    log_level: str = "INFO"

    @property
    def input_topics(self) -> tuple[str, ...]:
        """The topics to consume: ``input_topic`` is one name or several separated by commas."""
        return tuple(t.strip() for t in self.input_topic.split(","))

    def __post_init__(self) -> None:
        super().__post_init__()  # secrets held as Secret, no control character in any text, the connection

        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"setting {name} = {getattr(self, name)!r}: {why}")

        topic_name = "a Kafka topic name is 1-249 of letters, digits, '.', '_', '-'"
        differ = "input, alerts and dead-letter topics must all differ"
        if not all(map(_TOPIC_NAME.fullmatch, self.input_topics)):
            raise bad("input_topic", topic_name + " (several: separated by commas)")
        if len(set(self.input_topics)) != len(self.input_topics):
            raise bad("input_topic", "names a topic twice")
        for name in ("alerts_topic", "dead_letter_topic"):
            if not _TOPIC_NAME.fullmatch(getattr(self, name)):
                raise bad(name, topic_name)
            if getattr(self, name) in self.input_topics:
                raise bad("input_topic", f"includes the {name}: {differ}")
        if self.alerts_topic == self.dead_letter_topic:
            raise bad("dead_letter_topic", f"is the alerts_topic too: {differ}")
        if self.feedback_topic:
            if not _TOPIC_NAME.fullmatch(self.feedback_topic):
                raise bad("feedback_topic", topic_name + " ('' turns feedback off)")
            if self.feedback_topic in (*self.input_topics, self.alerts_topic, self.dead_letter_topic):
                raise bad("feedback_topic", "must differ from the input, alerts and dead-letter topics")
        if not self.group:
            raise bad("group", "must not be empty")
        if self.model and self.model_store:
            raise bad("model_store", "and model are both set: a store's live model is the model")
        if self.shadow_promote not in ("manual", "auto"):
            raise bad("shadow_promote", "must be 'manual' or 'auto'")
        if self.shadow_promote == "auto" and not self.model_store:
            raise bad("shadow_promote", "'auto' needs a model_store to promote in")
        if self.model_key_file and self.model_key:
            raise bad("model_key_file", "and model_key are both set: give the key one way")
        if self.model_key_file and not Path(self.model_key_file).expanduser().is_file():
            raise bad("model_key_file", "no such file")
        if self.require_signed and not (self.model_key_file or self.model_key):
            raise bad("require_signed", "needs the key: model_key_file, or FLOWSENTINEL_MODEL_KEY")
        if self.thresholder not in ("spot", "quantile"):
            raise bad("thresholder", "must be 'spot' or 'quantile'")
        if not 0.0 < self.risk < 0.5:
            raise bad("risk", "must be in (0, 0.5)")
        for name, (lo, hi) in NUMERIC_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise bad(name, "must be a finite number")
            if not lo <= value <= hi or (name in OPEN_AT_ZERO and value <= 0):
                span = (
                    f"above 0 and at most {_n(hi)}" if name in OPEN_AT_ZERO else f"from {_n(lo)} to {_n(hi)}"
                )
                raise bad(name, f"must be {span}{NUMERIC_UNITS.get(name, '')}")
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise bad("heartbeat_interval_ms", "must be below session_timeout_ms")
        if self.min_publish_severity not in SEVERITIES:
            raise bad("min_publish_severity", "must be one of " + ", ".join(SEVERITIES))
        if self.schema_field not in SCHEMA_FIELD_MODES:
            raise bad("schema_field", "must be one of " + ", ".join(SCHEMA_FIELD_MODES))
        if self.alert_format not in ("flowsentinel", "ecs"):
            raise bad("alert_format", "must be 'flowsentinel' or 'ecs'")
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise bad("auto_offset_reset", "must be 'earliest' or 'latest'")
        if self.compression not in ("none", "gzip", "snappy", "lz4", "zstd"):
            raise bad("compression", "must be one of none, gzip, snappy, lz4, zstd")
        missing = missing_codec(self.compression)
        if missing:
            raise bad("compression", missing)
        if self.kafka_options:
            client = resolve_client(self.kafka_client)
            extra = parse_kafka_options(self.kafka_options, client)
            if client == "confluent":
                check_confluent_options(extra)
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise bad("log_level", "must be DEBUG, INFO, WARNING or ERROR")

    # ------------------------------------------------------------------ views
    @property
    def model_path(self) -> str:
        """The live model's directory: ``model``, or a model store's ``live``."""
        return str(Path(self.model_store).expanduser() / "live") if self.model_store else self.model

    @property
    def shadow_path(self) -> str:
        """Where a shadow model would be ('' without a model store)."""
        return str(Path(self.model_store).expanduser() / "shadow") if self.model_store else ""

    def signing_key(self) -> bytes | None:
        """The key models must be signed with (None: signatures are not checked). ArtifactError naming the
        source, never the key, if it is too short or the file cannot be read."""
        from flowsentinel.detector.artifact import check_key, read_key  # (torch: not for --help)

        if not self.require_signed:
            return None
        if self.model_key_file:
            key = read_key(self.model_key_file)
            Secret(key.decode(errors="replace"))  # remembered: never in a log line
            return key
        return check_key(self.model_key.reveal().encode(), "setting model_key")

    def client_config(
        self, security: dict[str, Any] | None = None, extra: dict[str, dict[str, Any]] | None = None
    ) -> ClientConfig:
        """:meth:`Connection.client_config`, with the ``kafka_options`` setting parsed for the client."""
        if extra is None:
            extra = parse_kafka_options(self.kafka_options, resolve_client(self.kafka_client))
        return super().client_config(security, extra)

    def effective(self) -> dict[str, Any]:
        """The configuration as it will be used, secrets masked (for the start-up log)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.masked() if isinstance(value, Secret) else value
        return out

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        cli: Mapping[str, Any] | None = None,
        *,
        environ: Mapping[str, str],
        config_file: str | None = None,
    ) -> Settings:
        """Merge defaults, config file, environment (``FLOWSENTINEL_*`` names; others are not read) and CLI
        values (``None`` in ``cli`` means unset)."""
        env = dict(environ)
        cli = {k: v for k, v in (cli or {}).items() if v is not None}
        path = config_file or cli.pop("config", None) or env.get(ENV_PREFIX + "CONFIG")
        merged: dict[str, Any] = {}
        sources: dict[str, str] = {}
        types = {f.name: f for f in fields(cls)}
        if path:
            for k, v in _read_config_file(path).items():
                name = k.replace("-", "_")
                if name not in types:
                    raise ConfigError(f"config file {path!r}: unknown setting {k!r}")
                merged[name] = v
                sources[name] = f"config file {path!r}"
        for name in types:
            key = ENV_PREFIX + name.upper()
            if key in env:
                merged[name] = env[key]
                sources[name] = f"environment {key}"
        for name, value in cli.items():
            if name not in types:
                raise ConfigError(f"unknown setting {name!r}")
            merged[name] = value
            sources[name] = "command line"
        values = {}
        for name, raw in merged.items():
            if name == "kafka_options":  # several --kafka-option flags, or a TOML table or list
                if isinstance(raw, dict):
                    raw = [
                        f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in _flat(raw).items()
                    ]
                if isinstance(raw, list | tuple):
                    raw = ";".join(str(r) for r in raw)
            values[name] = coerce_setting(name, raw, field_kind(types[name]), sources[name])
        try:
            return cls(**values)
        except ConfigError as exc:
            raise with_source(exc, sources) from None

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)


MAX_CONFIG_BYTES = 1 << 20


def _flat(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A TOML table's dotted keys (``group.instance.id = "x"`` nests tables) as flat ``a.b.c`` keys."""
    out: dict[str, Any] = {}
    for k, v in table.items():
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def _n(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:,g}"


def _read_config_file(path: str) -> dict[str, Any]:
    try:
        raw = Path(path).read_bytes()
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"config file {path!r} is {len(raw):,} bytes: more than a config file holds")
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path!r} is not UTF-8 text (byte {exc.start}): save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path!r} is not valid TOML: {exc}") from None
    return data.get("flowsentinel", data)


# setting name -> AdaptPolicy field: the shift policy's settings, also the score/eval/tune flags' names
POLICY_SETTINGS = {
    "quarantine": "quarantine",
    "shift_max_alert_share": "max_alert_share",
    "shift_max_rise": "max_rise",
}


def policy_settings(values: Any) -> dict[str, Any]:
    """The shift policy's settings, by setting name, of a :class:`Settings` or the command line's
    ``score``/``eval``/``tune`` arguments (what `tune` writes for `detect --config`)."""
    return {name: getattr(values, name) for name in POLICY_SETTINGS}


def feedback_policy(s: Settings) -> FeedbackPolicy:
    """The verdict memory's policy from the service's settings."""
    return FeedbackPolicy(
        half_life=s.feedback_half_life_s, max_gain=s.feedback_max_gain, max_cut=s.feedback_max_cut
    )


def shift_policy(values: Any) -> AdaptPolicy:
    """The online threshold's shift policy from a :class:`Settings`, or the command line's
    ``score``/``eval``/``tune`` arguments, which use the same names so that they meet the threshold a
    service with those settings would."""
    return AdaptPolicy(**{POLICY_SETTINGS[k]: v for k, v in policy_settings(values).items()})


def probe_writable_dir(directory: str | Path) -> None:
    """Create ``directory`` if needed and write and remove a file there: raises OSError if that cannot be done.
    For a start-up check of a place the work will write to later (``detect``'s state_dir, the commands'
    ``--out``), so that a wrong path is one line before the work, not a traceback during or after it."""
    path = Path(directory)
    probe = path / f".flowsentinel-write-test-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    probe.write_text("")
    probe.unlink()


def missing_codec(compression: str) -> str:
    """Why kafka-python cannot compress with ``compression`` here ('' if it can): its codec libraries are
    optional, and a producer built without one fails with a traceback."""
    from kafka import codec

    packages = {"snappy": "python-snappy", "lz4": "lz4", "zstd": "zstandard"}
    if compression in packages and not getattr(codec, f"has_{compression}")():
        return f"the {compression} codec is not installed (pip install {packages[compression]})"
    return ""
