"""The examples in module docstrings run, so they cannot go stale unseen.

Examples that need a model directory, a data file or a broker are marked ``+SKIP`` in the docstring (they
show usage only); every module listed here must still have at least one example that runs.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

# Modules whose examples all need a model directory, a data file or a broker: usage only, all +SKIP.
USAGE_ONLY = ["detector.artifact", "detector.pipeline", "detector.store", "flowsentinel.broker"]
MODULES = [
    "detector.errors",
    "detector.feedback",
    "detector.features",
    "detector.metrics",
    "detector.model",
    "detector.schema",
    "detector.text",
    "detector.thresholds",
    "detector.windows",
    "consumers.metrics",
    "flowsentinel.progress",
    "producers.files",
    "producers.synthetic",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) in {name} failed (output above)"
    assert result.attempted > 0, f"{name} has no runnable docstring example"


@pytest.mark.parametrize("name", USAGE_ONLY)
def test_usage_only_examples_parse(name):
    result = doctest.testmod(importlib.import_module(name), verbose=False)
    assert (result.failed, result.attempted) == (0, 0), f"{name}: an example meant as usage only ran"


def test_every_module_with_examples_is_listed():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    with_examples = {
        ".".join(p.relative_to(root).with_suffix("").parts)
        for top in ("detector", "consumers", "producers", "flowsentinel")
        for p in (root / top).rglob("*.py")
        if ">>> " in p.read_text()
    }
    assert with_examples == set(MODULES) | set(USAGE_ONLY)
