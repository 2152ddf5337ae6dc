"""Online thresholders: the alert threshold follows the live score stream; nobody types a number.

Two thresholders share one protect-vs-adapt policy (:class:`AdaptPolicy`):

- :class:`SpotThresholder` — peaks-over-threshold extreme-value theory (SPOT, Siffer et al., KDD 2017):
  a generalised Pareto distribution is fitted (by maximum likelihood) to the excesses over a high
  quantile ``t``; the threshold is the score exceeded with probability ``q``. The peaks kept are bounded
  (``max_peaks``), so the tail estimate follows the stream.
- :class:`QuantileThresholder` — the ``1 - q`` quantile of a sliding window of recent scores.

**Protect.** Score first, then learn: a score above the threshold raises an alert and does *not* teach
the threshold: both estimators record it right-censored at the threshold in force ("at least this"), so
the tail keeps its true mass, yet an attack's size can neither pull the threshold up nor, by being left
out, make it ratchet down. SPOT counts censored alerts only up to the rate normal traffic produces them
(q per non-alert record); beyond that, as in a flood, alerts are ignored altogether.

**Adapt.** A sustained level shift of normal traffic must not alert forever. A two-sided CUSUM on the
log-score, standardised by the baseline, flags a level change; the thresholder then enters a *quarantine*
of ``policy.quarantine`` records, keeping every score and learning none. At its end the buffer
re-baselines the thresholder only if it looks like the old traffic moved, not like an attack:

1. the median log-score moved by at least ``min_shift`` baseline deviations (the change is real);
2. for an upward move, the median score is at most ``max_level`` × the threshold in force when the
   quarantine started (the typical record of the new level would not itself alert); and
3. once both are centred on their medians, the buffer's log-scores and the baseline's have the same
   shape: their Kolmogorov–Smirnov distance is at most ``max_shape_distance`` (a scaled copy of normal
   traffic, not normal traffic mixed with attack traffic); **or**, opt-in (``max_alert_share`` > 0) and
   for an upward shift only, at most ``max_alert_share`` × q of the buffer's records were above the
   threshold in force (real drift changes the shape too — measured on the KDD'99 10% file, the later
   normal traffic's median rose 5.2× and its 99th percentile 2.5× — while an attack mixed in at any real
   share puts far more records above the threshold). A shift accepted by this second test is fitted with
   its scores right-censored at ``max_rise`` × the threshold in force, so the threshold rises at most that
   much per shift and whatever scores above it stays visible; and it is undone (counted as rejected) if
   the fit would put the threshold *below* the one in force, so this rule never lowers it. The way back
   down is narrow: when a later downward shift is rejected by the tests above but has the level and shape
   of the baseline an opt-in rise replaced (the old traffic came back), that baseline and its estimator
   state are restored as they were, so the threshold returns only to one that was already in force.

Otherwise the quarantine is dropped and counted as a rejected shift; the threshold stays where it was.
Recovery from an accepted level shift therefore takes at most the CUSUM's detection delay plus
``quarantine`` records (contract-tested). A flood of records each far above the threshold never passes
rule 2; attack traffic interleaved with normal traffic fails rule 3.

The CUSUM is used rather than ``river.drift.ADWIN`` because its whole state is four numbers, so a
thresholder's state saves and restores exactly as JSON (ADWIN's state cannot be saved without pickle).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> th = SpotThresholder(q=1e-3)
>>> th.warm_up(rng.lognormal(size=5000))
>>> alerts, thresholds = th.update_many(np.array([1.0, 500.0]))
>>> alerts.tolist()
[False, True]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from flowsentinel.detector.errors import ConfigError

# a threshold is warmed up from at least this many scores of normal traffic (the model's calibration)
MIN_CALIBRATION_SCORES = 50

_EPS = 1e-12
_SHAPE_POINTS = 1_000
_CENSOR_BUDGET = 10.0
_MAX_PRIORS = 4  # baselines kept for the way back down after opt-in rises


def _centred_logs(scores: np.ndarray) -> tuple[np.ndarray, float]:
    """(log-scores minus their median, that median): what the shift watch compares."""
    logs = np.log(np.maximum(scores, _EPS))
    med = float(np.median(logs))
    return logs - med, med


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


@dataclass(frozen=True)
class AdaptPolicy:
    """When a shift of the score level re-baselines the threshold (see the module docstring)."""

    quarantine: int = 5_000
    max_level: float = 1.0
    max_shape_distance: float = 0.1
    min_shift: float = 0.5
    cusum_k: float = 0.25
    cusum_h: float = 30.0
    # Opt-in (0 = off, the default): an UPWARD shift of another shape is accepted if at most this many
    # times q of its records alerted, and then fitted censored at max_rise x the threshold in force (2x:
    # where severity "low" ends). Never downwards: a long stretch of low, narrow scores (a flood of
    # near-identical records) re-baselined the threshold to a tenth, and when normal traffic came back 75%
    # of it alerted and no later shift could undo it (measured on synthetic scores). Nor may an upward
    # shift LOWER the threshold (a narrow stretch just above the typical score did: 18% alerted after).
    # The one way back down: the baseline a rise replaced is restored when its traffic returns.
    # Not the default: see docs/detection-history.md.
    max_alert_share: float = 0.0
    max_rise: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.quarantine, int) or self.quarantine < 100:
            raise ConfigError(f"quarantine = {self.quarantine!r} must be an integer >= 100")
        for name in ("max_level", "max_shape_distance", "min_shift", "cusum_k", "cusum_h", "max_rise"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} = {value!r} must be a positive number")
        share = self.max_alert_share
        if not (isinstance(share, int | float) and math.isfinite(share) and share >= 0):
            raise ConfigError(f"max_alert_share = {share!r} must be a number >= 0 (0: shape rule only)")
        if self.max_rise < 1.0:
            raise ConfigError(f"max_rise = {self.max_rise!r} must be >= 1")


class OnlineThresholder(ABC):
    """Shared score-then-learn loop, shift watch and state handling. Subclasses supply the estimator."""

    kind: ClassVar[str]

    def __init__(self, q: float, policy: AdaptPolicy | None = None) -> None:
        if not (isinstance(q, float | int) and 0.0 < q < 0.5):
            raise ConfigError(f"risk q = {q!r} must be in (0, 0.5)")
        self.q = float(q)
        self.policy = policy or AdaptPolicy()
        self.warmed = False
        self.seen = 0
        self.alerts = 0
        self.rebaselines = 0
        self.rejected_shifts = 0
        # shift watch
        self._mu = 0.0
        self._sd = 1.0
        self._shape: list[float] = []  # sorted, median-centred baseline log-scores (a bounded sample)
        self._g_up = 0.0
        self._g_down = 0.0
        self._quarantine: list[float] | None = None
        self._q_direction = 0
        self._q_threshold = 0.0
        # baselines (estimator state and shift-watch baseline) that the opt-in rule's rises replaced,
        # newest last: the only way the threshold may come back down after such a rise
        self._priors: list[dict[str, Any]] = []

    # ---------------------------------------------------------------- estimator hooks
    @property
    @abstractmethod
    def threshold(self) -> float: ...

    @abstractmethod
    def _fit(self, scores: np.ndarray) -> None:
        """(Re)initialise the estimator from a batch of scores taken as normal."""

    @abstractmethod
    def _learn(self, score: float) -> None:
        """Learn one score that did not alert."""

    def _censor(self, score: float, threshold: float) -> None:  # noqa: B027 - optional hook
        """Record that a score alerted (default: ignore it entirely)."""

    @abstractmethod
    def _estimator_state(self) -> dict[str, Any]: ...

    @abstractmethod
    def _load_estimator_state(self, state: dict[str, Any]) -> None: ...

    @abstractmethod
    def _params(self) -> dict[str, Any]: ...

    # ---------------------------------------------------------------- public verbs
    def warm_up(self, scores: np.ndarray | list[float]) -> None:
        """Initialise from scores of normal traffic (the calibration scores stored in the artifact)."""
        arr = np.asarray(scores, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        if arr.size < MIN_CALIBRATION_SCORES:
            raise ConfigError(
                f"the model holds {arr.size} finite calibration score(s); a threshold needs at least "
                f"{MIN_CALIBRATION_SCORES}: retrain it on more normal records (train says how many)"
            )
        self._fit(arr)
        self._set_baseline(arr)
        self.warmed = True

    def update(self, score: float) -> bool:
        """Decide on one score (True = alert), then learn from it according to the policy."""
        if not self.warmed:
            raise ConfigError(f"{self.kind} thresholder used before warm_up()")
        score = float(score)
        threshold = self.threshold
        alert = score > threshold
        if alert:
            self.alerts += 1
        if self._quarantine is None:  # while a shift is under review, nothing is learned
            if alert:
                self._censor(score, threshold)
            else:
                self._learn(score)
        self.seen += 1
        self._watch(score, threshold)
        return alert

    def update_many(self, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sequential :meth:`update` over a batch. Returns (alerts, threshold each score was judged by)."""
        alerts: list[bool] = []
        thresholds: list[float] = []
        update = self.update
        for s in np.asarray(scores, dtype=np.float64).tolist():  # Python floats: no numpy scalar per score
            thresholds.append(self.threshold)
            alerts.append(update(s))
        return np.array(alerts, dtype=bool), np.array(thresholds, dtype=np.float64)

    @property
    def in_quarantine(self) -> bool:
        return self._quarantine is not None

    # ---------------------------------------------------------------- shift watch
    def _set_baseline(self, arr: np.ndarray) -> None:
        centred, med = _centred_logs(arr)
        mad = float(np.median(np.abs(centred))) * 1.4826
        self._mu = med
        self._sd = max(mad, 1e-3)
        sample = np.quantile(centred, np.linspace(0.0, 1.0, min(centred.size, _SHAPE_POINTS)))
        self._shape = [float(v) for v in sample]
        self._g_up = self._g_down = 0.0

    def _watch(self, score: float, threshold: float) -> None:
        pol = self.policy
        if self._quarantine is not None:
            self._quarantine.append(score)
            if len(self._quarantine) >= pol.quarantine:
                self._end_quarantine()
            return
        z = (math.log(_EPS if score < _EPS else score) - self._mu) / self._sd
        up = self._g_up + z - pol.cusum_k
        down = self._g_down - z - pol.cusum_k
        self._g_up = up if up > 0.0 else 0.0  # max(0.0, up), without the call: this runs once a record
        self._g_down = down if down > 0.0 else 0.0
        if self._g_up > pol.cusum_h or self._g_down > pol.cusum_h:
            self._q_direction = 1 if self._g_up > pol.cusum_h else -1
            self._q_threshold = threshold
            self._quarantine = []

    def _end_quarantine(self) -> None:
        assert self._quarantine is not None
        arr = np.asarray(self._quarantine)
        self._quarantine = None
        self._g_up = self._g_down = 0.0
        ceiling = self._accepted_ceiling(arr)
        if ceiling is None:
            if self._q_direction < 0 and self._priors and self._is_prior_traffic(arr, self._priors[-1]):
                self._restore(self._priors.pop())
                self.rebaselines += 1
                return
            self.rejected_shifts += 1
            return
        if math.isinf(ceiling):  # a scaled copy of the baseline (the shape rule)
            self._fit(arr)
        else:  # the opt-in rule: censored, and undone if it would lower the threshold
            before: dict[str, Any] = {"mu": self._mu, "sd": self._sd, "shape": list(self._shape),
                                      "estimator": self._estimator_state()}  # fmt: skip
            self._fit(np.minimum(arr, ceiling))
            if self.threshold < self._q_threshold:
                # an "upward" shift whose median rose but whose spread narrowed (a flood of near-identical
                # records) would pull it down, and the normal traffic that follows would alert for good
                # (contract-tested)
                self._load_estimator_state(before["estimator"])
                self.rejected_shifts += 1
                return
            self._priors = [*self._priors, before][-_MAX_PRIORS:]  # the way back down
        self._set_baseline(np.minimum(arr, ceiling))
        self.rebaselines += 1

    def _is_prior_traffic(self, arr: np.ndarray, prior: dict[str, Any]) -> bool:
        """Whether a downward shift is the traffic an opt-in rise replaced coming back: its level within
        ``min_shift`` deviations of that baseline's and its shape the same (the shape rule's test)."""
        centred, med = _centred_logs(arr)
        if abs(med - prior["mu"]) >= self.policy.min_shift * prior["sd"]:
            return False
        return self._same_shape(centred, prior["shape"])

    def _same_shape(self, centred: np.ndarray, shape: list[float]) -> bool:
        """The shape test: median-centred log-scores within ``max_shape_distance`` (KS) of a baseline's."""
        return ks_distance(centred, np.asarray(shape)) <= self.policy.max_shape_distance

    def _restore(self, prior: dict[str, Any]) -> None:
        """Go back to a baseline an opt-in rise replaced: its estimator state as it was, not a fit on the
        quarantined scores, so the threshold returns to one that was already in force."""
        self._load_estimator_state(prior["estimator"])
        self._mu, self._sd, self._shape = float(prior["mu"]), float(prior["sd"]), list(prior["shape"])
        self._g_up = self._g_down = 0.0

    def _accepted_ceiling(self, arr: np.ndarray) -> float | None:
        """None if the quarantined scores are rejected; else the value they are censored at before the
        re-baseline (infinite for a scaled copy of the baseline)."""
        pol = self.policy
        centred, med = _centred_logs(arr)
        if abs(med - self._mu) < pol.min_shift * self._sd:
            return None
        if self._q_direction > 0 and math.exp(med) > pol.max_level * self._q_threshold:
            return None
        if self._same_shape(centred, self._shape):
            return math.inf
        if (
            self._q_direction > 0  # never downwards: see AdaptPolicy.max_alert_share
            and pol.max_alert_share > 0
            and float(np.mean(arr > self._q_threshold)) <= pol.max_alert_share * self.q
        ):
            return pol.max_rise * self._q_threshold
        return None

    def describe(self) -> dict[str, Any]:
        """What an evaluation report shows of the threshold: its kind, q, the shift policy and what the
        policy did (re-baselines taken and shifts rejected)."""
        return {
            "kind": self.kind,
            "q": self.q,
            "policy": asdict(self.policy),
            "rebaselines": self.rebaselines,
            "rejected_shifts": self.rejected_shifts,
        }

    # ---------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Plain-JSON state; :meth:`load_state_dict` on a fresh instance continues bit for bit."""
        return {
            "kind": self.kind,
            "q": self.q,
            "params": self._params(),
            "policy": asdict(self.policy),
            "warmed": self.warmed,
            "seen": self.seen,
            "alerts": self.alerts,
            "rebaselines": self.rebaselines,
            "rejected_shifts": self.rejected_shifts,
            "watch": {
                "mu": self._mu,
                "sd": self._sd,
                "shape": self._shape,
                "g_up": self._g_up,
                "g_down": self._g_down,
                "quarantine": self._quarantine,
                "q_direction": self._q_direction,
                "q_threshold": self._q_threshold,
                "priors": self._priors,
            },
            "estimator": self._estimator_state(),
        }

    def load_state_dict(self, state: dict[str, Any], *, same_settings: bool = False) -> None:
        """Continue from ``state``, adopting its q and shift policy; with ``same_settings`` a state taken
        under another q or policy than this thresholder's is refused (ConfigError) and nothing changes, so
        a restart cannot quietly undo a changed setting."""
        if state.get("kind") != self.kind:
            raise ConfigError(f"threshold state is for {state.get('kind')!r}, not {self.kind!r}")
        try:
            q, policy = float(state["q"]), AdaptPolicy(**state["policy"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"threshold state is not valid: missing or bad {exc}") from None
        if same_settings and (q, policy) != (self.q, self.policy):
            raise ConfigError(
                f"threshold state was taken with q={q} and {policy}, not the configured q={self.q} and "
                f"{self.policy}"
            )
        try:
            self.q, self.policy = q, policy
            self.warmed = bool(state["warmed"])
            self.seen = int(state["seen"])
            self.alerts = int(state["alerts"])
            self.rebaselines = int(state["rebaselines"])
            self.rejected_shifts = int(state["rejected_shifts"])
            w = state["watch"]
            self._mu, self._sd = float(w["mu"]), float(w["sd"])
            self._shape = [float(v) for v in w["shape"]]
            self._g_up, self._g_down = float(w["g_up"]), float(w["g_down"])
            self._quarantine = None if w["quarantine"] is None else [float(v) for v in w["quarantine"]]
            self._q_direction, self._q_threshold = int(w["q_direction"]), float(w["q_threshold"])
            self._priors = [dict(p) for p in w.get("priors", [])]  # states saved before priors existed: none
            self._load_estimator_state(state["estimator"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"threshold state is not valid: missing or bad {exc}") from None


# ------------------------------------------------------------------------------------------------ SPOT
def fit_gpd(excesses: np.ndarray, censored: np.ndarray | None = None) -> tuple[float, float]:
    """Maximum-likelihood (gamma, sigma) of a generalised Pareto distribution for excesses >= 0.

    ``censored`` (bool, same length) marks right-censored excesses: known only to be at least that large
    (an alert recorded at the threshold in force). They enter the likelihood through the survival function
    rather than the density; treating them as exact values would shorten the tail, lower the threshold,
    let more scores alert and be censored lower still: a ratchet (on a stationary stream of log-normal
    scores, warmed on 20,000 of them, the threshold drifted down and the alert rate rose from 1.2% to 2.4%
    at q = 1% over 100,000 records; with the censored fit it stays at 1.0-1.3%).

    Uses the profile likelihood in theta = gamma / sigma (Grimshaw's reduction, extended to censoring):
    with n_u exact excesses, for a given theta the MLE of gamma is sum(log(1 + theta*y)) / n_u over all
    excesses, so a 1-D search over theta suffices; the exponential (gamma = 0) is the theta → 0 limit and
    is compared too.
    """
    y = np.asarray(excesses, dtype=np.float64)
    exact = np.ones(y.size, dtype=bool) if censored is None else ~np.asarray(censored, dtype=bool)
    n = int(exact.sum())
    total = float(y.sum())
    mean = total / n if n else 0.0
    if n < 5 or mean <= _EPS:
        return 0.0, max(mean, _EPS)
    ymax = float(y.max())
    thetas = np.concatenate([-np.geomspace(1e-4, 0.999, 40) / ymax, np.geomspace(1e-4, 1e3, 80) / mean])
    logs = np.log1p(np.outer(thetas, y))
    gammas = logs.sum(axis=1) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = -n * np.log(gammas / thetas) - n - logs[:, exact].sum(axis=1)
    ll[~np.isfinite(ll)] = -np.inf
    best = int(np.argmax(ll))
    ll_exp = -n * math.log(mean) - n
    if ll[best] <= ll_exp:
        return 0.0, mean
    gamma = float(gammas[best])
    sigma = gamma / float(thetas[best])
    return gamma, sigma


class SpotThresholder(OnlineThresholder):
    """SPOT: threshold z_q with P(score > z_q) = q from a GPD tail fit above the ``level`` quantile."""

    kind = "spot"

    def __init__(
        self,
        q: float = 1e-3,
        *,
        level: float | None = None,
        max_peaks: int = 2_000,
        refit_every: int = 16,
        policy: AdaptPolicy | None = None,
    ) -> None:
        super().__init__(q, policy)
        if level is None:  # leave ~5x the risk above the peak threshold, and at least 2%
            level = min(0.98, 1.0 - 5.0 * self.q)
        if not (0.5 <= level < 1.0):
            raise ConfigError(f"level = {level!r} must be in [0.5, 1)")
        if 1.0 - level <= self.q:
            raise ConfigError(f"level = {level!r} must leave more mass above it than the risk q = {q!r}")
        if max_peaks < 20:
            raise ConfigError(f"max_peaks = {max_peaks!r} must be >= 20")
        if refit_every < 1:
            raise ConfigError(f"refit_every = {refit_every!r} must be >= 1")
        self.level = level
        self.max_peaks = max_peaks
        self.refit_every = refit_every
        self._t = 0.0
        self._peaks: deque[float] = deque()
        self._peak_at: deque[float] = deque()  # observation index of each peak (for the window's n)
        self._peak_censored: deque[bool] = deque()  # an alert's peak: at least this excess (see fit_gpd)
        self._obs = 0.0
        self._gamma = 0.0
        self._sigma = 1.0
        self._z = math.inf
        self._since_fit = 0
        self._budget = _CENSOR_BUDGET

    @property
    def threshold(self) -> float:
        return self._z

    def _params(self) -> dict[str, Any]:
        return {"level": self.level, "max_peaks": self.max_peaks, "refit_every": self.refit_every}

    def _fit(self, scores: np.ndarray) -> None:
        n = scores.size
        self._t = float(np.quantile(scores, self.level))
        over = scores[scores > self._t] - self._t
        if over.size > self.max_peaks:
            over = over[-self.max_peaks :]
        k = over.size
        # spread the initial peaks evenly over the n observations that produced them
        self._peaks = deque(float(v) for v in over)
        self._peak_at = deque(-n + (i + 1) * n / max(k, 1) for i in range(k))
        self._peak_censored = deque(False for _ in range(k))
        self._obs = 0.0
        self._refit()

    def _window_n(self) -> float:
        if not self._peak_at:
            return max(self._obs, 1.0)
        # observations since the oldest kept peak, counting that peak's share of the gap before it
        span = self._obs - self._peak_at[0]
        return max(span * len(self._peaks) / max(len(self._peaks) - 1, 1), 1.0)

    def _refit(self) -> None:
        self._since_fit = 0
        k = len(self._peaks)
        if k == 0:
            self._z = self._t * 1.5 + _EPS
            return
        self._gamma, self._sigma = fit_gpd(
            np.fromiter(self._peaks, dtype=np.float64, count=k),
            np.fromiter(self._peak_censored, dtype=bool, count=k),
        )
        r = self.q * self._window_n() / k
        if r >= 1.0:
            z = self._t
        elif abs(self._gamma) < 1e-9:
            z = self._t - self._sigma * math.log(r)
        else:
            z = self._t + self._sigma / self._gamma * (r ** (-self._gamma) - 1.0)
        self._z = max(float(z), self._t)

    def _censor(self, score: float, threshold: float) -> None:
        # An alert counts as an observation and a peak right-censored at the threshold, so the tail keeps
        # its true mass and the threshold does not ratchet down; its real size teaches nothing. Only as
        # many alerts are counted as normal traffic itself would produce (a budget refilled by q per
        # non-alert record): during a flood the rest are ignored, so the flood cannot lift the tail.
        if self._budget >= 1.0:
            self._budget -= 1.0
            self._add(threshold, True)

    def _learn(self, score: float) -> None:
        self._budget = min(_CENSOR_BUDGET, self._budget + self.q)
        self._add(score)

    def _add(self, score: float, censored: bool = False) -> None:
        self._obs += 1.0
        if score > self._t:
            self._peaks.append(score - self._t)
            self._peak_at.append(self._obs)
            self._peak_censored.append(censored)
            if len(self._peaks) > self.max_peaks:
                self._peaks.popleft()
                self._peak_at.popleft()
                self._peak_censored.popleft()
            self._since_fit += 1
            if self._since_fit >= self.refit_every:
                self._refit()

    def _estimator_state(self) -> dict[str, Any]:
        return {
            "t": self._t,
            "peaks": list(self._peaks),
            "peak_at": list(self._peak_at),
            "peak_censored": [i for i, c in enumerate(self._peak_censored) if c],
            "obs": self._obs,
            "gamma": self._gamma,
            "sigma": self._sigma,
            "z": self._z,
            "since_fit": self._since_fit,
            "budget": self._budget,
        }

    def _load_estimator_state(self, state: dict[str, Any]) -> None:
        self._t = float(state["t"])
        self._peaks = deque(float(v) for v in state["peaks"])
        self._peak_at = deque(float(v) for v in state["peak_at"])
        if len(self._peaks) != len(self._peak_at):
            raise ValueError("'peaks' and 'peak_at' differ in length")
        censored = {int(i) for i in state.get("peak_censored", [])}  # states saved before it: none
        if censored and not (min(censored) >= 0 and max(censored) < len(self._peaks)):
            raise ValueError("'peak_censored' holds an index outside 'peaks'")
        self._peak_censored = deque(i in censored for i in range(len(self._peaks)))
        self._obs = float(state["obs"])
        self._gamma, self._sigma, self._z = float(state["gamma"]), float(state["sigma"]), float(state["z"])
        self._since_fit = int(state["since_fit"])
        self._budget = float(state["budget"])


# ------------------------------------------------------------------------------------ sliding quantile
class QuantileThresholder(OnlineThresholder):
    """The ``1 - q`` quantile of the last ``window`` scores, recomputed every ``refresh`` scores."""

    kind = "quantile"

    def __init__(
        self, q: float = 1e-3, *, window: int = 20_000, refresh: int = 64, policy: AdaptPolicy | None = None
    ) -> None:
        super().__init__(q, policy)
        if window < 100:
            raise ConfigError(f"window = {window!r} must be >= 100")
        if window * q < 5:
            raise ConfigError(f"window = {window} is too short for q = {q}: fewer than 5 scores above it")
        if refresh < 1:
            raise ConfigError(f"refresh = {refresh!r} must be >= 1")
        self.window = window
        self.refresh = refresh
        self._buf: deque[float] = deque(maxlen=window)
        self._value = math.inf
        self._pending = 0

    @property
    def threshold(self) -> float:
        return self._value

    def _params(self) -> dict[str, Any]:
        return {"window": self.window, "refresh": self.refresh}

    def _recompute(self) -> None:
        self._pending = 0
        self._value = float(np.quantile(np.fromiter(self._buf, dtype=np.float64), 1.0 - self.q))

    def _fit(self, scores: np.ndarray) -> None:
        self._buf = deque((float(v) for v in scores[-self.window :]), maxlen=self.window)
        self._recompute()

    def _push(self, value: float) -> None:
        self._buf.append(value)
        self._pending += 1
        if self._pending >= self.refresh:
            self._recompute()

    def _learn(self, score: float) -> None:
        self._push(score)

    def _censor(self, score: float, threshold: float) -> None:
        self._push(threshold)  # right-censored: "at least the threshold", never its real size

    def _estimator_state(self) -> dict[str, Any]:
        return {"buffer": list(self._buf), "value": self._value, "pending": self._pending}

    def _load_estimator_state(self, state: dict[str, Any]) -> None:
        self._buf = deque((float(v) for v in state["buffer"]), maxlen=self.window)
        self._value = float(state["value"])
        self._pending = int(state["pending"])


THRESHOLDERS: dict[str, type[OnlineThresholder]] = {"spot": SpotThresholder, "quantile": QuantileThresholder}


def make_thresholder(kind: str, q: float, policy: AdaptPolicy | None = None) -> OnlineThresholder:
    try:
        cls = THRESHOLDERS[kind]
    except KeyError:
        raise ConfigError(f"unknown thresholder {kind!r}: use one of {', '.join(THRESHOLDERS)}") from None
    return cls(q, policy=policy)
