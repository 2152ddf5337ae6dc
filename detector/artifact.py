"""Model artifacts: a directory holding ``weights.pt`` (a torch state dict) and ``metadata.json``.

The metadata carries everything needed to score: the schema, the fitted encoder, the model config, the
training summary and the calibration scores the thresholders warm up from, plus ``format_version`` and a
``content_hash`` (SHA-256 over the canonical metadata and the weights' bytes). Loading checks the hash,
the format version and every tensor's shape, and reads weights with ``torch.load(weights_only=True)``: nothing
is ever unpickled, and a tampered, truncated or incompatible artifact is refused with the reason.

The metadata is not trusted because its hash checks out: anyone who can edit it can recompute the hash. Before
anything is built from it, :func:`check_metadata` checks it against an explicit schema (types, required keys,
bounds on sizes, counts, lengths and nesting) and a model larger than ``max_params`` is refused before
anything is allocated; every refusal is one :class:`ArtifactError` line naming the key and the value.

Authenticity is opt-in: :func:`sign_artifact` writes ``signature.json``, an HMAC-SHA256 under a secret key of
the content hash (which covers every byte of the metadata and the weights); ``load_artifact(..., key=KEY)``
refuses an unsigned or wrongly signed model. The key is never written anywhere but where the operator put it.

>>> model = load_artifact("models/nsl-kdd")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowsentinel.detector.errors import ArtifactError
from flowsentinel.detector.features import FeatureEncoder
from flowsentinel.detector.model import AutoencoderEnsemble, ModelConfig
from flowsentinel.detector.schema import Schema

# 2 added the per-field error scales, 3 the ensemble (weights keyed "members.<i>."). Formats 1 and 2 still
# load, as a one-member ensemble; format 1 scores by plain MSE.
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
WEIGHTS = "weights.pt"
METADATA = "metadata.json"
SIGNATURE = "signature.json"
CALIBRATION_KEEP = 20_000
# Bounds a model's metadata must keep. Far above anything training makes (a default model: 200 KB of metadata,
# 0.4 M parameters), low enough that a crafted file cannot make a load run for minutes or exhaust memory.
DEFAULT_MAX_PARAMS = 50_000_000  # 200 MB of float32 weights; setting model_max_params
MAX_METADATA_BYTES = 64 << 20
MAX_DEPTH = 16  # the deepest a real artifact nests is 4 (encoder categories)
MAX_TEXT = 4_096  # characters of any one string in the metadata
MAX_ITEMS = 1_000_000  # entries of any one list or object (the calibration keeps 20,000 scores)
MODEL_BOUNDS = {  # ModelConfig field -> (lowest, highest)
    "n_features": (1, 100_000),
    "hidden": (1, 65_536),
    "latent": (1, 65_536),
    "window": (1, 10_000),
    "layers": (1, 16),
    "members": (1, 64),
}
MIN_KEY_BYTES = 16


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


def save_artifact(model: TrainedModel, directory: str | Path, *, key: bytes | None = None) -> str:
    """Write the artifact atomically (files are renamed into place), signed with ``key`` if given. Returns the
    content hash."""
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
    if key is not None:  # before the metadata: a service watching the directory finds the pair complete
        _write_signature(out, meta["content_hash"], key)
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


def _refuse(where: Path, key: str, value: Any, why: str) -> ArtifactError:
    key = key if len(key) <= 80 else key[:77] + "..."
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return ArtifactError(f"{where}: metadata key {key!r} = {text}: {why}")


def _check_shape(meta: Any, where: Path) -> None:
    """Nesting, string lengths and list sizes of the whole document, without recursion."""
    stack: list[tuple[Any, str, int]] = [(meta, "", 0)]
    while stack:
        value, key, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise _refuse(where, key, "...", f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise _refuse(where, key, value, f"longer than {MAX_TEXT:,} characters")
        if isinstance(value, dict | list) and len(value) > MAX_ITEMS:
            raise _refuse(where, key, f"<{len(value):,} entries>", f"more than {MAX_ITEMS:,} entries")
        if isinstance(value, dict):
            stack.extend((v, f"{key}.{k}" if key else str(k), depth + 1) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, f"{key}[{i}]", depth + 1) for i, v in enumerate(value))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_metadata(meta: Any, where: Path) -> None:
    """Check model metadata against the artifact's schema before anything is built from it: an
    :class:`ArtifactError` naming the first key that is missing, of the wrong type or out of bounds."""
    if not isinstance(meta, dict) or meta.get("format") != "flowsentinel-model":
        raise ArtifactError(f"{where}: not flowsentinel model metadata")
    _check_shape(meta, where)
    version = meta.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise ArtifactError(
            f"{where}: artifact format_version {version!r} is not supported by this flowsentinel "
            f"(reads {', '.join(map(str, READABLE_VERSIONS))}); retrain or use a matching release"
        )
    sections = {"schema": dict, "encoder": dict, "model": dict, "calibration": dict}
    optional = {"training": dict, "scoring": dict}
    for key, kind in (*sections.items(), *optional.items()):
        if key not in meta and key in optional:
            continue
        if not isinstance(meta.get(key), kind):
            raise _refuse(where, key, meta.get(key), "missing or not a JSON object")
    for key in ("weights_sha256", "content_hash"):
        if not (isinstance(meta.get(key), str) and re.fullmatch(r"[0-9a-f]{64}", meta[key])):
            raise _refuse(where, key, meta.get(key), "not a SHA-256 hex digest")
    model = meta["model"]
    unknown = set(model) - {*MODEL_BOUNDS, "record_path"}
    if unknown:
        raise _refuse(where, f"model.{sorted(map(str, unknown))[0]}", "...", "not a model setting")
    for name, (lo, hi) in MODEL_BOUNDS.items():
        value = model.get(name, 1 if name in ("window", "layers", "members") else None)
        if not (isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi):
            raise _refuse(where, f"model.{name}", value, f"must be an integer from {lo:,} to {hi:,}")
    if not isinstance(model.get("record_path", False), bool):
        raise _refuse(where, "model.record_path", model["record_path"], "must be true or false")
    scores = meta["calibration"].get("scores")
    if not (isinstance(scores, list) and all(map(_is_number, scores))):
        raise _refuse(where, "calibration.scores", scores, "must be a list of finite numbers")
    scoring = meta.get("scoring", {"method": "mse"})
    if scoring.get("method") not in ("mse", "field-scaled"):
        raise _refuse(where, "scoring.method", scoring.get("method"), "must be 'mse' or 'field-scaled'")
    if scoring["method"] == "field-scaled":
        fields, scale = scoring.get("fields"), scoring.get("field_scale")
        if not (isinstance(fields, list) and all(isinstance(f, str) for f in fields)):
            raise _refuse(where, "scoring.fields", fields, "must be a list of field names")
        if not (isinstance(scale, list) and all(map(_is_number, scale))):
            raise _refuse(where, "scoring.field_scale", scale, "must be a list of finite numbers")


def count_params(config: ModelConfig) -> int:
    """Parameters a model of ``config`` holds, counted without allocating them (on torch's meta device)."""
    with torch.device("meta"):
        net = AutoencoderEnsemble(config)
    return sum(p.numel() for p in net.parameters())


def read_key(path: str | Path) -> bytes:
    """A signing key from a file: its bytes without a trailing newline, at least 16 of them. The error names
    the file, never its content."""
    try:
        key = Path(path).expanduser().read_bytes().rstrip(b"\r\n")
    except OSError as exc:
        raise ArtifactError(f"cannot read the model key file {str(path)!r}: {exc.strerror or exc}") from None
    return check_key(key, f"the model key file {str(path)!r}")


def check_key(key: bytes, source: str) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise ArtifactError(f"{source} holds {len(key)} bytes: a key needs at least {MIN_KEY_BYTES}")
    return key


def _signature(key: bytes, content_hash: str) -> str:
    return hmac.new(key, f"flowsentinel-model:{content_hash}".encode(), hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A short name for a key that reveals nothing of it (to tell keys apart in logs and signature files)."""
    return hmac.new(key, b"flowsentinel-key-id", hashlib.sha256).hexdigest()[:12]


def sign_artifact(directory: str | Path, key: bytes) -> str:
    """Sign the model in ``directory`` (checked first) with ``key``; returns the key id written beside it."""
    model = load_artifact(directory)
    return _write_signature(Path(directory), model.content_hash, key)


def _write_signature(directory: Path, content_hash: str, key: bytes) -> str:
    body = {
        "algorithm": "hmac-sha256",
        "content_hash": content_hash,
        "key_id": key_id(key),
        "signature": _signature(key, content_hash),
    }
    _atomic_write(directory / SIGNATURE, (json.dumps(body, indent=1) + "\n").encode())
    return body["key_id"]


def _verify(d: Path, content_hash: str, key: bytes) -> None:
    path = d / SIGNATURE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"model directory {str(d)!r} is not signed (no {SIGNATURE}); "
                            f"sign it with `flowsentinel sign`") from None  # fmt: skip
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    try:
        body = json.loads(raw[:4096])
        ok = body["algorithm"] == "hmac-sha256" and isinstance(body["signature"], str)
    except (ValueError, TypeError, KeyError, RecursionError):
        ok = False
    if not ok:
        raise ArtifactError(f"{path}: not a flowsentinel signature")
    if not hmac.compare_digest(str(body["signature"]), _signature(key, content_hash)):
        raise ArtifactError(
            f"{path}: the signature does not match this model under the given key (signed with key "
            f"{str(body.get('key_id'))[:12]!r}, given key {key_id(key)!r}; or the model changed since)"
        )


def artifact_identity(directory: str | Path) -> tuple[Any, ...]:
    """What tells a model directory's content changed, without reading it: where it really is (a symlink's
    target) and each file's inode, size and modification time. A swap of a symlink to a directory with
    older files changes it; so does any rewrite of a file."""
    d = Path(directory)
    out: list[Any] = [os.path.realpath(d)]
    for name in (METADATA, WEIGHTS, SIGNATURE):
        try:
            st = (d / name).stat()
            out.append((name, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((name, None))
    return tuple(out)


def load_artifact(
    directory: str | Path, *, key: bytes | None = None, max_params: int = DEFAULT_MAX_PARAMS
) -> TrainedModel:
    """Load and check the model in ``directory``. With ``key``, it must carry a valid signature under it.
    A model of more than ``max_params`` parameters is refused before its weights are read."""
    d = Path(directory)
    meta_path, weights_path = d / METADATA, d / WEIGHTS
    if not d.is_dir():
        raise ArtifactError(f"model directory {str(d)!r} does not exist")
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise ArtifactError(f"model directory {str(d)!r} has no {p.name} (not a flowsentinel model?)")
    size = meta_path.stat().st_size
    if size > MAX_METADATA_BYTES:
        raise ArtifactError(f"{meta_path}: {size:,} bytes, more than a model's metadata may hold "
                            f"({MAX_METADATA_BYTES:,})")  # fmt: skip
    try:
        meta = json.loads(meta_path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(
            f"{meta_path}: metadata is not valid JSON (truncated or edited?): {exc}"
        ) from None
    except RecursionError:
        raise ArtifactError(f"{meta_path}: metadata nests deeper than {MAX_DEPTH} levels") from None
    check_metadata(meta, meta_path)
    version = meta["format_version"]
    try:
        config = ModelConfig.from_dict(meta["model"])
    except ArtifactError as exc:
        raise ArtifactError(f"{meta_path}: {exc}") from None
    params = count_params(config)
    if params > max_params:
        raise ArtifactError(
            f"{meta_path}: the model holds {params:,} parameters, more than the limit of {max_params:,} "
            f"(setting model_max_params); refused before allocating it"
        )
    weights_size = weights_path.stat().st_size
    if weights_size > 4 * params + (1 << 20):  # float32 tensors plus the file's own overhead
        raise ArtifactError(f"{weights_path}: {weights_size:,} bytes, more than {params:,} parameters need")
    weights = weights_path.read_bytes()
    if hashlib.sha256(weights).hexdigest() != meta.get("weights_sha256"):
        raise ArtifactError(
            f"{weights_path}: weights do not match their recorded SHA-256 (truncated or tampered)"
        )
    if _digest(meta, weights) != meta.get("content_hash"):
        raise ArtifactError(f"{meta_path}: content hash mismatch: the metadata was modified after saving")
    if key is not None:
        _verify(d, meta["content_hash"], key)
    section = "schema"
    try:
        schema = Schema.from_dict(meta["schema"], source="artifact schema")
        section = "encoder"
        encoder = FeatureEncoder.from_state_dict(meta["encoder"])
        section = "calibration"
        calibration = [float(s) for s in meta["calibration"]["scores"]]
        section = "scoring"
        field_scale = _field_scale(meta, encoder)  # format 1 has no "scoring": plain MSE
    except Exception as exc:  # whatever a crafted value makes the builders raise, it is refused
        raise ArtifactError(
            f"{meta_path}: metadata key {section!r} is incomplete or invalid: {_first_line(exc)}"
        ) from None
    if config.n_features != encoder.width:
        raise ArtifactError(
            f"{meta_path}: model expects {config.n_features} features, encoder gives {encoder.width}"
        )
    try:
        state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt/unsafe payloads
        raise ArtifactError(f"{weights_path}: cannot be loaded safely: {_first_line(exc)}") from None
    if version < 3:  # one bare autoencoder: its weights become member 0's
        state = {f"members.0.{k}": v for k, v in state.items()} if isinstance(state, dict) else state
    try:
        net = AutoencoderEnsemble(config)
        net.load_state_dict(state, strict=True)
    except Exception as exc:  # shapes, types, an allocation the bound above let through
        raise ArtifactError(
            f"{weights_path}: weights do not fit the model config: {_first_line(exc)}"
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


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
