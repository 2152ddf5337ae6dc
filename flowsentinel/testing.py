"""Driving a running flowsentinel from outside: write to and read a broker's topics, read a group's
committed offsets, scrape a detector's ``/metrics``, wait for a condition. Shared by the integration tests
and the benchmarks (the commands do not use it); plain kafka-python clients, so that what the service
does is observed through another library than the one it may run on.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

T = TypeVar("T")


def produce_raw(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    p = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=False)
    for key, value in messages:
        p.send(topic, key=key, value=value)
    p.flush()
    p.close()


def produce_records(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    produce_raw(
        bootstrap,
        topic,
        [(str(r.get("src_host", "")).encode() or None, json.dumps(r).encode()) for r in records],
    )


def read_topic(
    bootstrap: str,
    topic: str,
    *,
    expect: int | None = None,
    timeout: float = 20.0,
    settle: float = 1.0,
    security: dict[str, Any] | None = None,
) -> list[Any]:
    """All messages of a topic (from the start). Waits for ``expect`` messages, or for ``settle`` quiet s.
    ``security``: client options (:meth:`flowsentinel.kafka.connection.Connection.options`) for a TLS broker."""
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, **(security or {}))
    parts = c.partitions_for_topic(topic) or set()
    tps = [TopicPartition(topic, p) for p in sorted(parts)]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    while time.monotonic() < deadline:
        got = c.poll(timeout_ms=300)
        for batch in got.values():
            out.extend(batch)
            last_new = time.monotonic()
        if expect is not None and len(out) >= expect:
            break
        if expect is None and out and time.monotonic() - last_new > settle:
            break
    c.close()
    return out


def committed(
    bootstrap: str, group: str, topic: str, security: dict[str, Any] | None = None
) -> dict[int, int]:
    c = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False, **(security or {})
    )
    parts = c.partitions_for_topic(topic) or set()
    out = {p: (c.committed(TopicPartition(topic, p)) or 0) for p in sorted(parts)}
    c.close()
    return out


def highwater(bootstrap: str, topic: str) -> dict[int, int]:
    """End offsets, counted by reading (ListOffsets LATEST is not trusted on every broker)."""
    msgs = read_topic(bootstrap, topic, timeout=10, settle=1.0)
    out: dict[int, int] = {}
    for m in msgs:
        out[m.partition] = max(out.get(m.partition, 0), m.offset + 1)
    return out


def scrape(port: int) -> dict[str, float]:
    """Scrape /metrics over HTTP; return {'name{label="v",...}': value} for every sample."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def consumer_lags(m: dict[str, float]) -> dict[str, float]:
    """The per-partition ``flowsentinel_consumer_lag`` samples of a :func:`scrape`, keyed as it keys them."""
    return {k: v for k, v in m.items() if k.startswith("flowsentinel_consumer_lag{")}


def http_status(port: int, path: str) -> int:
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).status
    except urllib.error.HTTPError as exc:
        return exc.code


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
