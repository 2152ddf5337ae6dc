"""The argument parser of every command (kept apart from the commands' code: ``--help`` imports no torch)."""

from __future__ import annotations

import argparse

from flowsentinel.cli.common import (
    DETECTORS,
    SYNTHETIC_RATE,
    _add_key_flag,
    _add_policy_flags,
    _add_reject_flag,
    _add_settings_flags,
    _detector_list,
    _fraction,
    _names,
    _number_at_least,
    _Parser,
    _positive_float,
    _positive_int,
    _seed,
    _share,
    int_at_least,
)
from flowsentinel.environment import flag_default, flag_default_list
from flowsentinel.kafka.connection import parse_bool


def build_parser() -> argparse.ArgumentParser:
    from flowsentinel.detector.schema import BUILTIN_SCHEMAS
    from flowsentinel.kafka.connection import SECURITY_SETTINGS

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
    rt.add_argument(
        "--bootstrap-servers", default=flag_default("retrain", "BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    rt.add_argument(
        "--topic",
        default=flag_default("retrain", "INPUT_TOPIC", "flowsentinel.records"),
        help="the input topic",
    )
    rt.add_argument("--alerts-topic", default=flag_default("retrain", "ALERTS_TOPIC", "flowsentinel.alerts"))
    rt.add_argument(
        "--feedback-topic", default=flag_default("retrain", "FEEDBACK_TOPIC", "flowsentinel.feedback")
    )
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
    pr.add_argument(
        "--bootstrap-servers", default=flag_default("produce", "BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    pr.add_argument(
        "--topic",
        default=flag_default(
            "produce", "INPUT_TOPIC", flag_default("produce", "TOPIC", "flowsentinel.records")
        ),
    )
    pr.add_argument("--data", nargs="+", metavar="PATH", default=flag_default_list("produce", "DATA"))
    pace = pr.add_mutually_exclusive_group()
    pace.add_argument(
        "--rate",
        type=_positive_float,
        default=flag_default("produce", "RATE", None, _positive_float),
        help=f"records per second (synthetic default: {SYNTHETIC_RATE:g})",
    )
    pace.add_argument(
        "--speedup",
        type=_positive_float,
        default=flag_default("produce", "SPEEDUP", None, _positive_float),
        help="replay at X times the records' own timestamps",
    )
    pace.add_argument(
        "--realtime",
        action="store_true",
        default=flag_default("produce", "REALTIME", False, parse_bool),
        help="replay at the records' own pace (--speedup 1)",
    )
    pr.add_argument(
        "--loop",
        action="store_true",
        default=flag_default("produce", "LOOP", False, parse_bool),
        help="start over at the end",
    )
    pr.add_argument(
        "--limit",
        type=_positive_int,
        default=flag_default("produce", "LIMIT", None, _positive_int),
        help="stop after N records",
    )
    pr.add_argument(
        "--partitions",
        type=_positive_int,
        default=flag_default("produce", "PARTITIONS", 4, _positive_int),
        help="partitions if the topic has to be created (default %(default)s)",
    )
    pr.add_argument(
        "--compression",
        choices=("none", "gzip", "snappy", "lz4", "zstd"),
        default=flag_default("produce", "PRODUCE_COMPRESSION", "lz4"),
        help="the codec of the records written (default lz4; env FLOWSENTINEL_PRODUCE_COMPRESSION: "
        "FLOWSENTINEL_COMPRESSION is detect's, for its alerts and dead letters)",
    )
    pr.add_argument("--linger-ms", type=int, default=flag_default("produce", "LINGER_MS", 20, int))
    pr.add_argument(
        "--batch-bytes",
        type=_positive_int,
        default=flag_default("produce", "BATCH_BYTES", 262144, _positive_int),
    )
    pr.add_argument(
        "--hosts",
        type=_positive_int,
        default=flag_default("produce", "HOSTS", 200, _positive_int),
        help="synthetic: hosts",
    )
    pr.add_argument(
        "--attack-every",
        type=float,
        default=flag_default("produce", "ATTACK_EVERY", 30.0, float),
        help="synthetic: seconds between attack episodes (0: none)",
    )
    pr.add_argument(
        "--seed", type=_seed, default=flag_default("produce", "SEED", 0, _seed), help="synthetic: random seed"
    )
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
    fb.add_argument(
        "--bootstrap-servers", default=flag_default("feedback", "BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    fb.add_argument("--topic", default=flag_default("feedback", "FEEDBACK_TOPIC", "flowsentinel.feedback"))
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
        default=flag_default("demo", "BOOTSTRAP_SERVERS", None),
        help="use this Kafka instead of starting an embedded broker",
    )
    dm.add_argument(
        "--model", default=flag_default("demo", "MODEL", None), help="model directory (default: train one)"
    )
    dm.add_argument(
        "--rate",
        type=_positive_float,
        default=flag_default("demo", "RATE", 500.0, _positive_float),
        help="records/s (default %(default)s)",
    )
    dm.add_argument("--metrics-port", type=int, default=flag_default("demo", "METRICS_PORT", 9464, int))
    dm.add_argument("--attack-every", type=float, default=flag_default("demo", "ATTACK_EVERY", 20.0, float))
    dm.add_argument("--duration", type=_positive_float, default=None, help="stop after S seconds")
    dm.add_argument(
        "--workdir",
        default=flag_default("demo", "WORKDIR", "models/demo"),
        help="where the demo keeps its model/state",
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
