from __future__ import annotations

import numpy as np
import pytest

from flowsentinel.detector.errors import ArtifactError, ConfigError
from flowsentinel.detector.features import UNKNOWN, FeatureEncoder
from flowsentinel.detector.schema import parse_table
from tests.support import TOY, toy_batch


def test_fit_on_normal_then_encode_into_bounded_columns():
    b = toy_batch(500)
    enc = FeatureEncoder().fit(b)
    x, unknown = enc.transform(b)
    assert x.shape == (500, enc.width) and x.dtype == np.float32
    assert unknown == {}
    assert x[:, :3].min() >= 0.0 and x[:, :3].max() <= 1.0  # min-max over the training range
    assert enc.log_fields == [True, False, False]  # bytes spans > 100 → log; packets, duration do not


def test_unknown_categories_go_to_the_unknown_bucket_and_are_counted():
    enc = FeatureEncoder().fit(toy_batch(500))
    odd = parse_table(
        TOY,
        {
            "bytes": ["10"],
            "packets": ["1"],
            "duration": ["0"],
            "proto": ["sctp"],
            "service": ["http"],
            "host": ["h"],
            "label": ["normal"],
        },
        ["l1"],
    )
    x, unknown = enc.transform(odd)
    assert unknown == {"proto": 1}
    start, stop = next((s, e) for f, s, e in enc.groups if f == "proto")
    assert x[0, start:stop].tolist()[-1] == 1.0  # the last column of a block is the unknown bucket
    assert UNKNOWN not in enc.categories["proto"]


def test_rare_categories_fall_into_unknown_at_fit_time():
    b = toy_batch(300)
    b.categorical[0, 1] = "rare"
    enc = FeatureEncoder(min_count=3).fit(b)
    assert "rare" not in enc.categories["service"]


def test_extreme_values_are_clipped():
    enc = FeatureEncoder(clip=4.0).fit(toy_batch(300))
    big = parse_table(
        TOY,
        {
            "bytes": ["1e15"],
            "packets": ["1e9"],
            "duration": ["0"],
            "proto": ["tcp"],
            "service": ["http"],
            "host": ["h"],
            "label": ["x"],
        },
        ["l1"],
    )
    x, _ = enc.transform(big)
    assert x[0, 0] == pytest.approx(5.0) and x[0, 1] == pytest.approx(5.0)


def test_state_round_trip_gives_identical_encoding():
    b = toy_batch(400)
    enc = FeatureEncoder().fit(b)
    again = FeatureEncoder.from_state_dict(enc.state_dict())
    np.testing.assert_array_equal(enc.transform(b)[0], again.transform(b)[0])


def test_invalid_state_and_config_are_refused():
    state = FeatureEncoder().fit(toy_batch(100)).state_dict()
    state["lo"] = state["lo"][:-1]
    with pytest.raises(ArtifactError, match="differ in length"):
        FeatureEncoder.from_state_dict(state)
    with pytest.raises(ConfigError, match="min_count = 0"):
        FeatureEncoder(min_count=0)
    with pytest.raises(ConfigError, match="not fitted"):
        FeatureEncoder().transform(toy_batch(5))
