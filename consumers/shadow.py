"""A candidate model in shadow: it scores every record the live model scores, with its own windows and online
threshold, and publishes nothing. What it would have done is compared with what the live model did on the
same records, and with the analysts' verdicts on the live model's alerts:

- alert rate: records above the shadow's threshold vs records above the live one's;
- confirmed attacks kept: of the live alerts judged ``attack``, how many the shadow flagged too;
- confirmed false alarms dropped: of the live alerts judged ``benign``, how many the shadow did not flag.

:func:`promotion_decision` states the rule a candidate must meet to replace the live model. Kafka-free: the
service scores and polls, this keeps count.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flowsentinel.detector.artifact import TrainedModel
from flowsentinel.detector.pipeline import Detector
from flowsentinel.detector.schema import RecordBatch
from flowsentinel.detector.thresholds import OnlineThresholder

Position = tuple[str, int, int]  # (topic, partition, offset)


@dataclass(frozen=True)
class PromotionRule:
    """A shadow model replaces the live one when, over the records both scored since the shadow started:

    - it has scored at least ``min_records`` (its threshold is past warm-up, the rates are not noise);
    - the analysts judged at least ``min_verdicts`` of the live model's alerts on those records;
    - it flagged at least ``min_attack_kept`` of the alerts judged ``attack`` (it does not lose what the live
      model catches: recall on confirmed attacks at the live model's alert budget);
    - it flagged fewer of the alerts judged ``benign`` than the live model did (it learnt something), when
      there are any;
    - it flagged no more records than the live model (no higher alert rate on unverdicted traffic).
    """

    min_records: int = 20_000
    min_verdicts: int = 20
    min_attack_kept: float = 0.95


@dataclass
class ShadowStats:
    scored: int = 0
    live_alerted: int = 0
    shadow_alerted: int = 0
    # verdict -> [of the live alerts judged so, how many the shadow flagged too, how many judged]
    verdicts: dict[str, list[int]] = field(default_factory=lambda: {"attack": [0, 0], "benign": [0, 0]})

    def as_dict(self) -> dict[str, Any]:
        return {
            "scored": self.scored,
            "live_alerted": self.live_alerted,
            "shadow_alerted": self.shadow_alerted,
            "attack_kept": self.verdicts["attack"][0],
            "attack_verdicts": self.verdicts["attack"][1],
            "benign_flagged": self.verdicts["benign"][0],
            "benign_verdicts": self.verdicts["benign"][1],
        }


def promotion_decision(stats: ShadowStats, rule: PromotionRule) -> tuple[bool, str]:
    """Whether ``stats`` meet ``rule``, and why (or why not) in one line."""
    kept, attacks = stats.verdicts["attack"]
    flagged, benign = stats.verdicts["benign"]
    judged = attacks + benign
    figures = (
        f"over {stats.scored:,} records: {stats.shadow_alerted:,} alerted vs {stats.live_alerted:,} live; "
        f"confirmed attacks kept {kept}/{attacks}, confirmed false alarms still flagged {flagged}/{benign}"
    )
    if stats.scored < rule.min_records:
        return False, f"too few records yet ({stats.scored:,} < {rule.min_records:,})"
    if judged < rule.min_verdicts:
        return False, f"too few verdicts yet ({judged} < {rule.min_verdicts}); {figures}"
    if attacks and kept < rule.min_attack_kept * attacks:
        return False, f"loses confirmed attacks; {figures}"
    if benign and flagged >= benign:
        return False, f"drops no confirmed false alarm; {figures}"
    if stats.shadow_alerted > stats.live_alerted:
        return False, f"alerts more than the live model; {figures}"
    return True, f"meets the promotion rule; {figures}"


class Shadow:
    """The candidate's detector and its tally against the live model."""

    def __init__(
        self, model: TrainedModel, thresholder: OnlineThresholder, *, max_keys: int, remember: int = 100_000
    ) -> None:
        self.model = model
        self.detector = Detector(model, thresholder, max_keys=max_keys)
        self.stats = ShadowStats()
        self.remember = remember
        # live alert message id -> (whether the shadow flagged its record, its episode); episode -> alert ids
        self.flags: OrderedDict[str, tuple[bool, str]] = OrderedDict()
        self.episodes: dict[str, list[str]] = {}
        self._batch_flags: dict[Position, bool] = {}

    @property
    def version(self) -> str:
        return self.model.version

    def score(
        self, batch: RecordBatch, window_keys: list[Any], positions: list[Position], live_alerts: np.ndarray
    ) -> int:
        """Score the batch the live model just scored; returns how many records the shadow flagged."""
        v = self.detector.process_batch(batch, window_keys=window_keys)
        flagged = np.asarray(v.alerts, dtype=bool)
        self.stats.scored += len(batch)
        self.stats.live_alerted += int(np.count_nonzero(live_alerts))
        self.stats.shadow_alerted += int(np.count_nonzero(flagged))
        self._batch_flags = {positions[i]: bool(flagged[i]) for i in np.flatnonzero(live_alerts).tolist()}
        return int(np.count_nonzero(flagged))

    def note_events(self, events: list[dict[str, Any]]) -> None:
        """The live alert messages built from the batch last scored: remember whether the shadow flagged
        each one's record, for the verdicts to come."""
        for e in events:
            src = e.get("kafka") or {}
            pos = (src.get("topic"), src.get("partition"), src.get("offset"))
            if pos not in self._batch_flags or e["id"] in self.flags:
                continue
            self.flags[e["id"]] = (self._batch_flags[pos], e["episode_id"])
            self.episodes.setdefault(e["episode_id"], []).append(e["id"])
            while len(self.flags) > self.remember:
                old, (_, episode) = self.flags.popitem(last=False)
                self._forget(old, episode)
        self._batch_flags = {}

    def _forget(self, alert_id: str, episode: str) -> None:
        ids = self.episodes.get(episode, [])
        if alert_id in ids:
            ids.remove(alert_id)
        if not ids:
            self.episodes.pop(episode, None)

    def on_verdict(self, alert_id: str | None, episode_id: str | None, verdict: str) -> None:
        """An analyst's verdict on a live alert (or a whole episode): tallied once per alert this instance
        scored; verdicts on other instances' alerts, or on alerts judged before, change nothing."""
        ids = [alert_id] if alert_id else list(self.episodes.get(episode_id or "", []))
        tally = self.stats.verdicts[verdict]
        for i in ids:
            if i in self.flags:
                flagged, episode = self.flags.pop(i)
                self._forget(i, episode)
                tally[0] += int(flagged)
                tally[1] += 1
