"""Pictures of an evaluation an operator would rather look at than read: ROC and PR curves, the score
timeline with the moving threshold and the true attack spans shaded, and the confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from detector.evaluation import StreamResult, attack_episodes


def _curves(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-s, kind="mergesort")
    ys = y[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(~ys)
    p, n = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    tpr, fpr = np.concatenate([[0], tp / p]), np.concatenate([[0], fp / n])
    precision = tp / np.maximum(tp + fp, 1)
    return fpr, tpr, tp / p, precision


def write_pictures(
    result: StreamResult, report: dict[str, Any], out: Path, *, max_points: int = 20_000
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    y, s = result.is_attack, result.scores
    data = report.get("data", "")
    title = f"{report['detector']} — {', '.join(data) if isinstance(data, list) else data}"
    if y.any() and (~y).any():
        fpr, tpr, recall, precision = _curves(y, s)
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
        axes[0].plot(fpr, tpr)
        axes[0].plot([0, 1], [0, 1], ls=":", c="grey")
        axes[0].scatter([report["fpr"]], [report["recall"]], c="red", zorder=3, label="online threshold")
        axes[0].set(
            xlabel="false-positive rate",
            ylabel="true-positive rate",
            title=f"ROC (AUROC {report['auroc']:.4f})",
        )
        axes[0].legend(loc="lower right")
        axes[1].plot(recall, precision)
        axes[1].scatter(
            [report["recall"]], [report["precision"]], c="red", zorder=3, label="online threshold"
        )
        axes[1].set(
            xlabel="recall", ylabel="precision", title=f"PR (AUPRC {report['auprc']:.4f})", ylim=(0, 1.02)
        )
        axes[1].legend(loc="lower left")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(out / "roc_pr.png", dpi=110)
        plt.close(fig)
        written.append("roc_pr.png")

    n = len(s)
    step = max(1, n // max_points)
    idx = np.arange(0, n, step)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    for start, stop, _ in attack_episodes(result.labels, y):
        ax.axvspan(start, stop, color="tab:red", alpha=0.12, lw=0)
    ax.scatter(
        idx, np.maximum(s[idx], 1e-9), s=2, c=np.where(result.alerts[idx], "tab:red", "tab:blue"), alpha=0.5
    )
    ax.plot(idx, result.thresholds[idx], c="black", lw=1.2, label="online threshold")
    ax.set(yscale="log", xlabel="record (stream order)", ylabel="score", title=f"Score timeline — {title}")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "timeline.png", dpi=110)
    plt.close(fig)
    written.append("timeline.png")

    c = report["confusion"]
    matrix = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, f"{v:,}", ha="center", va="center", color="black")
    ax.set_xticks([0, 1], ["no alert", "alert"])
    ax.set_yticks([0, 1], ["normal", "attack"])
    ax.set_title("Confusion at the online threshold")
    fig.tight_layout()
    fig.savefig(out / "confusion.png", dpi=110)
    plt.close(fig)
    written.append("confusion.png")
    return written


def write_report(report: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=1, sort_keys=False, default=float) + "\n")
    return path
