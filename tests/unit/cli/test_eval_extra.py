"""scikit-learn and matplotlib serve only ``flowsentinel eval`` (its IsolationForest baseline and its
pictures): they are the ``eval`` extra, not in the service's install or image. The service's code paths do
not import them, and ``eval`` says in one line, before any work, what to install when they are missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from flowsentinel.cli import main


def test_the_service_and_the_cli_import_neither_eval_dependency():
    code = (
        "import sys\n"
        "import flowsentinel.cli, flowsentinel.retrain\n"
        "import flowsentinel.consumers.main, flowsentinel.consumers.service, flowsentinel.consumers.shadow\n"
        "import flowsentinel.detector.pipeline, flowsentinel.detector.baselines, flowsentinel.producers.publisher\n"
        "flowsentinel.cli.build_parser()\n"
        "print(sorted(m for m in ('sklearn', 'matplotlib') if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("missing", "argv", "says"),
    [
        ("matplotlib", [], "the pictures (or --no-pictures): matplotlib is not installed"),
        (
            "sklearn",
            ["--no-pictures", "--detector", "lstm-ae,iforest", "--train", "DATA"],
            "the iforest baseline",
        ),
    ],
)
def test_eval_without_the_extra_names_it_in_one_line(missing, argv, says, tmp_path, monkeypatch, capsys):
    data = tmp_path / "data.csv"
    data.write_text("x\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == missing else real(name, *a)
    )
    argv = [str(data) if a == "DATA" else a for a in argv]
    rc = main(["eval", "--model", str(tmp_path / "no-model"), "--schema", "kdd", "--data", str(data),
               "--out", str(tmp_path / "out"), *argv])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert says in err[0] and "pip install 'flowsentinel[eval]'" in err[0]
    assert not (tmp_path / "out").exists(), "nothing is done before the check"
