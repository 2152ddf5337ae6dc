"""The import rules of the house, read from the sources: ``detector`` is pure (imports no other part of
flowsentinel); the Kafka plumbing (``flowsentinel.kafka``) builds on it alone; ``producers`` and ``consumers``
build on both and never import each other; none imports the command-line package around them. Everything
imports as ``flowsentinel.*``, never ``detector``."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.support import REPO

PARTS = ("detector", "producers", "consumers")
MAY_IMPORT = {
    "detector": set(),
    "kafka": {"detector"},
    "producers": {"detector", "kafka"},
    "consumers": {"detector", "kafka"},
}
FOLDERS = {"kafka": REPO / "flowsentinel" / "kafka"} | {part: REPO / part for part in PARTS}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("part", sorted(MAY_IMPORT))
def test_each_part_imports_only_what_it_builds_on(part):
    for path in sorted(FOLDERS[part].rglob("*.py")):
        for name in imports(path):
            top, _, rest = name.partition(".")
            assert top not in PARTS, f"{path.relative_to(REPO)}: `{name}`: import it as flowsentinel.{name}"
            if top == "flowsentinel":
                inner = rest.partition(".")[0]
                assert inner in MAY_IMPORT[part] | {part}, (
                    f"{path.relative_to(REPO)} imports {name}: {part} may import only "
                    f"{sorted(MAY_IMPORT[part]) or 'nothing else of flowsentinel'}"
                )


# an import in a docstring example or in code a test runs in a subprocess (``-c "import consumers.main"``)
PLAIN_IN_TEXT = re.compile(r"""^\s*(>>> |["'])?(from|import) (detector|consumers|producers)\b""", re.M)


def test_no_module_anywhere_imports_the_plain_names():
    """From the repository root the plain names still import (the folders are there), as second copies of
    the modules: every import, in code, doctests and subprocess snippets, says flowsentinel.*."""
    for folder in ("flowsentinel", "tests", "benchmarks", "scripts", *PARTS):
        for path in (REPO / folder).rglob("*.py"):
            bad = {n for n in imports(path) if n.partition(".")[0] in PARTS}
            bad |= {m.group(0).strip() for m in PLAIN_IN_TEXT.finditer(path.read_text())}
            assert not bad, f"{path.relative_to(REPO)}: {sorted(bad)}: import them as flowsentinel.*"


def test_benchmarks_run_as_modules_and_import_no_test_module():
    """``python -m benchmarks.NAME`` from the repository root: no path edits, no helpers from tests/ (shared
    helpers live in flowsentinel.testing)."""
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        assert "sys.path" not in path.read_text(), f"{path.relative_to(REPO)} edits sys.path"
        assert not {n for n in imports(path) if n.partition(".")[0] == "tests"}, path.relative_to(REPO)


def test_tests_drive_the_service_through_its_public_methods():
    """``process``, ``check_model``, ``tally_shadow``, ``on_revoked`` and the parts' own APIs: no test reaches
    into the service's private methods or attributes (they may change with any refactoring)."""
    private = re.compile(r"\bservice\._[a-z]\w*")
    for folder in ("tests", "benchmarks", "scripts"):
        for path in (REPO / folder).rglob("*.py"):
            found = sorted(set(private.findall(path.read_text())))
            assert not found, f"{path.relative_to(REPO)}: {found}"


def test_tests_share_helpers_through_the_support_module_not_conftest():
    """conftest.py files hold fixtures; what tests share as functions is in tests/support.py."""
    for folder in ("tests", "benchmarks", "scripts"):
        for path in (REPO / folder).rglob("*.py"):
            bad = {n for n in imports(path) if n.endswith("conftest")}
            assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}: use tests.support"
