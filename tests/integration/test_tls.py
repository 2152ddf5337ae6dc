"""Kafka over TLS, and a detector started before its Kafka: what an operator of a managed or secured Kafka
meets first. TLS runs through :mod:`tests.integration.tls` (a real TLS endpoint in front of the real broker;
the module says why the broker's own TLS is not used). SASL is not exercised here: no broker here can
authenticate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from flowsentinel.broker import EmbeddedBroker
from flowsentinel.consumers.settings import Settings
from tests.integration.test_processes import detect_process, free_port, scored, stream_with_attacks
from tests.integration.tls import Certs, TlsProxy, make_certs
from tests.support import (
    committed,
    create_topics,
    http_status,
    produce_records,
    read_topic,
    require_broker_binary,
    scrape,
    wait_for,
)

pytestmark = pytest.mark.integration


def tls_env(certs: Certs, *, client_cert: bool = True, cafile: Path | None = None) -> dict[str, str]:
    """The TLS settings as FLOWSENTINEL_* variables (the key's password stays off the command line)."""
    env = {"FLOWSENTINEL_SECURITY_PROTOCOL": "SSL", "FLOWSENTINEL_SSL_CAFILE": str(cafile or certs.ca)}
    if client_cert:
        env |= {
            "FLOWSENTINEL_SSL_CERTFILE": str(certs.client_cert),
            "FLOWSENTINEL_SSL_KEYFILE": str(certs.client_key),
            "FLOWSENTINEL_SSL_PASSWORD": certs.client_key_password,
        }
    return env


def client_options(certs: Certs) -> dict:
    """The test's own clients use the same options the service builds."""
    s = Settings.load({}, environ=tls_env(certs))
    return s.options()


def readyz(port: int) -> str:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).read().decode()
    except urllib.error.HTTPError as exc:
        return exc.read().decode()
    except OSError:
        return ""


@pytest.fixture
def tls_broker(tmp_path):
    """(bootstrap, certs, proxy): a broker that advertises a TLS proxy requiring client certificates, so every
    client connection after the bootstrap one goes through it too (its plaintext port stays open on
    127.0.0.1, but no client is told of it)."""
    require_broker_binary()
    certs = make_certs(tmp_path / "certs")
    tls_port = free_port()
    with (
        EmbeddedBroker(advertised_port=tls_port, log_path=tmp_path / "tansu.log") as broker,
        TlsProxy(certs, broker.port, tls_port, require_client_cert=True) as proxy,
    ):
        yield f"127.0.0.1:{tls_port}", certs, proxy


def test_produce_detect_and_alerts_over_mutual_tls(
    tls_broker, names, model_dir, tmp_path, monkeypatch, kafka_client
):
    bootstrap, certs, proxy = tls_broker
    env = tls_env(certs)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    options = client_options(certs)
    create_topics(bootstrap, names, security=options)
    n = 4_000
    r = subprocess.run(
        [sys.executable, "-m", "flowsentinel", "produce", "synthetic", "--bootstrap-servers", bootstrap,
         "--topic", names["input"], "--limit", str(n), "--rate", "20000", "--attack-every", "0.05", "--quiet"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"sent {n:,}  failed 0" in r.stdout
    port = free_port()
    log = tmp_path / "detect.log"
    proc = detect_process(bootstrap, names, model_dir, log, port, kafka_client=kafka_client)
    try:
        wait_for(lambda: scored(port) >= n, 120, f"{n} records scored over TLS")
        wait_for(
            lambda: sum(committed(bootstrap, names["group"], names["input"], options).values()) == n,
            30,
            "every offset committed over TLS",
        )
        assert http_status(port, "/readyz") == 200
        alerts = read_topic(bootstrap, names["alerts"], timeout=20, security=options)
        assert alerts, "alerts published and read back over TLS"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, log.read_text()[-2000:]
    # admin, producer, the detector's consumer and producer, and this test's clients: all through TLS
    assert proxy.handshakes >= 4


def test_tls_settings_that_cannot_work_fail_at_once_with_one_line(tls_broker, model_dir):
    bootstrap, certs, _ = tls_broker
    env = dict(os.environ, **tls_env(certs, cafile=certs.other_ca))
    for argv in (
        ["detect", "--model", str(model_dir), "--bootstrap-servers", bootstrap, "--metrics-port", "0"],
        ["produce", "synthetic", "--bootstrap-servers", bootstrap, "--limit", "10"],
    ):
        r = subprocess.run(
            [sys.executable, "-m", "flowsentinel", *argv], capture_output=True, text=True, env=env, timeout=60
        )
        errors = [line for line in r.stderr.splitlines() if "error:" in line]
        assert r.returncode == 2, r.stderr[-2000:]
        assert "Traceback" not in r.stderr
        assert len(errors) == 1 and "certificate does not verify" in errors[0] and "ssl_cafile" in errors[0]
    # a client key that will not decrypt names both files and the likely cause
    env = dict(os.environ, **(tls_env(certs) | {"FLOWSENTINEL_SSL_PASSWORD": "wrong"}))
    r = subprocess.run(
        [sys.executable, "-m", "flowsentinel", "produce", "synthetic", "--bootstrap-servers", bootstrap],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "ssl_keyfile" in r.stderr and "wrong ssl_password?" in r.stderr


def test_a_missing_client_certificate_is_waited_out_with_the_reason_on_readyz(
    tls_broker, names, model_dir, tmp_path, monkeypatch
):
    bootstrap, certs, _ = tls_broker
    for k, v in tls_env(certs, client_cert=False).items():
        monkeypatch.setenv(k, v)
    port = free_port()
    log = tmp_path / "detect.log"
    proc = detect_process(bootstrap, names, model_dir, log, port)
    try:
        body = wait_for(lambda: readyz(port) if "waiting for Kafka" in readyz(port) else "", 30, "/readyz")
        assert "client certificate" in body and "ssl_certfile is not set" in body
        assert http_status(port, "/healthz") == 200, "waiting is not wedged: no restart wanted"
        assert scrape(port)["flowsentinel_broker_up"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    assert code == 0, log.read_text()[-2000:]


def test_detect_started_before_its_broker_comes_up_with_it(names, model_dir, tmp_path):
    require_broker_binary()
    broker_port = free_port()
    bootstrap = f"127.0.0.1:{broker_port}"
    port = free_port()
    log = tmp_path / "detect.log"
    proc = detect_process(bootstrap, names, model_dir, log, port)
    try:
        body = wait_for(lambda: readyz(port) if "waiting for Kafka" in readyz(port) else "", 30, "/readyz")
        assert "connection refused" in body
        assert http_status(port, "/healthz") == 200
        with EmbeddedBroker(port=broker_port, log_path=tmp_path / "tansu.log"):
            create_topics(bootstrap, names)
            records = stream_with_attacks(3_000, seed=31)
            produce_records(bootstrap, names["input"], records)
            wait_for(lambda: scored(port) >= len(records), 120, "records scored once the broker is up")
            wait_for(
                lambda: sum(committed(bootstrap, names["group"], names["input"]).values()) == len(records),
                30,
                "every offset committed",
            )
            assert http_status(port, "/readyz") == 200
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log.read_text()[-2000:]
    assert "waiting for Kafka" in log.read_text()


def test_demo_on_an_existing_kafka_over_mutual_tls(tls_broker, model_dir, tmp_path):
    bootstrap, certs, proxy = tls_broker
    r = subprocess.run(
        [sys.executable, "-m", "flowsentinel", "demo", "--bootstrap-servers", bootstrap, "--duration", "10",
         "--rate", "400", "--attack-every", "3", "--metrics-port", "0", "--model", str(model_dir),
         "--workdir", str(tmp_path)],
        capture_output=True, text=True, timeout=180, env=dict(os.environ, **tls_env(certs)),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "embedded Kafka-protocol broker" not in r.stdout
    assert "episode OPENED" in r.stdout, "alerts came back through TLS to the demo's own consumer"
    assert "stopped cleanly" in r.stdout
    assert proxy.handshakes >= 4
