"""The ``flowsentinel`` command line: ``train`` a model on normal traffic, ``score`` a file with it.

Bad arguments, unreadable files and invalid models end with one line naming the value and exit status 2;
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from flowsentinel.consumers.settings import policy_settings, shift_policy
from flowsentinel.detector.errors import FlowSentinelError
from flowsentinel.detector.thresholds import AdaptPolicy
from flowsentinel.progress import progress_bar

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


def build_parser() -> argparse.ArgumentParser:
    from flowsentinel.consumers.settings import SECURITY_SETTINGS
    from flowsentinel.detector.schema import BUILTIN_SCHEMAS

    builtins = ", ".join(BUILTIN_SCHEMAS)

    p = _Parser(prog="flowsentinel", description="Streaming network-traffic anomaly detection.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model on the normal records of labelled files")
    _add_reject_flag(t)
    t.add_argument("--schema", required=True, help=f"{builtins}, or a schema file (.toml/.yaml)")
    src = t.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", nargs="+", metavar="PATH", help="data files (plain or .gz)")
    src.add_argument(
        "--synthetic",
        type=_positive_int,
        metavar="N",
        help="train on N records of the built-in synthetic normal traffic (kdd schema)",
    )
    t.add_argument("--out", required=True, metavar="MODEL_DIR", help="directory to write the model to")
    t.add_argument(
        "--config", default=None, metavar="JSON", help="training config (e.g. from `tune`); flags override it"
    )
    t.add_argument(
        "--window",
        type=_positive_int,
        default=None,
        help="records per window: the newest and its key's previous ones (default 1)",
    )
    t.add_argument("--hidden", type=_positive_int, default=None, help="LSTM hidden size (default 128)")
    t.add_argument("--latent", type=_positive_int, default=None, help="latent code size (default 8)")
    t.add_argument(
        "--members",
        type=_positive_int,
        default=None,
        help="autoencoders in the ensemble, each from its own seed; the score is their mean error (default 3)",
    )
    t.add_argument(
        "--record-path",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="experimental: feed the newest record to the latent code directly as well (default off)",
    )
    t.add_argument(
        "--scoring",
        choices=("mse", "field-scaled"),  # = detector.pipeline.SCORINGS (not imported: keeps --help fast)
        default=None,
        help="score = mean squared error over encoded columns (mse, default) or mean over fields of each "
        "field's error / its RMS on normal validation records (field-scaled)",
    )
    t.add_argument("--epochs", type=_positive_int, default=None, help="maximum epochs (default 40)")
    t.add_argument("--batch-size", type=_positive_int, default=None, help="training batch size (default 256)")
    t.add_argument("--lr", type=_fraction(0.0, 1.0), default=None, help="learning rate (default 0.002)")
    t.add_argument("--patience", type=_positive_int, default=None, help="early-stopping patience (default 4)")
    t.add_argument("--min-improvement", type=_share, default=None, metavar="SHARE",
                   help="share by which an epoch must lower the best validation loss to count as progress "
                   "(default 0: any decrease)")  # fmt: skip
    t.add_argument("--max-minutes", type=_number_at_least(0.0), default=None, metavar="M",
                   help="time budget for the training (default 0: none); the best weights so far are kept")  # fmt: skip
    t.add_argument(
        "--val-fraction", type=_fraction(0.0, 0.5), default=None, help="validation split (default 0.1)"
    )
    t.add_argument(
        "--val-split",
        choices=("random", "last"),  # = detector.train.VAL_SPLITS (not imported: keeps --help fast)
        default=None,
        help="hold out random records, or the last ones in file order, for early stopping and the "
        "threshold's calibration (default random)",
    )
    t.add_argument(
        "--calibrate-on",
        choices=("validation", "latest"),  # = detector.train.CALIBRATE_ON
        default=None,
        help="the scores the alert threshold starts from: the validation split's, or the newest "
        "--val-fraction of the records in file order, held out from training (default validation)",
    )
    t.add_argument("--seed", type=_seed, default=None, help="random seed (default 0)")
    t.add_argument("--limit", type=_positive_int, default=None, help="read at most N records per file")
    t.add_argument("--quiet", action="store_true", help="no progress display")
    _add_key_flag(t, "sign the model with the HMAC key in this file (see `flowsentinel sign`)")

    sg = sub.add_parser(
        "sign",
        help="sign a model with an HMAC-SHA256 key, for detect --require-signed",
        description="Writes MODEL_DIR/signature.json: an HMAC-SHA256 of the model's content hash under the "
        "key. The key comes from --model-key-file or FLOWSENTINEL_MODEL_KEY (at least 16 bytes) and is never "
        "printed; its id (a digest that reveals nothing of it) is.",
    )
    sg.add_argument("model", metavar="MODEL_DIR")
    _add_key_flag(sg, "the key file (default: FLOWSENTINEL_MODEL_KEY)")

    ms = sub.add_parser(
        "models",
        help="a model store: add versions, run one in shadow, promote it, roll back",
        description="A model store holds model versions side by side (STORE/versions/<version>) and three "
        "roles, each a symlink: live (what `detect --model-store STORE` scores and alerts with), shadow (a "
        "candidate it scores beside the live one, publishing nothing) and previous (what was live before "
        "the last promotion). A running detector takes a change at its next reload check.",
    )
    ms.add_argument("action", choices=("list", "add", "shadow", "promote", "rollback"))
    ms.add_argument("store", metavar="STORE")
    ms.add_argument("model", nargs="?", metavar="MODEL_DIR|VERSION",
                    help="add: a model directory; shadow: a version in the store or a model directory")  # fmt: skip
    ms.add_argument("--live", action="store_true", help="add: make it the live model as well")
    ms.add_argument("--reason", default="operator", help="written to the store's history (default operator)")

    si = sub.add_parser(
        "schema",
        help="draft a schema file from a sample of your CSV or JSON-lines flows (schema infer)",
        description="Reads the first --rows rows of a CSV file (gzip or plain, with or without a header) or "
        "JSON-lines file (nested objects read by dotted names) and "
        "writes a commented schema file: numeric and categorical features, the key, the timestamp and the "
        "label with its normal values, each with the reason, and the columns left out and why. Edit it, "
        "then train with --schema FILE.",
    )
    si.add_argument("action", choices=("infer",))
    si.add_argument(
        "--data", required=True, metavar="FILE", help="a CSV or JSON-lines file of flows (gzip or plain)"
    )
    si.add_argument("--label", default=None, metavar="COLUMN", help="the label column (default: guessed)")
    si.add_argument("--name", default=None, help="the schema's name (default: from the file name)")
    si.add_argument("--rows", type=int_at_least(10), default=20_000, help="rows to sample (default 20,000)")
    si.add_argument("--delimiter", default=None, help="the field separator (default: guessed: , ; tab |)")
    si.add_argument("--header", choices=("auto", "yes", "no"), default="auto",
                    help="whether the first row names the columns (default: guessed)")  # fmt: skip
    si.add_argument("--out", default=None, metavar="FILE", help="write the draft here (default: stdout)")

    rt = sub.add_parser(
        "retrain",
        help="train a candidate on the original data and recent normal traffic; run it in shadow",
        description="Reads the input topic's recent records and keeps those the live model of STORE did not "
        "alert on, plus those analysts judged benign (verdicts on the feedback topic, joined to records "
        "through the alerts topic), never one judged attack; trains a candidate on them and the original "
        "training data with the live model's settings; adds it to the store as the shadow model.",
    )
    _add_reject_flag(rt)
    rt.add_argument("--model-store", required=True, metavar="STORE")
    rsrc = rt.add_mutually_exclusive_group(required=True)
    rsrc.add_argument("--data", nargs="+", metavar="PATH", help="the original training files")
    rsrc.add_argument("--synthetic", type=_positive_int, metavar="N", help="N synthetic normal records")
    rt.add_argument("--bootstrap-servers", default=_env("BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    rt.add_argument("--topic", default=_env("INPUT_TOPIC", "flowsentinel.records"), help="the input topic")
    rt.add_argument("--alerts-topic", default=_env("ALERTS_TOPIC", "flowsentinel.alerts"))
    rt.add_argument("--feedback-topic", default=_env("FEEDBACK_TOPIC", "flowsentinel.feedback"))
    rt.add_argument("--recent", type=_positive_int, default=50_000,
                    help="recent records to read, per input partition (default %(default)s)")  # fmt: skip
    rt.add_argument("--risk", type=_fraction(0.0, 0.5), default=0.01,
                    help="the live threshold's q, to tell which recent records alerted (default %(default)s)")  # fmt: skip
    rt.add_argument("--epochs", type=_positive_int, default=None, help="default: the live model's")
    rt.add_argument("--seed", type=_seed, default=None, help="default: the live model's")
    rt.add_argument("--limit", type=_positive_int, default=None, help="read at most N records per file")
    rt.add_argument("--quiet", action="store_true", help="no progress display")
    _add_key_flag(rt, "sign the candidate with the HMAC key in this file")
    _add_settings_flags(
        rt.add_argument_group(
            "Kafka security", "the same settings, flags and FLOWSENTINEL_* variables as detect's"
        ),
        only=SECURITY_SETTINGS,
    )

    s = sub.add_parser("score", help="score files with a trained model and the online threshold")
    _add_reject_flag(s)
    s.add_argument("--order", choices=("file", "time", "shuffled"), default="file",
                   help="file (default, streams in flat memory), time (by the records' timestamps), shuffled "
                   "(--seed): the last two read all files first")  # fmt: skip
    s.add_argument("--seed", type=int, default=0, help="for --order shuffled")
    s.add_argument("--model", required=True, metavar="MODEL_DIR")
    s.add_argument("--data", required=True, nargs="+", metavar="PATH")
    s.add_argument("--schema", default=None, help="schema of the data (default: the model's)")
    s.add_argument("--thresholder", choices=("spot", "quantile"), default="spot")
    s.add_argument(
        "--risk",
        type=_fraction(0.0, 0.5),
        default=0.01,
        help="target share of normal records that alert, q (default %(default)s)",
    )
    _add_policy_flags(s)
    s.add_argument("--out", default=None, metavar="CSV", help="write one row per record here")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument("--limit", type=_positive_int, default=None, help="read at most N records per file")
    s.add_argument("--quiet", action="store_true", help="no progress display")
    _add_key_flag(s, "refuse a model not signed with the HMAC key in this file")

    tu = sub.add_parser("tune", help="search model settings on a validation split of the training data")
    _add_reject_flag(tu)
    tu.add_argument("--schema", required=True)
    tu.add_argument(
        "--data", required=True, nargs="+", metavar="PATH", help="TRAINING files (never test files)"
    )
    tu.add_argument(
        "--out", required=True, metavar="DIR", help="writes tune-results.json and best-config.json"
    )
    tu.add_argument("--search", choices=("random", "grid"), default="random")
    tu.add_argument("--trials", type=_positive_int, default=8)
    tu.add_argument(
        "--epochs", type=_positive_int, default=15, help="epoch cap per trial (default %(default)s)"
    )
    _add_policy_flags(tu)
    tu.add_argument("--seed", type=_seed, default=0)
    tu.add_argument("--limit", type=_positive_int, default=None, help="read at most N records per file")

    ev = sub.add_parser("eval", help="evaluate a detector on labelled files through the service path")
    _add_reject_flag(ev)
    ev.add_argument("--ignore-labels", type=_names, default=[], metavar="LABEL[,LABEL...]",
                    help="records with these labels are scored but left out of the metrics (e.g. Background)")  # fmt: skip
    ev.add_argument("--model", required=True, metavar="MODEL_DIR")
    ev.add_argument("--schema", required=True, help="schema of the data files")
    ev.add_argument("--data", required=True, nargs="+", metavar="PATH")
    ev.add_argument("--out", required=True, metavar="REPORT_DIR", help="writes report.json and pictures here")
    ev.add_argument(
        "--detector",
        type=_detector_list,
        default=["lstm-ae"],
        metavar="NAME[,NAME...]",
        help=f"flowsentinel's LSTM autoencoder (default), a baseline, several side by side, or 'all' "
        f"({', '.join(DETECTORS)})",
    )
    ev.add_argument(
        "--train",
        nargs="+",
        metavar="PATH",
        default=None,
        help="labelled files whose normal records a baseline is fitted on (baselines only)",
    )
    ev.add_argument(
        "--order",
        choices=("file", "time", "shuffled"),
        default="file",
        help="stream order: as in the files, by timestamp, or shuffled (a control)",
    )
    ev.add_argument("--thresholder", choices=("spot", "quantile"), default="spot")
    ev.add_argument(
        "--risk", type=_fraction(0.0, 0.5), default=0.01, help="target risk q (default %(default)s)"
    )
    _add_policy_flags(ev)
    ev.add_argument("--seed", type=_seed, default=0)
    ev.add_argument("--limit", type=_positive_int, default=None, help="read at most N records per file")
    ev.add_argument("--no-pictures", action="store_true")
    ev.add_argument("--quiet", action="store_true", help="no progress display")
    _add_key_flag(ev, "refuse a model not signed with the HMAC key in this file")

    d = sub.add_parser(
        "detect",
        help="run the detector service on a Kafka topic",
        description="Every flag can also be set as FLOWSENTINEL_<FLAG> (e.g. "
        "FLOWSENTINEL_BOOTSTRAP_SERVERS) or in a TOML --config file.",
    )
    d.add_argument(
        "--config", default=None, metavar="FILE", help="TOML file of settings (same names as the flags)"
    )
    _add_settings_flags(d)

    pr = sub.add_parser("produce", help="replay a file, or synthetic traffic, into a Kafka topic")
    pr.add_argument("schema", help=f"{builtins}, a schema file, or 'synthetic'")
    pr.add_argument("--bootstrap-servers", default=_env("BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    pr.add_argument("--topic", default=_env("TOPIC", "flowsentinel.records"))
    pr.add_argument("--data", nargs="+", metavar="PATH", default=_env_list("DATA"))
    pace = pr.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=_positive_float,
        default=_env("RATE", None, _positive_float),
        help=f"records per second (synthetic default: {SYNTHETIC_RATE:g})",
    )
    pace.add_argument(
        "--speedup",
        type=_positive_float,
        default=_env("SPEEDUP", None, _positive_float),
        help="replay at X times the records' own timestamps",
    )
    pace.add_argument(
        "--realtime",
        action="store_true",
        default=_env("REALTIME", False, _truthy),
        help="replay at the records' own pace (--speedup 1)",
    )
    pr.add_argument(
        "--loop", action="store_true", default=_env("LOOP", False, _truthy), help="start over at the end"
    )
    pr.add_argument(
        "--limit", type=_positive_int, default=_env("LIMIT", None, _positive_int), help="stop after N records"
    )
    pr.add_argument(
        "--partitions",
        type=_positive_int,
        default=_env("PARTITIONS", 4, _positive_int),
        help="partitions if the topic has to be created (default %(default)s)",
    )
    pr.add_argument(
        "--compression",
        choices=("none", "gzip", "snappy", "lz4", "zstd"),
        default=_env("PRODUCE_COMPRESSION", "lz4"),
        help="the codec of the records written (default lz4; env FLOWSENTINEL_PRODUCE_COMPRESSION: "
        "FLOWSENTINEL_COMPRESSION is detect's, for its alerts and dead letters)",
    )
    pr.add_argument("--linger-ms", type=int, default=_env("LINGER_MS", 20, int))
    pr.add_argument("--batch-bytes", type=_positive_int, default=_env("BATCH_BYTES", 262144, _positive_int))
    pr.add_argument(
        "--hosts", type=_positive_int, default=_env("HOSTS", 200, _positive_int), help="synthetic: hosts"
    )
    pr.add_argument(
        "--attack-every",
        type=float,
        default=_env("ATTACK_EVERY", 30.0, float),
        help="synthetic: seconds between attack episodes (0: none)",
    )
    pr.add_argument("--seed", type=_seed, default=_env("SEED", 0, _seed), help="synthetic: random seed")
    pr.add_argument("--quiet", action="store_true", help="no progress display")

    _add_settings_flags(
        pr.add_argument_group(
            "Kafka security", "the same settings, flags and FLOWSENTINEL_* variables as detect's"
        ),
        only=(*SECURITY_SETTINGS, "kafka_client"),
    )

    fb = sub.add_parser(
        "feedback",
        help="send analysts' verdicts on alerts (a CSV or JSON-lines file) to the feedback topic",
        description="Each row judges one alert message (alert_id) or a whole episode (episode_id) as attack "
        "or benign. CSV: a header naming alert_id or episode_id, verdict, and optionally label, analyst. JSON "
        "lines: one verdict object per line, as on the topic. Every row is checked before any is sent.",
    )
    fb.add_argument("file", help="CSV (.csv) or JSON lines (anything else)")
    fb.add_argument("--bootstrap-servers", default=_env("BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    fb.add_argument("--topic", default=_env("FEEDBACK_TOPIC", "flowsentinel.feedback"))
    fb.add_argument("--verdict", choices=("attack", "benign"), default=None, help="for rows that give none")
    fb.add_argument("--analyst", default=None, help="for rows that name none")
    _add_settings_flags(
        fb.add_argument_group(
            "Kafka security", "the same settings, flags and FLOWSENTINEL_* variables as detect's"
        ),
        only=SECURITY_SETTINGS,
    )

    dm = sub.add_parser(
        "demo", help="everything at once: broker, model, detector, synthetic traffic, live view"
    )
    dm.add_argument(
        "--bootstrap-servers",
        default=_env("BOOTSTRAP_SERVERS", None),
        help="use this Kafka instead of starting an embedded broker",
    )
    dm.add_argument("--model", default=_env("MODEL", None), help="model directory (default: train one)")
    dm.add_argument(
        "--rate",
        type=_positive_float,
        default=_env("RATE", 500.0, _positive_float),
        help="records/s (default %(default)s)",
    )
    dm.add_argument("--metrics-port", type=int, default=_env("METRICS_PORT", 9464, int))
    dm.add_argument("--attack-every", type=float, default=_env("ATTACK_EVERY", 20.0, float))
    dm.add_argument("--duration", type=_positive_float, default=None, help="stop after S seconds")
    dm.add_argument(
        "--workdir", default=_env("WORKDIR", "models/demo"), help="where the demo keeps its model/state"
    )
    dm.add_argument(
        "--show-low",
        action="store_true",
        help="also list low-severity episodes (score under 2x the threshold) as they open and close; "
        "by default they are only counted",
    )
    _add_settings_flags(
        dm.add_argument_group("Kafka security", "with --bootstrap-servers: the same settings as detect's"),
        only=SECURITY_SETTINGS,
    )
    return p


class _FromEnv:
    """A flag's default taken from ``FLOWSENTINEL_<NAME>``, checked only when the command that has the flag
    runs (:func:`_resolve_env`): a variable meant for ``produce`` must not stop ``detect --help``."""

    def __init__(self, name: str, raw: str, convert: Any) -> None:
        self.name, self.raw, self.convert = name, raw, convert

    def __str__(self) -> str:
        return self.raw

    def resolve(self) -> Any:
        try:
            return self.convert(self.raw)
        except argparse.ArgumentTypeError as exc:  # the flag's own check, e.g. a negative seed
            print(f"flowsentinel: error: FLOWSENTINEL_{self.name}: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        except ValueError:
            print(
                f"flowsentinel: error: FLOWSENTINEL_{self.name} = {self.raw!r} is not valid", file=sys.stderr
            )
            raise SystemExit(2) from None


def _env(name: str, default: Any, convert: Any = str) -> Any:
    raw = os.environ.get("FLOWSENTINEL_" + name)
    return default if raw is None else _FromEnv(name, raw, convert)


def _resolve_env(args: argparse.Namespace) -> None:
    """Convert the parsed command's environment defaults (the flags it was given need none)."""
    for key, value in vars(args).items():
        if isinstance(value, _FromEnv):
            setattr(args, key, value.resolve())


def _env_list(name: str) -> list[str] | None:
    raw = os.environ.get("FLOWSENTINEL_" + name)
    return raw.split() if raw else None


def _truthy(text: str) -> bool:
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if text.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


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
    from flowsentinel.consumers.settings import Secret
    from flowsentinel.detector.artifact import check_key, read_key

    if args.model_key_file:
        key = read_key(args.model_key_file)
        Secret(key.decode(errors="replace"))  # remembered: never in a log line
        return key
    if env and os.environ.get("FLOWSENTINEL_MODEL_KEY"):
        secret = Secret(os.environ["FLOWSENTINEL_MODEL_KEY"])
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


# ------------------------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from flowsentinel.detector.artifact import key_id, save_artifact
    from flowsentinel.detector.schema import RecordBatch, load_schema
    from flowsentinel.detector.train import train

    schema = load_schema(args.schema)
    if not args.data and schema.name != "kdd":
        raise UsageError(f"--synthetic writes kdd records; --schema {args.schema!r} does not match")
    cfg = _train_config(args)
    key = _model_key(args)  # before the training: a wrong key file is one line, not a lost hour
    _check_out_dir(args.out)
    started = time.monotonic()
    batches = []
    if args.synthetic:
        from flowsentinel.producers.synthetic import normal_training_records, to_batch

        batches.append(to_batch(normal_training_records(args.synthetic, seed=cfg.seed)))
    if args.data:
        batches.append(_read_files(args.data, schema, "--data", args.limit, args.max_reject_share))
    data = RecordBatch.concat(batches)
    normal = data.is_normal
    if normal is None:
        log.warning(
            "the data has no label field %r: training on all %d records as normal", schema.label, len(data)
        )
        train_batch = data
    else:
        train_batch = data.take(np.flatnonzero(normal))
        labels = data.labels if data.labels is not None else np.zeros(0, dtype=object)
        if len(train_batch) < max(10, 0.001 * len(data)):  # the normal labels match (almost) nothing
            seen: list[tuple[str, int]] = collections.Counter(labels.tolist()).most_common(8)
            shown = ", ".join(f"{label!r} {n:,}" for label, n in seen)
            raise UsageError(
                f"only {len(train_batch):,} of {len(data):,} records are labelled normal "
                f"({sorted(schema.normal_labels)} in field {schema.label!r}); the labels seen: {shown}. "
                "Name the normal label(s) in the schema's normal_labels"
            )
    read_s = time.monotonic() - started
    print(f"read {len(data):,} records ({len(train_batch):,} normal) in {read_s:.1f}s", file=sys.stderr)
    model = train(train_batch, cfg, progress=partial(progress_bar, quiet=args.quiet))
    save_artifact(model, args.out, key=key)
    weights = Path(args.out) / "weights.pt"
    n_params = sum(p.numel() for p in model.net.parameters())
    tr = model.training
    summary = {
        "model_dir": str(args.out),
        "model_version": model.version,
        "signed_with_key": key_id(key) if key else None,
        "schema": schema.name,
        "records_read": len(data),
        "records_rejected": len(data.rejected),
        "normal_records": len(train_batch),
        "features": model.encoder.width,
        "parameters": n_params,
        "weights_bytes": weights.stat().st_size,
        "epochs_run": tr["epochs_run"],
        "best_epoch": tr["best_epoch"],
        "stopped": tr.get("stopped"),
        "val_loss_initial": tr["initial_val_loss"],
        "val_loss_best": tr["best_val_loss"],
        "train_seconds": tr["seconds"],
        "total_seconds": round(time.monotonic() - started, 2),
        "calibration": model.calibration_quantiles(),
    }
    print(
        f"trained {schema.name} model ({tr['members']} members) on {len(train_batch):,} normal records: "
        f"{tr['epochs_run']} epochs (best {', '.join(map(str, tr['best_epoch']))}; stopped by "
        f"{', '.join(sorted(set(tr.get('stopped') or ['?'])))}), val loss {tr['initial_val_loss']:.5f} → {tr['best_val_loss']:.5f}, "
        f"{tr['seconds']:.1f}s; {n_params:,} parameters, {weights.stat().st_size / 1024:.0f} KiB; "
        f"saved to {args.out} (version {model.version})"
    )
    Path(args.out, "training-summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


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


TRAIN_FLAGS = (
    "window", "hidden", "latent", "members", "record_path", "scoring", "epochs", "batch_size", "lr", "patience", "min_improvement", "max_minutes", "val_fraction", "val_split", "calibrate_on", "seed",
)  # fmt: skip


def _train_config(args: argparse.Namespace) -> Any:
    from flowsentinel.detector.train import TrainConfig

    values: dict[str, Any] = {}
    if getattr(args, "config", None):
        path = Path(args.config)
        try:
            loaded = json.loads(path.read_text())
        except OSError as exc:
            raise UsageError(f"--config {args.config!r}: {exc.strerror}") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"--config {args.config!r} is not valid JSON: {exc}") from None
        known = set(TrainConfig.__dataclass_fields__)
        values.update({k: v for k, v in loaded.items() if k in known})
    values.update({k: getattr(args, k) for k in TRAIN_FLAGS if getattr(args, k, None) is not None})
    try:
        return TrainConfig(**values)
    except TypeError as exc:
        raise UsageError(f"--config {args.config!r}: {exc}") from None


# -------------------------------------------------------------------------------------------- tune
def cmd_tune(args: argparse.Namespace) -> int:
    from flowsentinel.detector.schema import load_schema
    from flowsentinel.detector.train import TrainConfig
    from flowsentinel.detector.tuning import results_table, tune

    schema = load_schema(args.schema)
    _check_out_dir(args.out)
    data = _read_files(args.data, schema, "--data", args.limit, args.max_reject_share)
    base = TrainConfig(epochs=args.epochs, seed=args.seed)
    out = Path(args.out)

    def show(trial: Any) -> None:
        p = trial.params
        print(
            f"  window {p['window']:>2} hidden {p['hidden']:>2} latent {p['latent']:>2} lr {p['lr']:<6g} → "
            f"val AUROC {trial.auroc:.4f} AUPRC {trial.auprc:.4f} ({trial.seconds:.0f}s)",
            flush=True,
        )

    trials, best = tune(
        data,
        base=base,
        search=args.search,
        trials=args.trials,
        seed=args.seed,
        on_trial=show,
        policy=shift_policy(args),
    )
    # the service settings q was chosen under (`detect --config`): the risk alone would meet another policy
    threshold = {"thresholder": "spot", "risk": best["risk"], **policy_settings(args)}
    best["detect"] = threshold
    (out / "tune-results.json").write_text(json.dumps([vars(t) for t in trials], indent=1) + "\n")
    (out / "best-config.json").write_text(json.dumps(best, indent=1) + "\n")
    lines = [f"{k} = {json.dumps(v)}" for k, v in threshold.items()]  # JSON strings and numbers are TOML
    (out / "detect.toml").write_text(
        "# written by `flowsentinel tune`\n[flowsentinel]\n" + "\n".join(lines) + "\n"
    )
    print("\n" + results_table(trials))
    print(f"\nbest: {json.dumps({k: best[k] for k in ('window', 'hidden', 'latent', 'lr', 'risk')})}")
    print(
        f"train with it:  flowsentinel train --config {out / 'best-config.json'} --schema {args.schema} --data ..."
    )
    print(f"then detect:    flowsentinel detect --model MODEL_DIR --config {out / 'detect.toml'}")
    return 0


# ------------------------------------------------------------------------------------------- score
def _score_batches(args: argparse.Namespace, schema: Any) -> Iterator[Any]:
    """What ``score`` scores: each file's batches as read (flat memory), or with ``--order time|shuffled``
    all files read, then ordered, in batches of :data:`EVAL_BATCH`."""
    if args.order == "file":
        for path in args.data:
            yield from _file_batches(path, schema, "--data", args.limit, max_share=args.max_reject_share)
        return
    data = _ordered(
        _read_files(args.data, schema, "--data", args.limit, args.max_reject_share), args.order, args.seed
    )
    rejected = data.rejected
    for s in range(0, len(data), EVAL_BATCH):
        batch = data.take(np.arange(s, min(s + EVAL_BATCH, len(data))))
        batch.rejected = rejected if s == 0 else []  # counted once
        yield batch


def cmd_score(args: argparse.Namespace) -> int:
    from flowsentinel.detector.artifact import load_artifact
    from flowsentinel.detector.metrics import at_threshold, auprc, auroc
    from flowsentinel.detector.pipeline import Detector
    from flowsentinel.detector.schema import load_schema
    from flowsentinel.detector.thresholds import make_thresholder

    _check_files(args.data, "--data")
    if args.out:
        _check_out_file(args.out)
    model = load_artifact(args.model, key=_model_key(args))
    schema = load_schema(args.schema) if args.schema else model.schema
    det = Detector(model, make_thresholder(args.thresholder, args.risk, shift_policy(args)))
    scores: list[np.ndarray] = []
    alerts: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    rejected = 0
    writer = None
    # a key may hold a lone surrogate (valid in JSON-lines input): written as its \uXXXX escape
    out_fh = None
    if args.out:
        out_fh = open(args.out, "w", newline="", encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
    bar = progress_bar(total=None, desc="score", unit="rec", quiet=args.quiet)
    try:
        if out_fh is not None:
            writer = csv.writer(out_fh)
            writer.writerow(["position", "key", "score", "threshold", "alert", "label", "top_features"])
        for batch in _score_batches(args, schema):
            rejected += len(batch.rejected)
            bar.update(len(batch) + len(batch.rejected))
            if len(batch) == 0:
                continue
            v = det.process_batch(batch)
            scores.append(v.scores)
            alerts.append(v.alerts)
            if batch.labels is not None:
                labels.append(~schema.is_normal(batch.labels))
            if writer is not None:
                for i in range(len(batch)):
                    top = ";".join(f"{f}={share:.2f}" for f, share in v.top_features(i))
                    label = "" if batch.labels is None else batch.labels[i]
                    writer.writerow(
                        [
                            batch.positions[i],
                            batch.keys[i],
                            f"{v.scores[i]:.6g}",
                            f"{v.thresholds[i]:.6g}",
                            int(v.alerts[i]),
                            label,
                            top,
                        ]
                    )
    finally:
        bar.close()
        if out_fh is not None:
            out_fh.close()
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_alerts = np.concatenate(alerts) if alerts else np.zeros(0, dtype=bool)
    n = len(all_scores)
    th = det.thresholder
    summary: dict[str, Any] = {
        "model_version": model.version,
        "records": n,
        "rejected": rejected,
        "alerts": int(all_alerts.sum()),
        "alerts_per_10k": round(1e4 * float(all_alerts.sum()) / n, 2) if n else 0.0,
        "thresholder": th.kind,
        "risk": args.risk,
        "threshold_final": th.threshold,
        "rebaselines": th.rebaselines,
        "rejected_shifts": th.rejected_shifts,
        "policy": th.describe()["policy"],
        "unknown_categories": det.unknown_total,
    }
    if labels and len(labels) == len(scores):
        y = np.concatenate(labels)
        summary.update(
            {"auroc": auroc(y, all_scores), "auprc": auprc(y, all_scores), "attacks": int(y.sum())}
        )
        summary.update(at_threshold(y, all_alerts))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_summary(summary)
    return 0


def _print_summary(s: dict[str, Any]) -> None:
    print(
        f"records {s['records']:,}  rejected {s['rejected']:,}  alerts {s['alerts']:,} "
        f"({s['alerts_per_10k']} per 10k)  threshold {s['thresholder']} q={s['risk']} → {s['threshold_final']:.4g}"
    )
    if "auroc" in s:
        print(
            f"AUROC {s['auroc']:.4f}  AUPRC {s['auprc']:.4f}  at the online threshold: precision "
            f"{s['precision']:.3f} recall {s['recall']:.3f} F1 {s['f1']:.3f} FPR {s['fpr']:.3f}"
        )


# -------------------------------------------------------------------------------------------- eval
EVAL_BATCH = 2_000  # the service's default poll batch


def _need_eval_extra(module: str, what: str, *, wanted: bool) -> None:
    """Say in one line, before any work, that an ``eval`` feature needs the ``eval`` extra (the service's
    install leaves scikit-learn and matplotlib out)."""
    import importlib.util

    if wanted and importlib.util.find_spec(module) is None:
        raise UsageError(f"{what}: {module} is not installed (pip install 'flowsentinel[eval]')")


def cmd_eval(args: argparse.Namespace) -> int:
    from flowsentinel.detector.artifact import load_artifact
    from flowsentinel.detector.evaluation import comparison_table, markdown_summary
    from flowsentinel.detector.schema import load_schema
    from flowsentinel.report import write_comparison, write_pictures, write_report

    _check_files(args.data, "--data")
    baselines = [d for d in args.detector if d != "lstm-ae"]
    if baselines and not args.train:
        raise UsageError(
            f"--detector {','.join(baselines)} needs --train PATH... (normal records to fit it on)"
        )
    if not baselines and args.train:
        raise UsageError("--train is for baselines; the lstm-ae model is trained with `flowsentinel train`")
    _check_files(args.train or [], "--train")
    _need_eval_extra("matplotlib", "the pictures (or --no-pictures)", wanted=not args.no_pictures)
    _need_eval_extra("sklearn", "the iforest baseline", wanted="iforest" in args.detector)
    _check_out_dir(args.out)
    model = load_artifact(args.model, key=_model_key(args))
    schema = load_schema(args.schema)
    model.encoder.check_schema(schema)
    data = _read_files(args.data, schema, "--data", args.limit, args.max_reject_share)
    if data.labels is None:
        raise UsageError(f"--data has no label field {schema.label!r}: evaluation needs labelled records")
    data = _ordered(data, args.order, args.seed)
    normal = None
    if baselines:
        train = _read_files(args.train, schema, "--train", max_share=args.max_reject_share)
        normal = train if train.is_normal is None else train.take(np.flatnonzero(train.is_normal))
    out = Path(args.out)
    side_by_side = len(args.detector) > 1
    reports, results = [], []
    for name in args.detector:
        report, result = _eval_one(name, model, data, schema, normal, args)
        folder = out / name if side_by_side else out
        if not args.no_pictures:
            report["pictures"] = write_pictures(result, report, folder)
        path = write_report(report, folder)
        print(markdown_summary(report))
        print(f"\nreport: {path}\n")
        reports.append(report)
        results.append(result)
    if side_by_side:
        table = comparison_table(reports)
        written = write_comparison(reports, results, out, pictures=not args.no_pictures)
        print(table)
        print(f"\nside by side: {', '.join(str(out / w) for w in written)}")
    return 0


def _eval_one(
    name: str, model: Any, data: Any, schema: Any, normal: Any, args: argparse.Namespace
) -> tuple[dict[str, Any], Any]:
    """One detector through the service path (its own fresh thresholder); returns (report, stream result)."""
    from flowsentinel.detector.baselines import BaselineDetector, fit_baseline
    from flowsentinel.detector.evaluation import run_stream, summarize
    from flowsentinel.detector.pipeline import Detector
    from flowsentinel.detector.thresholds import make_thresholder

    thresholder = make_thresholder(args.thresholder, args.risk, shift_policy(args))
    extra: dict[str, Any] = {"model_version": model.version}
    detector: Any
    if name == "lstm-ae":
        detector = Detector(model, thresholder)
    else:
        fitted = fit_baseline(name, normal, model.encoder, seed=args.seed)
        detector = BaselineDetector(fitted, thresholder)
        extra["baseline_fit_seconds"] = round(fitted.fit_seconds, 2)
    chunks = (
        data.take(np.arange(s, min(s + EVAL_BATCH, len(data)))) for s in range(0, len(data), EVAL_BATCH)
    )
    bar = progress_bar(total=len(data), quiet=args.quiet, unit="rec", desc=f"eval {name}")
    started = time.monotonic()
    result = run_stream(detector, chunks, schema, on_batch=bar.update)
    bar.close()
    result.rejected = len(data.rejected)
    extra.update(
        {
            "schema": schema.name,
            "data": [Path(p).name for p in args.data],
            "order": args.order,
            "seed": args.seed,
            "seconds": round(time.monotonic() - started, 2),
        }
    )
    files = np.array([p.rsplit(" line ", 1)[0] for p in data.positions], dtype=object)
    # ignored labels are scored like all traffic, and left out of the metrics (e.g. Stratosphere's Background)
    if args.ignore_labels:
        wanted = {schema.clean_label(v) for v in args.ignore_labels}
        ignored = np.isin(result.labels, list(wanted))
        extra["ignored_labels"] = {v: int((result.labels == v).sum()) for v in sorted(wanted)}
        result, files = result.take(~ignored), files[~ignored]
    names = sorted(set(files.tolist()))
    if len(names) > 1:
        per_file = {}
        for f in names:
            part = summarize(result.take(files == f), detector=name)
            per_file[f] = {k: part[k] for k in ("records", "attacks", "auroc", "auprc", "recall_at_fpr", "fpr",
                                                "recall", "alerts_per_10k")}  # fmt: skip
        extra["per_file"] = per_file
    return summarize(result, detector=name, extra=extra), result


def _ordered(data: Any, order: str, seed: int) -> Any:
    if order == "shuffled":
        return data.take(np.random.default_rng(seed).permutation(len(data)))
    if order == "time":
        if np.isnan(data.timestamps).all():
            raise UsageError("--order time: the data carries no timestamps")
        return data.take(np.argsort(data.timestamps, kind="stable"))
    return data


# ------------------------------------------------------------------------------------------ detect


def cmd_detect(args: argparse.Namespace) -> int:
    import signal
    import threading

    # first, before the imports and the model load: a SIGTERM during start-up is a clean stop (exit 0)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())

    from flowsentinel.consumers.main import run_detect
    from flowsentinel.consumers.settings import Settings

    values = {k: v for k, v in vars(args).items() if k not in ("command", "verbose")}
    settings = Settings.load(values)
    logging.getLogger().setLevel(settings.log_level.upper())
    return run_detect(settings, stop=stop)


# ----------------------------------------------------------------------------------------- produce
def cmd_produce(args: argparse.Namespace) -> int:
    if "FLOWSENTINEL_COMPRESSION" in os.environ and "FLOWSENTINEL_PRODUCE_COMPRESSION" not in os.environ:
        print(
            "flowsentinel produce: note: FLOWSENTINEL_COMPRESSION is detect's codec (alerts, dead letters), not "
            f"produce's; writing with {args.compression} (set FLOWSENTINEL_PRODUCE_COMPRESSION)",
            file=sys.stderr,
        )
    from flowsentinel.detector.schema import load_schema
    from flowsentinel.kafka.admin import ensure_topics
    from flowsentinel.producers.files import iter_batches
    from flowsentinel.producers.publisher import Pacer, Publisher, publish, replay_producer
    from flowsentinel.producers.synthetic import SyntheticTraffic

    synthetic = args.schema == "synthetic"
    speedup = 1.0 if args.realtime else args.speedup
    if synthetic:
        if args.data:
            raise UsageError("--data is not used with 'synthetic'")
        rate = args.rate or SYNTHETIC_RATE
        pacer = Pacer(rate=rate)
        gen = SyntheticTraffic(seed=args.seed, hosts=args.hosts, attack_every_s=args.attack_every)
        schema = gen.schema

        source: Any = gen.stream(rate=rate)
    else:
        schema = load_schema(args.schema)
        if not args.data:
            raise UsageError("--data PATH is required (or use 'synthetic')")
        _check_files(args.data, "--data")
        for path in args.data:  # a wrong file is named before anything connects, not after a broker error
            for _ in _file_batches(path, schema, "--data", max_rows=PROBE_ROWS):
                pass
        pacer = Pacer(rate=args.rate, speedup=speedup)

        def file_batches():
            while True:
                for path in args.data:
                    yield from iter_batches(path, schema)
                if not args.loop:
                    return
                pacer.restart_clock()

        source = file_batches()
    from flowsentinel.consumers.settings import client_security
    from flowsentinel.kafka.conn import KafkaUnreachable

    try:
        settings, security = client_security(args.bootstrap_servers, vars(args))
    except KafkaUnreachable as exc:  # not a bad argument: exit 1, as for a failed delivery
        print(f"flowsentinel produce: error: {exc}", file=sys.stderr)
        return 1
    ensure_topics(args.bootstrap_servers, {args.topic: args.partitions}, security=security)
    from flowsentinel.kafka.client import resolve_client

    producer = replay_producer(
        args.bootstrap_servers,
        client=resolve_client(settings.kafka_client),
        compression=args.compression,
        linger_ms=args.linger_ms,
        batch_bytes=args.batch_bytes,
        config=settings.client_config(security),
    )
    publisher = Publisher(args.topic, producer)
    bar = progress_bar(total=args.limit, quiet=args.quiet, unit="rec", desc=f"→ {args.topic}")
    limit = args.limit if (args.limit or not synthetic) else None
    try:
        summary = publish(
            source,
            publisher,
            pacer,
            key_field=schema.key,
            ts_field=schema.timestamp,
            limit=limit,
            on_progress=bar.update,
        )
    except KeyboardInterrupt:
        summary = publisher.summary
        print("interrupted", file=sys.stderr)
    finally:
        bar.close()
        publisher.close()
    report = summary.as_dict()
    print(
        f"sent {report['sent']:,}  failed {report['failed']:,}  skipped {report['skipped']:,} "
        f"{report['skipped_reasons'] or ''} in {report['seconds']}s ({report['records_per_second'] or 0:,} rec/s)"
    )
    for err in summary.first_errors:
        print(f"  {err}", file=sys.stderr)
    return 0 if summary.failed == 0 else 1


# -------------------------------------------------------------------------------------------- feedback
def read_verdicts(path: str, verdict: str | None = None, analyst: str | None = None) -> list[dict[str, Any]]:
    """The verdict messages a file holds, each checked as the service checks it (UsageError naming the
    rows that are not verdicts)."""
    from flowsentinel.consumers.feedback import VerdictError, parse_verdict

    text = Path(path).read_text(encoding="utf-8", errors="replace")
    rows: list[tuple[int, Any]] = []
    if path.endswith(".csv"):
        for i, row in enumerate(csv.DictReader(text.splitlines()), start=2):
            rows.append((i, {k.strip(): v.strip() for k, v in row.items() if k and v and v.strip()}))
    else:
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    rows.append((i, json.loads(line)))
                except ValueError as exc:
                    rows.append((i, f"not JSON ({exc})"))
    out, errors = [], []
    for i, row in rows:
        if isinstance(row, dict):
            row = {
                **({"verdict": verdict} if verdict else {}),
                **({"analyst": analyst} if analyst else {}),
                **row,
            }
        try:
            if not isinstance(row, dict):
                raise VerdictError(str(row))
            parse_verdict(json.dumps(row).encode())
            out.append(row)
        except VerdictError as exc:
            errors.append(f"line {i}: {exc}")
    if errors:
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        raise UsageError(f"{path}: {len(errors)} row(s) are not verdicts: " + "; ".join(errors[:5]) + more)
    if not out:
        raise UsageError(f"{path}: no verdicts")
    return out


def cmd_feedback(args: argparse.Namespace) -> int:
    from flowsentinel.consumers.settings import client_security
    from flowsentinel.kafka.conn import KafkaUnreachable
    from flowsentinel.producers.publisher import Publisher, replay_producer

    _check_files([args.file], "file")
    verdicts = read_verdicts(args.file, args.verdict, args.analyst)
    try:
        _, security = client_security(args.bootstrap_servers, vars(args))
    except KafkaUnreachable as exc:
        print(f"flowsentinel feedback: error: {exc}", file=sys.stderr)
        return 1
    publisher = Publisher(
        args.topic, replay_producer(args.bootstrap_servers, compression="none", security=security)
    )
    try:
        for v in verdicts:
            publisher.send(v, v.get("alert_id") or v.get("episode_id"))
        publisher.flush(timeout=30)
    finally:
        publisher.close()
    summary = publisher.summary
    print(f"sent {summary.sent:,} verdict(s) to {args.topic}  failed {summary.failed:,}")
    for err in summary.first_errors:
        print(f"  {err}", file=sys.stderr)
    return 0 if summary.failed == 0 else 1


# ------------------------------------------------------------------------------------ models, retrain
def cmd_models(args: argparse.Namespace) -> int:
    from flowsentinel.detector.store import ModelStore

    store = ModelStore(args.store)
    if args.action in ("add", "shadow") and not args.model:
        raise UsageError(
            f"models {args.action} needs MODEL_DIR{'|VERSION' if args.action == 'shadow' else ''}"
        )
    if args.action == "add":
        version = store.add(args.model)
        print(f"added {version}")
        if args.live:
            store.set("live", version, reason=args.reason, action="add")
            print(f"live: {version}")
    elif args.action == "shadow":
        version = args.model if (store.versions / args.model).is_dir() else store.add(args.model)
        store.set("shadow", version, reason=args.reason, action="shadow")
        print(f"shadow: {version} (live: {store.version_of('live')})")
    elif args.action == "promote":
        old, new = store.promote(reason=args.reason)
        print(f"promoted {new} to live (previous: {old})")
    elif args.action == "rollback":
        old, new = store.rollback(reason=args.reason)
        print(f"rolled back: live {old} -> {new}")
    else:
        print(json.dumps(store.describe(), indent=1))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from flowsentinel.consumers.settings import client_security
    from flowsentinel.detector.artifact import load_artifact
    from flowsentinel.detector.store import ModelStore
    from flowsentinel.kafka.conn import KafkaUnreachable
    from flowsentinel.retrain import judged_positions, read_topic, recent_normal, retrain

    store = ModelStore(args.model_store)
    key = _model_key(args)
    live = load_artifact(store.path("live"), key=key)
    if args.synthetic:
        from flowsentinel.producers.synthetic import normal_training_records, to_batch

        original = to_batch(normal_training_records(args.synthetic, seed=args.seed or 0))
    else:
        data = _read_files(args.data, live.schema, "--data", args.limit, args.max_reject_share)
        normal = data.is_normal
        original = data if normal is None else data.take(np.flatnonzero(normal))
    try:
        settings, _ = client_security(args.bootstrap_servers, vars(args))
    except KafkaUnreachable as exc:
        print(f"flowsentinel retrain: error: {exc}", file=sys.stderr)
        return 1
    options = settings.kafka_common()
    messages = read_topic(options, args.topic, args.recent)
    judged = judged_positions(read_topic(options, args.alerts_topic, None),
                              read_topic(options, args.feedback_topic, None))  # fmt: skip
    recent, counts = recent_normal(live, messages, judged, risk=args.risk)
    overrides = {k: getattr(args, k) for k in ("epochs", "seed") if getattr(args, k) is not None}
    model = retrain(live, original, recent, overrides=overrides,
                    progress=partial(progress_bar, quiet=args.quiet))  # fmt: skip
    version = store.add(model, key=key)
    store.set("shadow", version, reason=f"retrain: {counts['kept']:,} recent records", action="retrain")
    summary = {"shadow": version, "live": live.version, "original_records": len(original), "recent": counts}
    print(json.dumps(summary))
    return 0


# -------------------------------------------------------------------------------------------- sign
def cmd_sign(args: argparse.Namespace) -> int:
    from flowsentinel.detector.artifact import sign_artifact

    key = _model_key(args, env=True)
    if key is None:
        raise UsageError("no key: pass --model-key-file FILE or set FLOWSENTINEL_MODEL_KEY")
    key_id = sign_artifact(args.model, key)
    print(f"signed {args.model} with key {key_id}")
    return 0


# ------------------------------------------------------------------------------------------ schema
def cmd_schema(args: argparse.Namespace) -> int:
    from flowsentinel.detector.infer import draft_schema
    from flowsentinel.detector.schema import RecordBatch
    from flowsentinel.producers.files import is_json_lines, iter_batches, sample_csv, sample_json

    stem = Path(args.data).name.split(".")[0]
    name = args.name or (re.sub(r"[^a-z0-9_.-]+", "-", stem.lower()).strip("-.") or "my-flows")
    if not name[0].isalpha():
        name = "flows-" + name
    if is_json_lines(args.data):
        fields, rows, absent = sample_json(args.data, args.rows)
        draft = draft_schema(fields, rows, name=name[:64], label=args.label, absent=absent)
    else:
        header, rows, delimiter = sample_csv(
            args.data, args.rows, delimiter=args.delimiter, header=args.header
        )
        draft = draft_schema(header, rows, name=name[:64], label=args.label, delimiter=delimiter)
    schema = draft.schema()  # the draft must be a valid schema before anyone edits it
    # and it is tried on the sample through the reader train and eval use
    batch = RecordBatch.concat(list(iter_batches(args.data, schema, max_rows=args.rows)))
    text = draft.toml(args.data, args.out or "")
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="")
    shown = _reasons_said(collections.Counter(err.code for err in batch.rejected))
    print(
        f"schema infer: {len(schema.numeric)} numeric, {len(schema.categorical)} categorical, key "
        f"{schema.key!r}, timestamp {schema.timestamp!r}, label {schema.label!r} (normal: "
        f"{sorted(schema.normal_labels) or 'none found'}); {len(draft.by_role('left out'))} column(s) left out. "
        f"{len(batch):,} of {len(batch) + len(batch.rejected):,} sampled rows parse with it"
        + (f" (rejected: {shown})" if shown else "")
        + (f"; written to {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    return 0


# -------------------------------------------------------------------------------------------- demo
def cmd_demo(args: argparse.Namespace) -> int:
    from flowsentinel.demo import run_demo

    return run_demo(args)


# -------------------------------------------------------------------------------------------- main
COMMANDS = {
    "train": cmd_train,
    "score": cmd_score,
    "eval": cmd_eval,
    "tune": cmd_tune,
    "detect": cmd_detect,
    "produce": cmd_produce,
    "feedback": cmd_feedback,
    "sign": cmd_sign,
    "models": cmd_models,
    "retrain": cmd_retrain,
    "schema": cmd_schema,
    "demo": cmd_demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _resolve_env(args)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from flowsentinel.consumers.settings import redact_secrets_in_logs

    redact_secrets_in_logs()
    try:
        return COMMANDS[args.command](args)
    except (UsageError, FlowSentinelError) as exc:
        print(f"flowsentinel {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flowsentinel {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
