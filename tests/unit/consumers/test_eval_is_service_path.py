"""The evaluation harness and the Kafka service score a stream identically (same records → same scores,
thresholds and alerts), so an eval report describes what the service does."""

from __future__ import annotations

import json

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from flowsentinel.consumers.decode import InputMessage
from flowsentinel.consumers.metrics import Metrics
from flowsentinel.consumers.service import DetectorService
from flowsentinel.consumers.settings import Settings
from flowsentinel.detector.evaluation import run_stream
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.thresholds import make_thresholder
from flowsentinel.producers.publisher import batch_to_records
from tests.support import toy_batch


def test_eval_path_equals_service_path(tiny_model):
    batch = toy_batch(1200, seed=61, attack_rate=0.1)
    records = batch_to_records(batch)  # what a producer publishes
    settings = Settings(
        model="unused", risk=0.01, quarantine=500, shift_max_alert_share=5, shift_max_rise=1.5
    )
    metrics = Metrics.create(CollectorRegistry())
    service = DetectorService(settings, metrics, model=tiny_model)
    policy = service.detector.thresholder.policy
    assert (policy.quarantine, policy.max_alert_share, policy.max_rise) == (500, 5, 1.5)  # settings reach it
    for start in range(0, len(records), 400):  # three poll batches of 400, one partition
        msgs = [InputMessage("in", 0, start + i, None, json.dumps(r).encode(), 0)
                for i, r in enumerate(records[start : start + 400])]  # fmt: skip
        service.process(msgs)

    detector = Detector(tiny_model, make_thresholder("spot", 0.01, service.detector.thresholder.policy))
    chunks = (batch.take(np.arange(s, min(s + 400, len(batch)))) for s in range(0, len(batch), 400))
    result = run_stream(detector, chunks, batch.schema)

    assert service.scored == len(result.scores) == len(batch)
    # the thresholders saw the same scores in the same order: their whole state is identical
    assert service.detector.thresholder.state_dict() == detector.thresholder.state_dict()
    service_alerts = sum(
        metrics.registry.get_sample_value("flowsentinel_alerts_total", {"severity": s}) or 0
        for s in ("low", "medium", "high", "critical")
    )
    assert service_alerts == int(result.alerts.sum()) > 0
    assert metrics.registry.get_sample_value("flowsentinel_score_sum") == pytest.approx(
        result.scores.sum(), rel=1e-9
    )
