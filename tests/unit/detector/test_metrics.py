from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, roc_auc_score, roc_curve

from flowsentinel.detector.metrics import at_threshold, auprc, auroc, recall_at_fpr


@pytest.mark.parametrize("seed", range(5))
def test_auroc_and_auprc_match_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(500) < 0.3
    scores = np.round(rng.normal(size=500) + y * 0.8, 1)  # rounding makes many ties
    assert auroc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert auprc(y, scores) == pytest.approx(average_precision_score(y, scores), abs=1e-12)


def test_threshold_metrics_match_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.4
    alerts = rng.random(300) < 0.5
    m = at_threshold(y, alerts)
    tn, fp, fn, tp = confusion_matrix(y, alerts).ravel()
    assert m["confusion"] == {"tp": tp, "fp": fp, "fn": fn, "tn": tn}
    assert m["f1"] == pytest.approx(f1_score(y, alerts))
    assert m["fpr"] == pytest.approx(fp / (fp + tn))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("max_fpr", [0.0, 0.01, 0.05, 0.3, 1.0])
def test_recall_at_fpr_is_the_best_roc_point_within_the_budget(seed, max_fpr):
    rng = np.random.default_rng(seed)
    y = rng.random(700) < 0.35
    scores = np.round(rng.normal(size=700) + y * 1.2, 1)  # many ties, some straddling classes
    fpr, tpr, _ = roc_curve(y, scores)
    r = recall_at_fpr(y, scores, max_fpr)
    assert r["recall"] == pytest.approx(tpr[fpr <= max_fpr + 1e-12].max(), abs=1e-12)
    assert r["fpr"] <= max_fpr + 1e-12
    assert 0.0 <= r["precision"] <= 1.0 and r["f1"] == pytest.approx(
        2 * r["precision"] * r["recall"] / (r["precision"] + r["recall"]) if r["recall"] else 0.0
    )
    assert np.isnan(recall_at_fpr(np.zeros(5, bool), np.arange(5.0), 0.1)["recall"])


def test_single_class_gives_nan():
    assert np.isnan(auroc(np.zeros(4), np.arange(4)))


def test_first_occurrences_keeps_the_first_of_each_identical_record_and_label():
    from flowsentinel.detector.evaluation import first_occurrences
    from flowsentinel.detector.schema import parse_table
    from tests.support import TOY

    table = {
        "bytes": ["1", "1", "2", "1", "1"],
        "packets": ["1"] * 5,
        "duration": ["0"] * 5,
        "proto": ["tcp", "tcp", "tcp", "udp", "tcp"],
        "service": ["http"] * 5,
        "host": ["a", "b", "a", "a", "a"],  # the key is not a field: rows 0 and 1 are duplicates
        "label": ["normal", "normal", "normal", "normal", "flood"],  # same fields, other label: kept
    }
    batch = parse_table(TOY, table, [f"row {i}" for i in range(5)])
    assert first_occurrences(batch).tolist() == [0, 2, 3, 4]
