"""Links cannot rot: the documentation site builds with ``mkdocs build --strict`` (a link to a missing page or
anchor fails it), and every relative link of the README and DEVELOPERS.md, which live outside docs/, names a
file that exists."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.support import REPO


def test_the_docs_build_strictly(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "site" / "operations" / "index.html").is_file()


@pytest.mark.parametrize("page", ["README.md", "DEVELOPERS.md"])
def test_every_relative_link_outside_docs_names_a_file(page):
    text = (REPO / page).read_text()
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:|#", t)]
    assert targets, f"{page} links to nothing"
    missing = [t for t in targets if not (REPO / t.partition("#")[0]).exists()]
    assert not missing, f"{page} links to missing files: {missing}"
