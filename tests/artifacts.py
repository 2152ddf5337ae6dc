"""Broken models for the tests: a saved model's metadata changed the way an attacker with write access to the
model directory (or an operator copying the wrong file) would, with the content hash recomputed so that only
the metadata checks can catch it. Shared by the unit tests and the real-broker reload test."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flowsentinel.detector.artifact import METADATA, WEIGHTS

NEST = "@@nest@@"


def _nested(meta: dict[str, Any]) -> None:
    meta["training"]["note"] = (
        NEST  # replaced by 5,000 nested lists in the text (json.dumps cannot write them)
    )


# case -> (change to the metadata, the metadata key the refusal must name)
BROKEN: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "deeply-nested-value": (_nested, "nests deeper"),
    "schema-is-a-list": (lambda m: m.__setitem__("schema", [1, 2]), "'schema'"),
    "scoring-is-a-string": (lambda m: m.__setitem__("scoring", "x"), "'scoring'"),
    "huge-hidden-size": (lambda m: m["model"].__setitem__("hidden", 100_000_000), "'model.hidden'"),
    "huge-but-in-bounds": (
        lambda m: m["model"].update(hidden=60_000, members=64),
        "refused before allocating",
    ),
    "calibration-of-text": (lambda m: m["calibration"].__setitem__("scores", ["a"]), "'calibration.scores'"),
    "encoder-is-a-number": (lambda m: m.__setitem__("encoder", 7), "'encoder'"),
    "encoder-of-wrong-parts": (lambda m: m["encoder"].__setitem__("numeric", 5), "'encoder'"),
    "long-string": (lambda m: m["schema"].__setitem__("name", "x" * 10_000), "'schema.name'"),
}


def write_broken(source: Path, dest: Path, case: str) -> Path:
    """Copy the model in ``source`` to ``dest`` with ``case`` of :data:`BROKEN` applied, hash recomputed."""
    change, _ = BROKEN[case]
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest)
    meta = json.loads((dest / METADATA).read_text())
    change(meta)
    meta.pop("content_hash")
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    text = text.replace(json.dumps(NEST), "[" * 5_000 + "]" * 5_000)
    digest = hashlib.sha256(text.encode() + b"\0" + (dest / WEIGHTS).read_bytes()).hexdigest()
    (dest / METADATA).write_text(text[:-1] + f',"content_hash":"{digest}"}}')
    return dest
