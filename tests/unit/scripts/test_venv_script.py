"""scripts/_venv.sh asks pip for the CPU build of torch, and falls back to the configured index only where the
PyTorch CPU index cannot be reached. The real script runs; pip is a stub that records its arguments, since
which wheel a real pip would pick depends on the network (here only a mirror with the CPU wheel)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import REPO

STUB = """#!/usr/bin/env bash
echo "$*" >> "{log}"
case "$*" in *download.pytorch.org*) exit {cpu_index_rc};; esac
exit 0
"""


def run_venv_script(tmp_path: Path, cpu_index_rc: int) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    venv, log = tmp_path / "venv", tmp_path / "pip.log"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(STUB.format(log=log, cpu_index_rc=cpu_index_rc))
    python.chmod(0o755)
    (venv / "bin" / "activate").write_text(f'PATH="{venv / "bin"}:$PATH"\n')
    r = subprocess.run(
        ["bash", "-c", f'. "{REPO / "scripts" / "_venv.sh"}" dev'],
        env={"PATH": "/usr/bin:/bin", "FLOWSENTINEL_VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return r, log.read_text().splitlines()


def test_torch_comes_from_the_pytorch_cpu_index_first(tmp_path):
    r, calls = run_venv_script(tmp_path, cpu_index_rc=0)
    assert r.returncode == 0, r.stderr
    torch_calls = [c for c in calls if "torch==" in c]
    assert len(torch_calls) == 1
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in torch_calls[0]
    # torch is in place before the project, so the project's own `torch` requirement is already met
    assert calls.index(torch_calls[0]) < next(i for i, c in enumerate(calls) if "-e " in c)


def test_an_unreachable_cpu_index_falls_back_to_the_configured_one_and_says_so(tmp_path):
    r, calls = run_venv_script(tmp_path, cpu_index_rc=1)
    assert r.returncode == 0, r.stderr
    torch_calls = [c for c in calls if "torch==" in c]
    assert "download.pytorch.org/whl/cpu" in torch_calls[0]
    assert torch_calls[1] == "-m pip install --quiet torch==2.13.0"
    assert "PyTorch CPU index could not be used" in r.stderr
