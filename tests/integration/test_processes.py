"""The service and the CLI as operators run them: real processes, real signals, a non-Python client."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

from flowsentinel.producers.synthetic import SyntheticTraffic
from tests.support import (
    committed,
    create_topics,
    highwater,
    produce_records,
    read_topic,
    scrape,
    wait_for,
)

pytestmark = pytest.mark.integration


def detect_process(bootstrap: str, names: dict, model_dir: Path, log: Path, port: int, **extra: str):
    env = dict(os.environ)
    env.update(
        {
            "FLOWSENTINEL_BOOTSTRAP_SERVERS": bootstrap,  # flags below override; env is read too
            "FLOWSENTINEL_SESSION_TIMEOUT_MS": "6000",
            "FLOWSENTINEL_HEARTBEAT_INTERVAL_MS": "1000",
            "FLOWSENTINEL_EPISODE_QUIET_S": "3",
            "FLOWSENTINEL_RISK": "0.002",
            "FLOWSENTINEL_STATE_DIR": str(log.parent / "state"),
        }
    )
    args = [
        sys.executable,
        "-m",
        "flowsentinel",
        "detect",
        "--input-topic",
        names["input"],
        "--alerts-topic",
        names["alerts"],
        "--dead-letter-topic",
        names["dead"],
        "--group",
        names["group"],
        "--model",
        str(model_dir),
        "--metrics-port",
        str(port),
        "--metrics-host",
        "127.0.0.1",
        "--batch-size",
        "500",
    ]
    for k, v in extra.items():
        args += ["--" + k.replace("_", "-"), v]
    fh = log.open("ab")
    return subprocess.Popen(args, stdout=fh, stderr=fh, env=env)


def free_port() -> int:
    from flowsentinel.broker import free_port as fp

    return fp()


def stream_with_attacks(n: int, seed: int = 21) -> list[dict]:
    gen = SyntheticTraffic(seed=seed, attack_every_s=4.0, attack_share=0.3, hosts=150)
    return gen.records(n, start=time.time() - n / 1000, rate=1000)


def scored(port: int) -> float:
    try:
        return scrape(port).get("flowsentinel_records_scored_total", 0.0)
    except OSError:
        return 0.0


def test_sigkill_mid_stream_then_restart_scores_everything_and_alert_ids_repeat(
    bootstrap, names, model_dir, tmp_path, kafka_client
):
    create_topics(bootstrap, names)
    records = stream_with_attacks(20_000)
    produce_records(bootstrap, names["input"], records)
    port = free_port()
    first = detect_process(
        bootstrap, names, model_dir, tmp_path / "first.log", port, kafka_client=kafka_client
    )
    try:
        wait_for(lambda: scored(port) >= 4_000, 90, "the first instance to be mid-stream")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    at_kill = committed(bootstrap, names["group"], names["input"])
    hw = highwater(bootstrap, names["input"])
    assert sum(at_kill.values()) < sum(hw.values()), "killed before the end: there is something left to do"
    port2 = free_port()
    second = detect_process(
        bootstrap, names, model_dir, tmp_path / "second.log", port2, kafka_client=kafka_client
    )
    try:
        wait_for(
            lambda: committed(bootstrap, names["group"], names["input"]) == hw,
            120,
            "the restarted instance to commit every offset",
        )
        second_scored = scored(port2)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    # at least once: everything the first instance did not commit, the second scored
    assert second_scored >= sum(hw.values()) - sum(at_kill.values())
    alerts = [json.loads(m.value) for m in read_topic(bootstrap, names["alerts"], settle=2.0, timeout=30)]
    assert alerts
    ids_by_source = defaultdict(set)
    for a in alerts:
        src = a["kafka"]
        ids_by_source[(src["partition"], src["offset"], a["event"])].add(a["id"])
    # ids repeat rather than multiply: one source record and event → exactly one id, however often sent
    assert all(len(ids) == 1 for ids in ids_by_source.values())
    assert len({a["id"] for a in alerts}) == len(ids_by_source)


def test_sigterm_drains_commits_and_exits_zero(bootstrap, names, model_dir, tmp_path):
    create_topics(bootstrap, names)
    produce_records(bootstrap, names["input"], stream_with_attacks(15_000, seed=22))
    port = free_port()
    log = tmp_path / "detect.log"
    proc = detect_process(bootstrap, names, model_dir, log, port)
    wait_for(lambda: scored(port) >= 2_000, 90, "mid-stream")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(30)
    took = time.monotonic() - t0
    text = log.read_text()
    assert code == 0, text[-2000:]
    assert took < 20, f"shutdown took {took:.1f}s"
    done = int(re.search(r"stopped after scoring (\d+) record", text).group(1))
    assert sum(committed(bootstrap, names["group"], names["input"]).values()) == done, (
        "exactly what was scored is committed: nothing lost, nothing skipped"
    )
    assert "received SIGTERM" in text


def test_bad_settings_exit_2_with_one_line(tmp_path):
    env = dict(os.environ, FLOWSENTINEL_RISK="lots")
    r = subprocess.run(
        [sys.executable, "-m", "flowsentinel", "detect", "--model", "m"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 2
    assert "setting risk = 'lots' (from environment FLOWSENTINEL_RISK): expected float" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "flowsentinel", "detect", "--bootstrap-servers", "nohost", "--model", "m"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "setting bootstrap_servers = 'nohost'" in r.stderr


def _kcat_env(tmp: Path) -> dict[str, str]:
    """kcat links librdkafka.so.1; Debian's is too old for some brokers, so point it at the newer one the
    confluent-kafka wheel bundles (under a versioned file name: give it the expected name)."""
    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    lib = next(libs.glob("librdkafka*.so*"), None)
    env = dict(os.environ)
    if lib is not None:
        (tmp / "librdkafka.so.1").symlink_to(lib)
        env["LD_LIBRARY_PATH"] = f"{tmp}:{env.get('LD_LIBRARY_PATH', '')}"
    return env


def kcat_send(bootstrap: str, topic: str, lines: list[str], *flags: str) -> None:
    """Produce ``lines`` (one message each) with kcat, e.g. ``-Z -K:`` for keys and NULL messages."""
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run(
            [_kcat_or_skip(), "-b", bootstrap, "-t", topic, "-P", *flags],
            input="\n".join(lines) + "\n",
            text=True,
            capture_output=True,
            env=_kcat_env(Path(tmp)),
            timeout=60,
        )
    assert r.returncode == 0, r.stderr


def _kcat_or_skip() -> str:
    """kcat's path; skips the test where it is not installed (fails it under CI=true)."""
    kcat = shutil.which("kcat")
    if kcat is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("kcat is not installed (apt-get install kcat); .ci/run installs it")
        pytest.skip("kcat is not installed (apt-get install kcat)")
    return kcat


def test_records_from_kcat_are_accepted_in_every_kafka_compression(bootstrap, names, model_dir, tmp_path):
    """A non-Python producer, and each codec Kafka defines: the service must read whatever its producers
    send (it once stalled on snappy, whose library kafka-python does not bring)."""
    create_topics(bootstrap, names)
    codecs = ("none", "gzip", "snappy", "lz4", "zstd")
    records = SyntheticTraffic(seed=4, attack_every_s=0).records(len(codecs), start=time.time(), rate=1)
    for codec, record in zip(codecs, records, strict=True):
        kcat_send(bootstrap, names["input"], [json.dumps(record)], "-k", record["src_host"], "-z", codec)
    from flowsentinel.consumers.main import start_service
    from tests.support import make_settings

    running = start_service(make_settings(bootstrap, names, model_dir))
    try:
        wait_for(lambda: running.service.scored >= len(codecs), 60, "every kcat record to be scored")
        m = scrape(running.server.port)
    finally:
        running.shutdown()
    assert m["flowsentinel_records_scored_total"] == len(codecs)
    assert not any(k.startswith("flowsentinel_records_invalid_total{") and v for k, v in m.items())


def test_produce_cli_replays_a_file_keyed_and_paced(bootstrap, names, tmp_path):
    from tests.unit.producers.test_files import KDD_LINE

    data = tmp_path / "kdd.csv"
    data.write_text("".join(f"{KDD_LINE},normal.\n" for _ in range(300)) + "0,tcp,bad\n")
    t0 = time.monotonic()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowsentinel",
            "produce",
            "kdd",
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            names["input"],
            "--data",
            str(data),
            "--rate",
            "1000",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert "sent 300" in r.stdout and "skipped 1" in r.stdout and "malformed" in r.stdout
    assert "kdd.csv line 301" in r.stderr
    msgs = read_topic(bootstrap, names["input"], expect=300)
    assert len(msgs) == 300
    rec = json.loads(msgs[0].value)
    assert rec["schema"] == "kdd" and rec["schema_version"] == 1 and rec["src_bytes"] == 215
    assert took >= 0.25  # 300 records at 1,000/s cannot take less than 0.3 s


def test_produce_synthetic_keys_records_by_host(bootstrap, names):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowsentinel",
            "produce",
            "synthetic",
            "--bootstrap-servers",
            bootstrap,
            "--topic",
            names["input"],
            "--limit",
            "500",
            "--rate",
            "5000",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    msgs = read_topic(bootstrap, names["input"], expect=500)
    assert len(msgs) == 500
    partitions_of = defaultdict(set)
    for m in msgs:
        partitions_of[m.key].add(m.partition)
        assert json.loads(m.value)["src_host"].encode() == m.key
    assert all(len(p) == 1 for p in partitions_of.values()), "one host's records stay in one partition"


def test_demo_runs_end_to_end_and_stops_cleanly(model_dir, tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "flowsentinel",
            "demo",
            "--duration",
            "12",
            "--rate",
            "400",
            "--attack-every",
            "4",
            "--metrics-port",
            "0",
            "--model",
            str(model_dir),
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "embedded Kafka-protocol broker" in r.stdout
    assert "episode OPENED" in r.stdout
    assert "low-only episodes closed" in r.stdout  # listed only from medium severity on (--show-low)
    assert "severity=low " not in r.stdout
    assert "stopped cleanly" in r.stdout
    n = int(re.search(r"stopped cleanly: ([\d,]+) records scored", r.stdout).group(1).replace(",", ""))
    assert n >= 2000
