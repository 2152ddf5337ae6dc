"""What the commands share: argument types, settings flags, file checks and reading (the environment is
:mod:`flowsentinel.environment`'s)."""

from __future__ import annotations

import argparse
import collections
import logging
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from flowsentinel import environment
from flowsentinel.detector.thresholds import AdaptPolicy

log = logging.getLogger("flowsentinel")


class UsageError(Exception):
    """A command-line value is invalid; the message names it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _at_least(low: float, convert: Callable[[str], Any], noun: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not (math.isfinite(value) and value >= low):
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {low:g}")
        return value

    return parse


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low`` (the benchmarks' scripts use it too)."""
    return _at_least(low, int, "an integer")


def _number_at_least(low: float) -> Callable[[str], float]:
    return _at_least(low, float, "a number")


_positive_int = int_at_least(1)

_seed = int_at_least(0)  # numpy's generators take no negative seed

SYNTHETIC_RATE = 1000.0  # records/s the synthetic producer sends when --rate is not given

PROBE_ROWS = 1000  # produce reads this many rows of each file before it connects, to name a wrong file early


def _fraction(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and low < value < high):
            raise argparse.ArgumentTypeError(f"{text!r} must be above {low:g} and below {high:g}")
        return value

    return parse


def _share(text: str) -> float:
    """An argparse ``type``: a share from 0 to 1, both included."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise argparse.ArgumentTypeError(f"{text!r} must be from 0 to 1")
    return value


def _add_policy_flags(parser: argparse.ArgumentParser) -> None:
    """The online threshold's shift policy, under the names of ``detect``'s settings, so that a file scored
    or evaluated here meets the same threshold behaviour as a service started with the same values."""
    parser.add_argument(
        "--quarantine",
        type=int_at_least(100),
        default=AdaptPolicy.quarantine,
        help="records a suspected shift of the score level is watched for (default %(default)s)",
    )
    parser.add_argument(
        "--shift-max-alert-share",
        type=_number_at_least(0.0),
        default=AdaptPolicy.max_alert_share,
        help="opt-in: accept an upward shift of another shape if at most this many x q of it alerted "
        "(default %(default)s: off)",
    )
    parser.add_argument(
        "--shift-max-rise",
        type=_number_at_least(1.0),
        default=AdaptPolicy.max_rise,
        help="with the opt-in rule, the threshold rises at most this many times per shift (default %(default)s)",
    )


DETECTORS = ("lstm-ae", "dense-ae", "iforest", "river-hst")  # eval --detector: ours first, then baselines


def _names(text: str) -> list[str]:
    """An argparse ``type``: comma-separated names."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} names nothing")
    return names


def _detector_list(text: str) -> list[str]:
    names = list(DETECTORS) if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in DETECTORS:
            raise argparse.ArgumentTypeError(f"{name!r} is not a detector: use {', '.join(DETECTORS)} or all")
    if not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"{text!r} must name distinct detectors")
    return names


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number")
    return value


def _add_settings_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, only: Sequence[str] | None = None
) -> None:
    """A flag per :class:`consumers.settings.Settings` field (those named in ``only``), default None: unset
    flags leave the value to the config file, the environment or the default."""
    import dataclasses

    from flowsentinel.consumers.settings import Settings

    for f in dataclasses.fields(Settings):
        if (only is not None and f.name not in only) or f.name in ENV_ONLY_SETTINGS:
            continue
        flag = "--" + f.name.replace("_", "-")
        default = "" if f.default is dataclasses.MISSING else f.default
        if f.name == "kafka_options":
            parser.add_argument(
                "--kafka-option",
                dest=f.name,
                action="append",
                default=None,
                metavar="KEY=VALUE",
                help="a Kafka client option, e.g. group.instance.id=detector-0 or "
                "partition_assignment_strategy=cooperative-sticky; consumer.KEY / producer.KEY for one client; "
                "repeat the flag for several (env FLOWSENTINEL_KAFKA_OPTIONS='K=V;K=V')",
            )
        elif f.type == "bool":
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"default {'on' if default else 'off'} (env FLOWSENTINEL_{f.name.upper()})",
            )
        else:
            shown = ("***" if default else "") if "password" in f.name else default  # never a secret's text
            parser.add_argument(
                flag,
                dest=f.name,
                default=None,
                metavar=f.name.upper(),
                help=_FLAG_NOTES.get(f.name, "") + f"default {shown!r} (env FLOWSENTINEL_{f.name.upper()})",
            )


def _add_key_flag(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--model-key-file", default=None, metavar="FILE", help=help)


def _model_key(args: argparse.Namespace, *, env: bool = False) -> bytes | None:
    """The signing key of ``--model-key-file`` (or, with ``env``, FLOWSENTINEL_MODEL_KEY); None if neither."""
    from flowsentinel.detector.artifact import check_key, read_key
    from flowsentinel.kafka.secret import Secret

    if args.model_key_file:
        key = read_key(args.model_key_file)
        Secret(key.decode(errors="replace"))  # remembered: never in a log line
        return key
    text = environment.value("MODEL_KEY") if env else None
    if text:
        secret = Secret(text)
        return check_key(secret.reveal().encode(), "FLOWSENTINEL_MODEL_KEY")
    return None


# settings given only by the environment or a config file: a key on a command line is visible to every user
ENV_ONLY_SETTINGS = ("model_key",)

_FLAG_NOTES = {
    "kafka_client": "auto|confluent|kafka-python: the Kafka client library ('auto': confluent-kafka where "
    "installed); ",
    "input_topic": "one topic, or several separated by commas; ",
    "schema_field": "'optional': a record without a \"schema\" field is the model's (Suricata, goflow2); ",
}


def _check_files(paths: Sequence[str], flag: str) -> None:
    for path in paths:
        if not Path(path).is_file():
            raise UsageError(f"{flag} {path!r}: no such file")


def _check_out_dir(path: str, flag: str = "--out") -> None:
    """Create the output directory now and make sure it takes a file: a wrong path is one line before the
    work (a two-minute training), not a traceback after it."""
    from flowsentinel.consumers.settings import probe_writable_dir

    try:
        probe_writable_dir(path)
    except OSError as exc:
        raise UsageError(f"{flag} {path!r}: cannot write there ({exc.strerror or exc})") from None


def _check_out_file(path: str, flag: str = "--out") -> None:
    """The output file's directory exists and takes a file (the file itself is written later)."""
    parent = Path(path).parent
    if Path(path).is_dir():
        raise UsageError(f"{flag} {path!r}: is a directory, not a file")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path!r}: no such directory {str(parent)!r}")
    _check_out_dir(str(parent), flag)


DEFAULT_MAX_REJECT_SHARE = 0.01


def _file_batches(
    path: str,
    schema: Any,
    flag: str,
    limit: int | None = None,
    max_rows: int | None = None,
    max_share: float = DEFAULT_MAX_REJECT_SHARE,
) -> Iterator[Any]:
    """One file's validated batches, as :func:`producers.files.iter_batches` reads them. Once the file is
    read, its rejected rows are said on stderr (count, share, top reasons, the first one), and above
    ``max_share`` of its rows they stop the command with one line naming the reason and the flag that
    accepts it: rows left out of a training or an evaluation change its results. A file that does not fit
    the schema as a whole (e.g. its header lacks a field), or of which not one record parses (another
    schema's file, not a data file, empty), is a one-line usage error naming it and the first reason. With
    ``max_rows`` only the file's first rows are read, as a check, and nothing is said."""
    from flowsentinel.detector.errors import SchemaError
    from flowsentinel.producers.files import iter_batches

    parsed, rejected = 0, 0
    examples: list[Any] = []  # the first few rejections
    reasons: collections.Counter[str] = collections.Counter()
    try:
        for batch in iter_batches(path, schema, limit=limit, max_rows=max_rows):
            parsed += len(batch)
            rejected += len(batch.rejected)
            examples += batch.rejected[: 5 - len(examples)]
            reasons.update(err.code for err in batch.rejected)
            yield batch
    except SchemaError as exc:
        raise UsageError(f"{flag} {str(path)!r}: {exc}") from None
    if parsed == 0:
        why = f"; first: {examples[0]}" if examples else " (no rows)"
        part = f" in its first {max_rows:,} rows" if max_rows is not None and rejected >= max_rows else ""
        raise UsageError(
            f"{flag} {str(path)!r}: no record parsed as schema {schema.name!r}{part}: {rejected:,} rejected{why}"
        )
    if rejected and max_rows is None:
        share = rejected / (parsed + rejected)
        top = reasons.most_common()
        said = _reasons_said(reasons)
        if share > max_share:
            raise UsageError(
                f"{flag} {str(path)!r}: {rejected:,} of {parsed + rejected:,} rows ({share:.1%}) rejected, more than "
                f"--max-reject-share {max_share:g}; most for {top[0][0]} ({top[0][1]:,}), first: {examples[0]}. "
                f"Fix the schema (e.g. `flowsentinel schema infer`) or the data, or accept them with "
                f"--max-reject-share {math.ceil(share * 100) / 100:g}"
            )
        print(f"{path}: {rejected:,} of {parsed + rejected:,} rows rejected ({share:.2%}; {said}); first: "
              f"{examples[0]}", file=sys.stderr)  # fmt: skip
        for err in examples[1:]:
            log.info("rejected: %s", err)


def _reasons_said(reasons: collections.Counter[str]) -> str:
    """The three most common rejection reasons with their counts, e.g. ``negative_value 50, wrong_type 2``."""
    return ", ".join(f"{code} {n:,}" for code, n in reasons.most_common(3))


def _read_files(
    paths: list[str],
    schema: Any,
    flag: str,
    limit: int | None = None,
    max_share: float = DEFAULT_MAX_REJECT_SHARE,
) -> Any:
    """Every file read whole (see :func:`_file_batches`) and concatenated."""
    from flowsentinel.detector.schema import RecordBatch

    _check_files(paths, flag)
    return RecordBatch.concat(
        [b for path in paths for b in _file_batches(path, schema, flag, limit, max_share=max_share)]
    )


def _add_reject_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-reject-share",
        type=_share,
        default=DEFAULT_MAX_REJECT_SHARE,
        metavar="SHARE",
        help="stop when more than this share of a file's rows is rejected (default 0.01; 1 accepts any)",
    )
