"""Training-data-only validation of a model variant: the splits the defaults were chosen on.

No test file is read, so a variant can be compared here as often as needed without tuning on the
held-out files. Two splits:

- ``nsl-80/20``: a model trained on 80% of KDDTrain+'s normal rows (seed 123) scores the other 20% plus
  every KDDTrain+ attack row. Besides the AUROC over all of them, it is reported on the hard subsets cut
  by KDDTrain+'s difficulty column (the 43rd field: how many of 21 supervised learners labelled the row
  correctly, the column KDDTest-21 was cut by): attacks of difficulty < 21, and <= 15, against all
  held-out normal rows, and hard rows against hard rows (both < 21). The whole-set AUROC saturates near
  0.993; the hard subsets separate variants better.
- ``kdd99-temporal``: a model trained on the normal rows of the first 70% of the KDD'99 10% file scores
  the normal rows of its last 30% plus its de-duplicated attack rows. Reported besides AUROC: the share
  of those LATER normal rows above the model's calibrated 1% threshold — how far normal traffic drifts
  from the training period (a false-alarm rate the operator meets).

    python -m benchmarks.validation [--name NAME] [--config '{"epochs": 80}'] [--only nsl|kdd99]

Each split trains once (about 1.5 and 2.5 minutes here with the default hidden-128 ensemble). Appends
one JSON line per split to benchmarks/results/validation.jsonl and prints it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flowsentinel.detector.errors import ConfigError
from flowsentinel.detector.evaluation import first_occurrences
from flowsentinel.detector.metrics import auprc, auroc
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.schema import RecordBatch, builtin_schema
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.producers.files import read_records

ROOT = Path(__file__).resolve().parent.parent


DATA = ROOT.parent / "shared" / "data"


def nsl_split() -> tuple[RecordBatch, RecordBatch, np.ndarray]:
    path = DATA / "nsl-kdd" / "KDDTrain+.txt.gz"
    data = read_records(path, builtin_schema("kdd"))
    difficulty = pd.read_csv(path, header=None, usecols=[42])[42].to_numpy()
    if len(difficulty) != len(data) or data.is_normal is None:
        raise SystemExit(f"{path}: expected every row parsed with its label and difficulty")
    normal = np.random.default_rng(123).permutation(np.flatnonzero(data.is_normal))
    held = normal[: len(normal) // 5]
    val = np.concatenate([held, np.flatnonzero(~data.is_normal)])
    return data.take(np.sort(normal[len(normal) // 5 :])), data.take(val), difficulty[val]


def kdd99_split() -> tuple[RecordBatch, RecordBatch, None]:
    data = read_records(DATA / "kddcup99" / "kddcup.data_10_percent.gz", builtin_schema("kdd"))
    assert data.is_normal is not None
    cut = int(len(data) * 0.7)
    normal = np.flatnonzero(data.is_normal)
    first = np.zeros(len(data), dtype=bool)
    first[first_occurrences(data)] = True
    attacks = np.flatnonzero(~data.is_normal & first)
    return data.take(normal[normal < cut]), data.take(np.concatenate([normal[normal >= cut], attacks])), None


def measure(name: str, variant: str, cfg: TrainConfig, split_key: str) -> dict[str, Any]:
    fit, val, difficulty = nsl_split() if split_key == "nsl" else kdd99_split()
    t0 = time.monotonic()
    model = train(fit, cfg, progress=False)
    seconds = time.monotonic() - t0
    scores, _, _ = Detector(model).score_many(val)
    assert val.is_normal is not None
    y = ~val.is_normal
    threshold = float(np.quantile(np.asarray(model.calibration), 0.99))
    out: dict[str, Any] = {
        "variant": variant,
        "split": name,
        "config": cfg.to_dict(),  # in full: the defaults change between rounds
        "train_seconds": round(seconds, 1),
        "auroc": round(auroc(y, scores), 5),
        "auprc": round(auprc(y, scores), 5),
        "normal_above_cal_q0.01": round(float((scores[~y] > threshold).mean()), 4),
        "attacks_above_cal_q0.01": round(float((scores[y] > threshold).mean()), 4),
    }
    if difficulty is not None:
        for label, rows in (("auroc_attacks_difficulty_lt21", ~y | (difficulty < 21)),
                            ("auroc_attacks_difficulty_le15", ~y | (difficulty <= 15)),
                            ("auroc_hard_vs_hard", difficulty < 21)):  # fmt: skip
            out[label] = round(auroc(y[rows], scores[rows]), 5)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="default", help="a label for the variant (default: 'default')")
    ap.add_argument("--config", default="{}", help="TrainConfig fields as JSON, e.g. '{\"epochs\": 80}'")
    ap.add_argument("--only", choices=("nsl", "kdd99"), default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "validation.jsonl"))
    args = ap.parse_args()
    try:
        cfg = TrainConfig(**json.loads(args.config))
    except (json.JSONDecodeError, TypeError, ConfigError) as exc:
        raise SystemExit(f"validation.py: error: --config {args.config!r}: {exc}") from None
    splits = [("nsl", "nsl-80/20"), ("kdd99", "kdd99-temporal")]
    for key, name in splits:
        if args.only not in (None, key):
            continue
        record(measure(name, args.name, cfg, key), args.out)


def record(row: dict[str, Any], out: str) -> None:
    """Stamp ``row`` with the time, print it and append it to the JSON-lines file ``out``."""
    row["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    print(json.dumps(row), flush=True)
    with open(out, "a") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
