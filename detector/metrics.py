"""Detection-quality metrics, computed the way an operator meets them (checked against scikit-learn).

>>> import numpy as np
>>> auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))
0.75
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _rank_average(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    boundaries = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(xs)]])
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def auroc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U with tie correction). NaN if one class is absent."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _rank_average(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auprc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (area under the precision–recall step curve, as scikit-learn defines it)."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last_of_tie = np.concatenate([np.flatnonzero(np.diff(ss) != 0), [len(ss) - 1]])
    tp = np.cumsum(ys)[last_of_tie]
    fp = (last_of_tie + 1) - tp
    precision = tp / (tp + fp)
    recall = tp / n_pos
    recall_prev = np.concatenate([[0.0], recall[:-1]])
    return float(np.sum((recall - recall_prev) * precision))


def at_threshold(y_true: np.ndarray, alerts: np.ndarray) -> dict[str, Any]:
    """Precision, recall, F1, false-positive rate and the confusion matrix of the alerts raised."""
    y = np.asarray(y_true).astype(bool)
    a = np.asarray(alerts).astype(bool)
    tp = int((a & y).sum())
    fp = int((a & ~y).sum())
    fn = int((~a & y).sum())
    tn = int((~a & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    fpr = fp / (fp + tn) if fp + tn else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "fpr": fpr,
        "confusion": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
    }


def recall_at_fpr(y_true: np.ndarray, scores: np.ndarray, max_fpr: float) -> dict[str, float]:
    """The most recall any threshold on these scores reaches while at most ``max_fpr`` of the normal records
    are above it, with that threshold's precision, F1 and false-positive rate. The threshold is chosen
    knowing the labels, so this measures the ranking at a false-alarm budget, not a deployable threshold:
    the point of the ROC curve (as scikit-learn draws it) with the highest true-positive rate at or left of
    ``max_fpr``. NaN figures if one class is absent.

    >>> r = recall_at_fpr(np.array([0, 0, 0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.9, 0.5, 0.95]), 0.25)
    >>> r["recall"], r["fpr"], r["precision"]
    (1.0, 0.25, 0.6666666666666666)
    """
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    normal = np.sort(s[~y])[::-1]
    if not y.any() or normal.size == 0:
        nan = float("nan")
        return {"recall": nan, "precision": nan, "f1": nan, "fpr": nan}
    k = int(np.floor(max_fpr * normal.size + 1e-9))  # normal records allowed above the threshold
    alerts = s > normal[k] if k < normal.size else np.ones_like(y)
    out = at_threshold(y, alerts)
    return {m: out[m] for m in ("recall", "precision", "f1", "fpr")}
