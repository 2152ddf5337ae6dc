"""The detector as the service and the evaluator use it: records in, scored and thresholded verdicts out.

``Detector.process_batch`` = encode → per-key windows → batched inference → scores with per-field
attribution → online threshold (score first, then learn). Nothing here does I/O.

>>> det = Detector.from_artifact("models/nsl-kdd")  # doctest: +SKIP
>>> verdicts = det.process_batch(batch)             # doctest: +SKIP
>>> verdicts.alerts.sum(), verdicts.top_features(0)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from flowsentinel.detector.feedback import VerdictMemory
from flowsentinel.detector.model import AutoencoderEnsemble, LSTMAutoencoder, squared_errors
from flowsentinel.detector.schema import RecordBatch
from flowsentinel.detector.thresholds import AdaptPolicy, OnlineThresholder, make_thresholder
from flowsentinel.detector.windows import WindowStore

if TYPE_CHECKING:
    from flowsentinel.detector.artifact import TrainedModel

INFERENCE_BATCH = 1024
SCORINGS = ("mse", "field-scaled")


def score_windows(
    net: LSTMAutoencoder | AutoencoderEnsemble,
    windows: np.ndarray,
    mask: np.ndarray,
    groups: list[tuple[str, int, int]],
    batch_size: int = INFERENCE_BATCH,
    field_scale: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Score each window's newest record. Returns (scores (n,), per-field error (n, n_fields)).

    A field's error sums the squared reconstruction error of its columns (a one-hot block counts as one
    field). With ``field_scale`` (the model's :func:`field_scales`, from normal validation records) each
    field's error is divided by its typical size on normal traffic and the score is the mean over fields:
    a field the model always rebuilds well counts as much as one it rebuilds loosely, and a wide one-hot
    block no more than a single number. Without it (the default, and every format-1 artifact) the score is
    the plain mean squared error over the encoded columns. Either way ``field_err / field_err.sum()`` is
    each field's share of the score.
    """
    n = len(windows)
    width = windows.shape[2] if windows.ndim == 3 else 0
    field_err = np.zeros((n, len(groups)), dtype=np.float64)
    if n == 0:
        return np.zeros(0), field_err
    starts = np.array([g[1] for g in groups])
    net.eval()
    with torch.inference_mode():
        for s in range(0, n, batch_size):
            w, m = windows[s : s + batch_size], mask[s : s + batch_size]
            size = len(w)
            padded = _bucket(size, batch_size)
            if padded != size:  # a handful of fixed shapes: the CPU kernels cache one plan per shape
                w = np.concatenate([w, np.zeros((padded - size, *w.shape[1:]), dtype=w.dtype)])
                m = np.concatenate([m, np.zeros((padded - size, m.shape[1]), dtype=m.dtype)])
            err = squared_errors(net, torch.from_numpy(w), torch.from_numpy(m)).numpy()[:size]
            field_err[s : s + size] = np.add.reduceat(err, starts, axis=1)
    return field_scores(field_err, width, field_scale)


def field_scores(
    field_err: np.ndarray, width: int, field_scale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Scores from per-field squared errors (see :func:`score_windows`): the mean squared error over
    ``width`` encoded columns, or with ``field_scale`` the mean over fields of each field's error divided
    by its scale. Returns (scores, field errors); the field errors are scaled in place."""
    if field_scale is not None:
        field_err /= field_scale
        return field_err.mean(axis=1), field_err
    return field_err.sum(axis=1) / width, field_err


def field_scales(field_err: np.ndarray, floor_ratio: float = 1e-2) -> np.ndarray:
    """Per-field error scale from normal records: the root mean square of each field's error, floored at
    ``floor_ratio`` × the median field's so that a field rebuilt perfectly in training (a constant) cannot
    turn a rounding error into an alert."""
    rms = np.sqrt(np.mean(np.square(field_err, dtype=np.float64), axis=0))
    floor = max(float(np.median(rms)) * floor_ratio, 1e-12)
    return np.maximum(rms, floor)


def _bucket(size: int, cap: int) -> int:
    """Round a batch size up to a power of two (at least 16, at most ``cap``).

    Every distinct input shape makes torch's CPU backend build and keep another kernel plan; with the
    service's varying poll batches that grew RSS without bound (measured: +180 MiB over 1,500 random sizes,
    flat with buckets). Padding costs at most 2x compute on a partial chunk.
    """
    return min(cap, max(16, 1 << (size - 1).bit_length()))


@dataclass
class Verdicts:
    """What the detector says about a batch, row-aligned with the batch."""

    scores: np.ndarray
    thresholds: np.ndarray
    alerts: np.ndarray
    field_errors: np.ndarray
    field_names: list[str]
    unknown_categories: dict[str, int] = field(default_factory=dict)
    raw_scores: np.ndarray | None = None  # the autoencoder's, before verdicts adjusted them (None: the same)

    def raw_score(self, i: int) -> float:
        return float(self.raw_score_array()[i])

    def raw_score_array(self) -> np.ndarray:
        return self.scores if self.raw_scores is None else self.raw_scores

    def field_shares(self, i: int, floor: float = 5e-5) -> dict[str, float]:
        """Every field's share of record ``i``'s error (rounded to 4 places; those under ``floor`` left out)."""
        row = self.field_errors[i]
        total = float(row.sum())
        if total <= 0:
            return {}
        shares = row / total
        kept = np.flatnonzero(shares >= floor)
        names = self.field_names
        return {
            names[j]: round(share, 4) for j, share in zip(kept.tolist(), shares[kept].tolist(), strict=True)
        }

    def __len__(self) -> int:
        return len(self.scores)

    def top_features(self, i: int, k: int = 3) -> list[tuple[str, float]]:
        """The ``k`` fields with the largest share of record ``i``'s reconstruction error."""
        row = self.field_errors[i]
        total = float(row.sum())
        if total <= 0:
            return []
        order = np.argsort(-row, kind="stable")[:k]
        names = self.field_names
        return [
            (names[j], share) for j, share in zip(order.tolist(), (row[order] / total).tolist(), strict=True)
        ]


class Detector:
    """Stateful scorer for one stream: the trained model, per-key windows and an online thresholder."""

    def __init__(
        self,
        model: TrainedModel,
        thresholder: OnlineThresholder | None = None,
        *,
        max_keys: int = 50_000,
        feedback: VerdictMemory | None = None,
    ) -> None:
        self.model = model
        self.feedback = feedback  # analysts' verdicts: adjust scores before the threshold sees them
        self.schema = model.schema
        self.windows = WindowStore(model.config.window, model.encoder.width, max_keys=max_keys)
        self.thresholder = thresholder or make_thresholder("spot", 1e-3)
        if not self.thresholder.warmed:
            self.thresholder.warm_up(model.calibration)
        self.unknown_total: dict[str, int] = {}

    @classmethod
    def from_artifact(
        cls,
        path: str | Path,
        *,
        thresholder: str = "spot",
        q: float = 1e-3,
        policy: AdaptPolicy | None = None,
        max_keys: int = 50_000,
    ) -> Detector:
        from flowsentinel.detector.artifact import load_artifact

        return cls(load_artifact(path), make_thresholder(thresholder, q, policy), max_keys=max_keys)

    def score_many(
        self, batch: RecordBatch, window_keys: Sequence[Hashable] | None = None
    ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Scores (no thresholding) in stream order; advances the windows. Returns scores, field errors,
        unknown-category counts. ``window_keys`` overrides the records' own keys for windowing (the
        service keys windows by (topic, partition, key) so a revoked partition's windows can be dropped)."""
        x, unknown = self.model.encoder.transform(batch)
        keys = list(batch.keys) if window_keys is None else list(window_keys)
        windows, mask = self.windows.push_many(keys, x)
        scores, field_err = score_windows(
            self.model.net, windows, mask, self.model.encoder.groups, field_scale=self.model.field_scale
        )
        for k, v in unknown.items():
            self.unknown_total[k] = self.unknown_total.get(k, 0) + v
        return scores, field_err, unknown

    def process_batch(
        self, batch: RecordBatch, window_keys: Sequence[Hashable] | None = None, now: float | None = None
    ) -> Verdicts:
        """Score, adjust by the verdicts so far (``now``: the clock their decay is measured by; None: no decay
        since the latest verdict), threshold. Without verdicts the scores are the autoencoder's, unchanged."""
        raw, field_err, unknown = self.score_many(batch, window_keys)
        scores = raw if self.feedback is None else self.feedback.adjust(raw, field_err, now)
        alerts, thresholds = self.thresholder.update_many(scores)
        return Verdicts(
            raw_scores=None if scores is raw else raw,
            scores=scores,
            thresholds=thresholds,
            alerts=alerts,
            field_errors=field_err,
            field_names=self.model.encoder.field_names,
            unknown_categories=unknown,
        )
