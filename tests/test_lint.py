"""House style is checked, not hoped for: ruff (lint + format) and mypy over the packages and benchmarks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import REPO


@pytest.mark.parametrize(
    "cmd",
    [
        [sys.executable, "-m", "ruff", "check", "."],
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        [sys.executable, "-m", "mypy"],
        [sys.executable, "-m", "mypy", "benchmarks"],
    ],
    ids=["ruff-check", "ruff-format", "mypy", "mypy-benchmarks"],
)
def test_clean(cmd):
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
