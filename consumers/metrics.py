"""Every Prometheus metric of the detector service, built against an injected registry.

Names follow Prometheus conventions with the ``flowsentinel_`` prefix: base units (``_seconds``),
counters end in ``_total``, and labels take values from small fixed sets only (a reason code, a severity,
a partition number, a schema field) — never a host or an IP.

>>> from prometheus_client import CollectorRegistry
>>> m = Metrics.create(CollectorRegistry())
>>> m.records_consumed.inc(3)
>>> m.registry.get_sample_value("flowsentinel_records_consumed_total")
3.0
>>> m.registry.get_sample_value("flowsentinel_alerts_total", {"severity": "critical"})  # there from the start
0.0
"""

from __future__ import annotations

import importlib.metadata
import platform
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from flowsentinel.consumers.alerts import SEVERITIES
from flowsentinel.consumers.decode import REASONS

LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.25,
    0.3,
    0.4,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# Four buckets a decade from 1e-4 to 1e4: a quantile read from them is off by at most a factor 10**0.25
# (1.78), where one bucket a decade put a p99 of 8.7 on scores that never passed 2.2. Scores live around
# the calibrated threshold (about 0.01-10 for a model trained on standardised features).
SCORE_BUCKETS = tuple(round(10.0 ** (e / 4), 6) for e in range(-16, 17))
# score / threshold: where each record sits against the line it is judged by, fine around 1 (the alert
# line) and at the severity ratios (2, 5, 20)
RATIO_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0,
                 20.0, 50.0, 100.0)  # fmt: skip
RELOAD_RESULTS = ("ok", "unchanged", "refused")
FEEDBACK_RESULTS = ("applied", "unknown", "malformed")
EPISODE_EVENTS = ("opened", "updated", "closed")


class BulkHistogram(Collector):
    """A label-less Prometheus histogram that takes a whole batch of observations at once.

    ``prometheus_client.Histogram.observe`` costs about 2 µs a call; the service observes two values per
    record, so at tens of thousands of records a second it bins a batch with numpy instead. Exposed exactly
    like a Histogram (``_bucket``/``_sum``/``_count``, cumulative buckets, ``+Inf``).
    """

    def __init__(
        self, name: str, documentation: str, buckets: Sequence[float], registry: CollectorRegistry
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self.bounds) + 1, dtype=np.int64)  # last: above the largest bound
        self._sum = 0.0
        self._lock = threading.Lock()
        registry.register(self)

    def observe_many(self, values: np.ndarray | Sequence[float]) -> None:
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            return
        idx = np.searchsorted(self.bounds, arr, side="left")  # value <= bound i goes to bucket i
        counts = np.bincount(idx, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(arr.sum())

    def observe(self, value: float) -> None:
        self.observe_many([value])

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = float(self._sum)
        buckets = [(_le(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1], strict=True)]
        buckets.append(("+Inf", float(cumulative[-1])))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=buckets, sum_value=total)


def package_version() -> str:
    """The installed package's version (pyproject.toml is its one source), "unknown" in a bare checkout."""
    try:
        return importlib.metadata.version("flowsentinel")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


def _torch_version() -> str:
    import torch  # (loaded already by the model)

    return str(torch.__version__)


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass
class Metrics:
    registry: CollectorRegistry
    records_consumed: Counter
    records_scored: Counter
    records_invalid: Counter
    alerts: Counter
    episodes: Counter
    episodes_withheld: Counter
    episodes_open: Gauge
    score: BulkHistogram
    score_ratio: BulkHistogram
    threshold: Gauge
    threshold_rebaselines: Counter
    threshold_rejected_shifts: Counter
    threshold_quarantine: Gauge
    batch_duration: Histogram
    end_to_end_latency: BulkHistogram
    inference_duration: Histogram
    consumer_lag: Gauge
    assigned_partitions: Gauge
    model_info: Gauge
    model_reloads: Counter
    shadow_info: Gauge
    shadow_loads: Counter
    shadow_records: Counter
    shadow_alerted: Counter
    shadow_verdicts: Counter
    shadow_promotions: Counter
    window_keys: Gauge
    window_evictions: Counter
    unknown_categories: Counter
    broker_up: Gauge
    ready: Gauge
    commit_failures: Counter
    snapshot_failures: Counter
    produce_failures: Counter
    rebalances: Counter
    last_batch_timestamp: Gauge
    feedback_verdicts: Counter
    feedback_prototypes: Gauge
    feedback_store_alerts: Gauge
    feedback_store_bytes: Gauge
    build_info: Gauge

    def __post_init__(self) -> None:
        self._totals: dict[int, tuple[int, float]] = {}  # counter -> (source, its total)

    def count_up(self, counter: Counter, source: object, total: float) -> None:
        """Advance ``counter`` by what ``total`` (a running count kept by ``source``, e.g. a thresholder's
        re-baselines) grew since the last call. A new source (a model reload, a restored snapshot) starts
        from what it holds: counts made before this process or by another object are not this counter's.

        >>> from prometheus_client import CollectorRegistry
        >>> m = Metrics.create(CollectorRegistry())
        >>> th = object()
        >>> for n in (4, 4, 6):  # a restored count of 4, then 2 more
        ...     m.count_up(m.window_evictions, th, n)
        >>> m.registry.get_sample_value("flowsentinel_window_evictions_total")
        2.0
        """
        last = self._totals.get(id(counter))
        if last is not None and last[0] == id(source) and total >= last[1]:
            counter.inc(total - last[1])
        self._totals[id(counter)] = (id(source), total)

    @classmethod
    def create(cls, registry: CollectorRegistry) -> Metrics:
        p = "flowsentinel_"
        r = registry
        # process_resident_memory_bytes, process_cpu_seconds_total, open fds...: a daemon that runs for weeks
        # is watched for memory growth (README, Live pipeline). Empty where /proc is absent (not Linux).
        ProcessCollector(registry=r)
        metrics = cls(
            registry=r,
            records_consumed=Counter(p + "records_consumed", "Records read from the input topic", registry=r),
            records_scored=Counter(p + "records_scored", "Records scored by the detector", registry=r),
            records_invalid=Counter(
                p + "records_invalid",
                "Records sent to the dead-letter topic, by reason",
                ["reason"],
                registry=r,
            ),
            alerts=Counter(
                p + "alerts", "Records that crossed the threshold, by severity", ["severity"], registry=r
            ),
            episodes=Counter(
                p + "episode_events",
                "Episode messages, by event (published or withheld)",
                ["event"],
                registry=r,
            ),
            episodes_withheld=Counter(
                p + "episode_messages_withheld",
                "Episode messages not published: their episode is below min_publish_severity",
                registry=r,
            ),
            episodes_open=Gauge(p + "episodes_open", "Alert episodes currently open", registry=r),
            score=BulkHistogram(p + "score", "Anomaly scores (reconstruction error)", SCORE_BUCKETS, r),
            threshold=Gauge(p + "threshold", "Current online alert threshold", registry=r),
            score_ratio=BulkHistogram(
                p + "score_threshold_ratio",
                "Each scored record's score divided by the threshold it was judged by (1 = the alert line)",
                RATIO_BUCKETS,
                r,
            ),
            threshold_rebaselines=Counter(
                p + "threshold_rebaselines", "Accepted level-shift re-baselines", registry=r
            ),
            threshold_rejected_shifts=Counter(
                p + "threshold_rejected_shifts", "Suspected shifts rejected as attack-like", registry=r
            ),
            threshold_quarantine=Gauge(
                p + "threshold_quarantine", "1 while a suspected level shift is under review", registry=r
            ),
            batch_duration=Histogram(
                p + "batch_duration_seconds",
                "Time to process one poll batch end to end",
                buckets=BATCH_BUCKETS,
                registry=r,
            ),
            end_to_end_latency=BulkHistogram(
                p + "end_to_end_latency_seconds",
                "From a record's Kafka timestamp to its verdict being committed",
                LATENCY_BUCKETS,
                r,
            ),
            inference_duration=Histogram(
                p + "inference_duration_seconds",
                "Model and threshold time per batch",
                buckets=BATCH_BUCKETS,
                registry=r,
            ),
            consumer_lag=Gauge(
                p + "consumer_lag",
                "Records behind the partition's high watermark",
                ["topic", "partition"],
                registry=r,
            ),
            assigned_partitions=Gauge(
                p + "assigned_partitions", "Input partitions assigned to this instance", registry=r
            ),
            model_info=Gauge(
                p + "model_info", "The model in use (value 1)", ["version", "schema"], registry=r
            ),
            model_reloads=Counter(
                p + "model_reloads",
                "Model reload attempts, by result (ok, unchanged, refused: the live model kept scoring)",
                ["result"],
                registry=r,
            ),
            window_keys=Gauge(p + "window_keys", "Entity keys with a live window", registry=r),
            window_evictions=Counter(
                p + "window_evictions", "Keys evicted from the window store", registry=r
            ),
            unknown_categories=Counter(
                p + "unknown_categories",
                "Categorical values unseen in training, by field",
                ["field"],
                registry=r,
            ),
            broker_up=Gauge(p + "broker_up", "1 when the last broker round trip succeeded", registry=r),
            ready=Gauge(p + "ready", "1 when partitions are assigned and the loop is consuming", registry=r),
            commit_failures=Counter(
                p + "commit_failures", "Offset commits that failed (batch will be redelivered)", registry=r
            ),
            snapshot_failures=Counter(
                p + "threshold_snapshot_failures",
                "Threshold snapshots that could not be written (scoring went on)",
                registry=r,
            ),
            produce_failures=Counter(
                p + "produce_failures", "Alert/dead-letter flushes that failed and were retried", registry=r
            ),
            rebalances=Counter(p + "rebalances", "Partition assignment changes", ["kind"], registry=r),
            last_batch_timestamp=Gauge(
                p + "last_batch_timestamp_seconds", "Unix time the last batch was committed", registry=r
            ),
            feedback_verdicts=Counter(
                p + "feedback_verdicts",
                "Analyst verdicts read from the feedback topic, by result (applied, unknown, malformed)",
                ["result"],
                registry=r,
            ),
            feedback_prototypes=Gauge(
                p + "feedback_prototypes",
                "Verdict prototypes the scores are adjusted by, by verdict",
                ["verdict"],
                registry=r,
            ),
            feedback_store_alerts=Gauge(
                p + "feedback_store_alerts", "Alert messages remembered for verdicts to judge", registry=r
            ),
            feedback_store_bytes=Gauge(
                p + "feedback_store_bytes", "Approximate memory of the alert store", registry=r
            ),
            build_info=Gauge(
                p + "build_info",
                "The running flowsentinel (value 1): its version and those of Python and torch",
                ["version", "python", "torch"],
                registry=r,
            ),
            shadow_info=Gauge(
                p + "shadow_info",
                "The shadow model scoring beside the live one (value 1)",
                ["version"],
                registry=r,
            ),
            shadow_loads=Counter(
                p + "shadow_loads", "Shadow models started or refused, by result", ["result"], registry=r
            ),
            shadow_records=Counter(
                p + "shadow_records_scored",
                "Records the shadow model scored (it publishes nothing)",
                registry=r,
            ),
            shadow_alerted=Counter(
                p + "shadow_records_alerted",
                "Of the records the shadow scored, those above each model's threshold, by model (live, shadow)",
                ["model"],
                registry=r,
            ),
            shadow_verdicts=Counter(
                p + "shadow_verdicts",
                "Analyst verdicts on live alerts the shadow also scored, by verdict and what the shadow did "
                "with the same record (flagged, quiet)",
                ["verdict", "shadow"],
                registry=r,
            ),
            shadow_promotions=Counter(
                p + "shadow_promotions",
                "Shadow models this instance promoted to live by the rule",
                registry=r,
            ),
        )
        metrics.build_info.labels(
            version=package_version(), python=platform.python_version(), torch=_torch_version()
        ).set(1)
        # Every labelled counter exported at 0 from the start for each value it can take (client_python's
        # advice): a series that first appears at 3 gives increase() nothing, and the first critical alert
        # of a detector's life would never page.
        for sev in SEVERITIES:
            metrics.alerts.labels(severity=sev)
        for event in EPISODE_EVENTS:
            metrics.episodes.labels(event=event)
        for reason in REASONS:
            metrics.records_invalid.labels(reason=reason)
        for kind in ("assigned", "revoked"):
            metrics.rebalances.labels(kind=kind)
        for result in FEEDBACK_RESULTS:
            metrics.feedback_verdicts.labels(result=result)
        for verdict in ("attack", "benign"):
            metrics.feedback_prototypes.labels(verdict=verdict)
        for result in RELOAD_RESULTS:
            metrics.model_reloads.labels(result=result)
        for result in ("ok", "refused"):
            metrics.shadow_loads.labels(result=result)
        for model in ("live", "shadow"):
            metrics.shadow_alerted.labels(model=model)
        for verdict in ("attack", "benign"):
            for did in ("flagged", "quiet"):
                metrics.shadow_verdicts.labels(verdict=verdict, shadow=did)
        return metrics
