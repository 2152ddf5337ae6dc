"""Suricata EVE flow events straight from their topic, as Suricata writes them (no ``schema`` field,
nested objects, fields the model does not use), through the real broker and the service."""

from __future__ import annotations

import json

import numpy as np
import pytest

from flowsentinel.consumers.main import start_service
from flowsentinel.detector.artifact import save_artifact
from flowsentinel.detector.schema import builtin_schema
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.producers.files import read_records
from tests.support import create_topics, make_settings, produce_raw, read_topic, scrape, wait_for
from tests.unit.producers.test_flow_exporters import eve_flow, labelled, write_lines

pytestmark = pytest.mark.integration
ATTACKER = "198.51.100.66"


@pytest.fixture(scope="module")
def eve_model(tmp_path_factory):
    """A small suricata-flow model trained on benign EVE flows."""
    folder = tmp_path_factory.mktemp("eve")
    normal = read_records(
        write_lines(folder / "train.json", labelled(eve_flow, 1_500, 0, ("dns", "https", "ping"))),
        builtin_schema("suricata-flow"),
    )
    model = folder / "model"
    save_artifact(train(normal, TrainConfig(hidden=32, epochs=20, members=1), progress=False), model)
    return model


def test_untagged_suricata_flows_are_scored_and_a_scan_alerts(bootstrap, names, eve_model):
    model = eve_model

    rng = np.random.default_rng(5)
    stream = [eve_flow(rng, i, ("dns", "https", "ping")[i % 3]) for i in range(900)]
    scan = [{**eve_flow(rng, 900 + i, "scan"), "src_ip": ATTACKER} for i in range(100)]
    stream = stream[:450] + scan + stream[450:]
    for r in stream:
        r.pop("label", None)  # live events carry no ground truth
    create_topics(bootstrap, names)
    produce_raw(bootstrap, names["input"], [(r["src_ip"].encode(), json.dumps(r).encode()) for r in stream])
    running = start_service(
        make_settings(bootstrap, names, model, schema_field="optional", allow_extra_fields=True, risk=0.01)
    )
    try:
        wait_for(lambda: running.service.scored >= len(stream), 60, "every EVE record scored")
        alerts = [json.loads(m.value) for m in read_topic(bootstrap, names["alerts"], settle=3.0, timeout=20)]
        metrics = scrape(running.server.port)
    finally:
        running.shutdown()
    assert not any(k.startswith("flowsentinel_records_invalid_total") and v for k, v in metrics.items()), {
        k: v for k, v in metrics.items() if k.startswith("flowsentinel_records_invalid_total") and v
    }
    opened = [a for a in alerts if a["event"] == "opened" and a["key"] == ATTACKER]
    assert len(opened) == 1, [(a["key"], a["event"]) for a in alerts]
    assert opened[0]["schema"] == "suricata-flow"


def test_a_suricata_file_replayed_by_produce_is_scored_whole(bootstrap, names, eve_model, tmp_path):
    """``flowsentinel produce suricata-flow`` replays a file (tagged records, times as ISO text) and the
    service scores every record: none dead-lettered (a replayed date-time field was once bad_timestamp)."""
    import subprocess
    import sys

    rng = np.random.default_rng(8)
    data = write_lines(
        tmp_path / "eve.json", [eve_flow(rng, i, ("dns", "https", "ping")[i % 3]) for i in range(300)]
    )
    create_topics(bootstrap, names)
    r = subprocess.run(
        [sys.executable, "-m", "flowsentinel", "produce", "suricata-flow", "--data", str(data),
         "--bootstrap-servers", bootstrap, "--topic", names["input"]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    running = start_service(make_settings(bootstrap, names, eve_model, risk=0.01))
    try:
        wait_for(lambda: running.service.scored >= 300, 60, "every replayed record scored")
        metrics = scrape(running.server.port)
    finally:
        running.shutdown()
    invalid = {k: v for k, v in metrics.items() if k.startswith("flowsentinel_records_invalid_total") and v}
    assert not invalid, invalid
