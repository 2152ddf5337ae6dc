from __future__ import annotations

import numpy as np
import pytest

from flowsentinel.detector.errors import ConfigError
from flowsentinel.detector.windows import WindowStore, gather_windows, window_indices


def test_first_records_of_a_key_are_scored_with_a_padded_window():
    store = WindowStore(window=4, width=2, max_keys=10)
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    w, m = store.push_many(["a", "a", "a"], x)
    assert m.tolist() == [[0, 0, 0, 1], [0, 0, 1, 1], [0, 1, 1, 1]]
    np.testing.assert_array_equal(w[2, 1:], x)
    np.testing.assert_array_equal(w[0, :3], 0)


def test_store_and_index_builder_give_the_same_windows():
    rng = np.random.default_rng(0)
    keys = rng.choice(["a", "b", "c", "d"], size=200).tolist()
    x = rng.normal(size=(200, 3)).astype(np.float32)
    store_w, store_m = WindowStore(window=5, width=3).push_many(keys, x)
    idx_w, idx_m = gather_windows(x, window_indices(keys, 5))
    np.testing.assert_array_equal(store_w, idx_w)
    np.testing.assert_array_equal(store_m, idx_m)


def test_store_continues_across_batches():
    rng = np.random.default_rng(1)
    keys = rng.choice(["a", "b"], size=50).tolist()
    x = rng.normal(size=(50, 2)).astype(np.float32)
    whole = WindowStore(3, 2).push_many(keys, x)[0]
    store = WindowStore(3, 2)
    parts = [store.push_many(keys[s : s + 7], x[s : s + 7])[0] for s in range(0, 50, 7)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize("window", [1, 2])
def test_lru_bound_holds_under_many_keys_and_evicts_the_least_recent(window):
    store = WindowStore(window=window, width=1, max_keys=100)
    keys = [f"10.0.{i // 256}.{i % 256}" for i in range(10_000)]
    store.push_many(keys, np.ones((10_000, 1), dtype=np.float32))
    assert len(store) == 100
    assert store.evictions == 9_900
    assert keys[-1] in store and keys[0] not in store
    store.push_many([keys[-100]], np.ones((1, 1), dtype=np.float32))  # touch: now most recent
    store.push_many(["new"], np.ones((1, 1), dtype=np.float32))
    assert keys[-100] in store and keys[-99] not in store


def test_evicted_key_restarts_with_a_fresh_window():
    store = WindowStore(window=3, width=1, max_keys=1)
    one = np.ones((1, 1), dtype=np.float32)
    store.push_many(["a"], one)
    store.push_many(["b"], one)
    _, m = store.push_many(["a"], one)
    assert m.tolist() == [[0, 0, 1]]


def test_bad_configuration_is_named():
    with pytest.raises(ConfigError, match="window = 0"):
        WindowStore(0, 3)
    with pytest.raises(ConfigError, match="max_keys = -1"):
        WindowStore(2, 3, max_keys=-1)


def test_window_one_keeps_the_same_keys_as_longer_windows_and_each_record_is_its_window():
    """Window 1 keeps no buffers, only the keys' recency: the same live keys, order and evictions."""
    rng = np.random.default_rng(2)
    one, three = WindowStore(1, 2, max_keys=40), WindowStore(3, 2, max_keys=40)
    for _ in range(20):
        keys = rng.choice([f"h{i}" for i in range(60)], size=37).tolist()
        x = rng.normal(size=(37, 2)).astype(np.float32)
        w, m = one.push_many(keys, x)
        three.push_many(keys, x)
        assert w.shape == (37, 1, 2) and w.dtype == np.float32 and m.tolist() == [[1.0]] * 37
        np.testing.assert_array_equal(w[:, 0], x)
        assert one.keys() == three.keys() and one.evictions == three.evictions
    one.discard(one.keys()[:5])
    assert len(one) == 35
