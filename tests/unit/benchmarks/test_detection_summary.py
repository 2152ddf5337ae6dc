"""The detection benchmark's multi-seed summary and verdict (pure functions; no data, no training)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("detection_bench", REPO / "benchmarks" / "detection.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
