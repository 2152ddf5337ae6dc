"""The detector service loop: poll → decode → detect → produce → flush → commit. No env, no signals.

At-least-once by order: a batch's alerts and dead letters are produced and flushed before its offsets
are committed; a crash between the two replays the batch, and alert ids (derived from offsets) repeat
rather than multiply. Bad messages are data: they go to the dead-letter topic with the reason in headers
and are committed past. A broker outage is waited out (logged, visible in ``flowsentinel_broker_up`` and
``/readyz``) and nothing is committed until what it covers has been published.

``stop`` (a :class:`threading.Event`) asks the loop to finish its batch, flush, commit and return.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flowsentinel.consumers.alerts import AlertRecord, EpisodeTracker, publishable, severity, to_ecs
from flowsentinel.consumers.checkpoint import Checkpoint, Outgoing
from flowsentinel.consumers.decode import DeadLetter, InputMessage, decode_messages
from flowsentinel.consumers.episode_files import EpisodeFiles
from flowsentinel.consumers.feedback import FeedbackState
from flowsentinel.consumers.kafka_options import GROUP_ONLY_OPTIONS
from flowsentinel.consumers.metrics import Metrics, package_version
from flowsentinel.consumers.model_slot import ModelSlot
from flowsentinel.consumers.settings import Settings, feedback_policy
from flowsentinel.consumers.shadow import Shadow
from flowsentinel.consumers.state_file import write_state
from flowsentinel.detector.artifact import TrainedModel
from flowsentinel.detector.errors import ConfigError
from flowsentinel.detector.feedback import VerdictMemory
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.schema import RecordBatch
from flowsentinel.detector.text import clean_text, printable, utf8
from flowsentinel.kafka.client import (
    Committed,
    GroupConsumer,
    KafkaFailure,
    Partition,
    Producer,
    make_consumer,
    make_producer,
    resolve_client,
)
from flowsentinel.kafka.conn import KafkaUnreachable

log = logging.getLogger(__name__)
VERSION = package_version()  # in alerts' observer and the dead letters' headers
DEAD_LETTER_MAX_KEY_BYTES = 4_096  # a longer key is cut in the dead letter (its size in a header)
# failures of the outside world, not of a record: they stop the commit and are retried or end the service
_INFRASTRUCTURE = (KafkaFailure, MemoryError)
MAX_CONNECT_PAUSE_S = 30.0  # longest pause between connection attempts while Kafka is unreachable at start


def _partition_list(partitions: set[Partition]) -> str:
    """(topic, partition) pairs for a log line: ``records[0, 1], other[2]``."""
    by_topic: dict[str, list[int]] = {}
    for topic, p in sorted(partitions):
        by_topic.setdefault(topic, []).append(p)
    return ", ".join(f"{t}{ps}" for t, ps in by_topic.items()) or "none"


def settle_heap() -> None:
    """Put what the service holds for its lifetime (modules, the model, the clients) out of the cyclic
    garbage collector's sight: each full collection walked all of it (about 210,000 objects) while
    every batch's records came and went, 1.8 s of a 15 s backlog run (0.5 s with them frozen). Called
    when the loop starts and after a model reload (unfrozen and collected first, so an old model's
    cycles are freed)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


@dataclass
class LoopState:
    """What /healthz and /readyz look at."""

    heartbeat: float = 0.0
    assigned: int = 0
    broker_ok: bool = False
    started: bool = False
    waiting_for: str = ""  # why the service cannot connect yet (at start), for /readyz


@dataclass(frozen=True)
class Processed:
    """What :meth:`DetectorService.process` made of a batch of messages."""

    events: list[dict[str, Any]]  # every episode message (opened / updated / closed), published or not
    dead_letters: list[DeadLetter]
    # what the poll loop would produce: (topic, key, value, headers) of the alert messages at or above
    # min_publish_severity, then of the dead letters
    outgoing: list[Outgoing]


class DetectorService:
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        model: TrainedModel | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.state = LoopState()
        self.slot = ModelSlot(settings, metrics, clock=clock)  # the live model, its threshold, the shadow
        self._last_snapshot = clock()
        self.kafka_client = resolve_client(settings.kafka_client)  # "confluent" or "kafka-python"
        self._consumer: GroupConsumer | None = None
        self._producer: Producer | None = None
        self.checkpoint: Checkpoint | None = None  # publish → flush until acknowledged → commit
        self._side: GroupConsumer | None = None  # reads the alerts and feedback topics, outside the group
        self._side_positions: dict[Partition, int] = {}
        self._side_checked = 0.0
        self._resumed: set[Partition] = set()  # partitions whose committed episodes were read
        self._committed: dict[Partition, int] = {}  # the offsets this process last committed
        self._metadata_kept: bool | None = None  # does the broker keep commit metadata (None: not known yet)
        self._episode_files = EpisodeFiles(settings.state_dir, settings.group, metrics)  # beside the metadata
        model = model or self.slot.load()
        self.feedback: FeedbackState | None = None
        if settings.feedback_topic:
            names = list(model.encoder.field_names)
            memory = VerdictMemory(len(names), feedback_policy(settings))
            self.feedback = FeedbackState(memory, names, settings.feedback_store_entries)
            self.slot.feedback = memory
        self._install_model(model)
        self.slot.check_state_dir()
        self.slot.restore_threshold()
        self._restore_feedback()
        self._feedback_gauges()
        self.slot.check_shadow()
        self.scored = 0

    # ------------------------------------------------------------------ the model slot
    @property
    def model(self) -> TrainedModel:
        """The live model."""
        return self.slot.live

    @property
    def detector(self) -> Detector:
        """The live model's detector: its windows, online threshold and the analysts' verdicts."""
        return self.slot.scorer

    @property
    def shadow(self) -> Shadow | None:
        """The candidate model scoring beside the live one, if a model store names one."""
        return self.slot.shadow

    @property
    def reload_requested(self) -> threading.Event:
        """Set (as SIGHUP does) to read the model directory again before the next batch."""
        return self.slot.reload_requested

    @reload_requested.setter
    def reload_requested(self, event: threading.Event) -> None:
        self.slot.reload_requested = event

    def _install_model(self, model: TrainedModel) -> None:
        self.slot.install(model)
        self._start_episodes(model)

    def _start_episodes(self, model: TrainedModel) -> None:
        s = self.settings
        self.episodes = EpisodeTracker(
            schema=model.schema.name,
            model_version=model.version,
            quiet_s=s.episode_quiet_s,
            update_s=s.episode_update_s,
            clock=self.clock,
            observer={"name": s.client_id, "hostname": socket.gethostname(), "version": VERSION},
        )
        self._field_columns = {  # field -> (categorical?, its column in a batch's array)
            **{f: (False, j) for j, f in enumerate(model.schema.numeric)},
            **{f: (True, j) for j, f in enumerate(model.schema.categorical)},
        }

    def check_model(self, *, now: bool = False) -> None:
        """Between batches: swap in a changed model (see :meth:`ModelSlot.due`; ``now``: look at the model
        directory now rather than every ``reload_check_s``). The old model's threshold (and the feedback state)
        is saved and its open episodes are closed and published first."""
        model = self.slot.due(now=now)
        if model is None:
            return
        self.snapshot_threshold()  # the old model's adapted threshold, should it come back
        closed = self.episodes.close_where(lambda ep: True, "model_reload")
        if closed:
            self._publish(closed, [])
        self.slot.swap(model)
        self._start_episodes(model)
        settle_heap()

    def snapshot_threshold(self) -> None:
        """Save the thresholder's state, then the feedback state. A failure (a full disk, a directory gone) is
        logged and scoring goes on: the snapshot only spares a restart its warm-up."""
        if self.slot.snapshot_path() is None:
            return
        self._last_snapshot = self.clock()
        # the feedback state goes to the same directory: after a failure here, not tried (counted once)
        if self.slot.save_threshold():
            self.snapshot_feedback()

    def _feedback_path(self) -> Path | None:
        if not self.settings.state_dir or self.feedback is None:
            return None
        return Path(self.settings.state_dir).expanduser() / f"feedback-{self.settings.group}.json"

    def _restore_feedback(self) -> None:
        path = self._feedback_path()
        if path is None or self.feedback is None or not path.is_file():
            return
        try:
            state = json.loads(path.read_text())
            self.feedback.load_state_dict(state)
            self._side_positions = {
                Partition(str(t), int(p)): int(o) for t, p, o in state.get("positions", []) if int(o) >= 0
            }
            log.info(
                "restored the feedback state from %s (%d prototypes, %d alert messages remembered)",
                path,
                len(self.feedback.memory),
                len(self.feedback.store),
            )
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring the feedback state %s: %s; starting without verdicts", path, exc)

    def snapshot_feedback(self) -> None:
        """Save the verdict memory, the alert store and the side consumer's positions (after a flush: the
        dead letters of what those positions cover are published). A failure is logged; scoring goes on."""
        path = self._feedback_path()
        if path is None or self.feedback is None:
            return
        self._save_side_positions()
        state = self.feedback.state_dict()
        state["positions"] = [[t, p, o] for (t, p), o in sorted(self._side_positions.items())]
        write_state(path, state, "the feedback state", self.metrics)

    def _feedback_gauges(self) -> None:
        if self.feedback is None:
            return
        mem = self.feedback.memory
        for v in ("attack", "benign"):
            self.metrics.feedback_prototypes.labels(verdict=v).set(len(mem.protos[v]))
        self.metrics.feedback_store_alerts.set(len(self.feedback.store))
        self.metrics.feedback_store_bytes.set(self.feedback.store.nbytes)

    def tally_shadow(self) -> None:
        """Tally the verdicts just applied against what the shadow did with the alerts they judge."""
        if self.feedback is None:
            return
        judged, self.feedback.judged = self.feedback.judged, []
        self.slot.tally(judged)

    # ------------------------------------------------------------------ kafka clients
    def connect_when_reachable(self, stop: threading.Event) -> bool:
        """Connect once the brokers answer, waiting (with a growing pause, logged) while they do not: a
        detector started before its Kafka, or during an outage, comes up when Kafka does. A setting that
        cannot work (a certificate that does not verify, a file that does not load) raises ConfigError at
        once instead. False if ``stop`` was set while waiting."""
        s = self.settings
        options = s.kafka_common()  # builds the TLS context once, so a file that cannot load fails here
        delay = 1.0
        while not stop.is_set():
            try:
                s.probe(options)
                self._connect(options)
                self.state.waiting_for = ""
                self._check_topics()
                return True
            except ConfigError:  # waiting cannot fix it
                self.close()
                raise
            except (KafkaUnreachable, KafkaFailure) as exc:
                self.close()
                self.state.waiting_for = str(exc)
                self._broker(ok=False)
                log.warning("waiting for Kafka, next try in %.0fs: %s", delay, exc)
                stop.wait(delay)
                delay = min(2 * delay, MAX_CONNECT_PAUSE_S)
        return False

    def _check_topics(self) -> None:
        """Say at start which of the service's topics the cluster lacks. The service creates none: operators
        set partitions, replication and ACLs, and a broker may create topics on first use instead."""
        assert self._consumer is not None
        s = self.settings
        try:
            existing = self._consumer.topics()
        except KafkaFailure as exc:
            log.warning("could not list the cluster's topics: %s", exc)
            return
        for topic in s.input_topics:
            if topic not in existing:
                log.warning(
                    "input topic %r does not exist (yet), or this client may not see it: nothing to score from "
                    "it until it does",
                    topic,
                )
        missing = [t for t in (s.alerts_topic, s.dead_letter_topic) if t not in existing]
        if missing:
            log.warning(
                "topic(s) %s do not exist, or this client may not see them: alerts and dead letters wait, "
                "unacknowledged and uncommitted, until they do (unless the brokers create topics on first use)",
                ", ".join(repr(t) for t in missing),
            )

    def _connect(self, common: dict[str, Any]) -> None:
        """The group consumer, the side consumer (alerts and feedback topics, outside the group) and the
        producer, of the configured client library (``common``: the security options already built)."""
        s = self.settings
        cfg = s.client_config(common)
        extra = cfg.extra  # kafka_options (checked when the settings were made)
        self._consumer = make_consumer(
            self.kafka_client,
            cfg,
            s.group,
            {
                "auto_offset_reset": s.auto_offset_reset,
                "max_poll_records": s.batch_size,
                "session_timeout_ms": s.session_timeout_ms,
                "heartbeat_interval_ms": s.heartbeat_interval_ms,
                "max_poll_interval_ms": s.max_poll_interval_ms,
                "fetch_max_wait_ms": s.fetch_max_wait_ms,  # bounds a fetch's idle wait: latency at low rates
                **extra["consumer"],
            },
        )
        # the side consumer is in no group: group membership options are not for it
        side_extra = {k: v for k, v in extra["consumer"].items() if k not in GROUP_ONLY_OPTIONS}
        self._consumer.subscribe(  # looked up at each call: a test may replace them on the instance
            list(s.input_topics), lambda p: self.on_assigned(p), lambda p: self.on_revoked(p)
        )
        if self.feedback is not None:
            self._side = make_consumer(self.kafka_client, cfg, None, {
                "auto_offset_reset": "earliest",
                "allow_auto_create_topics": False,  # asking for the feedback topic must not create it
                "fetch_max_wait_ms": s.fetch_max_wait_ms, **side_extra,
            })  # fmt: skip
            self._assign_side()
        self._producer = make_producer(
            self.kafka_client,
            cfg,
            {
                "acks": "all",
                "linger_ms": 5,
                "compression_type": None if s.compression == "none" else s.compression,
                "enable_idempotence": False,
                "max_block_ms": 10_000,
                # room for a dead letter of dead_letter_max_bytes with its key and headers
                "max_request_size": max(
                    1_048_576, s.dead_letter_max_bytes + DEAD_LETTER_MAX_KEY_BYTES + 65_536
                ),
                **extra["producer"],
            },
        )
        pending = self.checkpoint.pending if self.checkpoint is not None else []
        self.checkpoint = Checkpoint(self._producer, self._consumer, self.metrics, on_outage=self._outage)
        self.checkpoint.add(pending)

    # ------------------------------------------------------------------ feedback (verdicts)
    def _assign_side(self) -> None:
        """Assign the side consumer every partition of the alerts and feedback topics (checked again every
        30 s: a topic created later, or grown), at the saved positions where there are any."""
        assert self._side is not None and self.feedback is not None
        self._side_checked = self.clock()
        s = self.settings
        wanted = []
        for topic in (s.alerts_topic, s.feedback_topic):
            wanted += [Partition(topic, p) for p in sorted(self._side.partitions_for(topic))]
        if set(wanted) == self._side.assignment():
            return
        self._save_side_positions()
        self._side.assign({tp: self._side_positions.get(tp) for tp in wanted})
        if not any(tp.topic == s.feedback_topic for tp in wanted):
            log.warning("feedback topic %r does not exist (yet): no verdicts until it does", s.feedback_topic)

    def _save_side_positions(self) -> None:
        if self._side is None:
            return
        for tp in self._side.assignment():
            pos = self._side.position(tp)
            if pos is not None:
                self._side_positions[tp] = pos

    def _poll_feedback(self) -> list[DeadLetter]:
        """Read what the alerts and feedback topics hold now (no waiting): remember alerts' profiles, learn
        verdicts. Returns the dead letters of malformed verdicts. A Kafka failure here is logged and left to
        the next poll: verdicts are not worth stalling the scoring for."""
        if self._side is None or self.feedback is None:
            return []
        try:
            if self.clock() - self._side_checked >= 30.0:
                self._assign_side()
            polled = self._side.poll(0.0, 5_000)
        except KafkaFailure as exc:
            log.warning("reading the feedback and alerts topics failed (%s); retrying", exc)
            return []
        dead: list[DeadLetter] = []
        before = dict(self.feedback.counts)
        alerts_topic = self.settings.alerts_topic
        for tp in sorted(polled, key=lambda tp: tp.topic != alerts_topic):  # alerts first: verdicts need them
            for r in polled[tp]:
                if tp.topic == alerts_topic:
                    self.feedback.on_alert(r.value)
                    continue
                at = min(r.timestamp_ms / 1000.0, self.clock()) if r.timestamp_ms > 0 else self.clock()
                d = self.feedback.on_verdict(r, at)
                if d is not None:
                    dead.append(d)
                    self.metrics.records_invalid.labels(reason=d.reason).inc()
        self.feedback.retry_pending()
        self.tally_shadow()
        for result, n in self.feedback.counts.items():
            if n > before[result]:
                self.metrics.feedback_verdicts.labels(result=result).inc(n - before[result])
        self._feedback_gauges()
        return dead

    def close(self) -> None:
        if self._side is not None:
            self._save_side_positions()
            try:
                self._side.close()
            except Exception as exc:
                log.warning("feedback consumer close: %s", exc)
            self._side = None
        if self._consumer is not None:
            try:
                self._consumer.close()
            except Exception as exc:  # closing must not raise on the way out
                log.warning("consumer close: %s", exc)
            self._consumer = None
        if self._producer is not None:
            try:
                self._producer.close(5)
            except Exception as exc:
                log.warning("producer close: %s", exc)
            self._producer = None

    # ------------------------------------------------------------------ rebalance
    def on_revoked(self, partitions: set[Partition]) -> None:
        """``partitions``: (topic, partition) pairs. Their windows go: whoever is assigned them next starts
        their keys afresh. Their open episodes are handed over through the committed offsets' metadata where
        the broker keeps it (whoever resumes the partition continues them); where it does not, they are
        closed (reason ``rebalance``) and the local episode state says so."""
        self.metrics.rebalances.labels(kind="revoked").inc()
        for det in (self.detector, *([self.shadow.detector] if self.shadow else [])):
            store = det.windows
            store.discard([k for k in list(store.keys()) if isinstance(k, tuple) and k[:2] in partitions])
        mine = lambda ep: (ep.first.topic, ep.first.partition) in partitions  # noqa: E731
        if self._metadata_kept:
            self.episodes.drop_where(mine)
        else:
            closed = self.episodes.close_where(mine, "rebalance")
            if closed:
                self._publish(closed, [])
                assert self.checkpoint is not None
                self.checkpoint.deliver_within(10.0)  # inside poll(): never wait out a whole outage here
            self._save_episode_state([tp for tp in self._committed if (tp.topic, tp.partition) in partitions])
        for tp in [tp for tp in self._resumed if (tp.topic, tp.partition) in partitions]:
            self._resumed.discard(tp)
            self._committed.pop(tp, None)
        for topic, p in partitions:
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(topic, str(p))
        log.info("partitions revoked: %s", _partition_list(partitions))

    def _resume_episodes(self, partitions: list[Partition]) -> None:
        """The first time this process reads a partition: reopen the episodes its committed offset carries
        (see :meth:`consumers.alerts.EpisodeTracker.state_for`), so the records replayed after a crash, or
        read after a rebalance, continue them instead of opening them again under new ids."""
        assert self._consumer is not None
        for tp in partitions:
            if tp in self._resumed:
                continue
            try:
                committed = self._consumer.committed(tp)
            except KafkaFailure as exc:
                log.warning("could not read the committed state of %s-%d (%s); its episodes open anew",
                            tp.topic, tp.partition, exc)  # fmt: skip
                committed = None
            self._resumed.add(tp)
            offset = committed.offset if committed is not None else None
            if offset is not None:
                self._committed.setdefault(tp, offset)
            metadata = (committed.metadata if committed else "") or self._episode_files.at(tp, offset)
            if metadata:
                n = self.episodes.restore(tp.topic, tp.partition, metadata)
                if n:
                    log.info("resumed %d open episode(s) of %s-%d", n, tp.topic, tp.partition)

    def _probe_metadata(self, offsets: dict[Partition, Committed]) -> None:
        """Once: does the broker keep commit metadata (Apache Kafka and Redpanda do; some do not)? Decides
        whether a revocation hands the open episodes over or closes them."""
        if self._metadata_kept is not None or self._consumer is None:
            return
        tp, sent = next(((tp, o) for tp, o in offsets.items() if o.metadata), (None, None))
        if tp is None or sent is None:
            return
        try:
            back = self._consumer.committed(tp)
        except KafkaFailure:
            return
        self._metadata_kept = back is not None and back.metadata == sent.metadata
        log.info("the broker %s commit metadata: open episodes are %s at a rebalance",
                 "keeps" if self._metadata_kept else "does not keep",
                 "handed over" if self._metadata_kept else "closed")  # fmt: skip

    def _save_episode_state(self, partitions: Iterable[Partition], offsets: dict | None = None) -> None:
        """Beside the commit metadata (which not every broker keeps): each partition's open episodes at the
        offset about to be committed (``offsets``) or last committed, in the state directory
        (:class:`~flowsentinel.consumers.episode_files.EpisodeFiles`)."""
        if not self._episode_files.enabled:
            return
        for tp in partitions:
            offset = (offsets or {}).get(tp, self._committed.get(tp))
            if offset is not None:
                self._episode_files.save(tp, offset, self.episodes.state_for(tp.topic, tp.partition))

    def _commit_episode_state(self, partitions: list[Partition]) -> None:
        """Commit ``partitions`` again at their last committed offsets with their episodes' state as it is
        now (after closing them at a revocation or shutdown: the closed ones must not be resumed). Best
        effort: a failure leaves the older state, whose episodes would be resumed and closed again."""
        if self._consumer is None:
            return
        offsets = {
            tp: Committed(self._committed[tp], self.episodes.state_for(tp.topic, tp.partition))
            for tp in partitions
            if tp in self._committed
        }
        if not offsets:
            return
        try:
            self._consumer.commit(offsets)
        except KafkaFailure as exc:
            log.info("could not commit the episodes' state on the way out (%s)", exc)

    def on_assigned(self, partitions: set[Partition]) -> None:
        self.metrics.rebalances.labels(kind="assigned").inc()
        # cooperative rebalancing hands over only the partitions that move: count what is owned now
        owned = self._consumer.assignment() if self._consumer is not None else partitions
        self.state.assigned = len(owned)
        self.metrics.assigned_partitions.set(len(owned))
        log.info("partitions assigned: %s", _partition_list(partitions))

    # ------------------------------------------------------------------ the loop
    def run(self, stop: threading.Event) -> None:
        if not self.connect_when_reachable(stop):
            return
        self.state.started = True
        log.info(
            "consuming %s as group %s through %s with model %s (%s)",
            ", ".join(self.settings.input_topics),
            self.settings.group,
            self.kafka_client,
            self.model.version,
            self.model.schema.name,
        )
        torch.set_num_threads(self.settings.torch_threads)  # the process's: see Settings.torch_threads
        settle_heap()
        try:
            while not stop.is_set():
                self.step(stop)
        finally:
            self.shutdown()

    def step(self, stop: threading.Event | None = None) -> int:
        """One poll batch, fully handled. Returns the number of messages consumed."""
        assert self._consumer is not None
        self.state.heartbeat = self.clock()
        self.check_model()
        try:
            polled = self._consumer.poll(self.settings.poll_timeout_ms / 1000, self.settings.batch_size)
            self._broker(ok=self._coordinator_alive())
        except KafkaFailure as exc:
            self._broker(ok=False)
            log.warning("poll failed (%s); retrying", exc)
            time.sleep(1.0)
            return 0
        self.state.assigned = len(self._consumer.assignment())
        self.metrics.assigned_partitions.set(self.state.assigned)
        self.metrics.ready.set(1 if self.state.assigned and self.state.broker_ok else 0)
        started = time.monotonic()
        messages = [message for tp in sorted(polled) for message in polled[tp]]  # by topic, then partition
        self._resume_episodes([tp for tp, records in polled.items() if records])
        events: list[dict[str, Any]] = []
        dead: list[DeadLetter] = self._poll_feedback()  # verdicts first: they adjust this batch's scores
        if messages:
            self.metrics.records_consumed.inc(len(messages))
            events, batch_dead = self._detect_isolating(messages)
            dead += batch_dead
        events.extend(self.episodes.expire())
        assert self.checkpoint is not None
        if events or dead or self.checkpoint.pending:  # pending: episodes closed by a model reload, say
            self._publish(events, dead)
            if not self.checkpoint.deliver(stop):
                return len(messages)  # stopping during an outage: leave the batch uncommitted
        if messages:
            offsets = {  # past the last record of each partition's run (a fetch returns offsets in order);
                # the metadata carries the partition's open episodes, for whoever resumes from there
                tp: Committed(
                    max(r.offset for r in records) + 1, self.episodes.state_for(tp.topic, tp.partition)
                )
                for tp, records in polled.items()
                if records
            }
            self._save_episode_state(offsets, {tp: o.offset for tp, o in offsets.items()})
            if self.checkpoint.commit(offsets, stop):
                self._committed.update({tp: o.offset for tp, o in offsets.items()})
                self._probe_metadata(offsets)
                now = self.clock()
                stamps = np.fromiter(
                    (m.timestamp_ms for m in messages), dtype=np.float64, count=len(messages)
                )
                stamps = stamps[stamps > 0]
                self.metrics.end_to_end_latency.observe_many(np.maximum(now - stamps / 1000.0, 0.0))
                self.metrics.last_batch_timestamp.set(now)
            self.metrics.batch_duration.observe(time.monotonic() - started)
        self._update_gauges(polled)
        self.slot.maybe_promote()
        if self.clock() - self._last_snapshot >= self.settings.snapshot_interval_s:
            self.snapshot_threshold()
        return len(messages)

    def process(self, messages: Sequence[InputMessage]) -> Processed:
        """The service without Kafka: what one poll batch does between the poll and the publish — decode,
        score with the live model (and the shadow, when there is one), threshold, episodes, dead letters,
        with the crash-loop breaker — returning the messages it would produce instead of producing them
        and committing. Metrics and state move as in the loop. Tests and embedders drive the service
        through this seam."""
        events, dead = self._detect_isolating(list(messages)) if messages else ([], [])
        shown = [e for e in events if publishable(e, self.settings.min_publish_severity)]
        return Processed(events, dead, self.outgoing(shown, dead))

    def _detect_isolating(
        self, messages: list[InputMessage]
    ) -> tuple[list[dict[str, Any]], list[DeadLetter]]:
        """:meth:`_detect`, with a crash-loop breaker. Should handling a batch raise anything but a Kafka
        failure (a defect, or an input nobody foresaw), the batch is bisected until the message(s) that make
        it raise stand alone; each goes to the dead-letter topic with reason ``internal_error`` and the
        exception's type, and the rest is handled as usual. Without this, one such message would stop the
        service before it commits, and stop every replacement that reads it again. Bisecting costs about
        log2(batch) extra passes over the parts that raise, nothing for a batch that does not.

        The halves handled before a part raised are not undone: a record of a part that raised partway may
        be seen twice by its key's window and the threshold (one record in thousands, once)."""
        try:
            return self._detect(messages)
        except _INFRASTRUCTURE:
            raise
        except Exception as exc:
            log.error(
                "handling %d message(s) raised %s; isolating the one(s) that cause it",
                len(messages),
                printable(f"{type(exc).__name__}: {exc}"),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            if len(messages) == 1:
                m = messages[0]
                self.metrics.records_invalid.labels(reason="internal_error").inc()
                detail = f"{m.position}: handling it raised {type(exc).__name__}: {printable(str(exc))}"
                return [], [DeadLetter(m, "internal_error", detail)]
        mid = len(messages) // 2
        events, dead = self._detect_isolating(messages[:mid])
        more_events, more_dead = self._detect_isolating(messages[mid:])
        return events + more_events, dead + more_dead

    def _detect(self, messages: list[InputMessage]) -> tuple[list[dict[str, Any]], list[DeadLetter]]:
        s = self.settings
        batch, kept, dead = decode_messages(
            messages,
            self.model.schema,
            max_bytes=s.max_record_bytes,
            allow_extra_fields=s.allow_extra_fields,
            schema_field=s.schema_field,
        )
        for d in dead:
            self.metrics.records_invalid.labels(reason=d.reason).inc()
        if dead:
            log.debug("%d dead letter(s); first: %s", len(dead), printable(dead[0].detail))
        if len(batch) == 0:
            return [], dead
        t0 = time.monotonic()
        window_keys = [(m.topic, m.partition, k) for m, k in zip(kept, batch.keys, strict=True)]
        v = self.detector.process_batch(batch, window_keys=window_keys, now=self.clock())
        self.metrics.inference_duration.observe(time.monotonic() - t0)
        if self.shadow is not None:
            positions = [(m.topic, m.partition, m.offset) for m in kept]
            flagged = self.shadow.score(batch, window_keys, positions, np.asarray(v.alerts, dtype=bool))
            self.metrics.shadow_records.inc(len(batch))
            self.metrics.shadow_alerted.labels(model="shadow").inc(flagged)
            self.metrics.shadow_alerted.labels(model="live").inc(int(np.count_nonzero(v.alerts)))
        self.metrics.records_scored.inc(len(batch))
        self.scored += len(batch)
        for field_name, n in v.unknown_categories.items():
            self.metrics.unknown_categories.labels(field=field_name).inc(n)
        self.metrics.score.observe_many(v.scores)
        judged = np.isfinite(v.thresholds) & (v.thresholds > 0)  # (always, once the threshold has warmed up)
        self.metrics.score_ratio.observe_many(v.scores[judged] / v.thresholds[judged])
        alerts = []
        for i in np.flatnonzero(v.alerts).tolist():
            m = kept[i]
            sev = severity(float(v.scores[i]), float(v.thresholds[i]))
            self.metrics.alerts.labels(severity=sev).inc()
            ts = float(batch.timestamps[i])
            top = v.top_features(i)
            alerts.append(
                AlertRecord(
                    key=clean_text(str(batch.keys[i])),
                    partition=m.partition,
                    topic=m.topic,
                    offset=m.offset,
                    score=float(v.scores[i]),
                    threshold=float(v.thresholds[i]),
                    top_features=top,
                    event_time=ts if np.isfinite(ts) else None,
                    kafka_timestamp_ms=m.timestamp_ms,
                    label=None if batch.labels is None else clean_text(str(batch.labels[i])) or None,
                    raw_score=None if v.raw_scores is None else v.raw_score(i),
                    field_shares=None if self.feedback is None else v.field_shares(i),
                    top_values=self._values(batch, i, top),
                )
            )
        events = self.episodes.observe(alerts)
        if self.shadow is not None:
            self.shadow.note_events(events)
        return events, dead

    def _values(self, batch: RecordBatch, i: int, top: list[tuple[str, float]]) -> tuple[Any, ...]:
        """Record ``i``'s values of the ``top`` fields, as an analyst would read them in the alert."""
        out: list[Any] = []
        for name, _ in top:
            categorical, j = self._field_columns[name]
            out.append(
                clean_text(str(batch.categorical[i, j])) if categorical else float(batch.numeric[i, j])
            )
        return tuple(out)

    # ------------------------------------------------------------------ output
    def _publish(self, events: list[dict[str, Any]], dead: list[DeadLetter]) -> None:
        assert self.checkpoint is not None
        for e in events:
            self.metrics.episodes.labels(event=e["event"]).inc()
        least = self.settings.min_publish_severity
        shown = [e for e in events if publishable(e, least)]
        if len(shown) < len(events):
            self.metrics.episodes_withheld.inc(len(events) - len(shown))
        self.checkpoint.add(self.outgoing(shown, dead))
        self.metrics.episodes_open.set(len(self.episodes.open))

    def outgoing(self, events: list[dict[str, Any]], dead: list[DeadLetter]) -> list[Outgoing]:
        """The Kafka messages (topic, key, value, headers) for alert events and dead letters. Whatever the
        input held, every key, value and header is bytes a strict UTF-8 reader accepts (headers of a dead
        letter: the reason, the detail, where it came from); the dead letter's value and key are the
        original bytes, cut to the configured sizes."""
        s = self.settings
        form = to_ecs if s.alert_format == "ecs" else (lambda e: e)
        out: list[Outgoing] = [
            (s.alerts_topic, utf8(e["key"]), utf8(json.dumps(form(e), ensure_ascii=False)), None)
            for e in events
        ]
        for d in dead:
            m = d.message
            headers = [
                ("flowsentinel.error.reason", d.reason.encode()),
                ("flowsentinel.error.detail", utf8(d.detail, limit=4096)),
                ("flowsentinel.source.topic", utf8(m.topic)),
                ("flowsentinel.source.partition", str(m.partition).encode()),
                ("flowsentinel.source.offset", str(m.offset).encode()),
                ("flowsentinel.version", VERSION.encode()),
            ]
            key, value = m.key, (m.value if m.value is not None else b"")
            if len(value) > s.dead_letter_max_bytes:  # cut, and say so: the source offset finds the whole
                headers.append(("flowsentinel.truncated.value_bytes", str(len(value)).encode()))
                value = value[: s.dead_letter_max_bytes]
            if key is not None and len(key) > DEAD_LETTER_MAX_KEY_BYTES:
                headers.append(("flowsentinel.truncated.key_bytes", str(len(key)).encode()))
                key = key[:DEAD_LETTER_MAX_KEY_BYTES]
            out.append((s.dead_letter_topic, key, value, headers))
        return out

    def _outage(self) -> None:
        """Kafka did not answer as it should (the checkpoint's sends or commit): waiting that out is not a
        stall, and the broker counts as down until it answers again."""
        self.state.heartbeat = self.clock()
        self._broker(ok=False)

    def _coordinator_alive(self) -> bool:
        """The group coordinator answered a heartbeat recently (works with an idle input topic too)."""
        assert self._consumer is not None
        limit = 3 * self.settings.heartbeat_interval_ms / 1000 + self.settings.poll_timeout_ms / 1000 + 2
        return self._consumer.coordinator_alive(limit)

    def _broker(self, *, ok: bool) -> None:
        if ok != self.state.broker_ok:
            (log.info if ok else log.warning)("broker %s", "reachable" if ok else "unreachable")
        self.state.broker_ok = ok
        self.metrics.broker_up.set(1 if ok else 0)

    def _update_gauges(self, polled: dict) -> None:
        th = self.detector.thresholder
        self.metrics.threshold.set(th.threshold)
        self.metrics.count_up(self.metrics.threshold_rebaselines, th, th.rebaselines)
        self.metrics.count_up(self.metrics.threshold_rejected_shifts, th, th.rejected_shifts)
        self.metrics.threshold_quarantine.set(1 if th.in_quarantine else 0)
        self.metrics.window_keys.set(len(self.detector.windows))
        windows = self.detector.windows
        self.metrics.count_up(self.metrics.window_evictions, windows, windows.evictions)
        self.metrics.episodes_open.set(len(self.episodes.open))
        assert self._consumer is not None
        for tp in self._consumer.assignment():
            hw = self._consumer.highwater(tp)
            pos = self._consumer.position(tp) if hw is not None else None
            if hw is not None and pos is not None:
                self.metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(
                    max(hw - pos, 0)
                )

    def shutdown(self) -> None:
        """Close open episodes (reason: shutdown), flush, snapshot the threshold state, leave the group."""
        try:
            if self._producer is not None:
                closed = self.episodes.close_where(lambda ep: True, "shutdown")
                if closed:
                    self._publish(closed, [])
                assert self.checkpoint is not None
                if self.checkpoint.deliver_within(self.settings.shutdown_timeout_s / 2) and closed:
                    self._save_episode_state(list(self._committed))
                    self._commit_episode_state(list(self._committed))
            self.snapshot_threshold()
        finally:
            self.metrics.ready.set(0)
            self.close()
            log.info("stopped after scoring %d record(s)", self.scored)
