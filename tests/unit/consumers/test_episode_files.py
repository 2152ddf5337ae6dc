"""The episode files beside the commit metadata, on their own: the state at an offset reads back, the last
two offsets are kept, nothing is written while there is no state to keep, a broken file reads as none."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from flowsentinel.consumers.episode_files import EpisodeFiles
from flowsentinel.consumers.metrics import Metrics
from flowsentinel.kafka.client import Partition

TP = Partition("records", 3)


def _files(tmp_path, state_dir: str | None = None) -> EpisodeFiles:
    return EpisodeFiles(
        str(tmp_path) if state_dir is None else state_dir, "g", Metrics.create(CollectorRegistry())
    )


def test_the_state_at_an_offset_reads_back_and_the_last_two_are_kept(tmp_path):
    files = _files(tmp_path)
    for offset in (10, 20, 30):
        files.save(TP, offset, f"episodes at {offset}")
    assert files.path(TP) == tmp_path / "episodes-g-records-3.json"
    again = _files(tmp_path)  # a new process reads the file
    assert [again.at(TP, o) for o in (10, 20, 30)] == ["", "episodes at 20", "episodes at 30"]
    files.save(TP, 30, "closed since")  # the same offset again: replaced, not added
    assert json.loads(files.path(TP).read_text())["entries"] == [[20, "episodes at 20"], [30, "closed since"]]


def test_nothing_is_written_while_there_is_nothing_to_keep(tmp_path):
    files = _files(tmp_path)
    files.save(TP, 5, "")
    assert not files.path(TP).exists()
    files.save(TP, 6, "one open")
    files.save(TP, 7, "")  # the episodes closed: written, so that they are not resumed
    assert _files(tmp_path).at(TP, 7) == ""
    assert _files(tmp_path).at(TP, 6) == "one open"


def test_without_a_state_dir_or_with_a_broken_file_there_is_no_state(tmp_path):
    off = _files(tmp_path, state_dir="")
    off.save(TP, 1, "x")
    assert not off.enabled and off.path(TP) is None and off.at(TP, 1) == ""
    files = _files(tmp_path)
    files.path(TP).write_text("{not json")
    assert files.at(TP, 1) == "" and files.at(TP, None) == ""
