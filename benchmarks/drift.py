"""The online threshold on drifting normal traffic, and what it must not absorb (training data only).

A model trained on the normal rows of the first 70% of the KDD'99 10% file (``validation.py``'s
kdd99-temporal split) scores the file's last 30%, whose normal traffic has drifted: its median score is
several times the calibration median. The scores then go through the service's SPOT thresholder (q 0.01)
as streams, under three shift policies — the shape rule only (the default), and the opt-in alert-share rule
for upward shifts (``--shift-max-alert-share 5``) without and with its rise cap (2×):

- ``later normal``: the last 30%'s normal rows alone, in file order. The alert rate should approach q.
- ``as filed``: the last 30% in file order, 84% smurf and neptune floods. Nothing may be re-baselined.
- ``+ N% attacks``: attack rows of the last 30% (far above the threshold) mixed at random into the later
  normal rows. Their recall must not fall.
- ``+ N% low``: records at 1-3x the calibrated threshold mixed in the same way: a low-severity attack that
  coincides with the drift (the cost of adapting: some of it is absorbed).
- ``nsl 80/20``: a model trained on 80% of KDDTrain+'s normal rows scores the other 20% and every attack
  row, shuffled (53% attacks, no drift).

    python -m benchmarks.drift [--seed 0] [--out benchmarks/results/drift.json]

Trains two default models (about 4 minutes here); no test file is read.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.validation import DATA, kdd99_split, nsl_split
from flowsentinel.detector.artifact import TrainedModel
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.schema import builtin_schema
from flowsentinel.detector.thresholds import AdaptPolicy, make_thresholder
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.producers.files import read_records

ROOT = Path(__file__).resolve().parent.parent


Q = 0.01
POLICIES = {
    "shape rule only (default)": AdaptPolicy(),
    "alert share 5q, no rise cap": AdaptPolicy(max_alert_share=5.0, max_rise=1e9),
    "alert share 5q, rise cap 2x": AdaptPolicy(max_alert_share=5.0, max_rise=2.0),
}


def run_stream(model: TrainedModel, scores: np.ndarray, policy: AdaptPolicy) -> tuple[np.ndarray, Any]:
    th = make_thresholder("spot", Q, policy)
    th.warm_up(model.calibration)
    alerts, _ = th.update_many(scores)
    return alerts, th


def kdd99_streams(model: TrainedModel, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (scores, is_attack) for every KDD'99 stream, scored once."""
    data = read_records(DATA / "kddcup99" / "kddcup.data_10_percent.gz", builtin_schema("kdd"))
    assert data.is_normal is not None
    later = data.take(np.arange(int(len(data) * 0.7), len(data)))
    assert later.is_normal is not None
    scores, _, _ = Detector(model).score_many(later)
    attack = ~later.is_normal
    normal = scores[~attack]
    static = float(np.quantile(np.asarray(model.calibration), 1 - Q))
    streams = {"later normal": (normal, np.zeros(len(normal), dtype=bool)), "as filed": (scores, attack)}
    for share in (0.01, 0.02, 0.05):
        streams[f"+ {share:.0%} attacks"] = mix(
            normal, rng.choice(scores[attack], size=k(normal, share)), rng
        )
    for share in (0.01, 0.02):
        streams[f"+ {share:.0%} low"] = mix(
            normal, static * rng.uniform(1.0, 3.0, size=k(normal, share)), rng
        )
    return streams


def k(normal: np.ndarray, share: float) -> int:
    return int(len(normal) * share / (1 - share))


def mix(normal: np.ndarray, extra: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    scores = np.concatenate([normal, extra])
    attack = np.concatenate([np.zeros(len(normal), dtype=bool), np.ones(len(extra), dtype=bool)])
    order = rng.permutation(len(scores))
    return scores[order], attack[order]


def measure(name: str, model: TrainedModel, scores: np.ndarray, attack: np.ndarray) -> list[dict[str, Any]]:
    rows = []
    for label, policy in POLICIES.items():
        alerts, th = run_stream(model, scores, policy)
        normal = alerts[~attack]
        rows.append({
            "stream": name,
            "policy": label,
            "records": len(scores),
            "normal_alert_rate": round(float(normal.mean()), 4),
            "normal_alert_rate_second_half": round(float(normal[len(normal) // 2 :].mean()), 4),
            "attack_recall": round(float(alerts[attack].mean()), 4) if attack.any() else None,
            "rebaselines": th.rebaselines,
            "rejected_shifts": th.rejected_shifts,
        })  # fmt: skip
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0, help="training seed (default %(default)s)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "drift.json"))
    args = ap.parse_args()
    started = time.monotonic()
    rng = np.random.default_rng(args.seed)
    cfg = TrainConfig(seed=args.seed)
    rows: list[dict[str, Any]] = []

    fit, _, _ = kdd99_split()
    model = train(fit, cfg, progress=False)
    for name, (scores, attack) in kdd99_streams(model, rng).items():
        rows += measure(name, model, scores, attack)

    fit, val, _ = nsl_split()
    model = train(fit, cfg, progress=False)
    order = np.random.default_rng(args.seed + 7).permutation(len(val))
    assert val.is_normal is not None
    scores, _, _ = Detector(model).score_many(val.take(order))
    rows += measure("nsl 80/20 shuffled", model, scores, ~val.is_normal[order])

    print("| stream | policy | normal alert rate (second half) | attack recall | re-baselines / rejected |")
    print("|---|---|---|---|---|")
    for r in rows:
        recall = "" if r["attack_recall"] is None else f"{r['attack_recall']:.4f}"
        print(f"| {r['stream']} | {r['policy']} | {r['normal_alert_rate']:.2%} "
              f"({r['normal_alert_rate_second_half']:.2%}) | {recall} | {r['rebaselines']} / {r['rejected_shifts']} |")  # fmt: skip
    result = {
        "q": Q,
        "seed": args.seed,
        "config": cfg.to_dict(),
        "rows": rows,
        "seconds": round(time.monotonic() - started, 1),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"results: {args.out}")


if __name__ == "__main__":
    main()
