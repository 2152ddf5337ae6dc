"""How an ensemble's members' scores are combined, compared on training data only (no test file is read).

The default model's score is the mean of its members' errors. This trains the default model of both
``benchmarks/validation.py`` splits for one seed, exactly as that script does, scores the validation rows
and the calibration rows member by member, and combines them by mean (the default), median, min and max:
a paired comparison, the same trained weights for every combination. The later-normal rate is measured
against each combination's own 99th percentile over the calibration sample the model keeps.

    python -m benchmarks.ensemble_aggregation --seed 0 [--out benchmarks/results/ensemble-aggregation.jsonl]

About 5 minutes a seed here; appends one JSON line per split and combination. The mean rows reproduce
``validation.py``'s figures for the same seed (checked in every row: ``check_*``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import cast

import numpy as np

from benchmarks.validation import kdd99_split, nsl_split, record
from flowsentinel.detector.artifact import CALIBRATION_KEEP, TrainedModel
from flowsentinel.detector.metrics import auroc
from flowsentinel.detector.model import LSTMAutoencoder
from flowsentinel.detector.pipeline import Detector, field_scores, score_windows
from flowsentinel.detector.schema import RecordBatch
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.detector.windows import gather_windows, window_indices

ROOT = Path(__file__).resolve().parent.parent


COMBINATIONS = ("mean", "median", "min", "max")


def member_scores(model: TrainedModel, batch: RecordBatch) -> np.ndarray:
    """(members, records): each member's own score of each record (mean squared error over columns)."""
    enc = model.encoder
    x, _ = enc.transform(batch)
    windows, mask = gather_windows(x, window_indices(batch.keys, model.config.window))
    members = [cast(LSTMAutoencoder, m) for m in model.net.members]
    return np.stack(
        [field_scores(score_windows(m, windows, mask, enc.groups)[1], enc.width)[0] for m in members]
    )


def measure(seed: int, split_key: str, cfg: TrainConfig) -> list[dict]:
    fit, val, difficulty = nsl_split() if split_key == "nsl" else kdd99_split()
    t0 = time.monotonic()
    model = train(fit, cfg, progress=False)
    seconds = round(time.monotonic() - t0, 1)
    per_val = member_scores(model, val)
    # train()'s held-out calibration rows, drawn again: the same generator, nothing is drawn before them
    perm = np.random.default_rng(cfg.seed).permutation(len(fit))
    cal_rows = np.sort(perm[: max(1, round(len(fit) * cfg.val_fraction))])
    per_cal = member_scores(model, fit.take(cal_rows))
    keep = np.random.default_rng(cfg.seed + 1).permutation(per_cal.shape[1])[:CALIBRATION_KEEP]
    ensemble = Detector(model).score_many(val)[0]
    checks = {
        "check_mean_vs_service_rel": float(
            np.max(np.abs(per_val.mean(0) - ensemble) / np.maximum(ensemble, 1e-12))
        ),
        "check_calibration_vs_model": float(
            np.max(np.abs(np.sort(per_cal.mean(0)[keep]) - np.sort(model.calibration)))
        ),
    }
    assert val.is_normal is not None
    y = ~val.is_normal
    rows = []
    for how in COMBINATIONS:
        scores = getattr(np, how)(per_val, axis=0)
        threshold = float(np.quantile(getattr(np, how)(per_cal, axis=0)[keep], 0.99))
        row = {
            "seed": seed,
            "split": "nsl-80/20" if split_key == "nsl" else "kdd99-temporal",
            "combination": how,
            "train_seconds": seconds,
            "auroc": round(auroc(y, scores), 5),
            "normal_above_cal_q0.01": round(float((scores[~y] > threshold).mean()), 4),
            "attacks_above_cal_q0.01": round(float((scores[y] > threshold).mean()), 4),
            **checks,
        }
        if difficulty is not None:
            for label, sub in (("auroc_attacks_difficulty_le15", ~y | (difficulty <= 15)),
                               ("auroc_hard_vs_hard", difficulty < 21)):  # fmt: skip
                row[label] = round(auroc(y[sub], scores[sub]), 5)
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ensemble-aggregation.jsonl"))
    args = ap.parse_args()
    for key in ("nsl", "kdd99"):
        for row in measure(args.seed, key, TrainConfig(seed=args.seed)):
            record(row, args.out)


if __name__ == "__main__":
    main()
