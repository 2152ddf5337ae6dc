"""``flowsentinel schema infer`` on every shared data set: the draft it writes trains a model and evaluates
through the same commands a user runs (inferred schema -> train -> eval)."""

from __future__ import annotations

import json

import pytest

from flowsentinel.cli import main
from tests.support import shared_data

SETS = [
    ("nsl-kdd/KDDTrain+.txt.gz", "nsl-kdd/KDDTest+.txt.gz"),
    ("kddcup99/kddcup.data_10_percent.gz", "kddcup99/corrected.gz"),
    ("cicids2017-improved-sample/BENIGN_5000.csv.gz", "cicids2017-improved-sample/DDoS_5000.csv.gz"),
]


@pytest.mark.parametrize(("train_file", "test_file"), SETS, ids=["nsl-kdd", "kddcup99", "cicids2017"])
def test_inferred_schema_trains_and_evaluates(train_file, test_file, tmp_path, capsys):
    train_path, test_path = shared_data(train_file), shared_data(test_file)
    schema = tmp_path / "schema.toml"
    assert main(["schema", "infer", "--data", str(train_path), "--rows", "5000", "--out", str(schema)]) == 0
    said = capsys.readouterr().err
    assert "5,000 of 5,000 sampled rows parse with it" in said, said
    model = tmp_path / "model"
    assert main(["train", "--schema", str(schema), "--data", str(train_path), "--out", str(model), "--limit",
                 "3000", "--epochs", "1", "--hidden", "8", "--latent", "4", "--members", "1", "--quiet"]) == 0  # fmt: skip
    files = [str(train_path)] if "BENIGN" in train_file else []
    report = tmp_path / "report"
    assert main(["eval", "--model", str(model), "--schema", str(schema), "--data", str(test_path), *files,
                 "--limit", "3000", "--out", str(report), "--no-pictures", "--quiet"]) == 0  # fmt: skip
    result = json.loads((report / "report.json").read_text())
    text = json.dumps(result)
    assert "auroc" in text.lower(), text[:500]
