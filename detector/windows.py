"""Per-key sliding windows with a hard bound on live keys.

Each entity key (a source host, say) keeps its last ``window`` encoded records. A record is scored in the
window that ends with it; a key's first records get a shorter window, left-padded with zeros and marked
absent in the mask, so every record is scored from the first one on. When more than ``max_keys`` keys are
live, the least recently seen key is evicted (its context is forgotten, never its records), so memory is
bounded by ``max_keys × window × width × 4`` bytes however many hosts pass by.

:func:`window_indices` builds the same windows for a whole table at once (training, evaluation); a test
proves the two agree.

>>> import numpy as np
>>> store = WindowStore(window=3, width=1, max_keys=10)
>>> w, m = store.push_many(["a", "a", "b"], np.array([[1.0], [2.0], [5.0]], dtype=np.float32))
>>> w[1, :, 0].tolist(), m[1].tolist()
([0.0, 1.0, 2.0], [0.0, 1.0, 1.0])
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence

import numpy as np

from flowsentinel.detector.errors import ConfigError

_NO_CONTEXT: list = []  # what a key holds at window 1: no earlier records


class WindowStore:
    """Bounded LRU map key → the last ``window`` encoded records of that key."""

    def __init__(self, window: int, width: int, max_keys: int = 50_000) -> None:
        if window < 1:
            raise ConfigError(f"window = {window!r} must be >= 1")
        if width < 1:
            raise ConfigError(f"width = {width!r} must be >= 1")
        if max_keys < 1:
            raise ConfigError(f"max_keys = {max_keys!r} must be >= 1")
        self.window = window
        self.width = width
        self.max_keys = max_keys
        # key -> [buffer (W, F), filled count]; at window 1, _NO_CONTEXT
        self._rings: OrderedDict[Hashable, list] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._rings)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._rings

    def keys(self) -> list[Hashable]:
        """Live keys, least recently used first."""
        return list(self._rings)

    def clear(self) -> None:
        self._rings.clear()

    def discard(self, keys: Sequence[Hashable]) -> None:
        """Forget the context of ``keys`` (e.g. keys of partitions this instance no longer owns)."""
        for k in keys:
            self._rings.pop(k, None)

    def push_many(self, keys: Sequence[Hashable], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append each record to its key's window, in order; return each record's window and mask.

        ``windows[i]`` is (window, width) float32 ending with ``x[i]``; ``mask[i, t]`` is 1.0 where
        position ``t`` holds a record and 0.0 where it is padding.
        """
        n = len(keys)
        if x.shape != (n, self.width):
            raise ValueError(f"expected records of shape ({n}, {self.width}), got {x.shape}")
        w = self.window
        rings = self._rings
        if w == 1:  # the default: a window is its record, and only the keys' recency is kept
            for key in keys:
                if key in rings:
                    rings.move_to_end(key)
                    continue
                if len(rings) >= self.max_keys:
                    rings.popitem(last=False)
                    self.evictions += 1
                rings[key] = _NO_CONTEXT
            return x.astype(np.float32).reshape(n, 1, self.width), np.ones((n, 1), dtype=np.float32)
        windows = np.zeros((n, w, self.width), dtype=np.float32)
        mask = np.zeros((n, w), dtype=np.float32)
        for i, key in enumerate(keys):
            entry = rings.get(key)
            if entry is None:
                if len(rings) >= self.max_keys:
                    _, entry = rings.popitem(last=False)
                    entry[0].fill(0.0)  # reuse the evicted key's buffer: no allocation churn at the bound
                    entry[1] = 0
                    self.evictions += 1
                else:
                    entry = [np.zeros((w, self.width), dtype=np.float32), 0]
                rings[key] = entry
            else:
                rings.move_to_end(key)
            buf = entry[0]
            if w > 1:
                buf[:-1] = buf[1:]
            buf[-1] = x[i]
            filled = min(entry[1] + 1, w)
            entry[1] = filled
            windows[i] = buf
            mask[i, w - filled :] = 1.0
        return windows, mask


def window_indices(keys: Sequence[Hashable] | np.ndarray, window: int) -> np.ndarray:
    """(n, window) int64 matrix: row i lists the records of i's window (its key's last ``window``
    records, in order, ending with i); -1 marks padding. Same windows as :class:`WindowStore` without
    eviction.
    """
    keys_arr = np.asarray(keys, dtype=object)
    n = len(keys_arr)
    out = np.full((n, window), -1, dtype=np.int64)
    if n == 0:
        return out
    _, codes = np.unique(keys_arr.astype(str), return_inverse=True)
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    out[order, window - 1] = order
    for lag in range(1, window):
        same = np.zeros(n, dtype=bool)
        same[lag:] = sorted_codes[lag:] == sorted_codes[:-lag]
        rows = order[same]
        out[rows, window - 1 - lag] = order[np.flatnonzero(same) - lag]
    return out


def gather_windows(x: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Materialise windows from an index matrix: (len(idx), W, F) float32 and (len(idx), W) mask."""
    padded = np.concatenate([x, np.zeros((1, x.shape[1]), dtype=x.dtype)])
    windows = padded[idx].astype(np.float32, copy=False)  # index -1 picks the zero row
    mask = (idx >= 0).astype(np.float32)
    return windows, mask
