"""State the service keeps on disk between runs (threshold snapshots, the feedback state, episode files):
JSON, written whole or not at all, and a write that fails never stops scoring."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from flowsentinel.consumers.metrics import Metrics

log = logging.getLogger("flowsentinel.consumers.service")  # its lines are the service's, as before


def write_state(path: Path, state: dict[str, Any], what: str, metrics: Metrics) -> bool:
    """Write ``state`` as JSON to ``path`` atomically. A failure (a full disk, a directory gone) is counted,
    logged, and False: scoring goes on."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)
    except OSError as exc:
        metrics.snapshot_failures.inc()
        log.warning("could not save %s %s: %s; scoring goes on", what, path, exc.strerror or exc)
        return False
    return True
