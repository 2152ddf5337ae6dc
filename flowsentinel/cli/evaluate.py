"""``eval``: detection quality on labelled files, against baselines."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from flowsentinel.cli.common import UsageError, _check_files, _check_out_dir, _model_key, _read_files
from flowsentinel.consumers.settings import shift_policy
from flowsentinel.progress import progress_bar


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
