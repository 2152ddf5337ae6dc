"""Feature encoding: validated records → fixed-width float32 vectors the model reads.

Fitted on *normal* training records only, so that anything attack traffic looks like stays out of the
scaling. Numeric fields whose training values span more than ``heavy_tail_span`` get a signed ``log1p``
(byte and packet counts, rates, durations); then every numeric field is min-max scaled to the training
range and clipped to ``[-clip, 1 + clip]`` so one absurd value cannot dominate everything else.
Categorical fields are one-hot encoded over the categories seen at least ``min_count`` times, plus an
explicit unknown bucket; unseen categories go there and are counted per field.

>>> import numpy as np
>>> from flowsentinel.detector.schema import Schema, parse_table
>>> s = Schema.from_dict({"name": "t", "numeric": ["bytes"], "categorical": ["proto"]})
>>> b = parse_table(s, {"bytes": ["1", "10"], "proto": ["tcp", "udp"]}, ["1", "2"])
>>> enc = FeatureEncoder(min_count=1).fit(b)
>>> enc.width, enc.groups
(4, [('bytes', 0, 1), ('proto', 1, 4)])
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowsentinel.detector.errors import ArtifactError, ConfigError
from flowsentinel.detector.schema import RecordBatch, Schema

UNKNOWN = "__unknown__"


def signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class FeatureEncoder:
    """One-hot + log + min-max encoder whose whole fitted state is plain JSON (travels in the artifact)."""

    min_count: int = 3
    max_categories: int = 64
    heavy_tail_span: float = 100.0
    clip: float = 4.0
    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    log_fields: list[bool] = field(default_factory=list)
    lo: list[float] = field(default_factory=list)
    scale: list[float] = field(default_factory=list)
    categories: dict[str, list[str]] = field(default_factory=dict)
    _lookup: dict[str, dict[str, int]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise ConfigError(f"min_count = {self.min_count!r} must be >= 1")
        if self.max_categories < 1:
            raise ConfigError(f"max_categories = {self.max_categories!r} must be >= 1")
        if self.clip <= 0:
            raise ConfigError(f"clip = {self.clip!r} must be > 0")
        self._lookup = {f: {c: i for i, c in enumerate(cs)} for f, cs in self.categories.items()}

    # ------------------------------------------------------------------ fitting
    def fit(self, batch: RecordBatch) -> FeatureEncoder:
        if len(batch) == 0:
            raise ConfigError("cannot fit the feature encoder on zero records")
        schema = batch.schema
        self.numeric = list(schema.numeric)
        self.categorical = list(schema.categorical)
        x = batch.numeric
        span = x.max(axis=0) - x.min(axis=0) if len(x) else np.zeros(len(self.numeric))
        self.log_fields = [bool(s > self.heavy_tail_span) for s in span]
        t = self._transform_numeric_raw(x)
        lo, hi = t.min(axis=0), t.max(axis=0)
        rng = hi - lo
        self.lo = [float(v) for v in lo]
        self.scale = [float(v) if v > 1e-12 else 1.0 for v in rng]
        self.categories = {}
        for j, name in enumerate(self.categorical):
            counts = Counter(batch.categorical[:, j].tolist())
            kept = sorted(
                (c for c, k in counts.items() if k >= self.min_count), key=lambda c: (-counts[c], c)
            )[: self.max_categories]
            self.categories[name] = sorted(kept)
        self._lookup = {f: {c: i for i, c in enumerate(cs)} for f, cs in self.categories.items()}
        return self

    @property
    def fitted(self) -> bool:
        return bool(self.numeric or self.categorical)

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(c) + 1 for c in self.categories.values())

    @property
    def groups(self) -> list[tuple[str, int, int]]:
        """(field, start, stop) column ranges of the encoded vector, one per source field."""
        out = [(name, j, j + 1) for j, name in enumerate(self.numeric)]
        start = len(self.numeric)
        for name in self.categorical:
            stop = start + len(self.categories[name]) + 1
            out.append((name, start, stop))
            start = stop
        return out

    @property
    def field_names(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    # ------------------------------------------------------------------ transforming
    def _transform_numeric_raw(self, x: np.ndarray) -> np.ndarray:
        out = x.astype(np.float64, copy=True)
        if self.log_fields:
            cols = np.flatnonzero(self.log_fields)
            out[:, cols] = signed_log1p(out[:, cols])
        return out

    def transform(self, batch: RecordBatch) -> tuple[np.ndarray, dict[str, int]]:
        """Encode a batch. Returns the (n, width) float32 matrix and unknown-category counts per field."""
        if not self.fitted:
            raise ConfigError("the feature encoder is not fitted")
        self.check_schema(batch.schema)
        n = len(batch)
        out = np.zeros((n, self.width), dtype=np.float32)
        k = len(self.numeric)
        if k:
            t = self._transform_numeric_raw(batch.numeric)
            t = (t - np.asarray(self.lo)) / np.asarray(self.scale)
            out[:, :k] = np.clip(t, -self.clip, 1.0 + self.clip)
        unknown: dict[str, int] = {}
        start = k
        for j, name in enumerate(self.categorical):
            lookup = self._lookup[name]
            unk = len(lookup)
            idx = np.fromiter((lookup.get(c, unk) for c in batch.categorical[:, j]), dtype=np.int64, count=n)
            out[np.arange(n), start + idx] = 1.0
            missed = int((idx == unk).sum())
            if missed:
                unknown[name] = missed
            start += unk + 1
        return out, unknown

    def check_schema(self, schema: Schema) -> None:
        if list(schema.numeric) != self.numeric or list(schema.categorical) != self.categorical:
            raise ConfigError(
                f"records of schema {schema.name!r} do not have the fields this encoder was fitted on"
            )

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "min_count": self.min_count,
            "max_categories": self.max_categories,
            "heavy_tail_span": self.heavy_tail_span,
            "clip": self.clip,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "log_fields": self.log_fields,
            "lo": self.lo,
            "scale": self.scale,
            "categories": self.categories,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> FeatureEncoder:
        try:
            enc = cls(**state)
        except TypeError as exc:
            raise ArtifactError(f"feature encoder state is not valid: {exc}") from None
        n = len(enc.numeric)
        if not (len(enc.log_fields) == len(enc.lo) == len(enc.scale) == n):
            raise ArtifactError("feature encoder state is not valid: numeric arrays differ in length")
        if set(enc.categories) != set(enc.categorical):
            raise ArtifactError("feature encoder state is not valid: categories do not match fields")
        return enc
