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

    python -m benchmarks.detection [--only nsl-kdd|kdd99|cic] [--detectors lstm-ae,dense-ae,iforest,river-hst]
                                   [--seeds 0,1,2] [--members N] [--shift-max-alert-share X]
                                   [--shift-max-rise X] [--out PATH]

Writes benchmarks/results/detection.json (a run of some detectors keeps the others' rows there) and prints
a markdown table (pasted into the README). With several seeds every detector is trained once per seed (the
risk q is chosen per seed too); the table gives the mean over seeds with the range in brackets, and a
verdict table compares flowsentinel's means with issue #3's floors and with every baseline's means.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from flowsentinel.cli import int_at_least
from flowsentinel.detector.baselines import BaselineDetector, fit_baseline
from flowsentinel.detector.evaluation import FPR_BUDGETS, first_occurrences, run_stream, summarize
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.schema import RecordBatch, builtin_schema
from flowsentinel.detector.thresholds import AdaptPolicy, make_thresholder
from flowsentinel.detector.train import TrainConfig, fit_encoder, train
from flowsentinel.detector.tuning import choose_risk, split_training_data
from flowsentinel.producers.files import read_many, read_records

ROOT = Path(__file__).resolve().parent.parent


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
    return batch.take(first_occurrences(batch))


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


def factory(kind: Callable[..., Any], fitted: Any, risk: float) -> Callable[[AdaptPolicy], Any]:
    """Builds a fresh detector (own windows, own SPOT thresholder at ``risk`` under a shift policy) for
    each stream."""
    return lambda policy: kind(fitted, make_thresholder("spot", risk, policy))


def pick_risk(
    arg: str, train_file: RecordBatch, cfg: TrainConfig, policy: AdaptPolicy
) -> tuple[float, dict[str, Any]]:
    """The SPOT risk q for a split: a number given on the command line, or (``auto``) the q that
    ``flowsentinel tune`` would choose — the best F1 on a validation stream carved from the TRAINING file
    (20% of its normal rows + its attack rows) scored by a model fitted on the other 80%. Training data
    without attack rows (the CIC split) gets q = 0.01."""
    if arg != "auto":
        return float(arg), {"chosen_by": "command line"}
    if train_file.is_normal is None or train_file.is_normal.all():
        return 0.01, {"chosen_by": "default (training data has no attack rows to validate on)"}
    fit, val = split_training_data(train_file, cfg.seed)
    risk, f1s = choose_risk(train(fit, cfg, progress=False), val, policy=policy)
    return risk, {"chosen_by": "best F1 on training-data validation", "validation_f1_by_risk": f1s}


def evaluate(detector: Any, batch: RecordBatch, schema_name: str, name: str, extra: dict) -> dict[str, Any]:
    t0 = time.monotonic()
    result = run_stream(detector, chunks(batch), builtin_schema(schema_name))
    report = summarize(result, detector=name, extra={**extra, "seconds": round(time.monotonic() - t0, 1)})
    return report


def seed_list(text: str) -> list[int]:
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"{text!r} must list distinct seeds >= 0")
    return seeds


member_count = int_at_least(1)  # --members: autoencoders in the ensemble


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("nsl-kdd", "kdd99", "cic"), default=None)
    ap.add_argument("--detectors", default="lstm-ae,dense-ae,iforest,river-hst")
    ap.add_argument("--risk", default="auto", help="risk q for every detector's SPOT threshold, or 'auto'")
    ap.add_argument("--seeds", type=seed_list, default=[0], help="training seeds, e.g. 0,1,2 (default 0)")
    ap.add_argument("--seed", type=seed_list, dest="seeds", help="one seed (same as --seeds N)")
    ap.add_argument(
        "--members",
        type=member_count,
        default=TrainConfig.members,
        help="ensemble members (default %(default)s)",
    )
    ap.add_argument(
        "--shift-max-alert-share",
        type=float,
        default=AdaptPolicy.max_alert_share,
        help="the online threshold's opt-in shift rule, as `flowsentinel detect` (default %(default)s: off)",
    )
    ap.add_argument("--shift-max-rise", type=float, default=AdaptPolicy.max_rise)
    ap.add_argument(
        "--compare-shift-max-alert-share",
        type=float,
        default=None,
        metavar="X",
        help="also score every stream under the opt-in shift rule at this share, with the same trained "
        "detectors, and print the policy comparison (written under 'policy_comparison')",
    )
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "detection.json"))
    args = ap.parse_args()
    policy = AdaptPolicy(max_alert_share=args.shift_max_alert_share, max_rise=args.shift_max_rise)
    policies = {"main": policy}
    if args.compare_shift_max_alert_share is not None:
        policies["compared"] = replace(policy, max_alert_share=args.compare_shift_max_alert_share)
    seeds = args.seeds
    detectors = args.detectors.split(",")
    out = Path(args.out)
    results: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    results.setdefault("runs", {})
    base = TrainConfig(seed=seeds[0], members=args.members)
    results["config"] = {"train": base.to_dict(), "seeds": seeds, "risk_q": args.risk, "thresholder": "spot",
                         "policy": asdict(policy), "batch": BATCH}  # fmt: skip
    results.setdefault("risk", {})
    compared: dict[str, Any] = (
        {"policy": asdict(policies["compared"]), "runs": {}} if "compared" in policies else {}
    )
    for split, schema_name, normal, tests, train_file in splits(args.only):
        print(f"== {split}: {len(normal):,} normal training records", flush=True)
        rows: list[dict[str, Any]] = []
        compared_rows: list[dict[str, Any]] = []
        results["risk"][split] = {}
        for seed in seeds:
            cfg = replace(base, seed=seed)
            risk, how = pick_risk(args.risk, train_file, cfg, policy)
            results["risk"][split][str(seed)] = {"q": risk, **how}
            print(f"   seed {seed}: risk q = {risk:g} ({how['chosen_by']})", flush=True)
            by_policy = run_seed(split, schema_name, normal, tests, cfg, risk, policies, detectors)
            rows += by_policy["main"]
            compared_rows += by_policy.get("compared", [])
        # a re-run of some detectors keeps the other detectors' rows from the results file
        ran = {*detectors, CONTROL} if "lstm-ae" in detectors else set(detectors)
        kept = [r for r in results["runs"].get(split, []) if r["detector"] not in ran]
        results["runs"][split] = rows + kept
        if compared:
            compared["runs"][split] = compared_rows
    results["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    results["summary"] = summary_rows(results)
    results["verdict"] = verdict(results["summary"])
    if compared:
        compared["rows"] = policy_comparison(results["summary"], summary_rows(compared))
        results["policy_comparison"] = compared
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, default=float) + "\n")
    print("\n" + table(results["summary"]) + "\n\n" + verdict_table(results["verdict"]))
    if compared:
        print("\n" + policy_table(compared["rows"], compared["policy"]))
    print("wrote", out)


def run_seed(split: str, schema_name: str, normal: RecordBatch, tests: list[tuple[str, RecordBatch]],
             cfg: TrainConfig, risk: float, policies: dict[str, AdaptPolicy],
             detectors: list[str]) -> dict[str, list[dict[str, Any]]]:  # fmt: skip
    """Every detector of one split, trained from one seed, on every test stream (plus the order control),
    under each shift policy (the same trained detector each time). Returns rows by policy label."""
    t0 = time.monotonic()
    model = train(normal, cfg, progress=False) if "lstm-ae" in detectors else None
    lstm_fit = round(time.monotonic() - t0, 1)
    encoder = model.encoder if model is not None else fit_encoder(normal, cfg)  # the baselines read it
    rows: dict[str, list[dict[str, Any]]] = {label: [] for label in policies}
    for det_name in detectors:
        if det_name == "lstm-ae":
            fit_s = lstm_fit
            make = factory(Detector, model, risk)
        else:
            fitted = fit_baseline(det_name, normal, encoder, seed=cfg.seed)
            fit_s = round(fitted.fit_seconds, 1)
            make = factory(BaselineDetector, fitted, risk)
        for test_name, test in tests:
            extra = {"split": split, "test": test_name, "seed": cfg.seed, "q": risk}
            streams = [(det_name, test, {**extra, "fit_seconds": fit_s})]
            if det_name == "lstm-ae":
                perm = np.random.default_rng(cfg.seed).permutation(len(test))
                streams.append((CONTROL, test.take(perm), {**extra, "order": "shuffled"}))
            for label, policy in policies.items():
                for name, stream, info in streams:
                    r = evaluate(make(policy), stream, schema_name, name, info)
                    rows[label].append(r)
                    shown = "shuffled" if name == CONTROL else name
                    print(f"  {test_name:<18} {shown:<10} s{cfg.seed} {label:<8} AUROC {r['auroc']:.4f} "
                          f"AUPRC {r['auprc']:.4f} P {r['precision']:.3f} R {r['recall']:.3f} F1 {r['f1']:.3f} "
                          f"FPR {r['fpr']:.3f}", flush=True)  # fmt: skip
    return rows


CONTROL = "lstm-ae (shuffled control)"
METRICS = ("auroc", "auprc", "precision", "recall", "f1", "fpr")
# Issue #3's floors for flowsentinel's own detector: (split, test) -> {metric: floor}. F1 on KDDTest+ counts
# only with a false-positive rate of at most 5%.
FLOORS: dict[tuple[str, str], dict[str, float]] = {
    ("nsl-kdd", "KDDTest+"): {"auroc": 0.975, "f1": 0.92},
    ("nsl-kdd", "KDDTest-21"): {"auroc": 0.88},
    ("kdd99", "corrected"): {"auroc": 0.98, "f1": 0.97},
    ("kdd99", "corrected-dedup"): {"auroc": 0.99},
    ("cic-ids2017", "sample-time-order"): {"auroc": 0.96},
}


def summary_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (split, test, detector): the mean of each metric over seeds, with min and max."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for rows in results["runs"].values():
        for r in rows:
            groups.setdefault((r["split"], r["test"], r["detector"]), []).append(r)
    out = []
    for (split, test, det), rs in groups.items():
        row: dict[str, Any] = {"split": split, "test": test, "detector": det,
                               "seeds": [r.get("seed", 0) for r in rs], "q": sorted({r.get("q", 0.01) for r in rs})}  # fmt: skip
        for m in METRICS:
            vals = [float(r[m]) for r in rs]
            row[m] = float(np.mean(vals))
            row[m + "_range"] = [min(vals), max(vals)]
        if all("recall_at_fpr" in r for r in rs):  # results files from before 2026-12-01 lack it
            for budget in rs[0]["recall_at_fpr"]:
                for m in ("recall", "f1"):
                    row[f"{m}_at_fpr_{budget}"] = float(np.mean([r["recall_at_fpr"][budget][m] for r in rs]))
        out.append(row)
    return out


def verdict(summary: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per test set: flowsentinel's mean figures against its floors and against every baseline's mean."""
    by_test: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in summary:
        by_test.setdefault((r["split"], r["test"]), {})[r["detector"]] = r
    out = []
    for key, dets in by_test.items():
        ours = dets.get("lstm-ae")
        if ours is None:
            continue
        v: dict[str, Any] = {"split": key[0], "test": key[1], "floors": {}, "beaten_by": []}
        for m, floor in FLOORS.get(key, {}).items():
            met = ours[m] >= floor and (m != "f1" or key[1] != "KDDTest+" or ours["fpr"] <= 0.05)
            v["floors"][m] = {"floor": floor, "mean": ours[m], "met": bool(met)}
        for name, r in dets.items():
            if name in ("lstm-ae", CONTROL):
                continue
            for m in ("auroc", "auprc"):
                if r[m] >= ours[m]:
                    v["beaten_by"].append({"detector": name, "metric": m, "theirs": r[m], "ours": ours[m]})
        out.append(v)
    return out


# docs/detection-history.md, the criterion written on 2026-12-01 for making the upward-only shift rule the
# default: on no row may mean recall fall by more than 0.01, nor mean FPR rise by more than 0.005 to a value
# above q.
MAX_RECALL_DROP = 0.01
MAX_FPR_RISE = 0.005


def policy_comparison(main: list[dict[str, Any]], other: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (split, test, detector): the main policy's means beside the compared policy's, and whether the
    compared policy did harm by the criterion above. Scores must be the same under both (a policy moves
    thresholds only); ``same_scores`` says so."""
    by_key = {(r["split"], r["test"], r["detector"]): r for r in main}
    out = []
    for new in other:
        old = by_key.get((new["split"], new["test"], new["detector"]))
        if old is None:
            continue
        q = max(new["q"])
        recall_drop = old["recall"] - new["recall"]
        fpr_rise = new["fpr"] - old["fpr"]
        harm = recall_drop > MAX_RECALL_DROP or (fpr_rise > MAX_FPR_RISE and new["fpr"] > q)
        row: dict[str, Any] = {
            "split": new["split"],
            "test": new["test"],
            "detector": new["detector"],
            "q": q,
        }
        for m in ("recall", "fpr", "f1", "precision"):
            row[m] = {"main": old[m], "compared": new[m]}
        row["same_scores"] = all(abs(old[m] - new[m]) < 1e-12 for m in ("auroc", "auprc"))
        row["harm"] = bool(harm)
        out.append(row)
    return out


def policy_table(rows: list[dict[str, Any]], policy: dict[str, Any]) -> str:
    lines = [f"Shift policy compared (same trained detectors): max_alert_share {policy['max_alert_share']:g}, "
             f"max_rise {policy['max_rise']:g}; harm = recall down > {MAX_RECALL_DROP} or FPR up > {MAX_FPR_RISE} "
             "to above q", "",
             "| test set | detector | recall (main → compared) | FPR | F1 | same scores | harm |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        cells = " | ".join(f"{r[m]['main']:.3f} → {r[m]['compared']:.3f}" for m in ("recall", "fpr", "f1"))
        lines.append(f"| {r['split']} {r['test']} | {r['detector']} | {cells} | {'yes' if r['same_scores'] else 'NO'} "
                     f"| {'HARM' if r['harm'] else 'no'} |")  # fmt: skip
    verdict = "no row harmed" if not any(r["harm"] for r in rows) else "harm on at least one row"
    lines += ["", f"Verdict: {verdict} ({len(rows)} rows)."]
    return "\n".join(lines)


def _fmt(r: dict[str, Any], m: str, digits: int) -> str:
    lo, hi = r[m + "_range"]
    if len(r["seeds"]) == 1:
        return f"{r[m]:.{digits}f}"
    return f"{r[m]:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def table(summary: list[dict[str, Any]]) -> str:
    keys = [f"{f:g}" for f in FPR_BUDGETS]  # as eval's reports key them
    if not all(f"recall_at_fpr_{k}" in r for r in summary for k in keys):
        keys = []  # results files from before 2026-12-01
    heads = " | ".join(f"at FPR ≤ {float(k):.0%}" for k in keys)
    extra = f" recall / F1 {heads} (thresholds set with the labels) |" if keys else ""
    lines = [
        "| test set | detector | seeds | AUROC | AUPRC | q | precision | recall | F1 | FPR |" + extra,
        "|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(keys),
    ]
    for r in summary:
        q = "/".join(f"{v:g}" for v in r["q"])
        cells = "".join(f" {r[f'recall_at_fpr_{k}']:.3f} / {r[f'f1_at_fpr_{k}']:.3f} |" for k in keys)
        lines.append(f"| {r['split']} {r['test']} | {r['detector']} | {len(r['seeds'])} | {_fmt(r, 'auroc', 4)} | "
                     f"{_fmt(r, 'auprc', 4)} | {q} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{_fmt(r, 'f1', 3)} | {_fmt(r, 'fpr', 3)} |{cells}")  # fmt: skip
    return "\n".join(lines)


def verdict_table(verdicts: list[dict[str, Any]]) -> str:
    lines = ["| test set | floors (flowsentinel, mean over seeds) | baselines at or above flowsentinel (means) |",
             "|---|---|---|"]  # fmt: skip
    for v in verdicts:
        floors = ", ".join(f"{m} {f['mean']:.4f} vs {f['floor']:g} {'met' if f['met'] else 'NOT met'}"
                           for m, f in v["floors"].items()) or "—"  # fmt: skip
        beaten = ", ".join(f"{b['detector']} {b['metric']} {b['theirs']:.4f} vs {b['ours']:.4f}"
                           for b in v["beaten_by"]) or "none"  # fmt: skip
        lines.append(f"| {v['split']} {v['test']} | {floors} | {beaten} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
