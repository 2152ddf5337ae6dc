"""First detection-quality figures for the detector core (issue 2's closing figures).

Trains the default model on the normal rows of NSL-KDD KDDTrain+ (timed), then streams held-apart test
files through the service path (``Detector.process_batch``: windows, batched scoring, online SPOT
threshold) and reports AUROC, AUPRC and precision/recall/F1 at the online threshold. A context control
scores KDD'99 ``corrected`` in file (time) order and shuffled, with a model trained on the normal rows of
``kddcup.data_10_percent``: false-positive rate on normal rows at the calibration 99th percentile.

    python -m benchmarks.quick_auroc            # writes benchmarks/results/quick_auroc.json

Reads ../shared/data beside the checkout; nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowsentinel.detector.artifact import save_artifact
from flowsentinel.detector.metrics import at_threshold, auprc, auroc
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.schema import builtin_schema
from flowsentinel.detector.thresholds import make_thresholder
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.producers.files import read_records

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"


def train_on(path: Path, out: Path, cfg: TrainConfig) -> tuple[object, dict]:
    schema = builtin_schema("kdd")
    t0 = time.monotonic()
    data = read_records(path, schema)
    assert data.is_normal is not None
    normal = data.take(np.flatnonzero(data.is_normal))
    t1 = time.monotonic()
    model = train(normal, cfg, progress=False)
    t2 = time.monotonic()
    save_artifact(model, out)
    info = {
        "train_file": path.name,
        "normal_records": len(normal),
        "read_seconds": round(t1 - t0, 1),
        "train_seconds": round(t2 - t1, 1),
        "epochs_run": model.training["epochs_run"],
        "parameters": sum(p.numel() for p in model.net.parameters()),
        "weights_bytes": (out / "weights.pt").stat().st_size,
        "metadata_bytes": (out / "metadata.json").stat().st_size,
    }
    return model, info


def evaluate(model, path: Path, risk: float) -> dict:
    batch = read_records(path, builtin_schema("kdd"))
    det = Detector(model, make_thresholder("spot", risk))
    t0 = time.monotonic()
    v = det.process_batch(batch)
    elapsed = time.monotonic() - t0
    assert batch.is_normal is not None
    y = ~batch.is_normal
    out = {
        "file": path.name,
        "records": len(batch),
        "attacks": int(y.sum()),
        "auroc": auroc(y, v.scores),
        "auprc": auprc(y, v.scores),
        "risk_q": risk,
        "records_per_second": round(len(batch) / elapsed),
    }
    out.update({k: val for k, val in at_threshold(y, v.alerts).items() if k != "confusion"})
    out["rebaselines"] = det.thresholder.rebaselines
    out["rejected_shifts"] = det.thresholder.rejected_shifts
    return out


def context_control(model, path: Path) -> dict:
    batch = read_records(path, builtin_schema("kdd"))
    assert batch.is_normal is not None
    y = ~batch.is_normal
    thr = float(np.quantile(model.calibration, 0.99))
    time_scores, _, _ = Detector(model).score_many(batch)
    perm = np.random.default_rng(0).permutation(len(batch))
    shuf = np.empty(len(batch))
    shuf[perm] = Detector(model).score_many(batch.take(perm))[0]
    return {
        "file": path.name,
        "normal_fp_at_cal_p99_time_order": float((time_scores[~y] > thr).mean()),
        "normal_fp_at_cal_p99_shuffled": float((shuf[~y] > thr).mean()),
        "auroc_time_order": auroc(y, time_scores),
        "auroc_shuffled": auroc(y, shuf),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--risk", type=float, default=0.01)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "quick_auroc.json"))
    ap.add_argument("--models", default=str(ROOT / "models"))
    args = ap.parse_args()
    cfg = TrainConfig()
    models = Path(args.models)
    nsl, nsl_info = train_on(DATA / "nsl-kdd" / "KDDTrain+.txt.gz", models / "bench-nsl-kdd", cfg)
    print("trained NSL-KDD:", json.dumps(nsl_info))
    results: dict[str, Any] = {
        "machine": {
            "cpus": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "config": cfg.to_dict(),
        "nsl_kdd_training": nsl_info,
        "evaluations": [],
    }
    for name in ("KDDTest+.txt.gz", "KDDTest-21.txt.gz"):
        r = evaluate(nsl, DATA / "nsl-kdd" / name, args.risk)
        print(json.dumps(r))
        results["evaluations"].append(r)
    k99, k99_info = train_on(DATA / "kddcup99" / "kddcup.data_10_percent.gz", models / "bench-kdd99", cfg)
    print("trained KDD99:", json.dumps(k99_info))
    results["kdd99_training"] = k99_info
    r = evaluate(k99, DATA / "kddcup99" / "corrected.gz", args.risk)
    print(json.dumps(r))
    results["evaluations"].append(r)
    c = context_control(k99, DATA / "kddcup99" / "corrected.gz")
    print(json.dumps(c))
    results["context_control"] = c
    results["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
