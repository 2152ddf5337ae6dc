"""The command line as a user meets it: real subprocesses, one-line errors, exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import TOY, toy_table


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "flowsentinel", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory):
    import numpy as np

    d = tmp_path_factory.mktemp("toy")
    schema = d / "toy.json"
    schema.write_text(json.dumps(TOY.to_dict()))
    for name, n, rate, seed in (("train.csv", 1500, 0.0, 1), ("test.csv", 600, 0.2, 2)):
        table = toy_table(n, np.random.default_rng(seed), attack_rate=rate)
        cols = list(table)
        lines = [",".join(cols)] + [",".join(str(table[c][i]) for c in cols) for i in range(n)]
        lines.insert(5, "12,not-a-number,1,tcp,http,10.0.0.1,normal")  # one malformed row
        (d / name).write_text("\n".join(lines) + "\n")
    return d


def test_train_then_score_end_to_end(toy_files, tmp_path):
    model = tmp_path / "model"
    r = run(
        "train",
        "--schema",
        str(toy_files / "toy.json"),
        "--data",
        str(toy_files / "train.csv"),
        "--out",
        str(model),
        "--window",
        "4",
        "--hidden",
        "16",
        "--latent",
        "4",
        "--epochs",
        "6",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert "trained toy model (3 members) on 1,500 normal records" in r.stdout
    assert "1 of 1,501 rows rejected (0.07%; wrong_type 1)" in r.stderr and "not a number" in r.stderr
    assert (model / "metadata.json").is_file() and (model / "training-summary.json").is_file()
    out = tmp_path / "scores.csv"
    r = run(
        "score", "--model", str(model), "--data", str(toy_files / "test.csv"), "--out", str(out), "--json"
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["records"] == 600 and summary["rejected"] == 1
    assert summary["auroc"] > 0.95
    rows = out.read_text().splitlines()
    assert rows[0].startswith("position,key,score,threshold,alert,label,top_features")
    assert len(rows) == 601


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--schema", "kddx", "--data", "x", "--out", "m"], "unknown schema 'kddx'"),
        (
            ["train", "--schema", "kdd", "--data", "/no/such.csv", "--out", "m"],
            "--data '/no/such.csv': no such file",
        ),
        (
            ["train", "--schema", "kdd", "--data", "x", "--out", "m", "--window", "0"],
            "argument --window: '0' must be >= 1",
        ),
        (
            ["train", "--schema", "kdd", "--data", "x", "--out", "m", "--members", "0"],
            "argument --members: '0' must be >= 1",
        ),
        (
            ["train", "--schema", "kdd", "--data", "x", "--out", "m", "--seed", "-1"],
            "argument --seed: '-1' must be >= 0",
        ),
        (
            ["train", "--schema", "kdd", "--data", "x", "--out", "m", "--lr", "abc"],
            "argument --lr: 'abc' is not a number",
        ),
        (
            ["train", "--schema", "kdd", "--data", "x", "--out", "m", "--val-split", "newest"],
            "argument --val-split: invalid choice: 'newest'",
        ),
        (
            ["score", "--model", "/no/model", "--data", "/etc/hostname"],
            "model directory '/no/model' does not exist",
        ),
        (
            ["score", "--model", "m", "--data", "x", "--risk", "0.9"],
            "argument --risk: '0.9' must be above 0 and below 0.5",
        ),
        (
            ["score", "--model", "m", "--data", "x", "--shift-max-alert-share", "-1"],
            "argument --shift-max-alert-share: '-1' must be >= 0",
        ),
        (
            [
                "eval",
                "--model",
                "m",
                "--schema",
                "kdd",
                "--data",
                "x",
                "--out",
                "r",
                "--shift-max-rise",
                "0.5",
            ],
            "argument --shift-max-rise: '0.5' must be >= 1",
        ),
        (
            ["tune", "--schema", "kdd", "--data", "x", "--quarantine", "50"],
            "argument --quarantine: '50' must be >= 100",
        ),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["train", "--schema", "kdd"], "the following arguments are required: --out"),
    ],
)
def test_bad_arguments_give_one_line_naming_the_value(args, message):
    r = run(*args)
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SEED", "-1", "FLOWSENTINEL_SEED: '-1' must be >= 0"),
        ("RATE", "-3", "FLOWSENTINEL_RATE: '-3' must be a positive number"),
        ("LIMIT", "0", "FLOWSENTINEL_LIMIT: '0' must be >= 1"),
        ("PARTITIONS", "four", "FLOWSENTINEL_PARTITIONS: 'four' is not an integer"),
        ("REALTIME", "maybe", "FLOWSENTINEL_REALTIME = 'maybe' is not valid"),
    ],
)
def test_bad_environment_settings_get_the_flags_own_check(name, value, message):
    """An environment default passes the same check as the flag it stands in for, before any broker is
    contacted (the producer would otherwise start with a negative seed or rate)."""
    import os

    env = {**os.environ, "FLOWSENTINEL_" + name: value}
    r = subprocess.run(  # nothing listens on port 1: the check must come first
        [sys.executable, "-m", "flowsentinel", "produce", "synthetic", "--bootstrap-servers", "127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert r.returncode == 2
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_variable_for_one_command_does_not_touch_another():
    """FLOWSENTINEL_RATE belongs to produce (and demo): a bad value stops those, not detect or train."""
    import os

    env = {**os.environ, "FLOWSENTINEL_RATE": "fast", "FLOWSENTINEL_SEED": "-1"}
    for argv in (["detect", "--help"], ["train", "--help"], ["schema", "--help"]):
        r = subprocess.run([sys.executable, "-m", "flowsentinel", *argv], capture_output=True, text=True,
                           timeout=60, env=env)  # fmt: skip
        assert r.returncode == 0, (argv, r.stderr)


def test_produce_and_detect_read_their_own_compression_variable(monkeypatch):
    """FLOWSENTINEL_COMPRESSION is detect's codec; produce's is FLOWSENTINEL_PRODUCE_COMPRESSION."""
    from flowsentinel.cli import build_parser
    from flowsentinel.consumers.settings import Settings
    from flowsentinel.environment import for_command, resolve_flags

    monkeypatch.setenv("FLOWSENTINEL_COMPRESSION", "zstd")
    args = build_parser().parse_args(["produce", "synthetic"])
    resolve_flags(args)
    assert args.compression == "lz4"
    assert Settings.load({}, environ=for_command("detect")).compression == "zstd"
    monkeypatch.setenv("FLOWSENTINEL_PRODUCE_COMPRESSION", "gzip")
    args = build_parser().parse_args(["produce", "synthetic"])
    resolve_flags(args)
    assert args.compression == "gzip"


def test_schema_mismatch_is_one_line(toy_files, tmp_path):
    r = run(
        "train", "--schema", "cicflowmeter", "--data", str(toy_files / "train.csv"), "--out", str(tmp_path)
    )
    assert r.returncode == 2
    assert "no column for field 'Flow Duration'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("command", ["train", "tune", "eval", "score", "produce"])
def test_a_file_with_no_parsable_record_is_one_line_naming_it(command, toy_files, tmp_path):
    """A file of which nothing parses (another schema's, or not data at all) used to count as zero records:
    train warned of a missing label field, eval blamed one, score reported 0 records and exit 0, produce
    sent nothing and exit 0 (or, with no broker, reported the broker). Now it is named, with the first
    reason; produce names it before it connects (the broker address here answers nothing)."""
    schema = str(toy_files / "toy.json")
    notes = tmp_path / "notes.txt"
    header = (toy_files / "train.csv").read_text().splitlines()[0]
    notes.write_text(f"{header}\nthese are notes,\nnot flow records\n")
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    model = tmp_path / "model"
    if command in ("eval", "score"):
        r = run("train", "--schema", schema, "--data", str(toy_files / "train.csv"), "--out", str(model),
                "--hidden", "8", "--latent", "2", "--members", "1", "--epochs", "1", "--quiet")  # fmt: skip
        assert r.returncode == 0, r.stderr
    extra = {"train": ["--out", str(model)], "tune": ["--out", str(tmp_path / "t")],
             "eval": ["--model", str(model), "--out", str(tmp_path / "r")], "score": ["--model", str(model)],
             "produce": ["--bootstrap-servers", "127.0.0.1:9", "--topic", "t"]}[command]  # fmt: skip
    schema_args = [schema] if command == "produce" else ["--schema", schema]  # produce: a positional
    r = run(command, *schema_args, "--data", str(toy_files / "train.csv"), str(notes), *extra)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert f"--data '{notes}': no record parsed as schema 'toy'" in last
    assert "2 rejected; first: notes.txt line 2" in last
    r = run(command, *schema_args, "--data", str(other), *extra)  # another schema's file: named too
    assert r.returncode == 2
    assert (
        f"--data '{other}': schema toy: the header has no column for field"
        in r.stderr.strip().splitlines()[-1]
    )


def test_eval_writes_report_and_pictures_for_the_model_and_a_baseline(toy_files, tmp_path):
    model = tmp_path / "model"
    r = run("train", "--schema", str(toy_files / "toy.json"), "--data", str(toy_files / "train.csv"),
            "--out", str(model), "--window", "4", "--hidden", "16", "--latent", "4", "--epochs", "4", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    for detector in ("lstm-ae", "iforest"):
        out = tmp_path / f"report-{detector}"
        extra = [] if detector == "lstm-ae" else ["--train", str(toy_files / "train.csv")]
        r = run("eval", "--model", str(model), "--schema", str(toy_files / "toy.json"), "--data",
                str(toy_files / "test.csv"), "--out", str(out), "--detector", detector, "--quiet", *extra)  # fmt: skip
        assert r.returncode == 0, r.stderr
        report = json.loads((out / "report.json").read_text())
        for key in (
            "auroc",
            "auprc",
            "precision",
            "recall",
            "f1",
            "fpr",
            "alerts_per_10k",
            "records",
            "detector",
        ):
            assert key in report
        assert report["detector"] == detector and report["records"] == 600
        assert report["auroc"] > 0.9
        assert set(report["recall_per_category"]) == {"flood"}
        assert report["episodes"]["count"] > 0
        assert {"roc_pr.png", "timeline.png", "confusion.png"} <= {p.name for p in out.iterdir()}
        assert "| AUROC | AUPRC |" in r.stdout
        # the ranking at a false-alarm budget, beside the online threshold's figures
        budgets = report["recall_at_fpr"]
        assert set(budgets) == {"0.01", "0.05"} and budgets["0.01"]["fpr"] <= 0.01
        assert budgets["0.01"]["recall"] <= budgets["0.05"]["recall"]
        assert "FPR ≤ 1%: recall" in r.stdout
    again = tmp_path / "again"
    run("eval", "--model", str(model), "--schema", str(toy_files / "toy.json"), "--data", str(toy_files / "test.csv"),
        "--out", str(again), "--quiet", "--no-pictures")  # fmt: skip
    first = json.loads((tmp_path / "report-lstm-ae" / "report.json").read_text())
    second = json.loads((again / "report.json").read_text())
    for key in ("auroc", "auprc", "f1", "confusion", "episodes", "recall_at_fpr"):
        assert first[key] == second[key], "same model, data and seed give the same report"
    assert first["threshold"]["policy"]["max_alert_share"] == 0  # the default policy, shown in the report
    th = first["threshold"]  # the false-positive rate as a multiple of the q the threshold aims at
    assert th["fpr_over_q"] == round(first["fpr"] / th["q"], 2)
    # the service's shift-policy settings reach eval's thresholder, under the same names as `detect`'s
    opted = tmp_path / "opted-in"
    r = run("eval", "--model", str(model), "--schema", str(toy_files / "toy.json"), "--data", str(toy_files / "test.csv"),
            "--out", str(opted), "--quiet", "--no-pictures", "--quarantine", "200", "--shift-max-alert-share", "5",
            "--shift-max-rise", "1.5")  # fmt: skip
    assert r.returncode == 0, r.stderr
    policy = json.loads((opted / "report.json").read_text())["threshold"]["policy"]
    assert (policy["quarantine"], policy["max_alert_share"], policy["max_rise"]) == (200, 5, 1.5)


def test_eval_side_by_side_runs_every_detector_on_the_same_stream(toy_files, tmp_path):
    model = tmp_path / "model"
    r = run("train", "--schema", str(toy_files / "toy.json"), "--data", str(toy_files / "train.csv"),
            "--out", str(model), "--hidden", "16", "--latent", "4", "--epochs", "4", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = tmp_path / "side"
    r = run("eval", "--model", str(model), "--schema", str(toy_files / "toy.json"), "--data", str(toy_files / "test.csv"),
            "--out", str(out), "--detector", "all", "--train", str(toy_files / "train.csv"), "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = json.loads((out / "comparison.json").read_text())
    assert [row["detector"] for row in rows] == ["lstm-ae", "dense-ae", "iforest", "river-hst"]
    for row in rows:  # each detector's own full report and pictures, and the same stream for all
        report = json.loads((out / row["detector"] / "report.json").read_text())
        assert report["auroc"] == row["auroc"] and report["records"] == 600
        assert (out / row["detector"] / "timeline.png").exists()
        assert f"| {row['detector']} | {row['auroc']:.4f} |" in r.stdout
    assert {"comparison.md", "comparison.png"} <= {p.name for p in out.iterdir()}
    assert (out / "comparison.md").read_text().startswith("| detector | AUROC | AUPRC |")


def test_eval_bad_arguments_exit_2(toy_files, tmp_path):
    r = run("eval", "--model", str(tmp_path), "--schema", "kdd", "--data", str(toy_files / "test.csv"),
            "--out", str(tmp_path / "r"), "--detector", "iforest")  # fmt: skip
    assert r.returncode == 2 and "needs --train" in r.stderr and "Traceback" not in r.stderr
    r = run("eval", "--model", str(tmp_path), "--schema", "kdd", "--data", str(toy_files / "test.csv"),
            "--out", str(tmp_path / "r"), "--detector", "lstm-ae,kitsune")  # fmt: skip
    assert r.returncode == 2 and "'kitsune' is not a detector" in r.stderr and "Traceback" not in r.stderr


def test_tune_searches_on_training_data_and_writes_a_config_train_accepts(toy_files, tmp_path):
    import numpy as np

    mixed = tmp_path / "train-with-attacks.csv"
    table = toy_table(1500, np.random.default_rng(4), attack_rate=0.1)
    cols = list(table)
    mixed.write_text(
        "\n".join([",".join(cols)] + [",".join(str(table[c][i]) for c in cols) for i in range(1500)]) + "\n"
    )
    out = tmp_path / "tune"
    r = run("tune", "--schema", str(toy_files / "toy.json"), "--data", str(mixed), "--out", str(out), "--trials", "2",
            "--epochs", "2", "--shift-max-alert-share", "3")  # fmt: skip
    assert r.returncode == 0, r.stderr
    best = json.loads((out / "best-config.json").read_text())
    assert best["risk"] in (0.002, 0.005, 0.01)
    assert best["validation"]["val_attacks"] > 0
    assert len(json.loads((out / "tune-results.json").read_text())) == 2
    r = run("train", "--config", str(out / "best-config.json"), "--schema", str(toy_files / "toy.json"),
            "--data", str(toy_files / "train.csv"), "--out", str(tmp_path / "m"), "--epochs", "1", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "m" / "metadata.json").read_text())
    assert meta["model"]["window"] == best["window"] and meta["training"]["config"]["epochs"] == 1
    # the service settings the risk was chosen under, as a file `detect --config` reads
    from flowsentinel.consumers.settings import Settings

    settings = Settings.load({}, environ={}, config_file=str(out / "detect.toml"))
    assert (settings.risk, settings.thresholder, settings.shift_max_alert_share) == (
        best["risk"],
        "spot",
        3.0,
    )
    assert best["detect"]["risk"] == best["risk"]


def test_eval_detector_names_are_the_baselines_plus_ours():
    """The parser keeps its own list (importing detector.baselines would load torch for every command)."""
    from flowsentinel.cli import DETECTORS
    from flowsentinel.detector.baselines import BASELINES

    assert set(DETECTORS) == {"lstm-ae", *BASELINES}


def test_progress_off_a_terminal_is_plain_log_lines(toy_files, tmp_path):
    """stderr is a pipe here, as in a log file, journald or CI: no carriage-return bar, a line at the end."""
    model = tmp_path / "model"
    r = run("train", "--schema", str(toy_files / "toy.json"), "--data", str(toy_files / "train.csv"),
            "--out", str(model), "--hidden", "8", "--latent", "4", "--members", "1", "--epochs", "2")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    assert "flowsentinel.progress: training: " in r.stderr and "(100%)" in r.stderr
    r = run("eval", "--model", str(model), "--schema", str(toy_files / "toy.json"), "--data",
            str(toy_files / "test.csv"), "--out", str(tmp_path / "rep"), "--no-pictures")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    assert "eval lstm-ae: 600/600 rec (100%)" in r.stderr
    r = run("score", "--model", str(model), "--data", str(toy_files / "test.csv"))
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr
    assert "score: 601 rec" in r.stderr  # the malformed row is read too


def test_choices_written_out_in_the_parser_match_the_detector():
    """The parser spells some choices out rather than import torch-laden modules; they must not drift."""
    from flowsentinel.cli import build_parser
    from flowsentinel.detector.pipeline import SCORINGS
    from flowsentinel.detector.train import VAL_SPLITS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    train_opts = {a.dest: a.choices for a in sub.choices["train"]._actions}
    assert tuple(train_opts["scoring"]) == SCORINGS
    assert tuple(train_opts["val_split"]) == VAL_SPLITS


def test_an_output_path_that_cannot_be_written_is_one_line_before_the_work(toy_files, tmp_path):
    """Each used to end in a FileNotFoundError traceback, train's only after the whole training."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad_dir = str(blocker / "out")  # a directory below a file cannot be made
    schema, train_csv = str(toy_files / "toy.json"), str(toy_files / "train.csv")
    model = tmp_path / "model"
    assert run("train", "--schema", schema, "--data", train_csv, "--out", str(model), "--epochs", "1",
               "--members", "1", "--quiet").returncode == 0  # fmt: skip
    for args in (
        ("train", "--schema", schema, "--data", train_csv, "--out", bad_dir),
        ("tune", "--schema", schema, "--data", train_csv, "--out", bad_dir),
        ("eval", "--model", str(model), "--schema", schema, "--data", train_csv, "--out", bad_dir),
        ("score", "--model", str(model), "--data", train_csv, "--out", str(blocker / "out" / "s.csv")),
        ("score", "--model", str(model), "--data", train_csv, "--out", str(tmp_path)),
    ):
        r = run(*args)
        assert r.returncode == 2, (args[0], r.stderr[-500:])
        assert "Traceback" not in r.stderr
        errors = [line for line in r.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and "--out" in errors[0], (args[0], r.stderr[-500:])
