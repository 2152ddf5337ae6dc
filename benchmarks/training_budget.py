"""Training time and ranking: today's default against early stopping that asks for real progress.

Trains on the normal rows of NSL-KDD KDDTrain+ with the default config and with each ``--min-improvement``
given (everything else default, same seed, same run, one after the other), and scores KDDTest+ through the
service path (windows, batches, online threshold): training seconds, epochs run, what stopped each member,
AUROC and AUPRC. The ranking is judged on a held-apart file only to report it; nothing is tuned on it.

    python -m benchmarks.training_budget --min-improvement 0.01 0.03 --epochs 15 \\
        --out benchmarks/results/training-budget.json

Reads ../shared/data beside the checkout; nothing is copied.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from flowsentinel.detector.metrics import auprc, auroc
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.schema import builtin_schema
from flowsentinel.detector.thresholds import make_thresholder
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.producers.files import read_records

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "nsl-kdd"


def run(min_improvement: float, normal: Any, test: Any, seed: int, epochs: int = 40) -> dict[str, Any]:
    cfg = TrainConfig(min_improvement=min_improvement, seed=seed, epochs=epochs)
    t0 = time.monotonic()
    model = train(normal, cfg, progress=False)
    seconds = time.monotonic() - t0
    det = Detector(model, make_thresholder("spot", 0.01))
    scores = np.concatenate(
        [
            det.process_batch(test.take(np.arange(s, min(s + 2000, len(test))))).scores
            for s in range(0, len(test), 2000)
        ]
    )
    y = ~test.is_normal
    return {
        "min_improvement": min_improvement,
        "epochs": epochs,
        "train_seconds": round(seconds, 1),
        "epochs_run": model.training["epochs_run"],
        "stopped": model.training["stopped"],
        "auroc": round(auroc(y, scores), 4),
        "auprc": round(auprc(y, scores), 4),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min-improvement", type=float, nargs="*", default=[0.01])
    ap.add_argument("--epochs", type=int, nargs="*", default=[], help="also runs with these epoch caps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/training-budget.json")
    args = ap.parse_args()
    schema = builtin_schema("kdd")
    data = read_records(DATA / "KDDTrain+.txt.gz", schema)
    assert data.is_normal is not None
    normal = data.take(np.flatnonzero(data.is_normal))
    test = read_records(DATA / "KDDTest+.txt.gz", schema)
    rows = [run(m, normal, test, args.seed) for m in (0.0, *args.min_improvement)]
    rows += [run(0.0, normal, test, args.seed, epochs=e) for e in args.epochs]
    for r in rows:
        print(json.dumps(r))
    result = {
        "command": "python -m benchmarks.training_budget --min-improvement "
        + " ".join(f"{m:g}" for m in args.min_improvement)
        + (" --epochs " + " ".join(map(str, args.epochs)) if args.epochs else "")
        + f" --seed {args.seed} --out {args.out}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "train": "NSL-KDD KDDTrain+ normal rows",
        "normal_records": len(normal),
        "test": "KDDTest+ (file order, service path, SPOT q=0.01)",
        "runs": rows,
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
