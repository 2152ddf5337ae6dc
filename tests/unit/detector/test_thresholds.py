"""Contract suite every online thresholder must pass (like river's check_estimator)."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from flowsentinel.detector.errors import ConfigError
from flowsentinel.detector.thresholds import (
    AdaptPolicy,
    QuantileThresholder,
    SpotThresholder,
    fit_gpd,
    ks_distance,
    make_thresholder,
)

Q = 5e-3
POLICY = AdaptPolicy(quarantine=3_000)
SHARE_POLICY = AdaptPolicy(quarantine=3_000, max_alert_share=5.0)  # the opt-in rule for upward drift
# documented recovery bound: CUSUM detection delay (a few hundred records for a shift of ~1 sd) + quarantine
RECOVERY_BOUND = POLICY.quarantine + 1_000


def normal_scores(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    """Reconstruction-error-like scores: log-normal (heavy right tail)."""
    return scale * rng.lognormal(mean=-6.0, sigma=0.8, size=n)


def make(kind: str):
    return make_thresholder(kind, Q, POLICY)


KINDS = ["spot", "quantile"]


@pytest.fixture(params=KINDS)
def warmed(request):
    rng = np.random.default_rng(42)
    th = make(request.param)
    th.warm_up(normal_scores(rng, 20_000))
    return th, rng


def test_stationary_stream_alert_rate_within_2x_of_q(warmed):
    th, rng = warmed
    alerts, _ = th.update_many(normal_scores(rng, 100_000))
    rate = alerts.mean()
    assert Q / 2 <= rate <= 2 * Q, f"{th.kind}: alert rate {rate:.4f} for q={Q}"
    assert th.rebaselines == 0


def test_level_shift_of_normal_traffic_recovers_within_the_bound(warmed):
    th, rng = warmed
    th.update_many(normal_scores(rng, 10_000))
    shifted = normal_scores(rng, 40_000, scale=2.0)
    alerts, _ = th.update_many(shifted)
    early = alerts[:1000].mean()
    late = alerts[RECOVERY_BOUND:].mean()
    assert early >= 5 * Q, "the shift itself should be visible at first"
    assert late <= 2 * Q, f"{th.kind}: still alerting at {late:.4f} after {RECOVERY_BOUND} records"
    assert th.rebaselines >= 1


def test_level_drop_of_normal_traffic_rebaselines_too(warmed):
    th, rng = warmed
    before = th.threshold
    th.update_many(normal_scores(rng, 30_000, scale=0.3))
    assert th.rebaselines >= 1 and th.threshold < 0.6 * before


def test_long_flood_far_above_threshold_stays_visible(warmed):
    th, rng = warmed
    th.update_many(normal_scores(rng, 10_000))
    before = th.threshold
    flood = before * rng.uniform(3.0, 30.0, size=30_000)  # 10x the quarantine
    alerts, _ = th.update_many(flood)
    assert alerts.mean() >= 0.99, f"{th.kind}: flood recall {alerts.mean():.3f}"
    assert th.threshold <= 1.2 * before
    assert th.rebaselines == 0 and th.rejected_shifts >= 1
    after, _ = th.update_many(normal_scores(rng, 20_000))
    assert after.mean() <= 2 * Q


def test_attack_interleaved_with_normal_does_not_rebaseline(warmed):
    """Half the traffic is attack whose scores straddle the threshold (median just under it)."""
    th, rng = warmed
    th.update_many(normal_scores(rng, 10_000))
    before = th.threshold
    n = 30_000
    attack = rng.random(n) < 0.5
    stream = np.where(attack, before * rng.lognormal(0.3, 0.6, size=n), normal_scores(rng, n))
    alerts, _ = th.update_many(stream)
    recall = alerts[attack].mean()
    frozen_recall = (stream[attack] > before).mean()  # what the threshold before the attack would catch
    assert th.rebaselines == 0
    assert recall >= 0.9 * frozen_recall, f"{th.kind}: recall {recall:.3f} vs {frozen_recall:.3f} frozen"


def drifted_scores(rng: np.random.Generator, n: int, mean: float = -4.9) -> np.ndarray:
    """Normal traffic that drifted without keeping its shape (as measured on the KDD'99 10% file): the
    median rises ~3x (1.4 baseline deviations), the tail less (the 1 - Q quantile ~1.2x), the log-scores
    narrow (KS distance ~0.13 once centred). About 3 x Q of it is above the old threshold."""
    return rng.lognormal(mean=mean, sigma=0.45, size=n)


def with_policy(th, policy: AdaptPolicy):
    """A thresholder in ``th``'s exact state, under another shift policy."""
    other = make_thresholder(th.kind, Q, policy)
    other.load_state_dict({**th.state_dict(), "policy": asdict(policy)})
    return other


def test_by_default_a_drift_of_another_shape_is_not_rebaselined(warmed):
    th, rng = warmed
    alerts, _ = th.update_many(drifted_scores(rng, 40_000))
    assert th.rebaselines == 0 and th.rejected_shifts >= 1
    assert alerts[RECOVERY_BOUND:].mean() > 2 * Q


def test_opt_in_rule_rebaselines_an_upward_drift_of_another_shape(warmed):
    th, rng = warmed
    th.update_many(normal_scores(rng, 10_000))
    th = with_policy(th, SHARE_POLICY)
    before = th.threshold
    alerts, _ = th.update_many(drifted_scores(rng, 40_000))
    assert alerts[:1000].mean() > 2 * Q, "the drift should be visible at first"
    late = alerts[RECOVERY_BOUND:].mean()
    assert late <= 2 * Q, f"{th.kind}: still alerting at {late:.4f} after {RECOVERY_BOUND} records"
    assert th.rebaselines >= 1 and before < th.threshold <= SHARE_POLICY.max_rise * before


def test_opt_in_rule_never_rebaselines_downwards(warmed):
    """A long stretch of low, narrow scores (a flood of near-identical records) must not pull the threshold
    down: applied downwards, the rule re-baselined to a tenth of the threshold and, when normal traffic
    came back, 75% of it alerted with no later shift able to undo it."""
    th, rng = warmed
    th.update_many(normal_scores(rng, 10_000))
    th = with_policy(th, SHARE_POLICY)
    th.update_many(rng.lognormal(mean=-7.2, sigma=0.3, size=20_000))
    alerts, _ = th.update_many(normal_scores(rng, 40_000))
    assert th.rebaselines == 0
    assert alerts.mean() <= 2 * Q, (
        f"{th.kind}: {alerts.mean():.3f} of normal traffic alerts after the stretch"
    )


def test_opt_in_rule_never_lowers_the_threshold_on_an_upward_shift(warmed):
    """The same trap from above: a stretch whose median is a little HIGHER than normal traffic's but whose
    spread is far narrower (a flood of near-identical records scoring just above the typical record) is an
    upward shift that puts nothing above the threshold. Fitted on it, the threshold fell to about a quarter,
    and returning normal traffic alerted at ~18%, with no shift able to undo it. An upward shift may raise
    the threshold (at most max_rise x), never lower it."""
    th, rng = warmed
    th.update_many(normal_scores(rng, 10_000))
    th = with_policy(th, SHARE_POLICY)
    before = th.threshold
    th.update_many(rng.lognormal(mean=-5.4, sigma=0.05, size=20_000))
    assert th.threshold >= before
    alerts, _ = th.update_many(normal_scores(rng, 40_000))
    assert alerts.mean() <= 2 * Q, (
        f"{th.kind}: {alerts.mean():.3f} of normal traffic alerts after the stretch"
    )


def test_attack_during_a_drift_above_the_rise_cap_stays_visible(warmed):
    """A sparse attack (1.25% of records, 3-30x the threshold) rides on a milder drift, and the two
    together stay within the opt-in rule's alert share: the re-baseline may absorb the drift, never the
    attack. Fitted uncensored, the quantile thresholder's new threshold would land inside the attack."""
    th, rng = warmed
    th.update_many(normal_scores(rng, 10_000))
    th = with_policy(th, SHARE_POLICY)
    before = th.threshold
    n = 40_000
    attack = rng.random(n) < 0.0125
    stream = np.where(attack, before * rng.uniform(3.0, 30.0, size=n), drifted_scores(rng, n, mean=-5.0))
    alerts, _ = th.update_many(stream)
    assert th.rebaselines >= 1
    assert alerts[attack].mean() >= 0.99, f"{th.kind}: attack recall {alerts[attack].mean():.3f}"
    assert th.threshold <= SHARE_POLICY.max_rise * before


def test_state_round_trips_exactly_through_json(warmed):
    th, rng = warmed
    th.update_many(normal_scores(rng, 5_000))
    th.update_many(normal_scores(rng, 2_000, scale=3.0))  # leave it mid-quarantine
    blob = json.dumps(th.state_dict())
    clone = make(th.kind)
    clone.load_state_dict(json.loads(blob))
    assert clone.state_dict() == th.state_dict()
    more = np.concatenate([normal_scores(rng, 3_000, scale=3.0), normal_scores(rng, 3_000)])
    a1, t1 = th.update_many(more)
    a2, t2 = clone.update_many(more)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(t1, t2)
    assert clone.state_dict() == th.state_dict()


def test_state_under_other_settings_is_refused_only_when_asked(warmed):
    th, rng = warmed
    th.update_many(normal_scores(rng, 2_000))
    state = th.state_dict()
    for other in (make_thresholder(th.kind, 2 * Q, POLICY), make_thresholder(th.kind, Q, SHARE_POLICY)):
        other.warm_up(normal_scores(rng, 1_000))
        before = other.state_dict()
        with pytest.raises(ConfigError, match="taken with q="):
            other.load_state_dict(state, same_settings=True)
        assert other.state_dict() == before  # refused before anything changed
        other.load_state_dict(state)  # without the flag the state's q and policy are adopted
        assert (other.q, other.policy) == (th.q, th.policy)
    same = make(th.kind)
    same.load_state_dict(state, same_settings=True)
    assert same.state_dict() == state


def test_warm_start_means_no_cold_start_alert_storm(warmed):
    th, rng = warmed
    alerts, _ = th.update_many(normal_scores(rng, 1_000))
    assert alerts.sum() <= 15


def test_state_for_another_kind_is_refused():
    spot = SpotThresholder(Q)
    spot.warm_up(normal_scores(np.random.default_rng(0), 1000))
    with pytest.raises(ConfigError, match="'spot', not 'quantile'"):
        QuantileThresholder(Q).load_state_dict(spot.state_dict())


def test_use_before_warm_up_and_bad_parameters_are_named():
    with pytest.raises(ConfigError, match="before warm_up"):
        SpotThresholder(Q).update(1.0)
    with pytest.raises(ConfigError, match="risk q = 0.7"):
        SpotThresholder(0.7)
    with pytest.raises(ConfigError, match="quarantine = 5"):
        AdaptPolicy(quarantine=5)
    with pytest.raises(ConfigError, match="max_rise = 0.5"):
        AdaptPolicy(max_rise=0.5)
    with pytest.raises(ConfigError, match="max_alert_share = -1"):
        AdaptPolicy(max_alert_share=-1)
    with pytest.raises(ConfigError, match="unknown thresholder 'evt'"):
        make_thresholder("evt", Q)
    with pytest.raises(ConfigError, match="at least 50"):
        SpotThresholder(Q).warm_up([1.0, 2.0])


@pytest.mark.parametrize(("gamma", "sigma"), [(0.2, 1.0), (0.0, 2.0), (-0.2, 1.0)])
def test_gpd_fit_recovers_known_parameters(gamma, sigma):
    rng = np.random.default_rng(7)
    u = rng.random(20_000)
    y = -sigma * np.log(u) if gamma == 0 else sigma / gamma * (u ** (-gamma) - 1)
    g, s = fit_gpd(y)
    assert g == pytest.approx(gamma, abs=0.05)
    assert s == pytest.approx(sigma, rel=0.1)


@pytest.mark.parametrize(("gamma", "sigma"), [(0.2, 1.0), (0.0, 2.0), (-0.2, 1.0)])
def test_gpd_fit_with_censored_excesses_recovers_known_parameters(gamma, sigma):
    """Excesses above a cut known only as "at least the cut" (alerts recorded at the threshold): the
    censored fit recovers the tail; taking them as exact values shortens it (the ratchet fit_gpd names)."""
    rng = np.random.default_rng(7)
    u = rng.random(20_000)
    y = -sigma * np.log(u) if gamma == 0 else sigma / gamma * (u ** (-gamma) - 1)
    cut = float(np.quantile(y, 0.9))
    censored = y > cut
    y = np.minimum(y, cut)
    g, s = fit_gpd(y, censored)
    assert g == pytest.approx(gamma, abs=0.05)
    assert s == pytest.approx(sigma, rel=0.1)
    naive_g, _ = fit_gpd(y)
    assert naive_g < gamma - 0.1


def test_spot_threshold_does_not_ratchet_down_on_a_stationary_stream():
    """The alerts a stationary stream raises are censored at the threshold; were they fitted as exact
    excesses, the threshold would fall a little with each refit and the alert rate climb (1.2% to 2.4% at
    q = 1% over 100,000 records before the censored fit)."""
    rng = np.random.default_rng(0)
    th = SpotThresholder(0.01)
    th.warm_up(rng.lognormal(size=20_000))
    start = th.threshold
    alerts, _ = th.update_many(rng.lognormal(size=100_000))
    assert alerts[-20_000:].mean() <= 0.015
    assert th.threshold > 0.9 * start


def test_ks_distance():
    a = np.arange(100.0)
    assert ks_distance(a, a) == 0.0
    assert ks_distance(a, a + 1000) == 1.0


def test_opt_in_rule_goes_back_down_when_the_old_traffic_returns(warmed):
    """After an opt-in rise, normal traffic of the old level and shape comes back: a downward shift of
    another shape than the raised baseline's, which the rule itself may never accept. Without a way back
    the raised threshold would stay, hiding anything that scores between the old and the raised one; the
    baseline the rise replaced is restored instead."""
    th, rng = warmed
    th.update_many(normal_scores(rng, 10_000))
    th = with_policy(th, SHARE_POLICY)
    before = th.threshold
    th.update_many(drifted_scores(rng, 40_000))
    raised = th.threshold
    assert raised > 1.1 * before and th.rebaselines == 1
    th.update_many(normal_scores(rng, RECOVERY_BOUND))
    assert th.rebaselines == 2, f"{th.kind}: the old traffic's return was not taken"
    assert abs(th.threshold - before) <= 0.02 * before, f"{th.kind}: {th.threshold:.4g} vs {before:.4g}"
    # a low-severity attack between the two thresholds is visible again; normal traffic alerts at about q
    attack = rng.uniform(1.04, 1.1, size=400) * before
    mixed = np.concatenate([normal_scores(rng, 39_600), attack])
    order = rng.permutation(mixed.size)
    alerts, _ = th.update_many(mixed[order])
    is_attack = order >= 39_600
    assert alerts[is_attack].mean() >= 0.9 and alerts[~is_attack].mean() <= 2 * Q
    restored = make_thresholder(th.kind, Q, SHARE_POLICY)  # the way back survives a restart
    restored.load_state_dict(json.loads(json.dumps(th.state_dict())))
    assert restored.state_dict() == th.state_dict()


def test_a_return_to_other_traffic_than_before_the_rise_is_not_taken(warmed):
    """The way back down goes only to the replaced baseline: low, narrow scores after a rise (the flood of
    the never-downwards trap) are not the old traffic, so the threshold stays raised."""
    th, rng = warmed
    th.update_many(normal_scores(rng, 10_000))
    th = with_policy(th, SHARE_POLICY)
    th.update_many(drifted_scores(rng, 40_000))
    raised, rebaselines = th.threshold, th.rebaselines
    th.update_many(rng.lognormal(mean=-7.2, sigma=0.3, size=20_000))
    assert th.rebaselines == rebaselines and th.threshold >= 0.9 * raised
