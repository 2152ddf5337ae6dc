"""Each partition's open episodes at its committed offsets, kept in the state directory.

The service commits every partition's open episodes in the offset commit's metadata, so that whoever
resumes the partition (after a crash, or a rebalance) continues them instead of opening them again under
new ids. Not every broker keeps that metadata: this file beside it holds the same state per (topic,
partition), keyed by the offset it belongs to, the last two kept (the commit after a write may not happen),
and written only while there is state to keep.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowsentinel.consumers.metrics import Metrics
from flowsentinel.consumers.state_file import write_state
from flowsentinel.kafka.client import Partition


class EpisodeFiles:
    """The episode state files of one consumer group in ``state_dir`` ('': none kept)."""

    def __init__(self, state_dir: str, group: str, metrics: Metrics) -> None:
        self.state_dir, self.group, self.metrics = state_dir, group, metrics
        self._held: dict[Partition, list[list[Any]]] = {}  # what each partition's file holds

    @property
    def enabled(self) -> bool:
        return bool(self.state_dir)

    def path(self, tp: Partition) -> Path | None:
        if not self.state_dir:
            return None
        return Path(self.state_dir).expanduser() / f"episodes-{self.group}-{tp.topic}-{tp.partition}.json"

    def save(self, tp: Partition, offset: int, state: str) -> None:
        """``state`` (:meth:`~flowsentinel.consumers.alerts.EpisodeTracker.state_for`) at ``offset``. A failed
        write is counted and logged (:func:`write_state`); scoring goes on."""
        path = self.path(tp)
        if path is None:
            return
        entries = self._held.get(tp)
        if entries is None:
            entries = _read(path)
        if not state and not any(e[1] for e in entries):
            return
        entries = [*[e for e in entries if e[0] != offset][-1:], [offset, state]]
        if write_state(path, {"entries": entries}, "the episode state", self.metrics):
            self._held[tp] = entries

    def at(self, tp: Partition, offset: int | None) -> str:
        """The state saved for ``tp`` at ``offset`` ('' where there is none, or the file does not read)."""
        path = self.path(tp)
        if path is None or offset is None or not path.is_file():
            return ""
        return next((st for o, st in _read(path) if o == offset), "")


def _read(path: Path) -> list[list[Any]]:
    try:
        entries = json.loads(path.read_text())["entries"]
        return [[int(o), str(st)] for o, st in entries][-2:]
    except (OSError, ValueError, KeyError, TypeError):
        return []
