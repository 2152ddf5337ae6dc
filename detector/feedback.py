"""Learning from analysts' verdicts without retraining: records like a confirmed attack score higher, records
like a confirmed false alarm lower.

A record's *profile* is how the autoencoder failed on it: the square roots of each field's share of the
reconstruction error (so two profiles' Euclidean distance is the Hellinger distance of their shares), plus
the log of the score, weighted (one decade of score counts as ``score_weight``). A verdict on an alerted
record stores its profile as a *prototype* of its kind (``attack`` or ``benign``). A new record's score is
multiplied by ``exp(g)`` with

    g = ln(max_gain) · A  −  ln(1 / max_cut) · B · (1 − A)

where A (B) is the largest ``weight × exp(−(d / radius)²)`` over the attack (benign) prototypes, d the
distance of the profiles and the weight ``0.5 ** (age / half_life)``. So:

- **bounded weight per verdict**: A and B are maxima, not sums. A thousand verdicts on one family count as
  one, and a verdict close to an existing prototype of its kind refreshes it (``merge_radius``) instead of
  adding one, which also keeps the memory small (``capacity`` per kind, the oldest dropped);
- **bounded effect**: a score moves by at most × ``max_gain`` up and × ``max_cut`` down, so a flood of wrong
  ``benign`` verdicts cannot push an attack far above the threshold under it;
- **decay**: a verdict's weight halves every ``half_life`` (in the clock's units: seconds in the service,
  records in the benchmark);
- **attack outranks benign**: near a confirmed attack (A → 1) the benign term vanishes.

With no prototypes, :meth:`VerdictMemory.adjust` returns its input unchanged (the same array): scores are
bit-identical to a detector without feedback. The state is plain JSON (no pickle), as the threshold's.

>>> import numpy as np
>>> mem = VerdictMemory(n_fields=3)
>>> err = np.array([[9.0, 0.0, 0.0], [0.0, 0.0, 9.0]])  # field 0 failed / field 2 failed
>>> scores = np.array([2.0, 2.0])
>>> mem.adjust(scores, err, now=0) is scores
True
>>> mem.learn(profiles(err[:1], scores[:1]), "attack", at=0)
1
>>> mem.adjust(scores, err, now=0).round(2).tolist()  # the one like the attack x20, the other far less
[40.0, 2.58]
>>> mem.learn(profiles(err[1:], scores[1:]), "benign", at=0)
1
>>> mem.adjust(scores, err, now=0).round(2).tolist()  # the confirmed false alarm: x0.16
[40.0, 0.31]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from flowsentinel.detector.errors import ConfigError

VERDICTS = ("attack", "benign")
_EPS = 1e-12


@dataclass(frozen=True)
class FeedbackPolicy:
    """How far and how long a verdict reaches. Defaults chosen on training data (docs/feedback.md)."""

    radius: float = 0.9
    merge_radius: float = 0.1
    score_weight: float = 0.25
    max_gain: float = 20.0
    max_cut: float = 0.1
    half_life: float = 7 * 86_400.0
    capacity: int = 256

    def __post_init__(self) -> None:
        checks = (
            ("radius", self.radius > 0),
            ("merge_radius", 0 <= self.merge_radius < self.radius),
            ("score_weight", self.score_weight >= 0),
            ("max_gain", 1 <= self.max_gain <= 1e6),
            ("max_cut", 0 < self.max_cut <= 1),
            ("half_life", self.half_life > 0),
            ("capacity", 1 <= self.capacity <= 100_000),
        )
        for name, ok in checks:
            if not ok:
                raise ConfigError(f"feedback setting {name} = {getattr(self, name)!r} is out of range")


def profiles(field_err: np.ndarray, scores: np.ndarray, score_weight: float = 0.25) -> np.ndarray:
    """Row-aligned profiles (float64, n × (fields + 1)) of records with these per-field errors and scores."""
    field_err = np.asarray(field_err, dtype=np.float64)
    total = field_err.sum(axis=1, keepdims=True)
    shares = np.divide(field_err, total, out=np.zeros_like(field_err), where=total > 0)
    level = score_weight * np.log10(np.maximum(np.asarray(scores, dtype=np.float64), _EPS))
    return np.hstack([np.sqrt(np.clip(shares, 0.0, 1.0)), level[:, None]])


def shares_profile(
    shares: dict[str, float], field_names: list[str], score: float, score_weight: float
) -> np.ndarray:
    """The profile of one alerted record from what its alert message carries (``field_shares``, ``raw_score``)."""
    row = np.array([[max(float(shares.get(f, 0.0)), 0.0) for f in field_names]])
    return profiles(row, np.array([score]), score_weight)[0]


class VerdictMemory:
    """Prototypes of confirmed attacks and confirmed false alarms, and the score adjustment they make."""

    def __init__(self, n_fields: int, policy: FeedbackPolicy | None = None) -> None:
        self.n_fields = n_fields
        self.policy = policy or FeedbackPolicy()
        self.protos = {v: np.zeros((0, n_fields + 1)) for v in VERDICTS}
        self.times = {v: np.zeros(0) for v in VERDICTS}
        self.labels: dict[str, list[str]] = {v: [] for v in VERDICTS}
        self.verdicts = dict.fromkeys(VERDICTS, 0)  # profiles learnt, by kind
        self.clock = -math.inf  # the latest verdict time seen

    def __len__(self) -> int:
        return sum(len(p) for p in self.protos.values())

    def learn(self, rows: np.ndarray, verdict: str, at: float, label: str = "") -> int:
        """Remember ``rows`` (profiles) as ``verdict`` given at time ``at``. Returns the number of new
        prototypes (a row close to a prototype of its kind refreshes that one)."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict {verdict!r} is not one of {VERDICTS}")
        rows = np.atleast_2d(np.asarray(rows, dtype=np.float64))
        if rows.shape[1] != self.n_fields + 1 or not np.isfinite(rows).all():
            raise ValueError(
                f"a profile has {rows.shape[1]} values, not {self.n_fields + 1}, or is not finite"
            )
        p = self.policy
        added = 0
        for row in rows:
            self.verdicts[verdict] += 1
            protos, times = self.protos[verdict], self.times[verdict]
            if len(protos):
                d = np.sqrt(((protos - row) ** 2).sum(axis=1))
                j = int(np.argmin(d))
                if d[j] <= p.merge_radius:
                    times[j] = max(times[j], at)
                    self.labels[verdict][j] = label or self.labels[verdict][j]
                    continue
            if len(protos) >= p.capacity:  # drop the oldest
                j = int(np.argmin(times))
                protos, times = np.delete(protos, j, axis=0), np.delete(times, j)
                del self.labels[verdict][j]
            self.protos[verdict] = np.vstack([protos, row])
            self.times[verdict] = np.append(times, at)
            self.labels[verdict].append(label)
            added += 1
        self.clock = max(self.clock, at)
        return added

    def closeness(self, verdict: str, rows: np.ndarray, now: float | None = None) -> np.ndarray:
        """For each profile, the largest decayed kernel value over the prototypes of ``verdict`` (0..1)."""
        protos = self.protos[verdict]
        if len(protos) == 0:
            return np.zeros(len(rows))
        p = self.policy
        now = self.clock if now is None else now
        age = np.maximum(now - self.times[verdict], 0.0)
        # max_j w_j exp(-d_ij² / r²) = exp(max_j (ln w_j - d_ij² / r²)): one exp per row, not per pair, and
        # the squared distances from one float32 matrix product (no n × m × d temporary)
        r2 = p.radius * p.radius
        # The product runs in torch, on the thread pool the model already uses: numpy's bundled OpenBLAS
        # starts threads of its own that spin after each product and, on a small machine, slowed the
        # model's next forward pass threefold (benchmarks/feedback.py --speed: 0.35x before, see docs).
        import torch  # here, not at the top: the CLI imports this module for its settings before a signal
        # handler is installed, and torch takes seconds to import (tests/unit/consumers/test_settings_hardening.py)

        x = torch.from_numpy(rows.astype(np.float32))
        y = torch.from_numpy(protos.astype(np.float32))
        offset = torch.from_numpy(
            ((y.numpy() * y.numpy()).sum(axis=1) / r2 + age / p.half_life * math.log(2.0)).astype(np.float32)
        )
        with torch.no_grad():
            cross = torch.addmm(-offset[None, :], x, y.T, alpha=2.0 / r2)
            top = cross.max(dim=1).values.numpy()
        best = top.astype(np.float64) - (rows * rows).sum(axis=1) / r2
        return np.exp(np.minimum(best, 0.0))

    def gain(self, rows: np.ndarray, now: float | None = None) -> np.ndarray:
        """ln of the factor each profile's score is multiplied by."""
        p = self.policy
        a = self.closeness("attack", rows, now)
        b = self.closeness("benign", rows, now)
        return math.log(p.max_gain) * a - math.log(1.0 / p.max_cut) * b * (1.0 - a)

    def adjust(self, scores: np.ndarray, field_err: np.ndarray, now: float | None = None) -> np.ndarray:
        """``scores`` as the verdicts so far would have them; ``scores`` itself when there are none."""
        if len(self) == 0 or len(scores) == 0:
            return scores
        g = self.gain(profiles(field_err, scores, self.policy.score_weight), now)
        return scores * np.exp(g)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "verdict-memory",
            "version": 1,
            "n_fields": self.n_fields,
            "policy": asdict(self.policy),
            "clock": self.clock if math.isfinite(self.clock) else None,
            "verdicts": dict(self.verdicts),
            "prototypes": {
                v: {
                    "profiles": np.round(self.protos[v], 6).tolist(),
                    "times": self.times[v].tolist(),
                    "labels": list(self.labels[v]),
                }
                for v in VERDICTS
            },
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (keeping this memory's policy). ValueError, and nothing changes, if it is
        not a verdict memory of this many fields."""
        if not isinstance(state, dict) or state.get("kind") != "verdict-memory" or state.get("version") != 1:
            raise ValueError("not a verdict-memory state of version 1")
        if state.get("n_fields") != self.n_fields:
            raise ValueError(f"verdict memory is for {state.get('n_fields')} fields, not {self.n_fields}")
        protos, times, labels = {}, {}, {}
        for v in VERDICTS:
            part = state["prototypes"][v]
            rows = np.asarray(part["profiles"], dtype=np.float64).reshape(-1, self.n_fields + 1)
            t = np.asarray(part["times"], dtype=np.float64)
            names = [str(x) for x in part["labels"]]
            if (
                not (len(rows) == len(t) == len(names))
                or not np.isfinite(rows).all()
                or not np.isfinite(t).all()
            ):
                raise ValueError(f"verdict memory: the {v} prototypes are not consistent")
            keep = slice(max(len(rows) - self.policy.capacity, 0), None)
            protos[v], times[v], labels[v] = rows[keep], t[keep], names[keep]
        self.protos, self.times, self.labels = protos, times, labels
        self.verdicts = {v: int(state["verdicts"].get(v, 0)) for v in VERDICTS}
        clock = state.get("clock")
        self.clock = -math.inf if clock is None else float(clock)
