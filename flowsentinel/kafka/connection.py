"""How to reach the brokers, for every command alike: bootstrap servers, client id, the client library, TLS
and SASL (:class:`Connection`), validated once and turned into client options once.

``detect``'s settings carry the same fields under the same names (``Settings.connection``); ``produce``,
``feedback``, ``retrain`` and ``demo`` build a :class:`Connection` alone from their flags and the environment
mapping they are handed (:func:`client_security`). Nothing here reads the environment itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from flowsentinel.detector.errors import ConfigError
from flowsentinel.kafka.client import KAFKA_CLIENTS, ClientConfig
from flowsentinel.kafka.conn import TLS_PROTOCOLS, build_ssl_context, probe
from flowsentinel.kafka.secret import Secret

ENV_PREFIX = "FLOWSENTINEL_"  # a setting's variable: FLOWSENTINEL_<NAME>

# The settings that say how to talk to the brokers securely, shared by ``detect`` and the commands that
# connect (flags and variables of the same names): validated alike, turned into client options alike.
SECURITY_SETTINGS = (
    "security_protocol",
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_check_hostname",
)
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# what kafka-python can do with a user name and password alone (GSSAPI needs Kerberos, OAUTHBEARER a token
# provider object: neither can be given as a setting)
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


# ------------------------------------------------------------------------------------ setting values
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def parse_bool(text: str) -> bool:
    """A yes/no setting's text: 1/true/yes/on or 0/false/no/off/'' (any case); ValueError otherwise."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


def coerce_setting(name: str, raw: Any, kind: str, source: str) -> Any:
    """A setting's value of type ``kind`` (``bool``, ``int``, ``float``, ``Secret``, ``str``) from text
    (environment, flag) or a TOML value: ASCII digits only (no '2_000', no '５００'), a scalar only (a TOML
    list or table is not a setting's value). ConfigError naming the setting, its source and what it expects."""
    try:
        if not isinstance(raw, str | int | float | bool):
            raise ValueError
        if kind == "bool":
            return raw if isinstance(raw, bool) else parse_bool(str(raw))
        if kind == "int":
            if isinstance(raw, bool) or not _INT.fullmatch(str(raw).strip()):
                raise ValueError
            return int(str(raw).strip())
        if kind == "float":
            if isinstance(raw, bool) or not _FLOAT.fullmatch(str(raw).strip()):
                raise ValueError
            value = float(str(raw).strip())
            if not math.isfinite(value):
                raise ValueError
            return value
        if kind == "Secret":
            if not isinstance(raw, str):
                raise ValueError
            return Secret(raw)
        return str(raw)
    except ValueError:
        shown = "***" if kind == "Secret" else repr(raw)
        expected = {"Secret": "text", "str": "text", "int": "a whole number (ASCII digits)"}.get(kind, kind)
        raise ConfigError(f"setting {name} = {shown} (from {source}): expected {expected}") from None


def field_kind(f: Any) -> str:
    """A dataclass field's type as :func:`coerce_setting` names it."""
    return f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))


def with_source(exc: ConfigError, sources: Mapping[str, str]) -> ConfigError:
    """``exc`` (``setting NAME = ...``) with where NAME's value came from, where known."""
    bad = next((n for n in sources if f"setting {n} =" in str(exc)), None)
    return ConfigError(f"{exc} (from {sources[bad]})") if bad else exc


def check_text(name: str, value: Any) -> None:
    """A text setting holds no control character (a newline in a client id, say)."""
    if isinstance(value, str) and any(ord(c) < 32 or ord(c) == 127 for c in value):
        shown = "***" if isinstance(value, Secret) else repr(value)
        raise ConfigError(f"setting {name} = {shown}: holds a control character (a newline?)")


# ------------------------------------------------------------------------------------ the connection
@dataclass(frozen=True)
class Connection:
    """The brokers and how to talk to them. Checked when made: an invalid value is a :class:`ConfigError`
    naming the setting and its value (a secret's shown as ``***``). A subclass's own fields (``detect``'s
    settings) are held and checked alike: secrets as :class:`Secret`, no control character in any text."""

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "flowsentinel"
    # the Kafka client library: "auto" takes confluent-kafka (librdkafka) where installed, else kafka-python
    kafka_client: str = "auto"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: Secret = field(default_factory=lambda: Secret(""))
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    ssl_password: Secret = field(default_factory=lambda: Secret(""))
    ssl_check_hostname: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):  # a secret given in code as a plain str is held as a Secret all the same
            if f.type == "Secret" and not isinstance(getattr(self, f.name), Secret):
                object.__setattr__(self, f.name, Secret(getattr(self, f.name)))
            check_text(f.name, getattr(self, f.name))

        def bad(name: str, why: str) -> ConfigError:
            value = getattr(self, name)
            shown = "***" if isinstance(value, Secret) else repr(value)
            return ConfigError(f"setting {name} = {shown}: {why}")

        for server in self.bootstrap_servers.split(","):
            if not re.fullmatch(r"\[?[A-Za-z0-9_.:-]+\]?:\d{1,5}", server.strip()):
                raise bad("bootstrap_servers", "expected HOST:PORT[,HOST:PORT...]")
        if self.kafka_client not in KAFKA_CLIENTS:
            raise bad("kafka_client", "must be one of " + ", ".join(KAFKA_CLIENTS))
        protocol = self.security_protocol
        if protocol not in SECURITY_PROTOCOLS:
            raise bad(
                "security_protocol",
                f"must be {', '.join(SECURITY_PROTOCOLS[:-1])} or {SECURITY_PROTOCOLS[-1]}",
            )
        if protocol.startswith("SASL"):
            if not self.sasl_mechanism:
                raise bad("sasl_mechanism", f"is required with security_protocol {protocol}")
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise bad(
                    "sasl_mechanism", f"must be {', '.join(SASL_MECHANISMS[:-1])} or {SASL_MECHANISMS[-1]}"
                )
            if not self.sasl_username:
                raise bad("sasl_username", f"is required with sasl_mechanism {self.sasl_mechanism}")
        else:
            for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
                if getattr(self, name):
                    raise bad(
                        name, f"is set but security_protocol is {protocol} (SASL_PLAINTEXT or SASL_SSL?)"
                    )
        tls = protocol in TLS_PROTOCOLS
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password"):
            value = getattr(self, name)
            if value and not tls:
                raise bad(name, f"is set but security_protocol is {protocol} (SSL or SASL_SSL?)")
            if value and name != "ssl_password" and not Path(value).expanduser().is_file():
                raise bad(name, "no such file")
        if self.ssl_keyfile and not self.ssl_certfile:
            raise bad("ssl_keyfile", "needs ssl_certfile (the client certificate) too")

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], environ: Mapping[str, str]) -> Connection:
        """From ``FLOWSENTINEL_<NAME>`` variables in ``environ`` and, over them, ``flags`` (``None``: unset);
        other keys of either are not read. An invalid value's error says where it came from."""
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in environ:
                values[f.name], sources[f.name] = environ[key], f"environment {key}"
            if flags.get(f.name) is not None:
                values[f.name], sources[f.name] = flags[f.name], "command line"
        kinds = {f.name: field_kind(f) for f in fields(cls)}
        typed = {name: coerce_setting(name, raw, kinds[name], sources[name]) for name, raw in values.items()}
        try:
            return cls(**typed)
        except ConfigError as exc:
            raise with_source(exc, sources) from None

    @property
    def servers(self) -> list[str]:
        return [s.strip() for s in self.bootstrap_servers.split(",")]

    def options(self) -> dict[str, Any]:
        """kafka-python client options for the security settings. With TLS they carry one ``ssl_context``,
        built here from the files (a file that cannot be loaded is a :class:`ConfigError` naming it), so the
        clients and :func:`flowsentinel.kafka.conn.probe` verify the broker alike."""
        out: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.sasl_mechanism:
            out["sasl_mechanism"] = self.sasl_mechanism
            out["sasl_plain_username"] = self.sasl_username
            out["sasl_plain_password"] = self.sasl_password.reveal()
        if self.security_protocol in TLS_PROTOCOLS:
            out["ssl_context"] = build_ssl_context(
                cafile=str(Path(self.ssl_cafile).expanduser()) if self.ssl_cafile else "",
                certfile=str(Path(self.ssl_certfile).expanduser()) if self.ssl_certfile else "",
                keyfile=str(Path(self.ssl_keyfile).expanduser()) if self.ssl_keyfile else "",
                password=self.ssl_password.reveal(),
                check_hostname=self.ssl_check_hostname,
            )
        return out

    def probe(self, options: Mapping[str, Any], timeout: float = 5.0) -> None:
        """:func:`flowsentinel.kafka.conn.probe` with the :meth:`options` made (KafkaUnreachable naming why)."""
        probe(
            self.servers,
            security_protocol=self.security_protocol,
            ssl_context=options.get("ssl_context"),
            client_cert=bool(self.ssl_certfile),
            timeout=timeout,
        )

    def kafka_common(self) -> dict[str, Any]:
        """kafka-python options shared by consumer, producer and admin clients."""
        return {"bootstrap_servers": self.servers, "client_id": self.client_id, **self.options()}

    def client_config(
        self, security: dict[str, Any] | None = None, extra: dict[str, dict[str, Any]] | None = None
    ) -> ClientConfig:
        """What :mod:`flowsentinel.kafka.client` builds either library's clients from (``security``: the
        :meth:`options` already made, so that a TLS context is built once; ``extra``: parsed kafka_options,
        ``{"consumer": {...}, "producer": {...}}``)."""

        def path(name: str) -> str:
            value = getattr(self, name)
            return str(Path(value).expanduser()) if value else ""

        return ClientConfig(
            bootstrap_servers=self.bootstrap_servers,
            client_id=self.client_id,
            security=self.options() if security is None else security,
            security_files={
                "security_protocol": self.security_protocol,
                "ssl_cafile": path("ssl_cafile"),
                "ssl_certfile": path("ssl_certfile"),
                "ssl_keyfile": path("ssl_keyfile"),
                "ssl_password": self.ssl_password,  # Secret: revealed only into the client
                "ssl_check_hostname": self.ssl_check_hostname,
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_username": self.sasl_username,
                "sasl_password": self.sasl_password,
            },
            extra=extra or {"consumer": {}, "producer": {}},
        )


CONNECTION_SETTINGS = tuple(f.name for f in fields(Connection))


def client_security(
    bootstrap_servers: str, flags: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[Connection, dict[str, Any]]:
    """For commands other than ``detect``: the connection from their flags (``None``: unset) and
    ``FLOWSENTINEL_*`` variables, validated as ``detect`` validates it, and the kafka-python options it makes,
    after a probe of the brokers (:class:`flowsentinel.kafka.conn.KafkaUnreachable` if none answers)."""
    connection = Connection.from_flags({**flags, "bootstrap_servers": bootstrap_servers}, environ)
    options = connection.options()
    connection.probe(options)
    return connection, options
