"""One installed namespace: everything imports as ``flowsentinel.*``, and nothing named plain ``detector``,
``consumers`` or ``producers`` is installed beside it (generic names that would clash with other packages).

A wheel is built from a copy of the sources and installed into a folder; the editable install is the one
this suite runs in (``scripts/_venv.sh`` makes it). Both are checked from a folder outside the repository.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.support import REPO

CHECK = """
import importlib.util, sys
sys.path.insert(0, sys.argv[1]) if len(sys.argv) > 1 else None
import flowsentinel.detector.schema, flowsentinel.consumers.service, flowsentinel.producers.synthetic
import flowsentinel.cli
print(flowsentinel.detector.schema.__file__)
print([name for name in ("detector", "consumers", "producers") if importlib.util.find_spec(name)])
"""


def run_check(cwd: Path, *args: str) -> list[str]:
    r = subprocess.run(
        [sys.executable, "-c", CHECK, *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.splitlines()


def test_a_wheel_installs_one_flowsentinel_package(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("detector", "consumers", "producers", "flowsentinel"):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path / "dist",
         src],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("flowsentinel-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert packages == {"flowsentinel"}
    for module in ("detector/schema.py", "consumers/service.py", "producers/synthetic.py", "py.typed"):
        assert f"flowsentinel/{module}" in names

    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", site, wheel],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where, plain = run_check(elsewhere, str(site))
    assert Path(where).is_relative_to(site)
    assert plain == "[]"  # import detector fails


def test_the_editable_install_imports_the_same_way(tmp_path):
    where, plain = run_check(tmp_path)
    assert Path(where).resolve().is_relative_to(REPO)
    assert plain == "[]"
