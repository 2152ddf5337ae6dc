"""``eval`` per file, and with labels left out of the metrics (Stratosphere's ``Background``: neither normal
nor attack) while their records are still scored."""

from __future__ import annotations

import csv
import json

import numpy as np

from flowsentinel.cli import main
from tests.support import toy_table
from tests.unit.cli.test_rejections import SCHEMA, TINY


def write(path, n: int, seed: int, attack_rate: float, background_every: int = 0) -> str:
    table = toy_table(n, np.random.default_rng(seed), attack_rate=attack_rate)
    if background_every:
        for i in range(0, n, background_every):
            table["label"][i] = "Background"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(list(table))
        w.writerows(zip(*table.values(), strict=True))
    return str(path)


def test_eval_reports_each_file_and_leaves_ignored_labels_out(tmp_path, capsys):
    schema = tmp_path / "toy.toml"
    schema.write_text(SCHEMA)
    train = write(tmp_path / "train.csv", 1500, 0, 0.0)
    model = str(tmp_path / "m")
    assert main(["train", "--schema", str(schema), "--data", train, "--out", model, *TINY]) == 0
    a = write(tmp_path / "a.csv", 800, 1, 0.05, background_every=10)
    b = write(tmp_path / "b.csv", 600, 2, 0.2)
    out = tmp_path / "report"
    args = [
        "eval",
        "--model",
        model,
        "--schema",
        str(schema),
        "--data",
        a,
        b,
        "--out",
        str(out),
        "--no-pictures",
    ]
    assert main([*args, "--ignore-labels", "Background", "--quiet"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["ignored_labels"] == {"Background": 80}
    assert report["records"] == 800 + 600 - 80
    assert set(report["per_file"]) == {"a.csv", "b.csv"}
    assert report["per_file"]["a.csv"]["records"] == 720 and report["per_file"]["b.csv"]["records"] == 600
    assert "left out of the metrics: Background 80" in printed and "| a.csv | 720 |" in printed
    # without --ignore-labels, Background counts as an attack (it is not a normal label)
    assert main([*args, "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["records"] == 1400 and "ignored_labels" not in report


def test_score_orders_the_stream_like_eval(tmp_path):
    schema = tmp_path / "toy.toml"
    schema.write_text(SCHEMA)
    model = str(tmp_path / "m")
    assert main(["train", "--schema", str(schema), "--data", write(tmp_path / "t.csv", 1000, 0, 0.0), "--out",
                 model, *TINY]) == 0  # fmt: skip
    data = write(tmp_path / "a.csv", 500, 1, 0.05)
    orders = {}
    for order in ("file", "shuffled"):
        out = tmp_path / f"{order}.csv"
        args = ["score", "--model", model, "--schema", str(schema), "--data", data, "--out", str(out)]
        assert main([*args, "--order", order, "--quiet"]) == 0
        with out.open() as fh:
            orders[order] = [row[0] for row in csv.reader(fh)][1:]
    assert len(orders["file"]) == 500 and sorted(orders["file"]) == sorted(orders["shuffled"])
    assert orders["file"] != orders["shuffled"]
