"""No secret in any output: every command that talks to Kafka, or reads a model key, run at ``-v`` (debug: the
Kafka client logs its whole configuration there) with the secrets given by flag, by environment and by file,
against the real broker. Tansu has no working SASL, so the Kafka commands fail to authenticate or wait —
what matters is every line they print until they stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PASSWORD = "S3cret-'pa\"ss\\word"  # quotes and a backslash: a repr or JSON escapes them
MODEL_KEY = "K3y-of-the-models-0123456789"


def _run_all(runs: list[tuple[str, list[str], dict[str, str]]], seconds: float) -> dict[str, str]:
    """Run ``flowsentinel -v ARGS`` for every run at once; SIGTERM what still runs after ``seconds``. Each
    one's whole output (stdout and stderr), by name."""
    procs = {}
    for name, args, env in runs:
        log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"secrets-{os.getpid()}-{len(procs)}.log", "w+")  # noqa: SIM115
        procs[name] = (subprocess.Popen([sys.executable, "-m", "flowsentinel", "-v", *args], stdout=log,
                                        stderr=subprocess.STDOUT, env={**os.environ, **env}), log)  # fmt: skip
    deadline = time.monotonic() + seconds
    for proc, _ in procs.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
    out = {}
    for name, (proc, log) in procs.items():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.seek(0)
        out[name] = log.read()
        log.close()
        Path(log.name).unlink()
    return out


def _sasl(password_by: str, tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    flags = ["--security-protocol", "SASL_PLAINTEXT", "--sasl-mechanism", "PLAIN", "--sasl-username", "u"]
    if password_by == "flag":
        return [*flags, "--sasl-password", PASSWORD], {}
    return flags, {"FLOWSENTINEL_SASL_PASSWORD": PASSWORD}


def test_no_command_prints_a_secret_at_debug_level(bootstrap, model_dir, tmp_path):
    verdicts = tmp_path / "verdicts.jsonl"
    verdicts.write_text(json.dumps({"alert_id": "0" * 24, "verdict": "benign"}) + "\n")
    key_file = tmp_path / "model.key"
    key_file.write_text(MODEL_KEY + "\n")
    config = tmp_path / "detect.toml"
    config.write_text(
        f'security_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\nsasl_username = "u"\n'
        f"sasl_password = {json.dumps(PASSWORD)}\n"
    )
    store = tmp_path / "store"
    signed = tmp_path / "signed"  # a copy: the signatures written must not touch the shared model
    shutil.copytree(model_dir, signed)
    runs: list[tuple[str, list[str], dict[str, str]]] = []
    for by in ("flag", "env"):
        flags, env = _sasl(by, tmp_path)
        boot = ["--bootstrap-servers", bootstrap]
        runs += [
            (f"produce/{by}", ["produce", "synthetic", "--limit", "5", *boot, *flags], env),
            (f"feedback/{by}", ["feedback", str(verdicts), *boot, *flags], env),
            (f"detect/{by}", ["detect", "--model", str(model_dir), "--metrics-port", "0", *boot, *flags], env),
            (f"retrain/{by}", ["retrain", "--model-store", str(store), "--synthetic", "100", *boot, *flags], env),
        ]  # fmt: skip
    runs += [
        ("detect/file", ["detect", "--config", str(config), "--model", str(model_dir), "--metrics-port", "0",
                         "--bootstrap-servers", bootstrap], {}),
        ("sign/env", ["sign", str(signed)], {"FLOWSENTINEL_MODEL_KEY": MODEL_KEY}),
        ("sign/file", ["sign", str(signed), "--model-key-file", str(key_file)], {}),
        ("detect/key-env", ["detect", "--model", str(signed), "--require-signed", "--metrics-port", "0",
                            "--bootstrap-servers", bootstrap], {"FLOWSENTINEL_MODEL_KEY": MODEL_KEY}),
        ("detect/key-file", ["detect", "--model", str(signed), "--require-signed", "--model-key-file",
                             str(key_file), "--metrics-port", "0", "--bootstrap-servers", bootstrap], {}),
        ("score/key-file", ["score", "--model", str(signed), "--model-key-file", str(key_file), "--data",
                            str(verdicts)], {}),
    ]  # fmt: skip
    secrets = {PASSWORD, repr(PASSWORD)[1:-1], json.dumps(PASSWORD)[1:-1], MODEL_KEY}
    debug_lines = 0
    for name, out in _run_all(runs, seconds=25).items():
        debug_lines += out.count(" DEBUG ")
        leaked = [s for s in secrets if s in out]
        assert not leaked, (
            f"{name} printed a secret: {[line for line in out.splitlines() if any(s in line for s in leaked)][:2]}"
        )
    assert debug_lines > 50  # debug logging was on: the test would see a leak
