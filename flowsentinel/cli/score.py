"""``score``: a file scored by a trained model, offline."""

from __future__ import annotations

import argparse
import csv
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from flowsentinel.cli.common import _check_files, _check_out_file, _file_batches, _model_key, _read_files
from flowsentinel.cli.evaluate import EVAL_BATCH, _ordered, _print_summary
from flowsentinel.consumers.settings import shift_policy
from flowsentinel.progress import progress_bar


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
