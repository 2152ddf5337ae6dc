"""Analysts in the loop: how much verdicts on the detector's own alerts improve what follows.

A simulated analyst answers verdicts on the alerts the detector actually raised (the labels are read for
those records only): a budget of B verdicts per 10,000 records, chosen at random among each chunk's
alerts, each arriving D records after the chunk it was raised in. The detector streams the test file in
chunks of 500 through the same path as the service (per-key windows, the verdict memory adjusting scores
before the online SPOT threshold at q = 0.01 sees them; the memory's clock is the record index, half-life
``--half-life`` records). Compared on the same records — those after the first verdict arrived, never a
record that got a verdict:

- ``none``: the same model without feedback;
- ``feedback``: with the verdict memory (detector/feedback.py, default policy);
- ``poisoned``: the same, with 20% of the verdicts wrong;
- ``iforest``: IsolationForest on the same features, fitted on the same normal training records;
- ``supervised``: a logistic regression on the encoded features, refitted on the same verdicts before
  every chunk (score 0 until both kinds have been seen).

Each reports AUROC, AUPRC, and recall and F1 at FPR <= 1% and <= 5%, plus alerts per 10k (the online
threshold's). Data: NSL-KDD (KDDTest+, KDDTest-21; trained on KDDTrain+'s normal rows), KDD'99 corrected
(trained on the 10% file's), the CIC-IDS2017 sample (as benchmarks/detection.py splits it); file order and
shuffled; ``--seeds`` (a model per seed).

``--validation`` runs the same simulation on the training-data validation split instead (NSL-KDD: a model
on 80% of KDDTrain+'s normal rows, streamed over the other 20% plus KDDTrain+'s attacks): the data the
feedback defaults were chosen on. Never tune on the test files.

    python -m benchmarks.feedback [--seeds 0,1,2] [--only nsl-kdd|kdd99|cic] [--validation]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.detection import normal_of, seed_list, splits
from flowsentinel.detector.artifact import TrainedModel, load_artifact, save_artifact
from flowsentinel.detector.baselines import fit_baseline
from flowsentinel.detector.feedback import FeedbackPolicy, VerdictMemory, profiles
from flowsentinel.detector.metrics import auprc, auroc, recall_at_fpr
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.schema import RecordBatch
from flowsentinel.detector.thresholds import make_thresholder
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.detector.tuning import split_training_data

ROOT = Path(__file__).resolve().parent.parent


CHUNK = 500
RISK = 0.01
BUDGETS = (10, 50, 100)
DELAYS = (0, 2_000)
METHODS = ("none", "feedback", "poisoned", "iforest", "supervised")


@dataclass
class Stream:
    raw: np.ndarray  # the autoencoder's scores, in stream order
    field_err: np.ndarray
    x: np.ndarray  # encoded features (iforest, supervised)
    attack: np.ndarray
    iforest: np.ndarray


def prepare(model: TrainedModel, iforest: Any, batch: RecordBatch) -> Stream:
    det = Detector(model, make_thresholder("spot", RISK))
    raws, errs = [], []
    for s in range(
        0, len(batch), 2_000
    ):  # windows advance as in the service; scores do not depend on verdicts
        r, e, _ = det.score_many(batch.take(np.arange(s, min(s + 2_000, len(batch)))))
        raws.append(r)
        errs.append(e)
    x, _ = model.encoder.transform(batch)
    assert batch.is_normal is not None
    return Stream(np.concatenate(raws), np.concatenate(errs), x, ~batch.is_normal, iforest.scorer.score(x))


def simulate(
    model: TrainedModel, st: Stream, budget: int, delay: int, seed: int, *, wrong: float = 0.0,
    policy: FeedbackPolicy | None = None, supervised: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """Stream with an analyst in the loop. Returns the adjusted scores, alerts, the verdicted indices, the
    first verdict's arrival, and (``supervised``) the classifier's scores under the same verdicts."""
    rng = np.random.default_rng(seed)
    n = len(st.raw)
    th = make_thresholder("spot", RISK)
    th.warm_up(model.calibration)
    memory = VerdictMemory(st.field_err.shape[1], policy)
    scores = np.empty(n)
    alerts = np.zeros(n, dtype=bool)
    clf_scores = np.zeros(n)
    queue: list[tuple[int, int, bool]] = []  # (arrival, record, verdict is attack)
    judged: list[int] = []
    labels_given: list[bool] = []
    first_arrival = n
    credit = 0.0
    clf = None
    for s in range(0, n, CHUNK):
        e = min(s + CHUNK, n)
        arrived = [q for q in queue if q[0] <= s]
        queue = [q for q in queue if q[0] > s]
        for _, i, is_attack in arrived:
            memory.learn(
                profiles(st.field_err[i : i + 1], st.raw[i : i + 1]),
                "attack" if is_attack else "benign",
                at=s,
            )
            judged.append(i)
            labels_given.append(is_attack)
        if arrived and supervised and len(set(labels_given)) == 2:
            from sklearn.linear_model import LogisticRegression

            clf = LogisticRegression(class_weight="balanced", max_iter=300)
            clf.fit(st.x[judged], np.array(labels_given))
        if clf is not None:
            clf_scores[s:e] = clf.predict_proba(st.x[s:e])[:, 1]
        adjusted = memory.adjust(st.raw[s:e], st.field_err[s:e], now=s)
        a, _ = th.update_many(adjusted)
        scores[s:e], alerts[s:e] = adjusted, a
        credit += budget * (e - s) / 10_000
        candidates = np.flatnonzero(a) + s
        k = min(int(credit), len(candidates))
        if k:
            credit -= k
            for i in rng.choice(candidates, size=k, replace=False).tolist():
                truth = bool(st.attack[i])
                given = (not truth) if rng.random() < wrong else truth
                arrival = e + delay
                first_arrival = min(first_arrival, arrival)
                queue.append((arrival, i, given))
    return {"scores": scores, "alerts": alerts, "judged": np.array(judged, dtype=int), "first": first_arrival,
            "classifier": clf_scores}  # fmt: skip


def quality(y: np.ndarray, s: np.ndarray) -> dict[str, float]:
    out = {"auroc": auroc(y, s), "auprc": auprc(y, s)}
    for fpr in (0.01, 0.05):
        r = recall_at_fpr(y, s, fpr)
        out[f"recall_at_fpr_{fpr:g}"] = r["recall"]
        out[f"f1_at_fpr_{fpr:g}"] = r["f1"]
    return {k: round(float(v), 4) for k, v in out.items()}


def run_config(model: TrainedModel, st: Stream, budget: int, delay: int, seed: int,
               policy: FeedbackPolicy) -> dict[str, Any]:  # fmt: skip
    fb = simulate(model, st, budget, delay, seed, policy=policy, supervised=True)
    bad = simulate(model, st, budget, delay, seed, wrong=0.2, policy=policy)
    n = len(st.raw)
    keep = np.zeros(n, dtype=bool)
    keep[fb["first"] :] = True
    keep[fb["judged"]] = False
    keep[bad["judged"]] = False
    y = st.attack[keep]
    plain = simulate(model, st, 0, delay, seed, policy=policy)  # no verdicts: the thresholder's alerts
    per = {
        "none": quality(y, st.raw[keep]),
        "feedback": quality(y, fb["scores"][keep]),
        "poisoned": quality(y, bad["scores"][keep]),
        "iforest": quality(y, st.iforest[keep]),
        "supervised": quality(y, fb["classifier"][keep]),
    }
    per["none"]["alerts_per_10k"] = round(float(plain["alerts"][keep].mean() * 1e4), 1)
    per["feedback"]["alerts_per_10k"] = round(float(fb["alerts"][keep].mean() * 1e4), 1)
    per["poisoned"]["alerts_per_10k"] = round(float(bad["alerts"][keep].mean() * 1e4), 1)
    return {"budget": budget, "delay": delay, "seed": seed, "evaluated": int(keep.sum()),
            "verdicts": len(fb["judged"]), "methods": per}  # fmt: skip


def speed(model: TrainedModel, batch: RecordBatch, rounds: int = 5) -> dict[str, Any]:
    """Scoring cost of the feedback loop, in process (Kafka excluded, so the ratio is a floor for the
    service's): records/s of Detector.process_batch in 2,000-record batches with no memory, and with a full
    one (256 prototypes of each kind, the capacity) learning 20 verdicts per batch (100 per 10k). Rounds
    alternate the two; medians."""
    chunks = [batch.take(np.arange(s, min(s + 2_000, len(batch)))) for s in range(0, len(batch), 2_000)]
    probe = Detector(model, make_thresholder("spot", RISK))
    raw, err, _ = probe.score_many(batch)
    rows = profiles(err, raw)
    rng = np.random.default_rng(0)
    rates: dict[str, list[float]] = {"none": [], "full memory, 100 verdicts/10k": []}
    for _ in range(rounds):
        for label in rates:
            memory = None
            if label != "none":
                memory = VerdictMemory(err.shape[1], FeedbackPolicy(merge_radius=0.0))
                for kind in ("attack", "benign"):
                    memory.learn(
                        rows[rng.choice(len(rows), 256)] + rng.normal(0, 1e-3, (256, rows.shape[1])), kind, 0
                    )
            det = Detector(model, make_thresholder("spot", RISK), feedback=memory)
            t0 = time.perf_counter()
            for c in chunks:
                v = det.process_batch(c, now=0.0)
                if memory is not None:
                    pick = rng.choice(len(c), 20)
                    memory.learn(profiles(v.field_errors[pick], v.raw_score_array()[pick]), "benign", 0.0)
            rates[label].append(len(batch) / (time.perf_counter() - t0))
    med = {k: float(np.median(v)) for k, v in rates.items()}
    return {"records": len(batch), "records_per_second": {k: round(v) for k, v in med.items()},
            "ratio": round(med["full memory, 100 verdicts/10k"] / med["none"], 3)}  # fmt: skip


def model_for(split: str, normal: RecordBatch, seed: int, cache: Path) -> TrainedModel:
    path = cache / f"{split}-seed{seed}"
    if (path / "metadata.json").is_file():
        return load_artifact(path)
    t0 = time.monotonic()
    model = train(normal, TrainConfig(seed=seed), progress=False)
    print(f"  trained {split} seed {seed} in {time.monotonic() - t0:.0f}s", flush=True)
    save_artifact(model, path)
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=seed_list, default=[0, 1, 2])
    ap.add_argument("--only", choices=("nsl-kdd", "kdd99", "cic"), default=None)
    ap.add_argument("--validation", action="store_true", help="training-data validation split (NSL-KDD)")
    ap.add_argument("--budgets", default=",".join(map(str, BUDGETS)))
    ap.add_argument("--delays", default=",".join(map(str, DELAYS)))
    ap.add_argument("--half-life", type=float, default=1e6, help="records")
    ap.add_argument("--policy", default="{}", help="JSON of FeedbackPolicy fields (validation runs)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--speed", action="store_true", help="only the in-process scoring cost (NSL-KDD, seed 0)")
    args = ap.parse_args()
    policy = FeedbackPolicy(**{"half_life": args.half_life, **json.loads(args.policy)})
    budgets = [int(b) for b in args.budgets.split(",")]
    delays = [int(d) for d in args.delays.split(",")]
    cache = ROOT / "models" / "bench-feedback"
    if args.speed:
        split, _schema, normal, tests, _ = next(splits("nsl-kdd"))
        result = speed(model_for(split, normal, 0, cache), tests[0][1])
        print(json.dumps(result))
        out = Path(args.out or ROOT / "benchmarks" / "results" / "feedback-speed.json")
        result.update(command="python -m benchmarks.feedback " + " ".join(sys.argv[1:]),
                      measured_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))  # fmt: skip
        out.write_text(json.dumps(result, indent=1) + "\n")
        return
    rows: list[dict[str, Any]] = []
    for split, _schema, normal, tests, train_file in splits("nsl-kdd" if args.validation else args.only):
        for seed in args.seeds:
            if args.validation:
                fit, val = split_training_data(train_file, seed)
                normal_fit = normal_of(fit)
                model = model_for(f"{split}-validation", normal_fit, seed, cache)
                streams = [("validation", val)]
            else:
                model = model_for(split, normal, seed, cache)
                normal_fit = normal
                streams = tests
            iforest = fit_baseline("iforest", normal_fit, model.encoder, seed=seed)
            for test_name, test in streams:
                for order in ("file", "shuffled"):
                    batch = (
                        test
                        if order == "file"
                        else test.take(np.random.default_rng(seed).permutation(len(test)))
                    )
                    st = prepare(model, iforest, batch)
                    for budget in budgets:
                        for delay in delays:
                            r = run_config(model, st, budget, delay, seed, policy)
                            r.update(split=split, test=test_name, order=order)
                            rows.append(r)
                            m = r["methods"]
                            print(
                                f"{test_name:18s} {order:8s} s{seed} B={budget:<3d} D={delay:<5d} recall@1%: "
                                + "  ".join(f"{k} {m[k]['recall_at_fpr_0.01']:.3f}" for k in METHODS)
                                + f"  (verdicts {r['verdicts']}, eval {r['evaluated']:,})",
                                flush=True,
                            )
    summary = summarize(rows)
    print(table(summary))
    name = "feedback-validation.json" if args.validation else f"feedback-{args.only or 'all'}.json"
    out = Path(args.out or ROOT / "benchmarks" / "results" / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": "python -m benchmarks.feedback " + " ".join(sys.argv[1:]),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "policy": policy.__dict__, "risk": RISK, "chunk": CHUNK, "summary": summary, "rows": rows,
    }, indent=1) + "\n")  # fmt: skip
    print("wrote", out)


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over seeds per (test, order, budget, delay, method)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["test"], r["order"], r["budget"], r["delay"]), []).append(r)
    out = []
    for (test, order, budget, delay), rs in groups.items():
        for method in METHODS:
            vals = [r["methods"][method] for r in rs]
            mean = {k: round(float(np.mean([v[k] for v in vals])), 4) for k in vals[0]}
            out.append({"test": test, "order": order, "budget": budget, "delay": delay, "method": method,
                        "seeds": len(rs), **mean})  # fmt: skip
    return out


def table(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| test | order | B/10k | D | method | AUROC | AUPRC | recall@1% | F1@1% | recall@5% | F1@5% | alerts/10k |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in summary:
        lines.append(
            f"| {r['test']} | {r['order']} | {r['budget']} | {r['delay']} | {r['method']} | {r['auroc']:.4f} | "
            f"{r['auprc']:.4f} | {r['recall_at_fpr_0.01']:.3f} | {r['f1_at_fpr_0.01']:.3f} | "
            f"{r['recall_at_fpr_0.05']:.3f} | {r['f1_at_fpr_0.05']:.3f} | {r.get('alerts_per_10k', '')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
