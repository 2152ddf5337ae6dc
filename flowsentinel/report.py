"""Pictures of an evaluation an operator would rather look at than read: ROC and PR curves, the score
timeline with the moving threshold and the true attack spans shaded, and the confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from flowsentinel.detector.evaluation import StreamResult, attack_episodes


def _curves(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    order = np.argsort(-s, kind="mergesort")
    ys = y[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(~ys)
    p, n = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    tpr, fpr = np.concatenate([[0], tp / p]), np.concatenate([[0], fp / n])
    precision = tp / np.maximum(tp + fp, 1)
    return fpr, tpr, tp / p, precision


def _roc_pr(
    plt: Any, entries: list[tuple[str | None, StreamResult, dict[str, Any]]], title: str, path: Path
) -> None:
    """ROC and PR curves of one or more detectors on the same stream, each with the point its online
    threshold actually reached. ``entries``: (legend label or None for a single detector, result, report)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    axes[0].plot([0, 1], [0, 1], ls=":", c="grey")
    for label, result, report in entries:
        fpr, tpr, recall, precision = _curves(result.is_attack, result.scores)
        roc = axes[0].plot(fpr, tpr, label=label and f"{label} (AUROC {report['auroc']:.4f})")
        colour = "red" if label is None else roc[0].get_color()
        point = "online threshold" if label is None else None
        axes[0].scatter([report["fpr"]], [report["recall"]], color=colour, zorder=3, label=point)
        axes[1].plot(recall, precision, label=label and f"{label} (AUPRC {report['auprc']:.4f})")
        axes[1].scatter([report["recall"]], [report["precision"]], color=colour, zorder=3, label=point)
    single = entries[0][2] if len(entries) == 1 else None
    axes[0].set(xlabel="false-positive rate", ylabel="true-positive rate",
                title=f"ROC (AUROC {single['auroc']:.4f})" if single else "ROC (dots: online threshold)")  # fmt: skip
    axes[1].set(xlabel="recall", ylabel="precision", ylim=(0, 1.02),
                title=f"PR (AUPRC {single['auprc']:.4f})" if single else "PR (dots: online threshold)")  # fmt: skip
    axes[0].legend(loc="lower right")
    axes[1].legend(loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
        _roc_pr(plt, [(None, result, report)], title, out / "roc_pr.png")
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


def write_comparison(
    reports: list[dict[str, Any]], results: list[StreamResult], out: Path, *, pictures: bool = True
) -> list[str]:
    """Several detectors on the same stream: ``comparison.json`` (each detector's headline figures and
    threshold), ``comparison.md`` (the table ``eval`` prints) and ``comparison.png`` (ROC and PR curves
    overlaid). Returns the names written under ``out``."""
    from flowsentinel.detector.evaluation import comparison_table

    out.mkdir(parents=True, exist_ok=True)
    keys = ("detector", "records", "attacks", "auroc", "auprc", "precision", "recall", "f1", "fpr",
            "alerts_per_10k", "episodes", "threshold")  # fmt: skip
    rows = [{k: r[k] for k in keys if k in r} for r in reports]
    (out / "comparison.json").write_text(json.dumps(rows, indent=1, default=float) + "\n")
    (out / "comparison.md").write_text(comparison_table(reports) + "\n")
    written = ["comparison.json", "comparison.md"]
    y = results[0].is_attack
    if pictures and y.any() and (~y).any():
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        data = reports[0].get("data", "")
        title = f"side by side — {', '.join(data) if isinstance(data, list) else data}"
        entries: list[tuple[str | None, StreamResult, dict[str, Any]]] = [
            (r["detector"], res, r) for r, res in zip(reports, results, strict=True)
        ]
        _roc_pr(plt, entries, title, out / "comparison.png")
        written.append("comparison.png")
    return written
