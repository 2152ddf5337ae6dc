"""Model artifacts: a directory holding ``weights.pt`` (a torch state dict) and ``metadata.json``.

The metadata carries everything needed to score: the schema, the fitted encoder, the model config, the
training summary and the calibration scores the thresholders warm up from, plus ``format_version`` and a
``content_hash`` (SHA-256 over the canonical metadata and the weights' bytes). Loading checks the hash,
the format version and every tensor's shape, and reads weights with ``torch.load(weights_only=True)``: nothing
is ever unpickled, and a tampered, truncated or incompatible artifact is refused with the reason.

>>> model = load_artifact("models/nsl-kdd")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from detector.errors import ArtifactError
from detector.features import FeatureEncoder
from detector.model import AutoencoderEnsemble, ModelConfig
from detector.schema import Schema, SchemaError

# 2 added the per-field error scales, 3 the ensemble (weights keyed "members.<i>."). Formats 1 and 2 still
# load, as a one-member ensemble; format 1 scores by plain MSE.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
WEIGHTS = "weights.pt"
METADATA = "metadata.json"
CALIBRATION_KEEP = 20_000


@dataclass
class TrainedModel:
    schema: Schema
    encoder: FeatureEncoder
    config: ModelConfig
    net: AutoencoderEnsemble
    calibration: list[float]
    training: dict[str, Any] = field(default_factory=dict)
    field_scale: np.ndarray | None = None  # see detector.pipeline.score_windows; None = plain MSE
    content_hash: str = ""  # integrity: everything in the artifact, the training summary included
    scoring_hash: str = ""  # identity: only what decides a score (see _scoring_digest)

    @property
    def version(self) -> str:
        """Short model version shown in alerts and metrics, threshold snapshots' names and reports: the first
        12 hex digits of the scoring hash, so the same training on the same data (same weights, encoder and
        calibration) gives the same version, however long it took."""
        return self.scoring_hash[:12] if self.scoring_hash else "unsaved"

    def calibration_quantiles(self) -> dict[str, float]:
        if not self.calibration:
            return {}
        arr = np.asarray(self.calibration)
        return {f"p{q:g}": float(np.quantile(arr, q / 100)) for q in (50, 90, 95, 99, 99.9)}


def _weights_bytes(net: AutoencoderEnsemble) -> bytes:
    buf = io.BytesIO()
    torch.save({k: v.detach().clone() for k, v in net.state_dict().items()}, buf)
    return buf.getvalue()


def _hash(body: dict[str, Any], weights: bytes) -> str:
    """SHA-256 over the canonical JSON of ``body`` and the weights' bytes."""
    h = hashlib.sha256()
    h.update(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())
    h.update(b"\0")
    h.update(weights)
    return h.hexdigest()


def _digest(meta: dict[str, Any], weights: bytes) -> str:
    return _hash({k: v for k, v in meta.items() if k != "content_hash"}, weights)


# the metadata that decides how a record scores; "training" (times, losses) and versions of tools do not
SCORING_KEYS = ("schema", "encoder", "model", "calibration", "scoring")


def _scoring_digest(meta: dict[str, Any], weights: bytes) -> str:
    return _hash({k: meta.get(k) for k in SCORING_KEYS}, weights)


def save_artifact(model: TrainedModel, directory: str | Path) -> str:
    """Write the artifact atomically (files are renamed into place). Returns the content hash."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    weights = _weights_bytes(model.net)
    meta: dict[str, Any] = {
        "format": "flowsentinel-model",
        "format_version": FORMAT_VERSION,
        "schema": model.schema.to_dict(),
        "encoder": model.encoder.state_dict(),
        "model": model.config.to_dict(),
        "training": model.training,
        "calibration": {"scores": model.calibration, "quantiles": model.calibration_quantiles()},
        "scoring": _scoring_meta(model),
        "weights_file": WEIGHTS,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
        "torch_version": torch.__version__.split("+")[0],
    }
    meta["scoring_hash"] = _scoring_digest(meta, weights)
    meta["content_hash"] = _digest(meta, weights)
    _atomic_write(out / WEIGHTS, weights)
    _atomic_write(out / METADATA, (json.dumps(meta, indent=1, sort_keys=True) + "\n").encode())
    model.content_hash = meta["content_hash"]
    model.scoring_hash = meta["scoring_hash"]
    return str(meta["content_hash"])


def _scoring_meta(model: TrainedModel) -> dict[str, Any]:
    if model.field_scale is None:
        return {"method": "mse"}
    return {
        "method": "field-scaled",
        "fields": list(model.encoder.field_names),  # field_scale[i] belongs to fields[i]
        "field_scale": [float(v) for v in model.field_scale],
    }


def _field_scale(meta: dict[str, Any], encoder: FeatureEncoder) -> np.ndarray | None:
    scoring = meta.get("scoring", {"method": "mse"})
    if scoring.get("method") == "mse":
        return None
    if scoring.get("method") != "field-scaled":
        raise ValueError(f"unknown scoring method {scoring.get('method')!r}")
    if scoring["fields"] != encoder.field_names or len(scoring["field_scale"]) != len(encoder.field_names):
        raise ValueError("scoring field_scale does not match the encoder's fields")
    arr = np.array([float(v) for v in scoring["field_scale"]])
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError("scoring field_scale holds a value that is not a positive number")
    return arr


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_artifact(directory: str | Path) -> TrainedModel:
    d = Path(directory)
    meta_path, weights_path = d / METADATA, d / WEIGHTS
    if not d.is_dir():
        raise ArtifactError(f"model directory {str(d)!r} does not exist")
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise ArtifactError(f"model directory {str(d)!r} has no {p.name} (not a flowsentinel model?)")
    try:
        meta = json.loads(meta_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(
            f"{meta_path}: metadata is not valid JSON (truncated or edited?): {exc}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != "flowsentinel-model":
        raise ArtifactError(f"{meta_path}: not flowsentinel model metadata")
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS:
        raise ArtifactError(
            f"{meta_path}: artifact format_version {version!r} is not supported by this flowsentinel "
            f"(reads {', '.join(map(str, READABLE_VERSIONS))}); retrain or use a matching release"
        )
    weights = weights_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != meta.get("weights_sha256"):
        raise ArtifactError(
            f"{weights_path}: weights do not match their recorded SHA-256 (truncated or tampered)"
        )
    if _digest(meta, weights) != meta.get("content_hash"):
        raise ArtifactError(f"{meta_path}: content hash mismatch: the metadata was modified after saving")
    try:
        schema = Schema.from_dict(meta["schema"], source="artifact schema")
        encoder = FeatureEncoder.from_state_dict(meta["encoder"])
        config = ModelConfig.from_dict(meta["model"])
        calibration = [float(s) for s in meta["calibration"]["scores"]]
        field_scale = _field_scale(meta, encoder)  # format 1 has no "scoring": plain MSE
    except (KeyError, TypeError, ValueError, SchemaError) as exc:
        raise ArtifactError(f"{meta_path}: metadata is incomplete or invalid: {exc}") from None
    if config.n_features != encoder.width:
        raise ArtifactError(
            f"{meta_path}: model expects {config.n_features} features, encoder gives {encoder.width}"
        )
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe payloads
        raise ArtifactError(f"{weights_path}: cannot be loaded safely: {str(exc).splitlines()[0]}") from None
    if version < 3:  # one bare autoencoder: its weights become member 0's
        state = {f"members.0.{k}": v for k, v in state.items()} if isinstance(state, dict) else state
    net = AutoencoderEnsemble(config)
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ArtifactError(
            f"{weights_path}: weights do not fit the model config: {str(exc).splitlines()[0]}"
        ) from None
    net.eval()
    return TrainedModel(
        schema=schema,
        encoder=encoder,
        config=config,
        net=net,
        calibration=calibration,
        training=meta.get("training", {}),
        field_scale=field_scale,
        content_hash=meta["content_hash"],
        scoring_hash=_scoring_digest(meta, weights),  # recomputed: artifacts saved before it have none
    )
