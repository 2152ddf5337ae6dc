"""Files that lack a field: CIC-IDS2017's MachineLearningCVE layout (no Protocol, Src IP or Timestamp) reads
with the built-in cicflowmeter schema; a schema file may make a field optional; a key column missing from a
file with a header is refused, not silently turned into one stream."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from flowsentinel.detector.errors import SchemaError
from flowsentinel.detector.schema import ABSENT, GLOBAL_KEY, Schema, builtin_schema
from flowsentinel.producers.files import read_records


def machine_learning_cve_file(path, n: int = 50) -> list[str]:
    """A CSV in the MachineLearningCVE layout: the original column names with their stray leading spaces
    (the first alias of each field), ' Destination Port' and ' Label', nothing else."""
    s = builtin_schema("cicflowmeter")
    numeric = [f for f in s.numeric]
    header = [" " + (s.aliases.get(f) or (f,))[0] for f in numeric] + [" Destination Port", " Label"]
    rng = np.random.default_rng(0)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for i in range(n):
            w.writerow([str(int(rng.integers(0, 1000))) for _ in numeric] + [str([80, 443][i % 2]),
                       "BENIGN" if i % 5 else "DDoS"])  # fmt: skip
    return header


def test_the_machine_learning_cve_layout_reads_with_the_built_in_schema(tmp_path):
    path = tmp_path / "Wednesday-workingHours.pcap_ISCX.csv"
    machine_learning_cve_file(path)
    batch = read_records(path, builtin_schema("cicflowmeter"))
    assert len(batch) == 50 and not batch.rejected
    protocol = builtin_schema("cicflowmeter").categorical.index("Protocol")
    assert set(batch.categorical[:, protocol]) == {ABSENT}
    assert set(batch.keys) == {GLOBAL_KEY} and np.isnan(batch.timestamps).all()
    assert sorted(set(batch.labels)) == ["BENIGN", "DDoS"]


def schema_file(**over) -> Schema:
    return Schema.from_dict({"name": "mine", "numeric": ["bytes"], "categorical": ["proto"], "key": "host",
                             "label": "label", **over})  # fmt: skip


def write(path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def test_a_key_column_missing_from_the_header_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / "flows.csv"
    write(path, ["bytes", "proto", "label"], [["10", "tcp", "normal"]])
    with pytest.raises(
        SchemaError, match="no column for the key field 'host'.*list 'host' in optional_columns"
    ):
        read_records(path, schema_file())
    batch = read_records(path, schema_file(optional_columns=["host"]))
    assert list(batch.keys) == [GLOBAL_KEY]


def test_an_optional_feature_reads_as_absent_or_zero(tmp_path):
    path = tmp_path / "flows.csv"
    write(path, ["host", "bytes", "label"], [["10.0.0.1", "10", "normal"]])
    batch = read_records(path, schema_file(optional_columns=["proto"]))
    assert batch.categorical[0, 0] == ABSENT
    write(path, ["host", "proto", "label"], [["10.0.0.1", "udp", "normal"]])
    batch = read_records(path, schema_file(optional_columns=["bytes"]))
    assert batch.numeric[0, 0] == 0.0
    with pytest.raises(SchemaError, match="no column for field 'bytes'"):
        read_records(path, schema_file())
