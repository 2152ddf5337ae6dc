"""The one module that reads the process environment: every ``FLOWSENTINEL_*`` variable, which commands it
belongs to and what it means.

A variable affects only the commands it belongs to (:data:`COMMAND_VARIABLES`, and every setting of
``detect``'s :class:`flowsentinel.consumers.settings.Settings`), and means one thing wherever it is read.
The other modules never look at ``os.environ``: ``detect``'s settings are merged by
:meth:`~flowsentinel.consumers.settings.Settings.load` from the mapping :func:`for_command` gives it, a flag's
fallback is :func:`flag_default`, the broker's binary :func:`tansu_path`. A set variable of no command (a
typo, say) is named once at start by :func:`unknown_variables` instead of being ignored in silence.

Precedence, lowest to highest: defaults < config file (``detect``) < environment < command-line flags.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from flowsentinel.kafka.connection import ENV_PREFIX as PREFIX

# The variables of commands other than detect's settings, by name without the prefix: the commands that read
# each, and its one meaning. A flag's fallback must be named here for its command (flag_default checks).
COMMAND_VARIABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "BOOTSTRAP_SERVERS": (("produce", "feedback", "retrain", "demo"), "the Kafka brokers, host:port[,...]"),
    "INPUT_TOPIC": (("produce", "retrain"), "the topic of flow records (what detect reads)"),
    "TOPIC": (("produce",), "older name of INPUT_TOPIC for produce, still read there"),
    "ALERTS_TOPIC": (("retrain",), "the alerts topic"),
    "FEEDBACK_TOPIC": (("feedback", "retrain"), "the analysts' verdicts topic"),
    "DATA": (("produce",), "produce's data files, separated by spaces"),
    "RATE": (("produce", "demo"), "records a second to send"),
    "SPEEDUP": (("produce",), "replay the files' timestamps this many times faster"),
    "REALTIME": (("produce",), "replay at the files' own pace"),
    "LOOP": (("produce",), "start over at the end of the data"),
    "LIMIT": (("produce",), "stop after this many records"),
    "PARTITIONS": (("produce",), "partitions of the input topic if produce creates it"),
    "PRODUCE_COMPRESSION": (("produce",), "produce's codec (COMPRESSION is detect's)"),
    "LINGER_MS": (("produce",), "produce's linger.ms"),
    "BATCH_BYTES": (("produce",), "produce's batch size in bytes"),
    "HOSTS": (("produce",), "synthetic traffic: hosts"),
    "ATTACK_EVERY": (("produce", "demo"), "synthetic traffic: seconds between attacks"),
    "SEED": (("produce",), "synthetic traffic: random seed"),
    "MODEL": (("demo",), "the model directory (detect's setting of the same name)"),
    "METRICS_PORT": (("demo",), "the /metrics port (detect's setting of the same name)"),
    "WORKDIR": (("demo",), "where the demo keeps its model and state"),
    "MODEL_KEY": (("sign",), "the model signing key (detect's setting of the same name)"),
    "CONFIG": (("detect",), "detect's config file (TOML)"),
    "TANSU": (("demo", "tests"), "the embedded broker's binary (Tansu)"),
    # read by the test suite and scripts, not by a command
    "TEST_BOOTSTRAP": (("tests",), "run the integration tests against this Kafka instead of an embedded one"),
    "FUZZ_EXAMPLES": (("tests",), "examples a fuzz test runs"),
    "FUZZ_SEED": (("tests",), "the fuzz tests' first seed"),
    "VENV": (("scripts",), "the virtual environment scripts/ use"),
}

# detect's settings that other commands read too, under the same names (the Kafka connection's security and
# client): :func:`for_command` gives them to these commands
SHARED_SETTINGS_COMMANDS = ("produce", "feedback", "retrain", "demo")


def _settings_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """detect's setting names (upper case), and those of them other commands share."""
    import dataclasses

    from flowsentinel.consumers.settings import Settings
    from flowsentinel.kafka.connection import SECURITY_SETTINGS

    every = tuple(f.name.upper() for f in dataclasses.fields(Settings))
    return every, tuple(n.upper() for n in (*SECURITY_SETTINGS, "kafka_client"))


def variables(command: str) -> dict[str, str]:
    """Every variable ``command`` reads (name without the prefix) and its meaning."""
    out = {name: meaning for name, (commands, meaning) in COMMAND_VARIABLES.items() if command in commands}
    every, shared = _settings_names()
    if command == "detect":
        out.update({name: "detect's setting " + name.lower() for name in every})
    elif command in SHARED_SETTINGS_COMMANDS:
        out.update({name: "the setting " + name.lower() + " (as detect's)" for name in shared})
    return out


def _environ(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def for_command(command: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The ``FLOWSENTINEL_*`` variables set for ``command`` (full names), and only those."""
    env = _environ(environ)
    return {PREFIX + name: env[PREFIX + name] for name in variables(command) if PREFIX + name in env}


def value(name: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The text of ``FLOWSENTINEL_<name>``, or None where it is not set."""
    if name not in COMMAND_VARIABLES and name not in _settings_names()[0]:
        raise KeyError(f"{PREFIX}{name} is not a flowsentinel variable: name it in COMMAND_VARIABLES")
    return _environ(environ).get(PREFIX + name)


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[str]:
    """One line for each set ``FLOWSENTINEL_*`` variable that no command reads, with the nearest known name."""
    known = set(COMMAND_VARIABLES) | set(_settings_names()[0])
    lines = []
    for key in sorted(_environ(environ)):
        name = key.removeprefix(PREFIX)
        if key.startswith(PREFIX) and name not in known:
            near = difflib.get_close_matches(name, sorted(known), n=1)
            hint = f" (did you mean {PREFIX}{near[0]}?)" if near else ""
            lines.append(f"{key} is not a flowsentinel variable: ignored{hint}")
    return lines


class FromEnv:
    """A flag's default taken from ``FLOWSENTINEL_<NAME>``, converted and checked only when the command that
    has the flag runs (:func:`resolve_flags`): a variable meant for ``produce`` must not stop ``detect --help``."""

    def __init__(self, name: str, raw: str, convert: Callable[[str], Any]) -> None:
        self.name, self.raw, self.convert = name, raw, convert

    def __str__(self) -> str:
        return self.raw

    def resolve(self) -> Any:
        try:
            return self.convert(self.raw)
        except argparse.ArgumentTypeError as exc:  # the flag's own check, e.g. a negative seed
            print(f"flowsentinel: error: {PREFIX}{self.name}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except ValueError:
            print(f"flowsentinel: error: {PREFIX}{self.name} = {self.raw!r} is not valid", file=sys.stderr)
            raise SystemExit(2) from None


def _command_value(command: str, name: str) -> str | None:
    """``FLOWSENTINEL_<name>`` for a flag of ``command``: KeyError where ``name`` is not one of its variables."""
    if name not in variables(command):
        raise KeyError(f"{PREFIX}{name} is not a variable of {command!r}: name it in COMMAND_VARIABLES")
    return value(name)


def flag_default(command: str, name: str, default: Any, convert: Callable[[str], Any] = str) -> Any:
    """A flag's default: ``default``, or ``FLOWSENTINEL_<name>`` where set (a :class:`FromEnv`, converted when
    ``command`` runs). ``name`` must be one of ``command``'s variables."""
    raw = _command_value(command, name)
    return default if raw is None else FromEnv(name, raw, convert)


def flag_default_list(command: str, name: str) -> list[str] | None:
    """A list flag's default: ``FLOWSENTINEL_<name>`` split at spaces, or None."""
    raw = _command_value(command, name)
    return raw.split() if raw else None


def resolve_flags(args: argparse.Namespace) -> None:
    """Convert the parsed command's environment defaults (the flags it was given need none)."""
    for key, val in vars(args).items():
        if isinstance(val, FromEnv):
            setattr(args, key, val.resolve())


def tansu_path() -> str | None:
    """``FLOWSENTINEL_TANSU``: the embedded broker's binary, where set."""
    return value("TANSU")
