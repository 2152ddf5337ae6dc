"""Rows a command leaves out are never silent: train/score/eval say how many and why, and above
--max-reject-share they stop with the reason and the flag that accepts them. Too few normal records to
calibrate a threshold is said before training, not when a detector later cannot use the model."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from flowsentinel.cli import main
from tests.support import toy_table

SCHEMA = """name = "toy"
key = "host"
label = "label"
normal_labels = ["normal"]
numeric = ["bytes", "packets", "duration"]
categorical = ["proto", "service"]
"""
TINY = ["--epochs", "1", "--hidden", "8", "--latent", "4", "--members", "1", "--window", "2", "--quiet"]


def write(tmp_path, n: int, bad_every: int = 0):
    table = toy_table(n, np.random.default_rng(0))
    if bad_every:
        for i in range(0, n, bad_every):
            table["bytes"][i] = "-5"  # negative: rejected as negative_value
    path = tmp_path / "flows.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(table))
        w.writerows(zip(*table.values(), strict=True))
    schema = tmp_path / "toy.toml"
    schema.write_text(SCHEMA)
    return str(schema), str(path)


def test_too_many_rejected_rows_stop_with_the_reason_and_the_flag(tmp_path, capsys):
    schema, data = write(tmp_path, 1000, bad_every=20)  # 5% rejected
    out = str(tmp_path / "m")
    assert main(["train", "--schema", schema, "--data", data, "--out", out, *TINY]) == 2
    err = capsys.readouterr().err
    assert (
        "50 of 1,000 rows (5.0%) rejected, more than --max-reject-share 0.01; most for negative_value (50)"
        in err
    )
    assert "or accept them with --max-reject-share 0.05" in err
    assert (
        main(["train", "--schema", schema, "--data", data, "--out", out, "--max-reject-share", "0.05", *TINY])
        == 0
    )
    err = capsys.readouterr().err
    assert "50 of 1,000 rows rejected (5.00%; negative_value 50); first:" in err


def test_a_few_rejected_rows_are_said_and_kept_out(tmp_path, capsys):
    schema, data = write(tmp_path, 1000, bad_every=200)  # 0.5%
    assert main(["train", "--schema", schema, "--data", data, "--out", str(tmp_path / "m"), *TINY]) == 0
    assert "5 of 1,000 rows rejected (0.50%; negative_value 5)" in capsys.readouterr().err


def test_too_few_normal_records_to_calibrate_are_refused_before_training(tmp_path, capsys):
    schema, data = write(tmp_path, 300)
    assert main(["train", "--schema", schema, "--data", data, "--out", str(tmp_path / "m"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "300 normal records are too few: the validation split (val_fraction 0.1, 30 records)" in err
    assert "Train on at least 495 normal records, or raise --val-fraction (below 0.5)" in err
    assert not (tmp_path / "m" / "weights.pt").exists()


def test_bounds_are_stated_as_they_are(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--synthetic", "100", "--out", "x", "--val-fraction", "0.5"])
    assert "'0.5' must be above 0 and below 0.5" in capsys.readouterr().err


def test_labels_that_match_no_normal_label_are_listed(tmp_path, capsys):
    schema, data = write(tmp_path, 600)
    (tmp_path / "toy.toml").write_text(
        SCHEMA.replace('normal_labels = ["normal"]', 'normal_labels = ["benign"]')
    )
    assert main(["train", "--schema", schema, "--data", data, "--out", str(tmp_path / "m"), *TINY]) == 2
    err = capsys.readouterr().err
    assert (
        "only 0 of 600 records are labelled normal (['benign'] in field 'label'); the labels seen: 'normal' 600"
        in err
    )


def test_integer_normal_labels_are_the_text_the_files_hold():
    from flowsentinel.detector.schema import Schema

    s = Schema.from_dict({"name": "x", "numeric": ["a"], "label": "y", "normal_labels": [0]})
    assert s.normal_labels == {"0"} and list(s.is_normal(["0", "1"])) == [True, False]


def test_a_time_budget_and_a_minimum_improvement_stop_training(tmp_path, capsys):
    import json

    schema, data = write(tmp_path, 2000)
    fast = ["--epochs", "40", "--hidden", "8", "--latent", "4", "--members", "2", "--window", "2", "--quiet"]
    out = tmp_path / "budget"
    assert (
        main(
            ["train", "--schema", schema, "--data", data, "--out", str(out), "--max-minutes", "0.0001", *fast]
        )
        == 0
    )
    summary = json.loads((out / "training-summary.json").read_text())
    assert summary["stopped"] == ["time budget", "time budget"] and summary["epochs_run"] == 2
    assert "stopped by time budget" in capsys.readouterr().out
    out = tmp_path / "improve"
    args = ["--min-improvement", "0.3", "--patience", "1", *fast]
    assert main(["train", "--schema", schema, "--data", data, "--out", str(out), *args]) == 0
    summary = json.loads((out / "training-summary.json").read_text())
    assert summary["stopped"] == ["early stopping", "early stopping"] and summary["epochs_run"] < 20
