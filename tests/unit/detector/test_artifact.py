from __future__ import annotations

import hashlib
import io
import json
import pickle

import numpy as np
import pytest
import torch

from flowsentinel.detector.artifact import FORMAT_VERSION, _digest, load_artifact, save_artifact
from flowsentinel.detector.errors import ArtifactError
from flowsentinel.detector.pipeline import Detector
from tests.support import toy_batch


@pytest.fixture
def saved(tiny_model, tmp_path):
    save_artifact(tiny_model, tmp_path / "m")
    return tmp_path / "m"


def test_round_trip_scores_identically(tiny_model, saved):
    loaded = load_artifact(saved)
    batch = toy_batch(300, seed=9, attack_rate=0.2)
    a = Detector(tiny_model).process_batch(batch)
    b = Detector(loaded).process_batch(batch)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.alerts, b.alerts)
    assert loaded.version == tiny_model.version and len(loaded.version) == 12
    assert loaded.schema == tiny_model.schema
    meta = json.loads((saved / "metadata.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION
    assert set(meta) >= {"schema", "encoder", "model", "training", "calibration", "content_hash"}


def test_edited_metadata_is_refused(saved):
    meta = json.loads((saved / "metadata.json").read_text())
    meta["calibration"]["scores"][0] = 1e9
    (saved / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="content hash mismatch"):
        load_artifact(saved)


def test_truncated_weights_are_refused(saved):
    data = (saved / "weights.pt").read_bytes()
    (saved / "weights.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated or tampered"):
        load_artifact(saved)


def test_truncated_metadata_is_refused(saved):
    text = (saved / "metadata.json").read_text()
    (saved / "metadata.json").write_text(text[:100])
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load_artifact(saved)


def test_newer_format_version_is_refused(saved):
    meta = json.loads((saved / "metadata.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (saved / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=f"format_version {FORMAT_VERSION + 1} is not supported"):
        load_artifact(saved)


def _as_old_format(saved, version: int) -> None:
    """Rewrite a saved one-member artifact the way formats 1 and 2 stored it: bare weight keys, no
    ``members`` in the model config, and (format 1) no ``scoring``."""
    meta = json.loads((saved / "metadata.json").read_text())
    assert meta["model"]["members"] == 1 and meta["scoring"] == {"method": "mse"}
    state = torch.load(saved / "weights.pt", weights_only=True)
    buf = io.BytesIO()
    torch.save({k.removeprefix("members.0."): v for k, v in state.items()}, buf)
    weights = buf.getvalue()
    (saved / "weights.pt").write_bytes(weights)
    meta["format_version"] = version
    del meta["model"]["members"]
    if version == 1:
        del meta["scoring"]
    meta["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    meta["content_hash"] = _digest(meta, weights)
    (saved / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("version", [1, 2])
def test_format_1_and_2_artifacts_still_load_and_score_the_same(tiny_model, saved, version):
    _as_old_format(saved, version)
    old = load_artifact(saved)
    assert old.field_scale is None and old.config.members == 1
    batch = toy_batch(200, seed=4, attack_rate=0.2)
    v = Detector(old).process_batch(batch)
    np.testing.assert_array_equal(v.scores, Detector(tiny_model).process_batch(batch).scores)
    np.testing.assert_allclose(v.scores, v.field_errors.sum(axis=1) / old.encoder.width, rtol=1e-12)


def test_field_scaled_model_round_trips(tmp_path):
    from flowsentinel.detector.train import TrainConfig, train

    cfg = TrainConfig(window=4, hidden=8, latent=4, epochs=2, seed=1, scoring="field-scaled")
    model = train(toy_batch(600, seed=1, attack_rate=0.0), cfg, progress=False)
    save_artifact(model, tmp_path / "fs")
    meta = json.loads((tmp_path / "fs" / "metadata.json").read_text())
    assert meta["scoring"]["method"] == "field-scaled"
    assert meta["scoring"]["fields"] == model.encoder.field_names
    loaded = load_artifact(tmp_path / "fs")
    assert loaded.field_scale is not None and model.field_scale is not None
    np.testing.assert_array_equal(loaded.field_scale, model.field_scale)
    batch = toy_batch(300, seed=2, attack_rate=0.2)
    np.testing.assert_array_equal(
        Detector(model).process_batch(batch).scores, Detector(loaded).process_batch(batch).scores
    )


class _Boom:
    def __reduce__(self):
        return (eval, ("__import__('os').getpid()",))


def test_a_pickle_payload_is_never_unpickled(saved):
    """Replace the weights by a malicious pickle and forge matching hashes: torch refuses to load it."""
    from flowsentinel.detector.artifact import _digest

    buf = io.BytesIO()
    torch.save({"x": _Boom()}, buf, pickle_module=pickle)
    payload = buf.getvalue()
    (saved / "weights.pt").write_bytes(payload)
    meta = json.loads((saved / "metadata.json").read_text())
    import hashlib

    meta["weights_sha256"] = hashlib.sha256(payload).hexdigest()
    meta["content_hash"] = _digest(meta, payload)
    (saved / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match="cannot be loaded safely"):
        load_artifact(saved)


def test_missing_directory_or_file_is_named(tmp_path, saved):
    with pytest.raises(ArtifactError, match="does not exist"):
        load_artifact(tmp_path / "nope")
    (saved / "weights.pt").unlink()
    with pytest.raises(ArtifactError, match="has no weights.pt"):
        load_artifact(saved)


def test_the_version_names_what_scores_not_how_long_training_took(tiny_model, tmp_path):
    """Retraining with the same seed and data gives the same version; the training summary (times) only
    changes the integrity hash; anything that changes a score changes the version."""
    import copy

    first = save_artifact(tiny_model, tmp_path / "a")
    version = tiny_model.version
    again = copy.deepcopy(tiny_model)
    again.training = dict(again.training, seconds=again.training.get("seconds", 0) + 7.5)
    assert save_artifact(again, tmp_path / "b") != first, "the content hash covers the training summary"
    assert again.version == version == load_artifact(tmp_path / "b").version
    recalibrated = copy.deepcopy(tiny_model)
    recalibrated.calibration = [c * 1.01 for c in recalibrated.calibration]
    save_artifact(recalibrated, tmp_path / "c")
    assert recalibrated.version != version
