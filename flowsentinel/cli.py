"""The ``flowsentinel`` command line: ``train`` a model on normal traffic, ``score`` a file with it.

Bad arguments, unreadable files and invalid models end with one line naming the value and exit status 2;
a traceback means a bug.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from detector.errors import FlowSentinelError

log = logging.getLogger("flowsentinel")


class UsageError(Exception):
    """A command-line value is invalid; the message names it."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _fraction(low: float, high: float):  # type: ignore[no-untyped-def]
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and low < value < high):
            raise argparse.ArgumentTypeError(f"{text!r} must be between {low} and {high}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="flowsentinel", description="Streaming network-traffic anomaly detection.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model on the normal records of labelled files")
    t.add_argument("--schema", required=True, help="kdd, cicflowmeter, zeek-conn, or a schema file (.toml/.yaml)")
    t.add_argument("--data", required=True, nargs="+", metavar="PATH", help="data files (plain or .gz)")
    t.add_argument("--out", required=True, metavar="MODEL_DIR", help="directory to write the model to")
    t.add_argument("--window", type=_positive_int, default=8, help="records per window (default 8)")
    t.add_argument("--hidden", type=_positive_int, default=32, help="LSTM hidden size (default 32)")
    t.add_argument("--latent", type=_positive_int, default=8, help="latent code size (default 8)")
    t.add_argument("--epochs", type=_positive_int, default=40, help="maximum epochs (default 40)")
    t.add_argument("--batch-size", type=_positive_int, default=256, help="training batch size (default 256)")
    t.add_argument("--lr", type=_fraction(0.0, 1.0), default=2e-3, help="learning rate (default 0.002)")
    t.add_argument("--patience", type=_positive_int, default=4, help="early-stopping patience (default 4)")
    t.add_argument("--val-fraction", type=_fraction(0.0, 0.5), default=0.1, help="validation split (0.1)")
    t.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    t.add_argument("--limit", type=_positive_int, default=None, help="read at most N records per file")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("score", help="score files with a trained model and the online threshold")
    s.add_argument("--model", required=True, metavar="MODEL_DIR")
    s.add_argument("--data", required=True, nargs="+", metavar="PATH")
    s.add_argument("--schema", default=None, help="schema of the data (default: the model's)")
    s.add_argument("--thresholder", choices=("spot", "quantile"), default="spot")
    s.add_argument("--risk", type=_fraction(0.0, 0.5), default=0.01,
                   help="target share of normal records that alert, q (default 0.01)")  # fmt: skip
    s.add_argument("--out", default=None, metavar="CSV", help="write one row per record here")
    s.add_argument("--json", action="store_true", help="print the summary as JSON")
    s.add_argument("--limit", type=_positive_int, default=None, help="read at most N records per file")
    return p


def _check_files(paths: Sequence[str], flag: str) -> None:
    for path in paths:
        if not Path(path).is_file():
            raise UsageError(f"{flag} {path!r}: no such file")


# ------------------------------------------------------------------------------------------- train
def cmd_train(args: argparse.Namespace) -> int:
    from detector.artifact import save_artifact
    from detector.schema import RecordBatch, load_schema
    from detector.train import TrainConfig, train
    from producers.files import read_records

    schema = load_schema(args.schema)
    _check_files(args.data, "--data")
    cfg = TrainConfig(window=args.window, hidden=args.hidden, latent=args.latent, epochs=args.epochs,
                      batch_size=args.batch_size, lr=args.lr, patience=args.patience,
                      val_fraction=args.val_fraction, seed=args.seed)  # fmt: skip
    started = time.monotonic()
    batches = []
    for path in args.data:
        batch = read_records(path, schema, limit=args.limit)
        _report_rejected(path, batch)
        batches.append(batch)
    data = RecordBatch.concat(batches)
    normal = data.is_normal
    if normal is None:
        log.warning("the data has no label field %r: training on all %d records as normal", schema.label, len(data))
        train_batch = data
    else:
        train_batch = data.take(np.flatnonzero(normal))
    read_s = time.monotonic() - started
    print(f"read {len(data):,} records ({len(train_batch):,} normal) from {len(args.data)} file(s) in {read_s:.1f}s",
          file=sys.stderr)  # fmt: skip
    model = train(train_batch, cfg, progress=not args.quiet)
    digest = save_artifact(model, args.out)
    weights = Path(args.out) / "weights.pt"
    n_params = sum(p.numel() for p in model.net.parameters())
    tr = model.training
    summary = {
        "model_dir": str(args.out),
        "model_version": digest[:12],
        "schema": schema.name,
        "records_read": len(data),
        "records_rejected": len(data.rejected),
        "normal_records": len(train_batch),
        "features": model.encoder.width,
        "parameters": n_params,
        "weights_bytes": weights.stat().st_size,
        "epochs_run": tr["epochs_run"],
        "best_epoch": tr["best_epoch"],
        "val_loss_initial": tr["initial_val_loss"],
        "val_loss_best": tr["best_val_loss"],
        "train_seconds": tr["seconds"],
        "total_seconds": round(time.monotonic() - started, 2),
        "calibration": model.calibration_quantiles(),
    }
    print(
        f"trained {schema.name} model on {len(train_batch):,} normal records: {tr['epochs_run']} epochs "
        f"(best {tr['best_epoch']}), val loss {tr['initial_val_loss']:.5f} → {tr['best_val_loss']:.5f}, "
        f"{tr['seconds']:.1f}s; {n_params:,} parameters, {weights.stat().st_size / 1024:.0f} KiB; "
        f"saved to {args.out} (version {digest[:12]})"
    )
    Path(args.out, "training-summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


def _report_rejected(path: str, batch: Any) -> None:
    if not batch.rejected:
        return
    log.warning("%s: %d record(s) rejected; first: %s", path, len(batch.rejected), batch.rejected[0])
    for err in batch.rejected[1:5]:
        log.info("rejected: %s", err)


# ------------------------------------------------------------------------------------------- score
def cmd_score(args: argparse.Namespace) -> int:
    from detector.artifact import load_artifact
    from detector.metrics import at_threshold, auprc, auroc
    from detector.pipeline import Detector
    from detector.schema import load_schema
    from detector.thresholds import make_thresholder
    from producers.files import iter_batches

    _check_files(args.data, "--data")
    model = load_artifact(args.model)
    schema = load_schema(args.schema) if args.schema else model.schema
    det = Detector(model, make_thresholder(args.thresholder, args.risk))
    scores: list[np.ndarray] = []
    alerts: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    rejected = 0
    writer = None
    out_fh = open(args.out, "w", newline="") if args.out else None  # noqa: SIM115 - closed below
    try:
        if out_fh is not None:
            writer = csv.writer(out_fh)
            writer.writerow(["position", "key", "score", "threshold", "alert", "label", "top_features"])
        for path in args.data:
            for batch in iter_batches(path, schema, limit=args.limit):
                rejected += len(batch.rejected)
                _report_rejected(path, batch)
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
                        writer.writerow([batch.positions[i], batch.keys[i], f"{v.scores[i]:.6g}",
                                         f"{v.thresholds[i]:.6g}", int(v.alerts[i]), label, top])  # fmt: skip
    finally:
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
        "unknown_categories": det.unknown_total,
    }
    if labels and len(labels) == len(scores):
        y = np.concatenate(labels)
        summary.update({"auroc": auroc(y, all_scores), "auprc": auprc(y, all_scores), "attacks": int(y.sum())})
        summary.update(at_threshold(y, all_alerts))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        _print_summary(summary)
    return 0


def _print_summary(s: dict[str, Any]) -> None:
    print(f"records {s['records']:,}  rejected {s['rejected']:,}  alerts {s['alerts']:,} "
          f"({s['alerts_per_10k']} per 10k)  threshold {s['thresholder']} q={s['risk']} → {s['threshold_final']:.4g}")  # fmt: skip
    if "auroc" in s:
        print(f"AUROC {s['auroc']:.4f}  AUPRC {s['auprc']:.4f}  at the online threshold: precision "
              f"{s['precision']:.3f} recall {s['recall']:.3f} F1 {s['f1']:.3f} FPR {s['fpr']:.3f}")  # fmt: skip


# -------------------------------------------------------------------------------------------- main
COMMANDS = {"train": cmd_train, "score": cmd_score}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
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
