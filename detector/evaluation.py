"""Evaluation as an operator meets it: a labelled stream through the service path, measured at the
threshold actually used.

:func:`run_stream` pushes validated batches through a detector's ``process_batch`` (for flowsentinel that is
:class:`~detector.pipeline.Detector`, exactly what the Kafka service calls: windows, batched scoring, the
online thresholder adapting as it goes) and collects scores, thresholds and alerts. :func:`summarize`
turns that into the report: AUROC, AUPRC, precision / recall / F1 / FPR at the online threshold, the
confusion matrix, recall per attack category, alerts per 10,000 records and detection delay per attack
episode (records from an episode's first attack record to its first alert; an episode is a maximal run of
one attack label in stream order).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from flowsentinel.detector.metrics import at_threshold, auprc, auroc, recall_at_fpr
from flowsentinel.detector.pipeline import Verdicts
from flowsentinel.detector.schema import RecordBatch, Schema
from flowsentinel.detector.thresholds import OnlineThresholder


class StreamDetector(Protocol):
    thresholder: OnlineThresholder

    def process_batch(self, batch: RecordBatch) -> Verdicts: ...


@dataclass
class StreamResult:
    scores: np.ndarray
    thresholds: np.ndarray
    alerts: np.ndarray
    labels: np.ndarray  # cleaned label per record ("" where unlabelled)
    is_attack: np.ndarray
    rejected: int = 0
    policy: dict[str, Any] = field(default_factory=dict)

    def take(self, mask: np.ndarray) -> StreamResult:
        """The records where ``mask`` holds, in stream order (the metrics of a part of the stream: the
        records left out were still scored and still moved the threshold)."""
        return StreamResult(self.scores[mask], self.thresholds[mask], self.alerts[mask], self.labels[mask],
                            self.is_attack[mask], self.rejected, self.policy)  # fmt: skip


def run_stream(
    detector: StreamDetector,
    batches: Iterable[RecordBatch],
    schema: Schema,
    *,
    on_batch: Callable[[int], None] | None = None,
) -> StreamResult:
    scores, thresholds, alerts, labels = [], [], [], []
    rejected = 0
    for batch in batches:
        rejected += len(batch.rejected)
        if len(batch) == 0:
            continue
        v = detector.process_batch(batch)
        scores.append(v.scores)
        thresholds.append(v.thresholds)
        alerts.append(v.alerts)
        labels.append(batch.labels if batch.labels is not None else np.full(len(batch), "", dtype=object))
        if on_batch is not None:
            on_batch(len(batch))
    lab = np.concatenate(labels) if labels else np.zeros(0, dtype=object)
    is_attack = ~schema.is_normal(lab) & (lab != "")
    return StreamResult(
        scores=np.concatenate(scores) if scores else np.zeros(0),
        thresholds=np.concatenate(thresholds) if thresholds else np.zeros(0),
        alerts=np.concatenate(alerts) if alerts else np.zeros(0, dtype=bool),
        labels=lab,
        is_attack=is_attack,
        rejected=rejected,
        policy=detector.thresholder.describe(),
    )


def first_occurrences(batch: RecordBatch) -> np.ndarray:
    """Indices, in order, of the records whose fields and label did not occur earlier in ``batch`` (KDD'99
    is dominated by duplicate floods; the de-duplicated rows are evaluated besides the stream)."""
    import pandas as pd

    frame = pd.DataFrame(batch.numeric)
    for j in range(batch.categorical.shape[1]):
        frame[f"c{j}"] = batch.categorical[:, j]
    frame["label"] = batch.labels
    return np.flatnonzero(~frame.duplicated(keep="first").to_numpy())


def attack_episodes(labels: np.ndarray, is_attack: np.ndarray) -> list[tuple[int, int, str]]:
    """(start, stop, label) of each maximal run of one attack label in stream order."""
    out: list[tuple[int, int, str]] = []
    n = len(labels)
    i = 0
    while i < n:
        if not is_attack[i]:
            i += 1
            continue
        j = i + 1
        while j < n and is_attack[j] and labels[j] == labels[i]:
            j += 1
        out.append((i, j, str(labels[i])))
        i = j
    return out


FPR_BUDGETS = (0.01, 0.05)  # false-positive rates at which eval reports the best recall the scores allow


def _budget_cell(report: dict[str, Any]) -> str:
    budgets = report.get("recall_at_fpr") or {}  # keyed in FPR_BUDGETS order
    return " / ".join(f"{v['recall']:.3f}" for v in budgets.values()) or "—"


def summarize(result: StreamResult, *, detector: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    y = result.is_attack
    n = len(result.scores)
    report: dict[str, Any] = {
        "detector": detector,
        "records": n,
        "rejected": result.rejected,
        "attacks": int(y.sum()),
        "auroc": auroc(y, result.scores),
        "auprc": auprc(y, result.scores),
    }
    thr = at_threshold(y, result.alerts)
    report.update({k: thr[k] for k in ("precision", "recall", "f1", "fpr")})
    report["confusion"] = thr["confusion"]
    # the ranking at a false-alarm budget, thresholds set with the labels: what a better-placed threshold
    # could reach, next to what the online threshold did
    report["recall_at_fpr"] = {f"{f:g}": recall_at_fpr(y, result.scores, f) for f in FPR_BUDGETS}
    report["alerts"] = int(result.alerts.sum())
    report["alerts_per_10k"] = round(1e4 * float(result.alerts.sum()) / n, 2) if n else 0.0
    per_cat: dict[str, dict[str, float]] = {}
    for label in sorted(set(result.labels[y].tolist())):
        rows = result.labels == label
        per_cat[label] = {"records": int(rows.sum()), "recall": float(result.alerts[rows].mean())}
    report["recall_per_category"] = per_cat
    episodes = attack_episodes(result.labels, y)
    delays = []
    missed = 0
    for start, stop, _ in episodes:
        hits = np.flatnonzero(result.alerts[start:stop])
        if hits.size:
            delays.append(int(hits[0]))
        else:
            missed += 1
    report["episodes"] = {
        "count": len(episodes),
        "detected": len(episodes) - missed,
        "missed": missed,
        "delay_records_median": float(np.median(delays)) if delays else None,
        "delay_records_p90": float(np.quantile(delays, 0.9)) if delays else None,
        "delay_records_max": int(max(delays)) if delays else None,
    }
    report["threshold"] = {
        "first": float(result.thresholds[0]) if n else None,
        "last": float(result.thresholds[-1]) if n else None,
        "min": float(result.thresholds.min()) if n else None,
        "max": float(result.thresholds.max()) if n else None,
        **result.policy,
    }
    q = result.policy.get("q")
    if q and (~y).any():  # the online threshold aims at q false alarms among normal records: how close
        report["threshold"]["fpr_over_q"] = round(report["fpr"] / q, 2)
    if extra:
        report.update(extra)
    return report


def markdown_summary(report: dict[str, Any]) -> str:
    lines = [
        f"### {report['detector']}: {report['records']:,} records, {report['attacks']:,} attacks"
        + (f" ({report['rejected']:,} rejected rows left out)" if report.get("rejected") else "")
        + (
            " (scored, left out of the metrics: "
            + ", ".join(f"{k} {v:,}" for k, v in report["ignored_labels"].items())
            + ")"
            if report.get("ignored_labels")
            else ""
        ),
        "",
        "| AUROC | AUPRC | precision | recall | F1 | FPR | alerts/10k |",
        "|---|---|---|---|---|---|---|",
        f"| {report['auroc']:.4f} | {report['auprc']:.4f} | {report['precision']:.3f} | {report['recall']:.3f} "
        f"| {report['f1']:.3f} | {report['fpr']:.3f} | {report['alerts_per_10k']} |",
    ]
    ep = report["episodes"]
    if ep["count"]:
        lines.append("")
        lines.append(
            f"Attack episodes: {ep['detected']}/{ep['count']} detected, median delay "
            f"{ep['delay_records_median']} records (p90 {ep['delay_records_p90']})."
        )
    budgets = report.get("recall_at_fpr") or {}
    if budgets:
        lines.append("")
        lines.append(
            "Best the scores allow at a false-positive budget (threshold set with the labels): "
            + "; ".join(
                f"FPR ≤ {float(k):.0%}: recall {v['recall']:.3f}, F1 {v['f1']:.3f}"
                for k, v in budgets.items()
            )
            + "."
        )
    if report.get("per_file"):
        lines += ["", "| file | records | attacks | AUROC | AUPRC | recall @ FPR ≤ 1% | alerts/10k |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for f, r in report["per_file"].items():
            at1 = (r.get("recall_at_fpr") or {}).get("0.01", {}).get("recall", float("nan"))
            lines.append(f"| {f} | {r['records']:,} | {r['attacks']:,} | {r['auroc']:.4f} | {r['auprc']:.4f} "
                         f"| {at1:.3f} | {r['alerts_per_10k']} |")  # fmt: skip
    th = report["threshold"]
    if th.get("kind"):
        lines.append(
            f"Threshold ({th['kind']}, q={th['q']}): {th['first']:.4g} → {th['last']:.4g}; "
            f"re-baselines {th.get('rebaselines', 0)}, rejected shifts {th.get('rejected_shifts', 0)}."
            + (f" False positives: {th['fpr_over_q']:g} × q." if "fpr_over_q" in th else "")
        )
    return "\n".join(lines)


def comparison_table(reports: list[dict[str, Any]]) -> str:
    """Detectors side by side on one stream: the markdown table ``eval --detector a,b,...`` prints."""
    lines = [
        "| detector | AUROC | AUPRC | precision | recall | F1 | FPR | alerts/10k | episodes detected | median delay "
        f"| recall at FPR {' / '.join(f'{f:.0%}' for f in FPR_BUDGETS)} |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        ep = r["episodes"]
        delay = "—" if ep["delay_records_median"] is None else f"{ep['delay_records_median']:g}"
        lines.append(
            f"| {r['detector']} | {r['auroc']:.4f} | {r['auprc']:.4f} | {r['precision']:.3f} | {r['recall']:.3f} "
            f"| {r['f1']:.3f} | {r['fpr']:.3f} | {r['alerts_per_10k']} | {ep['detected']}/{ep['count']} | {delay} "
            f"| {_budget_cell(r)} |"
        )
    return "\n".join(lines)
