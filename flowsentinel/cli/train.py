"""``train`` and ``tune``."""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from flowsentinel.cli.common import UsageError, _check_out_dir, _model_key, _read_files, log
from flowsentinel.consumers.settings import policy_settings, shift_policy
from flowsentinel.progress import progress_bar


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
