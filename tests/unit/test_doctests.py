"""The examples in module docstrings run, so they cannot go stale unseen.

Examples that need a model directory, a data file or a broker are marked ``+SKIP`` in the docstring (they
show usage only); every module listed here must still have at least one example that runs.
"""

from __future__ import annotations

import doctest
import importlib

import pytest

# Modules whose examples all need a model directory, a data file or a broker: usage only, all +SKIP.
USAGE_ONLY = [
    "flowsentinel.detector.artifact",
    "flowsentinel.detector.pipeline",
    "flowsentinel.detector.store",
    "flowsentinel.broker",
]
MODULES = [
    "flowsentinel.detector.errors",
    "flowsentinel.detector.feedback",
    "flowsentinel.detector.features",
    "flowsentinel.detector.metrics",
    "flowsentinel.detector.model",
    "flowsentinel.detector.schema",
    "flowsentinel.detector.text",
    "flowsentinel.detector.thresholds",
    "flowsentinel.detector.windows",
    "flowsentinel.consumers.metrics",
    "flowsentinel.progress",
    "flowsentinel.producers.files",
    "flowsentinel.producers.synthetic",
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
        ".".join(("flowsentinel", *p.relative_to(root / "flowsentinel").with_suffix("").parts))
        for top in ("detector", "consumers", "producers", "")  # each linked into flowsentinel/
        for p in (root / "flowsentinel" / top).rglob("*.py")
        if ">>> " in p.read_text()
    }
    assert with_examples == set(MODULES) | set(USAGE_ONLY)
