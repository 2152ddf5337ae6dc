"""Flood visibility by seed: does a trained model see a flood of one attack type, single model vs ensemble?

Training data only (no test file): the KDD'99 10% file, trained on the normal rows of its first 70%,
validated on its other normal rows plus every attack row, in file order (floods kept: 280,790 smurf
records). For each seed, a one-member model and the default ensemble are trained and scored; reported are
the AUROC, smurf's AUROC, the share of smurf records above the 99th percentile of the validation normal
scores, and the share of those later normal rows above a threshold at the calibration's 1 - q quantile
(q = 0.01, 0.02: how far normal traffic drifts from the training period).

    python -m benchmarks.flood [--seeds 0,1,2,3,4] [--members 3]    # about 17 minutes here (hidden 128)

Writes benchmarks/results/flood.json and prints a markdown table (quoted in the README).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.detection import member_count, seed_list
from flowsentinel.detector.metrics import auroc
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.schema import builtin_schema
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.producers.files import read_records

ROOT = Path(__file__).resolve().parent.parent


DATA = ROOT.parent / "shared" / "data"


def measure(
    scores: np.ndarray, calibration: np.ndarray, is_attack: np.ndarray, smurf: np.ndarray
) -> dict[str, Any]:
    normal = scores[~is_attack]
    p99 = float(np.quantile(normal, 0.99))
    both = smurf | ~is_attack
    out: dict[str, Any] = {
        "auroc": round(auroc(is_attack, scores), 4),
        "smurf_auroc": round(auroc(is_attack[both], scores[both]), 4),
        "smurf_above_normal_p99": round(float((scores[smurf] > p99).mean()), 4),
    }
    for q in (0.01, 0.02):
        t = float(np.quantile(calibration, 1 - q))
        out[f"later_normal_fpr_q{q}"] = round(float((normal > t).mean()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--seeds", type=seed_list, default=[0, 1, 2, 3, 4], help="training seeds (default 0,1,2,3,4)"
    )
    ap.add_argument(
        "--members",
        type=member_count,
        default=TrainConfig.members,
        help="ensemble size (default %(default)s)",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "flood.json"))
    args = ap.parse_args()
    seeds: list[int] = args.seeds

    data = read_records(DATA / "kddcup99" / "kddcup.data_10_percent.gz", builtin_schema("kdd"))
    assert data.is_normal is not None and data.labels is not None
    cut = int(len(data) * 0.7)
    normal_idx = np.flatnonzero(data.is_normal)
    attack_idx = np.flatnonzero(~data.is_normal)
    fit = data.take(normal_idx[normal_idx < cut])
    val = data.take(np.sort(np.concatenate([normal_idx[normal_idx >= cut], attack_idx])))
    assert val.is_normal is not None and val.labels is not None
    is_attack = ~val.is_normal
    smurf = val.labels == "smurf"
    print(
        f"fit {len(fit):,} normal rows; validate {len(val):,} rows ({int(smurf.sum()):,} smurf)", flush=True
    )

    runs = []
    for members in dict.fromkeys((1, args.members)):  # --members 1: the single models only, once
        for seed in seeds:
            t0 = time.monotonic()
            model = train(fit, TrainConfig(seed=seed, members=members), progress=False)
            scores, _, _ = Detector(model).score_many(val)
            row = {"members": members, "seed": seed, "train_seconds": round(time.monotonic() - t0, 1)}
            row.update(measure(scores, np.asarray(model.calibration), is_attack, smurf))
            print(json.dumps(row), flush=True)
            runs.append(row)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"split": "kddcup.data_10_percent: first 70% normal → rest + all attacks",
                               "runs": runs}, indent=1) + "\n")  # fmt: skip
    print(
        "\n| members | seed | AUROC | smurf AUROC | smurf above normal p99 | later normal > q=0.01 | > q=0.02 |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['members']} | {r['seed']} | {r['auroc']:.4f} | {r['smurf_auroc']:.4f} | "
              f"{r['smurf_above_normal_p99']:.1%} | {r['later_normal_fpr_q0.01']:.1%} | {r['later_normal_fpr_q0.02']:.1%} |")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
