"""Settings that would crash later are refused at start, in one line naming the setting; the HTTP server
cannot be held by idle connections; a SIGTERM during start-up is a clean stop."""

from __future__ import annotations

import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from flowsentinel.consumers.settings import NUMERIC_BOUNDS, Settings
from flowsentinel.detector.errors import ConfigError


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TORCH_THREADS", "100000", "setting torch_threads = 100000: must be from 1 to 256"),
        ("SHUTDOWN_TIMEOUT_S", "1e300", "setting shutdown_timeout_s = 1e+300: must be above 0 and at most 3,600"),
        ("POLL_TIMEOUT_MS", "1000000000000", "setting poll_timeout_ms = 1000000000000: must be from 1 to 60,000"),
        ("METRICS_PORT", "99999", "setting metrics_port = 99999: must be from 0 to 65,535"),
        ("BATCH_SIZE", "５００", "setting batch_size = '５００' (from environment FLOWSENTINEL_BATCH_SIZE): expected a whole"),
        ("BATCH_SIZE", "2_000", "setting batch_size = '2_000' (from environment FLOWSENTINEL_BATCH_SIZE): expected a whole"),
        ("RISK", "1_0e-3", "setting risk = '1_0e-3' (from environment FLOWSENTINEL_RISK): expected float"),
        ("CLIENT_ID", "flow\nsentinel", "setting client_id = 'flow\\nsentinel': holds a control character"),
        ("SASL_PASSWORD", "Zq9x\rWv7", "setting sasl_password = ***: holds a control character"),
        ("HEARTBEAT_INTERVAL_MS", "20000", "setting heartbeat_interval_ms = 20000: must be below session_timeout_ms"),
    ],
)  # fmt: skip
def test_a_setting_that_would_fail_later_is_refused_now(variable, value, message):
    with pytest.raises(ConfigError) as err:
        Settings.load(environ={f"FLOWSENTINEL_{variable}": value})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    if variable == "SASL_PASSWORD":
        assert "Zq9x" not in str(err.value)


def test_every_numeric_setting_has_bounds():
    import dataclasses

    numeric = {f.name for f in dataclasses.fields(Settings) if f.type in ("int", "float")}
    assert numeric == set(NUMERIC_BOUNDS)
    for name, (_, hi) in NUMERIC_BOUNDS.items():
        with pytest.raises(ConfigError, match=f"setting {name} = "):
            Settings.load(environ={f"FLOWSENTINEL_{name.upper()}": str(hi * 10 + 10)})


def test_config_files_take_scalars_in_utf8_only(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('sasl_password = ["a", "b"]\n')
    with pytest.raises(
        ConfigError, match=r"setting sasl_password = \*\*\* \(from config file .*\): expected text"
    ):
        Settings.load(environ={}, config_file=str(path))
    path.write_bytes(b'group = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"config file .* is not UTF-8 text \(byte 12\)"):
        Settings.load(environ={}, config_file=str(path))
    path.write_text("batch_size = 2.5\n")
    with pytest.raises(ConfigError, match="setting batch_size = 2.5 .*expected a whole number"):
        Settings.load(environ={}, config_file=str(path))


def test_an_unresolvable_metrics_host_is_named(monkeypatch):
    from prometheus_client import CollectorRegistry

    from flowsentinel.consumers.http import HealthServer
    from flowsentinel.consumers.service import LoopState

    with pytest.raises(ConfigError, match="setting metrics_host = 'no-such-host.invalid': cannot resolve it"):
        HealthServer(CollectorRegistry(), LoopState(), host="no-such-host.invalid", port=0)


def test_the_metrics_endpoint_listens_on_loopback_unless_told():
    assert Settings().metrics_host == "127.0.0.1"


def test_a_thousand_idle_connections_neither_hold_threads_nor_block_healthz():
    from prometheus_client import CollectorRegistry

    from flowsentinel.consumers.http import HealthServer
    from flowsentinel.consumers.service import LoopState

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))
    server = HealthServer(CollectorRegistry(), LoopState(), host="127.0.0.1", port=0).start()
    threads = threading.active_count()
    held: list[socket.socket] = []
    try:
        held += [socket.create_connection(("127.0.0.1", server.port)) for _ in range(1_000)]
        for s in held[:100]:  # and a hundred that send half a request, then nothing
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        time.sleep(0.5)
        for _ in range(20):
            with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5) as r:
                assert r.status == 200 and r.read() == b"starting\n"
        assert threading.active_count() <= threads + 4  # the answering workers, however many connect
    finally:
        for s in held:
            s.close()
        server.stop()


def _catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has a SIGTERM handler installed (Linux: the SigCgt mask in /proc)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next((int(line.split()[1], 16) for line in status.splitlines() if line.startswith("SigCgt:")), 0)
    return bool(mask >> (signal.SIGTERM - 1) & 1)


@pytest.mark.cli  # a detect process
@pytest.mark.parametrize("after_s", [0.8, 2.0, 4.0])
def test_sigterm_during_start_up_is_a_clean_stop(tmp_path, after_s):
    """While torch imports, while the model loads, while Kafka is awaited. (Not during the interpreter's own
    start-up, before flowsentinel's code runs: the signal is sent ``after_s`` - 0.8 s after the handler is
    in place, which on a quiet machine is about 0.8 s after the start; a fixed 0.8 s killed the process
    before its handler existed when the machine was busy.)"""
    from flowsentinel.detector.artifact import save_artifact
    from flowsentinel.detector.train import TrainConfig, train
    from tests.support import toy_batch

    model = tmp_path / "m"
    save_artifact(
        train(toy_batch(1500), TrainConfig(hidden=8, latent=4, members=1, epochs=1), progress=False), model
    )
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # nothing listens there: detect waits for Kafka
    proc = subprocess.Popen(
        [sys.executable, "-m", "flowsentinel", "detect", "--model", str(model), "--metrics-port", "0",
         "--bootstrap-servers", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not _catches_sigterm(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(after_s - 0.8)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-2000:]
