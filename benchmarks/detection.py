"""Detection quality, side by side: flowsentinel's LSTM autoencoder and the baselines on real labelled data.

Every detector is trained on normal records only and evaluated on held-apart files through the same
harness (``detector.evaluation.run_stream``: batches of 2,000 in stream order, the same online SPOT
thresholder warmed from each detector's own calibration scores), reporting AUROC, AUPRC and
precision/recall/F1/FPR at that online threshold. The windowed model also gets a shuffled-order control.

Splits (data in ../shared/data beside the checkout; nothing is copied):

- NSL-KDD: train on the normal rows of KDDTrain+; test KDDTest+ and KDDTest-21 (file order).
- KDD Cup 99: train on the normal rows of kddcup.data_10_percent; test ``corrected`` in file order (a
  stream) and its de-duplicated rows (first occurrence, file order).
- CIC-IDS2017 sample: train on a seeded 60% of the BENIGN rows; test the other BENIGN rows plus every
  attack row, in Timestamp order.

    python benchmarks/detection.py [--only nsl-kdd|kdd99|cic] [--detectors lstm-ae,dense-ae,iforest,river-hst]
                                   [--seed N] [--members N] [--out PATH]

Writes benchmarks/results/detection.json and prints a markdown table (pasted into the README).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout

from detector.baselines import BaselineDetector, fit_baseline  # noqa: E402
from detector.evaluation import run_stream, summarize  # noqa: E402
from detector.pipeline import Detector  # noqa: E402
from detector.schema import RecordBatch, builtin_schema  # noqa: E402
from detector.thresholds import make_thresholder  # noqa: E402
from detector.train import TrainConfig, train  # noqa: E402
from detector.tuning import choose_risk, split_training_data  # noqa: E402
from producers.files import read_many, read_records  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
BATCH = 2_000


def chunks(batch: RecordBatch) -> Iterator[RecordBatch]:
    for s in range(0, len(batch), BATCH):
        yield batch.take(np.arange(s, min(s + BATCH, len(batch))))


def normal_of(batch: RecordBatch) -> RecordBatch:
    mask = batch.is_normal
    assert mask is not None
    return batch.take(np.flatnonzero(mask))


def dedup(batch: RecordBatch) -> RecordBatch:
    frame = pd.DataFrame(batch.numeric)
    for j in range(batch.categorical.shape[1]):
        frame[f"c{j}"] = batch.categorical[:, j]
    frame["label"] = batch.labels
    keep = np.flatnonzero(~frame.duplicated(keep="first").to_numpy())
    return batch.take(keep)


Split = tuple[str, str, RecordBatch, list[tuple[str, RecordBatch]], RecordBatch]


def splits(only: str | None) -> Iterator[Split]:
    """(name, schema, normal training rows, [(test name, test rows)], the whole training file)."""
    kdd = builtin_schema("kdd")
    if only in (None, "nsl-kdd"):
        tr = read_records(DATA / "nsl-kdd" / "KDDTrain+.txt.gz", kdd)
        tests = [(n.removesuffix(".txt.gz"), read_records(DATA / "nsl-kdd" / n, kdd))
                 for n in ("KDDTest+.txt.gz", "KDDTest-21.txt.gz")]  # fmt: skip
        yield "nsl-kdd", "kdd", normal_of(tr), tests, tr
    if only in (None, "kdd99"):
        tr = read_records(DATA / "kddcup99" / "kddcup.data_10_percent.gz", kdd)
        corrected = read_records(DATA / "kddcup99" / "corrected.gz", kdd)
        yield (
            "kdd99",
            "kdd",
            normal_of(tr),
            [("corrected", corrected), ("corrected-dedup", dedup(corrected))],
            tr,
        )
    if only in (None, "cic"):
        cic = builtin_schema("cicflowmeter")
        folder = DATA / "cicids2017-improved-sample"
        benign = read_records(folder / "BENIGN_5000.csv.gz", cic)
        perm = np.random.default_rng(0).permutation(len(benign))
        cut = int(0.6 * len(benign))
        attacks = read_many(
            sorted(p for p in folder.glob("*.csv.gz") if not p.name.startswith("BENIGN")), cic
        )
        test = RecordBatch.concat([benign.take(np.sort(perm[cut:])), attacks])
        test = test.take(np.argsort(test.timestamps, kind="stable"))
        train_rows = benign.take(np.sort(perm[:cut]))
        yield "cic-ids2017", "cicflowmeter", train_rows, [("sample-time-order", test)], train_rows


def factory(kind: Callable[..., Any], fitted: Any, risk: float) -> Callable[[], Any]:
    """Builds a fresh detector (own windows, own SPOT thresholder at ``risk``) for each stream."""
    return lambda: kind(fitted, make_thresholder("spot", risk))


def pick_risk(arg: str, train_file: RecordBatch, cfg: TrainConfig) -> tuple[float, dict[str, Any]]:
    """The SPOT risk q for a split: a number given on the command line, or (``auto``) the q that
    ``flowsentinel tune`` would choose — the best F1 on a validation stream carved from the TRAINING file
    (20% of its normal rows + its attack rows) scored by a model fitted on the other 80%. Training data
    without attack rows (the CIC split) gets q = 0.01."""
    if arg != "auto":
        return float(arg), {"chosen_by": "command line"}
    if train_file.is_normal is None or train_file.is_normal.all():
        return 0.01, {"chosen_by": "default (training data has no attack rows to validate on)"}
    fit, val = split_training_data(train_file, cfg.seed)
    risk, f1s = choose_risk(train(fit, cfg, progress=False), val)
    return risk, {"chosen_by": "best F1 on training-data validation", "validation_f1_by_risk": f1s}


def evaluate(detector: Any, batch: RecordBatch, schema_name: str, name: str, extra: dict) -> dict[str, Any]:
    t0 = time.monotonic()
    result = run_stream(detector, chunks(batch), builtin_schema(schema_name))
    th = detector.thresholder
    result.policy = {
        "kind": th.kind,
        "q": th.q,
        "rebaselines": th.rebaselines,
        "rejected_shifts": th.rejected_shifts,
    }
    report = summarize(result, detector=name, extra={**extra, "seconds": round(time.monotonic() - t0, 1)})
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("nsl-kdd", "kdd99", "cic"), default=None)
    ap.add_argument("--detectors", default="lstm-ae,dense-ae,iforest,river-hst")
    ap.add_argument("--risk", default="auto", help="risk q for every detector's SPOT threshold, or 'auto'")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--members", type=int, default=TrainConfig.members, help="ensemble members (default 3)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "detection.json"))
    args = ap.parse_args()
    detectors = args.detectors.split(",")
    out = Path(args.out)
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault("runs", {})
    cfg = TrainConfig(seed=args.seed, members=args.members)
    results["config"] = {"train": cfg.to_dict(), "risk_q": args.risk, "thresholder": "spot", "batch": BATCH}
    results.setdefault("risk", {})
    for split, schema_name, normal, tests, train_file in splits(args.only):
        print(f"== {split}: {len(normal):,} normal training records", flush=True)
        risk, how = pick_risk(args.risk, train_file, cfg)
        results["risk"][split] = {"q": risk, **how}
        print(f"   risk q = {risk:g} ({how['chosen_by']})", flush=True)
        t0 = time.monotonic()
        model = train(normal, cfg, progress=False)
        lstm_fit = round(time.monotonic() - t0, 1)
        rows: list[dict[str, Any]] = []
        for det_name in detectors:
            if det_name == "lstm-ae":
                fit_s = lstm_fit
                make = factory(Detector, model, risk)
            else:
                fitted = fit_baseline(det_name, normal, model.encoder, seed=args.seed)
                fit_s = round(fitted.fit_seconds, 1)
                make = factory(BaselineDetector, fitted, risk)

            for test_name, test in tests:
                r = evaluate(make(), test, schema_name, det_name, {"split": split, "test": test_name,
                                                                    "fit_seconds": fit_s, "q": risk})  # fmt: skip
                rows.append(r)
                print(f"  {test_name:<18} {det_name:<10} AUROC {r['auroc']:.4f} AUPRC {r['auprc']:.4f} "
                      f"P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f} FPR {r['fpr']:.3f}", flush=True)  # fmt: skip
                if det_name == "lstm-ae":
                    perm = np.random.default_rng(args.seed).permutation(len(test))
                    c = evaluate(make(), test.take(perm), schema_name, "lstm-ae (shuffled control)",
                                 {"split": split, "test": test_name, "order": "shuffled", "q": risk})  # fmt: skip
                    rows.append(c)
                    print(f"  {test_name:<18} shuffled   AUROC {c['auroc']:.4f} AUPRC {c['auprc']:.4f} "
                          f"F1 {c['f1']:.3f} FPR {c['fpr']:.3f}", flush=True)  # fmt: skip
        results["runs"][split] = rows
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print("\n" + table(results))
    print("wrote", out)


def table(results: dict[str, Any]) -> str:
    lines = [
        "| test set | detector | AUROC | AUPRC | q | precision | recall | F1 | FPR |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for rows in results["runs"].values():
        for r in rows:
            q = f"{r['q']:g}" if "q" in r else "0.01"
            lines.append(f"| {r['split']} {r['test']} | {r['detector']} | {r['auroc']:.4f} | {r['auprc']:.4f} | {q} | "
                         f"{r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {r['fpr']:.3f} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
