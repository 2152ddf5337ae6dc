"""Why issue #3's dense autoencoder scored higher than ours on NSL-KDD: the same dense autoencoder under
six feature encodings, on the training-data validation split and on the NSL-KDD test files.

A diagnostic, planned in docs/detection-history.md before it was run. It reads KDDTest+ and KDDTest-21,
so nothing about flowsentinel's own model is chosen from it; it finds out which encoding the issue's
baseline figures (dense AE AUROC 0.970 on KDDTest+, 0.858 on KDDTest-21) came from.

Encodings (every one one-hot encodes the categorical fields as :class:`FeatureEncoder` does):

- ``ours``: signed ``log1p`` on heavy-tailed fields, min-max fitted on normal rows, clipped at 4;
- ``no-log``: min-max without ``log1p``, clipped at 4;
- ``no-log-no-clip``: min-max without ``log1p`` or clipping;
- ``zscore``: z-scores without ``log1p`` or clipping (mean and deviation of the normal rows);
- ``ours-all-rows`` / ``no-log-all-rows``: as ``ours`` / ``no-log`` but fitted on every row of the
  training file (its labels unused), as a scaler fitted on the training set usually is.

On the validation split (80% of KDDTrain+'s normal rows to fit, the other 20% plus every KDDTrain+ attack
row to score) the ``*-all-rows`` encoders are fitted on the whole of KDDTrain+, which holds the scored
rows: a little optimistic there, exact on the test files.

    python -m benchmarks.feature_encodings [--seeds 0,1] [--encodings ours,zscore,...] [--detach-constant-inputs]
                                   [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.detection import DATA, normal_of, seed_list
from benchmarks.validation import nsl_split
from flowsentinel.detector.baselines import DenseAEScorer
from flowsentinel.detector.features import FeatureEncoder
from flowsentinel.detector.metrics import auprc, auroc
from flowsentinel.detector.schema import RecordBatch, builtin_schema
from flowsentinel.producers.files import read_records

ROOT = Path(__file__).resolve().parent.parent


Transform = Callable[[RecordBatch], np.ndarray]
NO_LOG = float("inf")  # a heavy-tail span no field exceeds: no log1p anywhere
NO_CLIP = 1e12


def _encoder(span: float, clip: float) -> Callable[[RecordBatch], Transform]:
    def fit(rows: RecordBatch) -> Transform:
        enc = FeatureEncoder(heavy_tail_span=span, clip=clip).fit(rows)
        return lambda b: enc.transform(b)[0]

    return fit


def _zscore(rows: RecordBatch) -> Transform:
    enc = FeatureEncoder(heavy_tail_span=NO_LOG, clip=NO_CLIP).fit(rows)
    k = len(enc.numeric)
    x = enc.transform(rows)[0][:, :k].astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std < 1e-12] = 1.0

    def transform(b: RecordBatch) -> np.ndarray:
        out = enc.transform(b)[0]
        out[:, :k] = ((out[:, :k] - mean) / std).astype(np.float32)
        return out

    return transform


# name -> (fit on which rows, how)
ENCODINGS: dict[str, tuple[str, Callable[[RecordBatch], Transform]]] = {
    "ours": ("normal", _encoder(FeatureEncoder.heavy_tail_span, FeatureEncoder.clip)),
    "no-log": ("normal", _encoder(NO_LOG, FeatureEncoder.clip)),
    "no-log-no-clip": ("normal", _encoder(NO_LOG, NO_CLIP)),
    "zscore": ("normal", _zscore),
    "ours-all-rows": ("all", _encoder(FeatureEncoder.heavy_tail_span, FeatureEncoder.clip)),
    "no-log-all-rows": ("all", _encoder(NO_LOG, FeatureEncoder.clip)),
}


def detach_constant_inputs(scorer: DenseAEScorer, x: np.ndarray) -> int:
    """Zero the first layer's weights from every column constant on ``x`` and fold the column's constant
    into the bias: the same output on every training row, no effect of that column anywhere else."""
    const = np.flatnonzero(x.min(axis=0) == x.max(axis=0))
    first = scorer.net[0]
    assert isinstance(first, torch.nn.Linear)
    with torch.no_grad():
        cols = torch.from_numpy(const)
        first.bias.add_(first.weight[:, cols] @ torch.from_numpy(x[0, const]).to(first.weight.dtype))
        first.weight[:, cols] = 0.0
    return len(const)


def fit_and_score(
    fit_rows: RecordBatch, encoder_rows: RecordBatch, how: Callable[[RecordBatch], Transform],
    streams: dict[str, RecordBatch], seed: int, detach: bool,
) -> dict[str, np.ndarray]:  # fmt: skip
    transform = how(encoder_rows)
    scorer = DenseAEScorer()
    x = transform(fit_rows)
    scorer.fit(x, seed)
    if detach:
        detach_constant_inputs(scorer, x)
    return {name: scorer.score(transform(rows)) for name, rows in streams.items()}


def figures(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    return {"auroc": round(auroc(y, s), 5), "auprc": round(auprc(y, s), 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=seed_list, default=[0, 1])
    ap.add_argument("--encodings", default=",".join(ENCODINGS), help="comma-separated (default: all)")
    ap.add_argument(
        "--detach-constant-inputs",
        action="store_true",
        help="after training, detach input columns constant on the training rows",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "encodings.json"))
    args = ap.parse_args()
    chosen = args.encodings.split(",")
    detach = args.detach_constant_inputs
    if unknown := sorted(set(chosen) - set(ENCODINGS)):
        ap.error(f"unknown encoding {unknown[0]!r}: use {', '.join(ENCODINGS)}")
    kdd = builtin_schema("kdd")
    train_file = read_records(DATA / "nsl-kdd" / "KDDTrain+.txt.gz", kdd)
    tests = {n: read_records(DATA / "nsl-kdd" / f"{n}.txt.gz", kdd) for n in ("KDDTest+", "KDDTest-21")}
    val_fit, val, difficulty = nsl_split()
    assert val.is_normal is not None
    y_val = ~val.is_normal
    hard = ~y_val | (difficulty <= 15)
    rows: list[dict[str, Any]] = []
    for name in chosen:
        on, how = ENCODINGS[name]
        for seed in args.seeds:
            t0 = time.monotonic()
            s = fit_and_score(
                val_fit, train_file if on == "all" else val_fit, how, {"val": val}, seed, detach
            )["val"]
            row: dict[str, Any] = {"encoding": name, "seed": seed, "validation": figures(y_val, s)}
            row["validation"]["auroc_attacks_difficulty_le15"] = round(auroc(y_val[hard], s[hard]), 5)
            normal = normal_of(train_file)
            scores = fit_and_score(normal, train_file if on == "all" else normal, how, tests, seed, detach)
            for test_name, test in tests.items():
                assert test.is_normal is not None
                row[test_name] = figures(~test.is_normal, scores[test_name])
            row["seconds"] = round(time.monotonic() - t0, 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = []
    for name in chosen:
        mine = [r for r in rows if r["encoding"] == name]
        mean = {
            f"{part} {m}": round(float(np.mean([r[part][m] for r in mine])), 4)
            for part in ("validation", "KDDTest+", "KDDTest-21")
            for m in mine[0][part]
        }
        summary.append({"encoding": name, **mean})
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"seeds": args.seeds, "detector": "dense-ae", "detach_constant_inputs": detach, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "runs": rows, "summary": summary}  # fmt: skip
    out.write_text(json.dumps(result, indent=1) + "\n")
    cols = list(summary[0])
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in summary:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print("wrote", out)


if __name__ == "__main__":
    main()
