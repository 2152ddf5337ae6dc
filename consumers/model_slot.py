"""The model slot of the detector service: the live model with its online threshold, and a shadow beside it.

It loads the model the settings name and checks it (signature, size, schema); between batches it takes a
changed model directory or a SIGHUP's request (:meth:`ModelSlot.due`, :meth:`ModelSlot.swap`), refusing a
model that does not load while the live one keeps scoring; it saves and restores each model's adapted
threshold (a snapshot per group and model version); with a model store it starts, replaces and stops the
shadow model, tallies the analysts' verdicts against what the shadow did, and promotes it where the rule
says so. Nothing here reads Kafka: the service hands it what it needs and publishes what a swap closes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flowsentinel.consumers.metrics import Metrics
from flowsentinel.consumers.settings import Settings, probe_writable_dir, shift_policy
from flowsentinel.consumers.shadow import PromotionRule, Shadow, promotion_decision
from flowsentinel.consumers.state_file import write_state
from flowsentinel.detector.artifact import TrainedModel, artifact_identity, load_artifact
from flowsentinel.detector.errors import ArtifactError, ConfigError
from flowsentinel.detector.feedback import VerdictMemory
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.store import ModelStore
from flowsentinel.detector.text import printable
from flowsentinel.detector.thresholds import make_thresholder

log = logging.getLogger("flowsentinel.consumers.service")  # its lines are the service's, as before the split


def one_line(exc: BaseException) -> str:
    """An exception as one printable log line: its first line, with its type unless it is an
    :class:`ArtifactError` (whose message names the model's fault)."""
    text = str(exc) if isinstance(exc, ArtifactError) else f"{type(exc).__name__}: {exc}"
    return printable(text.splitlines()[0] if text else type(exc).__name__, limit=600)


class ModelSlot:
    """The live model, its :class:`~flowsentinel.detector.pipeline.Detector` and the shadow, as the settings
    ask. ``feedback`` is the analysts' verdict memory the live detector applies (None: no feedback topic)."""

    def __init__(self, settings: Settings, metrics: Metrics, *, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.metrics = metrics
        self.clock = clock
        self.model: TrainedModel | None = None
        self.detector: Detector | None = None
        self.shadow: Shadow | None = None  # a candidate model scoring beside the live one (model_store)
        self.feedback: VerdictMemory | None = None
        self.reload_requested = threading.Event()  # SIGHUP sets it
        self.last_check = 0.0  # when the model directory was last looked at
        self._identity: tuple[Any, ...] = ()  # of the directory the live model was loaded from
        self._refused_identity: tuple[Any, ...] = ()  # of the last content refused (logged once)
        self._shadow_identity: tuple[Any, ...] = ()

    @property
    def live(self) -> TrainedModel:
        assert self.model is not None, "no model installed"
        return self.model

    @property
    def scorer(self) -> Detector:
        assert self.detector is not None, "no model installed"
        return self.detector

    # ------------------------------------------------------------------ load and install
    def load(self) -> TrainedModel:
        """The model of the settings' ``model`` (or the store's live one), read and checked; not installed."""
        s = self.settings
        if not s.model_path:
            raise ConfigError("setting model is empty: pass --model MODEL_DIR (or --model-store STORE)")
        identity = artifact_identity(s.model_path)  # before reading: a change during the read is seen next
        model = self.read(s.model_path)
        self._identity = identity
        return model

    def read(self, path: str) -> TrainedModel:
        """The model in ``path``, checked as the settings ask (signature, size); once a model is live, one for
        another schema is refused too (the live model's and the shadow's reloads alike)."""
        s = self.settings
        model = load_artifact(path, key=s.signing_key(), max_params=s.model_max_params)
        if self.model is not None and model.schema.name != self.model.schema.name:
            raise ArtifactError(
                f"the model is for schema {model.schema.name!r}, not {self.model.schema.name!r}"
            )
        return model

    def install(self, model: TrainedModel) -> None:
        """Score with ``model`` from now on, under a fresh threshold (see :meth:`restore_threshold`)."""
        s = self.settings
        self.model = model
        thresholder = make_thresholder(s.thresholder, s.risk, shift_policy(s))
        self.detector = Detector(model, thresholder, max_keys=s.max_keys, feedback=self.feedback)
        self.metrics.model_info.clear()
        self.metrics.model_info.labels(version=model.version, schema=model.schema.name).set(1)
        self.metrics.threshold.set(thresholder.threshold)

    # ------------------------------------------------------------------ reload
    def due(self, *, now: bool = False) -> TrainedModel | None:
        """Between batches: the model to swap in, or None. The model directory is looked at every
        ``reload_check_s`` (at once with ``now``) and read again if its content changed (see
        :func:`~flowsentinel.detector.artifact.artifact_identity`: a rewrite, a symlink swapped to another
        version) or a SIGHUP asked; the shadow is checked alike. A model that does not load, check, verify or
        fit is refused: None, and the directory is tried again at every check until it loads or changes (a
        copy caught half done converges); each refused content is logged and counted once. The same model
        again (a SIGHUP, a touch) is counted and None: the live state is kept."""
        s = self.settings
        clock = self.clock()
        changed = False
        if s.model_path and (now or clock - self.last_check >= s.reload_check_s):
            self.last_check = clock
            changed = artifact_identity(s.model_path) != self._identity
            self.check_shadow()
        forced = self.reload_requested.is_set()
        if not (changed or forced):
            return None
        self.reload_requested.clear()
        identity, live = artifact_identity(s.model_path), self._identity
        try:
            model = self.load()
        except Exception as exc:  # whatever a broken model raises, the live one keeps scoring
            self._identity = live  # not taken: the next check tries again
            if identity != self._refused_identity or forced:
                self._refused_identity = identity
                self.metrics.model_reloads.labels(result="refused").inc()
                log.error("model reload refused, keeping version %s: %s", self.live.version, one_line(exc))
            return None
        self._refused_identity = ()
        if model.version == self.live.version:  # a SIGHUP, a touch, a deployment that rewrote the same files
            self.metrics.model_reloads.labels(result="unchanged").inc()
            log.info("model directory re-read: the same model (version %s), live state kept", model.version)
            return None
        return model

    def swap(self, model: TrainedModel) -> None:
        """Install ``model`` (from :meth:`due`) with its own threshold snapshot where it ran here before; the
        shadow's tally starts again against it (and stops if it is the shadow). The caller saved the old
        model's threshold and closed its episodes first."""
        old = self.live.version
        self.install(model)
        self.restore_threshold()
        if self.shadow is not None:  # compared with another live model now: start the tally again
            self.set_shadow(None if self.shadow.version == model.version else self.shadow.model)
        self.metrics.model_reloads.labels(result="ok").inc()
        log.info("model reloaded: %s → %s", old, model.version)

    # ------------------------------------------------------------------ threshold snapshots
    def snapshot_path(self) -> Path | None:
        """Where the live model's threshold is saved (None: no ``state_dir``)."""
        if not self.settings.state_dir:
            return None
        name = f"threshold-{self.settings.group}-{self.live.version}.json"
        return Path(self.settings.state_dir).expanduser() / name

    def check_state_dir(self) -> None:
        """At start: the threshold snapshots' directory must be writable (ConfigError naming it if not)."""
        path = self.snapshot_path()
        if path is None:
            return
        try:
            probe_writable_dir(path.parent)
        except OSError as exc:
            raise ConfigError(
                f"setting state_dir = {self.settings.state_dir!r}: cannot write threshold snapshots there "
                f"({exc.strerror or exc}); point it at a writable directory, or '' to keep none"
            ) from None

    def restore_threshold(self) -> None:
        """The live model's saved threshold, where there is one taken under the same settings."""
        path = self.snapshot_path()
        if path is None or not path.is_file():
            return
        th = self.scorer.thresholder
        try:
            # refused if taken under another --risk or shift policy: a restart must not undo a change
            th.load_state_dict(json.loads(path.read_text()), same_settings=True)
            log.info(
                "restored threshold state from %s (threshold %.6g, %d scores seen)",
                path,
                th.threshold,
                th.seen,
            )
        except (ValueError, TypeError, AttributeError, ConfigError) as exc:
            log.warning(
                "ignoring threshold snapshot %s: %s; warming up from the model's calibration scores",
                path,
                exc,
            )

    def save_threshold(self) -> bool:
        """Save the live threshold's state; False where there is nowhere to or the write failed (logged)."""
        path = self.snapshot_path()
        if path is None:
            return False
        return write_state(path, self.scorer.thresholder.state_dict(), "the threshold snapshot", self.metrics)

    # ------------------------------------------------------------------ shadow
    def check_shadow(self) -> None:
        """With a model store: start, replace or stop the shadow model when ``STORE/shadow`` appears, changes or
        goes. A shadow that does not load is refused (logged, counted) and none runs."""
        s = self.settings
        if not s.shadow_path:
            return
        identity = artifact_identity(s.shadow_path)
        if identity == self._shadow_identity:
            return
        self._shadow_identity = identity
        if not Path(s.shadow_path).exists():
            self.set_shadow(None)
            return
        try:
            model = self.read(s.shadow_path)
        except Exception as exc:  # a broken candidate never stops the live model
            self.metrics.shadow_loads.labels(result="refused").inc()
            log.error("shadow model refused: %s", one_line(exc))
            self.set_shadow(None)
            return
        if self.shadow is not None and self.shadow.version == model.version:
            return
        self.metrics.shadow_loads.labels(result="ok").inc()
        self.set_shadow(None if model.version == self.live.version else model)

    def set_shadow(self, model: TrainedModel | None) -> None:
        s = self.settings
        if self.shadow is not None:
            log.info("shadow model %s stopped", self.shadow.version)
        self.shadow = None
        self.metrics.shadow_info.clear()
        if model is None:
            return
        thresholder = make_thresholder(s.thresholder, s.risk, shift_policy(s))
        self.shadow = Shadow(model, thresholder, max_keys=s.max_keys, remember=s.feedback_store_entries)
        self.metrics.shadow_info.labels(version=model.version).set(1)
        log.info("shadow model %s scoring beside the live model %s (publishing nothing; promotion %s)",
                 model.version, self.live.version, s.shadow_promote)  # fmt: skip

    def tally(self, judged: Iterable[tuple[str | None, str | None, str]]) -> None:
        """Tally verdicts just applied, ``(alert_id, episode_id, verdict)``, against what the shadow did with
        the alerts they judge."""
        if self.shadow is None:
            return
        tally = self.shadow.stats.verdicts
        before = {v: list(t) for v, t in tally.items()}
        for alert_id, episode_id, verdict in judged:
            self.shadow.on_verdict(alert_id or None, episode_id or None, verdict)
        for verdict, (flagged, total) in tally.items():
            was_flagged, was_total = before[verdict]
            self.metrics.shadow_verdicts.labels(verdict=verdict, shadow="flagged").inc(flagged - was_flagged)
            quiet = (total - flagged) - (was_total - was_flagged)
            self.metrics.shadow_verdicts.labels(verdict=verdict, shadow="quiet").inc(quiet)

    def maybe_promote(self) -> None:
        """With ``shadow_promote = auto``: promote the shadow in the store once the rule says so; the next
        :meth:`due` takes it as the live model."""
        s = self.settings
        if self.shadow is None or s.shadow_promote != "auto":
            return
        rule = PromotionRule(s.shadow_min_records, s.shadow_min_verdicts, s.shadow_min_attack_kept)
        ok, why = promotion_decision(self.shadow.stats, rule)
        if not ok:
            return
        version = self.shadow.version
        try:
            ModelStore(s.model_store).promote(reason=f"auto: {why}")
        except (ArtifactError, OSError) as exc:  # another instance promoted it first, or the store is gone
            log.info("shadow model %s not promoted here: %s", version, one_line(exc))
        else:
            self.metrics.shadow_promotions.inc()
            log.warning("shadow model %s promoted to live (was %s): %s", version, self.live.version, why)
        self.set_shadow(None)
        self.last_check = 0.0  # take the new live model at the next batch
