"""Every benchmark starts as the docs say (``python -m benchmarks.NAME`` from the repository root, no path
edits): it imports what it uses — the project's modules under their current names and signatures — and
parses its arguments. Their full runs take minutes to hours and need the data sets or a broker; they are
not tests (their figures are in benchmarks/results with the command that made them)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO

BENCHMARKS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py") if p.stem != "__init__")


def test_the_benchmarks_are_found():
    assert len(BENCHMARKS) >= 10 and "throughput_ab" in BENCHMARKS


@pytest.mark.parametrize("name", BENCHMARKS)
def test_each_benchmark_imports_and_parses_its_arguments(name):
    r = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage:" in r.stdout and "Traceback" not in r.stderr
