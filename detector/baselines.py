"""Baseline detectors, run through the same evaluation harness and the same online thresholder.

All are fitted on normal records only, on the same encoded features as flowsentinel's model, with
calibration scores from a held-out split of those normal records; during evaluation they score without
learning (a detector that keeps learning from an attack-heavy stream inverts — see the README).

- ``river-hst``: River ``MinMaxScaler | HalfSpaceTrees`` (streaming isolation trees);
- ``iforest``: scikit-learn ``IsolationForest``;
- ``dense-ae``: a dense (non-windowed) autoencoder of each record alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from flowsentinel.detector.errors import ConfigError
from flowsentinel.detector.features import FeatureEncoder
from flowsentinel.detector.pipeline import Verdicts
from flowsentinel.detector.schema import RecordBatch
from flowsentinel.detector.thresholds import OnlineThresholder

BASELINES = ("river-hst", "iforest", "dense-ae")


class _Scorer:
    name = "base"

    def fit(self, x: np.ndarray, seed: int) -> None:
        raise NotImplementedError

    def score(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class IForestScorer(_Scorer):
    name = "iforest"

    def fit(self, x: np.ndarray, seed: int) -> None:
        try:
            from sklearn.ensemble import IsolationForest
        except ImportError:
            raise ConfigError(
                "the iforest baseline needs scikit-learn: pip install 'flowsentinel[eval]'"
            ) from None
        self.model = IsolationForest(n_estimators=200, max_samples=256, random_state=seed, n_jobs=1).fit(x)

    def score(self, x: np.ndarray) -> np.ndarray:
        return -self.model.score_samples(x)  # higher = more anomalous


class HalfSpaceTreesScorer(_Scorer):
    name = "river-hst"
    max_train = 30_000

    def fit(self, x: np.ndarray, seed: int) -> None:
        from river import anomaly, compose, preprocessing

        self.model = compose.Pipeline(
            preprocessing.MinMaxScaler(),
            anomaly.HalfSpaceTrees(n_trees=25, height=15, window_size=250, seed=seed),
        )
        rng = np.random.default_rng(seed)
        rows = x if len(x) <= self.max_train else x[rng.choice(len(x), self.max_train, replace=False)]
        for row in rows:
            self.model.learn_one(dict(enumerate(row.tolist())))

    def score(self, x: np.ndarray) -> np.ndarray:
        return np.array([self.model.score_one(dict(enumerate(row.tolist()))) for row in x])


class DenseAEScorer(_Scorer):
    name = "dense-ae"

    def __init__(self, hidden: int = 64, latent: int = 8, epochs: int = 40, patience: int = 4) -> None:
        self.hidden, self.latent, self.epochs, self.patience = hidden, latent, epochs, patience

    def fit(self, x: np.ndarray, seed: int) -> None:
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        f = x.shape[1]
        self.net = nn.Sequential(
            nn.Linear(f, self.hidden), nn.ReLU(), nn.Linear(self.hidden, self.latent), nn.Tanh(),
            nn.Linear(self.latent, self.hidden), nn.ReLU(), nn.Linear(self.hidden, f),
        )  # fmt: skip
        perm = rng.permutation(len(x))
        n_val = max(1, len(x) // 10)
        val, train = torch.from_numpy(x[perm[:n_val]]), x[perm[n_val:]]
        opt = torch.optim.AdamW(self.net.parameters(), lr=2e-3, weight_decay=1e-5)
        best, best_state, stale = float("inf"), None, 0
        for _ in range(self.epochs):
            self.net.train()
            order = rng.permutation(len(train))
            for s in range(0, len(order), 256):
                xb = torch.from_numpy(train[order[s : s + 256]])
                loss = torch.mean((self.net(xb) - xb) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
            self.net.eval()
            with torch.inference_mode():
                v = float(torch.mean((self.net(val) - val) ** 2))
            if v < best - 1e-7:
                best, best_state, stale = v, {k: t.clone() for k, t in self.net.state_dict().items()}, 0
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            self.net.load_state_dict(best_state)
        self.net.eval()

    def score(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(len(x))
        with torch.inference_mode():
            for s in range(0, len(x), 4096):
                xb = torch.from_numpy(x[s : s + 4096])
                out[s : s + 4096] = torch.mean((self.net(xb) - xb) ** 2, dim=1).numpy()
        return out


SCORERS: dict[str, Callable[[], _Scorer]] = {
    "iforest": IForestScorer,
    "river-hst": HalfSpaceTreesScorer,
    "dense-ae": DenseAEScorer,
}


@dataclass
class FittedBaseline:
    name: str
    encoder: FeatureEncoder
    scorer: _Scorer
    calibration: np.ndarray
    fit_seconds: float


def fit_baseline(
    name: str, normal: RecordBatch, encoder: FeatureEncoder, *, seed: int = 0, val_fraction: float = 0.1
) -> FittedBaseline:
    """Fit a baseline on normal records (same encoder as the model); calibrate on a held-out split."""
    if name not in SCORERS:
        raise ConfigError(f"unknown detector {name!r}: use lstm-ae or one of {', '.join(BASELINES)}")
    x, _ = encoder.transform(normal)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    n_val = max(50, int(len(x) * val_fraction))
    scorer = SCORERS[name]()
    t0 = time.monotonic()
    scorer.fit(x[perm[n_val:]], seed)
    took = time.monotonic() - t0
    return FittedBaseline(name, encoder, scorer, scorer.score(x[perm[:n_val]]), took)


class BaselineDetector:
    """A fitted baseline behind the same ``process_batch`` interface and online thresholder as Detector."""

    def __init__(self, fitted: FittedBaseline, thresholder: OnlineThresholder) -> None:
        self.fitted = fitted
        self.thresholder = thresholder
        if not thresholder.warmed:
            thresholder.warm_up(fitted.calibration)

    def process_batch(self, batch: RecordBatch) -> Verdicts:
        x, unknown = self.fitted.encoder.transform(batch)
        scores = self.fitted.scorer.score(x)
        alerts, thresholds = self.thresholder.update_many(scores)
        names = self.fitted.encoder.field_names
        return Verdicts(scores=scores, thresholds=thresholds, alerts=alerts,
                        field_errors=np.zeros((len(batch), len(names))), field_names=names,
                        unknown_categories=unknown)  # fmt: skip
