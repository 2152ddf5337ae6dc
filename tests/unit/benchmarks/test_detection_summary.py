"""The detection benchmark's multi-seed summary and verdict (pure functions; no data, no training)."""

from __future__ import annotations

import pytest

import benchmarks.detection


@pytest.fixture(scope="module")
def bench():
    return benchmarks.detection


def row(det, test, seed, auroc, auprc, f1=0.5, fpr=0.01, split="nsl-kdd"):
    return {"split": split, "test": test, "detector": det, "seed": seed, "q": 0.01, "auroc": auroc,
            "auprc": auprc, "precision": 0.9, "recall": 0.5, "f1": f1, "fpr": fpr}  # fmt: skip


def test_summary_is_the_mean_over_seeds_with_its_range(bench):
    rows = [row("lstm-ae", "KDDTest+", 0, 0.96, 0.95), row("lstm-ae", "KDDTest+", 1, 0.98, 0.93)]
    (s,) = bench.summary_rows({"runs": {"nsl-kdd": rows}})
    assert s["seeds"] == [0, 1]
    assert s["auroc"] == pytest.approx(0.97)
    assert s["auroc_range"] == [0.96, 0.98]
    assert "0.9700 (0.9600–0.9800)" in bench.table([s])
    assert "at FPR" not in bench.table([s])  # results from before the budgets were recorded


def test_summary_carries_the_recall_at_a_false_positive_budget_when_recorded(bench):
    rows = [row("lstm-ae", "KDDTest+", seed, 0.96, 0.95) for seed in (0, 1)]
    for r, recall in zip(rows, (0.4, 0.6), strict=True):
        r["recall_at_fpr"] = {b: {"recall": recall * k, "f1": 0.5 * k, "precision": 1.0, "fpr": float(b)}
                              for b, k in (("0.01", 1.0), ("0.05", 1.5))}  # fmt: skip
    (s,) = bench.summary_rows({"runs": {"nsl-kdd": rows}})
    assert s["recall_at_fpr_0.01"] == pytest.approx(0.5) and s["recall_at_fpr_0.05"] == pytest.approx(0.75)
    assert "| 0.500 / 0.500 | 0.750 / 0.750 |" in bench.table([s])


def test_verdict_compares_means_with_floors_and_every_baseline(bench):
    rows = [
        row("lstm-ae", "KDDTest+", 0, 0.976, 0.95, f1=0.93, fpr=0.06),  # F1 floor needs FPR <= 5%
        row("lstm-ae", "KDDTest+", 1, 0.978, 0.95, f1=0.93, fpr=0.06),
        row("iforest", "KDDTest+", 0, 0.95, 0.96),
        row("iforest", "KDDTest+", 1, 0.95, 0.96),  # mean AUPRC above ours: listed
        row("dense-ae", "KDDTest+", 0, 0.97, 0.90),  # below on both: not listed
        row("lstm-ae (shuffled control)", "KDDTest+", 0, 0.99, 0.99),  # the control is not a baseline
    ]
    (v,) = bench.verdict(bench.summary_rows({"runs": {"nsl-kdd": rows}}))
    assert v["floors"]["auroc"]["met"] is True
    assert v["floors"]["f1"]["met"] is False
    assert [(b["detector"], b["metric"]) for b in v["beaten_by"]] == [("iforest", "auprc")]
    text = bench.verdict_table([v])
    assert "auroc 0.9770 vs 0.975 met" in text and "f1 0.9300 vs 0.92 NOT met" in text


def test_seed_list_refuses_negative_or_repeated_seeds(bench):
    import argparse

    assert bench.seed_list("0,1,2") == [0, 1, 2]
    for bad in ("-1", "1,1", "a", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            bench.seed_list(bad)


def test_policy_comparison_applies_the_written_criterion(bench):
    def summary(det, recall, fpr):
        return {"split": "kdd99", "test": "corrected", "detector": det, "q": [0.01], "auroc": 0.97,
                "auprc": 0.99, "precision": 0.9, "recall": recall, "f1": 0.9, "fpr": fpr}  # fmt: skip

    main = [
        summary("a", 0.90, 0.004),
        summary("b", 0.90, 0.004),
        summary("c", 0.90, 0.008),
        summary("d", 0.9, 0.02),
    ]
    other = [
        summary("a", 0.895, 0.009),  # recall down 0.005, FPR up 0.005 but within q: no harm
        summary("b", 0.88, 0.004),  # recall down 0.02: harm
        summary("c", 0.95, 0.014),  # FPR up 0.006 to above q: harm, whatever the recall gain
        summary("d", 0.90, 0.024),  # already above q, up 0.004: no harm
    ]
    rows = bench.policy_comparison(main, other)
    assert [r["harm"] for r in rows] == [False, True, True, False]
    assert all(r["same_scores"] for r in rows)
    text = bench.policy_table(rows, {"max_alert_share": 5, "max_rise": 2.0})
    assert "| kdd99 corrected | b | 0.900 → 0.880 |" in text and "harm on at least one row (4 rows)" in text
