"""What the tests share, in one module (conftest.py files hold fixtures only): the repository and the data
sets beside it, a small synthetic traffic world, and the integration tests' helpers (settings for a test's
topics, topic creation, reading a topic with every alert checked against the published schema; the rest is
:mod:`flowsentinel.testing`, which benchmarks use too), and the alert messages' schema check."""

from __future__ import annotations

import json
import os
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource

from flowsentinel.consumers.settings import Settings
from flowsentinel.detector.schema import RecordBatch, Schema, parse_table
from flowsentinel.kafka.admin import ensure_topics
from flowsentinel.testing import (  # noqa: F401  (the tests import them from here)
    committed,
    consumer_lags,
    highwater,
    http_status,
    produce_raw,
    produce_records,
    scrape,
    wait_for,
)
from flowsentinel.testing import read_topic as _read_topic

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_data(relative: str) -> Path:
    """Path of a file under ../shared/data; skips (or fails under CI=true) where it is absent."""
    path = SHARED_DATA / relative
    if not path.is_file():
        reason = f"data set {relative} not found under {SHARED_DATA} (a clone without ../shared/data)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason + "; under CI=true the data sets must be present")
        pytest.skip(reason)
    return path


TOY = Schema.from_dict(
    {
        "name": "toy",
        "numeric": ["bytes", "packets", "duration"],
        "categorical": ["proto", "service"],
        "key": "host",
        "label": "label",
        "normal_labels": ["normal"],
    }
)


def toy_table(n: int, rng: np.random.Generator, *, attack_rate: float = 0.0, hosts: int = 20) -> dict:
    """Normal traffic: bytes ≈ 600 × packets, short durations, tcp/http or udp/dns. Attacks break the
    correlation (many packets, tiny bytes, icmp) — a flood-like pattern."""
    packets = rng.integers(1, 40, size=n)
    bytes_ = packets * rng.normal(600, 40, size=n).clip(100)
    duration = rng.exponential(0.5, size=n)
    udp = rng.random(n) < 0.3
    proto = np.where(udp, "udp", "tcp")
    service = np.where(udp, "dns", "http")
    label = np.full(n, "normal", dtype=object)
    attack = rng.random(n) < attack_rate
    packets = np.where(attack, rng.integers(300, 2000, size=n), packets)
    bytes_ = np.where(attack, rng.integers(0, 64, size=n), bytes_)
    proto = np.where(attack, "icmp", proto)
    service = np.where(attack, "ecr_i", service)
    label[attack] = "flood"
    host = np.array([f"10.0.0.{i}" for i in rng.integers(0, hosts, size=n)], dtype=object)
    return {
        "bytes": [f"{v:.0f}" for v in bytes_],
        "packets": [str(v) for v in packets],
        "duration": [f"{v:.3f}" for v in duration],
        "proto": list(proto),
        "service": list(service),
        "host": list(host),
        "label": list(label),
    }


def toy_batch(n: int, seed: int = 0, *, attack_rate: float = 0.0, hosts: int = 20) -> RecordBatch:
    rng = np.random.default_rng(seed)
    table = toy_table(n, rng, attack_rate=attack_rate, hosts=hosts)
    return parse_table(TOY, table, [f"row {i}" for i in range(n)])


def require_broker_binary() -> None:
    """Skip (fail under CI=true) where no embedded broker can be started."""
    from flowsentinel.broker import find_tansu
    from flowsentinel.detector.errors import ConfigError

    try:
        find_tansu()
    except ConfigError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"integration tests need a broker under CI: {exc}")
        pytest.skip(str(exc))


def make_settings(bootstrap: str, names: dict[str, str], model_dir: Path, **over: Any) -> Settings:
    base: dict[str, Any] = dict(
        bootstrap_servers=bootstrap,
        input_topic=names["input"],
        alerts_topic=names["alerts"],
        dead_letter_topic=names["dead"],
        group=names["group"],
        model=str(model_dir),
        metrics_port=0,
        metrics_host="127.0.0.1",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        episode_quiet_s=2.0,
        episode_update_s=5.0,
        batch_size=500,
        risk=0.002,
        state_dir="",  # no threshold snapshots unless a test asks for them
        min_publish_severity="low",  # every episode on the alerts topic, for the tests to count
    )
    base.update(over)
    return Settings(**base)


def create_topics(
    bootstrap: str, names: dict[str, str], partitions: int = 4, security: dict[str, Any] | None = None
) -> None:
    topics = {names["input"]: partitions, names["alerts"]: 1, names["dead"]: 1}
    ensure_topics(bootstrap, topics, security=security)


def read_topic(bootstrap: str, topic: str, **kw: Any) -> list[Any]:
    """:func:`flowsentinel.testing.read_topic`; every alert an integration test reads (topics named
    ``alerts-…``) is checked against the published alert schema too."""
    out = _read_topic(bootstrap, topic, **kw)
    if topic.startswith("alerts-"):
        for m in out:
            check_alert(json.loads(m.value))
    return out


# ---------------------------------------------------------------------------------------- alert messages
# checked against the JSON Schemas the repository publishes for them (docs/alert.schema.json,
# docs/alert-ecs.schema.json): the integration suite passes every alert it reads through check_alert
@cache
def _validators() -> tuple[Draft202012Validator, Draft202012Validator]:
    native = json.loads((REPO / "docs" / "alert.schema.json").read_text())
    ecs = json.loads((REPO / "docs" / "alert-ecs.schema.json").read_text())
    registry = Registry().with_resource(native["$id"], Resource.from_contents(native))
    checker = FormatChecker()
    return (
        Draft202012Validator(native, format_checker=checker),
        Draft202012Validator(ecs, registry=registry, format_checker=checker),
    )


def check_alert(message: Any) -> dict[str, Any]:
    """The alert, after checking it against its schema (the ECS form when it has ``@timestamp``); raises
    jsonschema.ValidationError naming the member that does not fit."""
    native, ecs = _validators()
    if isinstance(message, dict) and "@timestamp" in message:
        ecs.validate(message)
        body = message["flowsentinel"]
    else:
        native.validate(message)
        body = message
    for name in ("event_time", "kafka_timestamp", "detected_at"):  # (FormatChecker needs an extra package)
        if body[name] is not None:
            datetime.fromisoformat(body[name])
    return message
