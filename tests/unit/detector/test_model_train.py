from __future__ import annotations

import numpy as np
import pytest
import torch

from flowsentinel.detector.errors import ConfigError
from flowsentinel.detector.model import LSTMAutoencoder, ModelConfig
from flowsentinel.detector.pipeline import SCORINGS, Detector, field_scales, score_windows
from flowsentinel.detector.train import TrainConfig, train
from flowsentinel.detector.windows import gather_windows, window_indices
from tests.support import toy_batch


def test_validation_loss_falls(tiny_model):
    tr = tiny_model.training
    assert tr["best_val_loss"] < 0.2 * tr["initial_val_loss"]
    assert len(tr["history"]) == tr["epochs_run"] and tr["history"][-1]["member"] == 0
    assert len(tiny_model.calibration) == tr["val_records"]


def test_injected_anomalies_outscore_normal_records(tiny_model):
    from flowsentinel.detector.metrics import auroc

    batch = toy_batch(2000, seed=11, attack_rate=0.1)
    det = Detector(tiny_model)
    scores, _, _ = det.score_many(batch)
    y = ~batch.is_normal
    assert auroc(y, scores) > 0.99
    assert np.median(scores[y]) > 10 * np.median(scores[~y])


def test_same_seed_same_weights_and_different_seed_differs():
    batch = toy_batch(600, seed=2)
    cfg = TrainConfig(window=4, hidden=8, latent=4, epochs=2, batch_size=64, seed=5)
    a = train(batch, cfg, progress=False)
    b = train(batch, cfg, progress=False)
    c = train(
        batch, TrainConfig(window=4, hidden=8, latent=4, epochs=2, batch_size=64, seed=6), progress=False
    )
    for k, v in a.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k]), k
    assert any(not torch.equal(v, c.net.state_dict()[k]) for k, v in a.net.state_dict().items())
    assert a.calibration == b.calibration


def test_attack_neighbours_do_not_make_a_normal_record_look_anomalous(tiny_model):
    """The same normal record scored after normal context and after a burst of attack records."""
    normal = toy_batch(400, seed=21)
    attacks = toy_batch(400, seed=22, attack_rate=1.0)
    x_norm, _ = tiny_model.encoder.transform(normal)
    x_att, _ = tiny_model.encoder.transform(attacks)
    w = tiny_model.config.window
    clean_ctx = np.stack([x_norm[i : i + w] for i in range(300)])
    dirty_ctx = clean_ctx.copy()
    dirty_ctx[:, :-1] = np.stack([x_att[i : i + w - 1] for i in range(300)])
    mask = np.ones((300, w), dtype=np.float32)
    groups = tiny_model.encoder.groups
    clean, _ = score_windows(tiny_model.net, clean_ctx, mask, groups)
    dirty, _ = score_windows(tiny_model.net, dirty_ctx, mask, groups)
    threshold = np.quantile(tiny_model.calibration, 0.99)
    assert np.median(dirty) < 3 * np.median(clean) + 1e-9
    assert (dirty > threshold).mean() <= 0.03  # a normal record next to attacks stays under the threshold


def test_time_order_and_shuffled_order_scores_stay_close(tiny_model):
    """Attacks come in bursts per host (time order); scoring the same records shuffled changes little."""
    rng = np.random.default_rng(5)
    batch = toy_batch(3000, seed=31, attack_rate=0.0)
    burst = toy_batch(600, seed=32, attack_rate=1.0)
    from flowsentinel.detector.schema import RecordBatch

    burst.keys[:] = batch.keys[:600]  # the attacked hosts are the normal ones
    timeline = RecordBatch.concat([batch.take(np.arange(1500)), burst, batch.take(np.arange(1500, 3000))])
    perm = rng.permutation(len(timeline))
    time_scores, _, _ = Detector(tiny_model).score_many(timeline)
    shuf_scores = np.empty(len(timeline))
    shuf_scores[perm] = Detector(tiny_model).score_many(timeline.take(perm))[0]
    normal = timeline.is_normal
    threshold = np.quantile(tiny_model.calibration, 0.99)
    fp_time = (time_scores[normal] > threshold).mean()
    fp_shuf = (shuf_scores[normal] > threshold).mean()
    assert abs(fp_time - fp_shuf) <= 0.01, (fp_time, fp_shuf)
    rel = np.abs(np.log(time_scores[normal] + 1e-9) - np.log(shuf_scores[normal] + 1e-9))
    assert np.median(rel) < np.log(1.5)


def test_every_record_gets_a_score_including_a_new_keys_first():
    cfg = ModelConfig(n_features=3, window=4, hidden=8, latent=2)
    net = LSTMAutoencoder(cfg)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    windows, mask = gather_windows(x, window_indices(["a", "b", "c", "d", "e"], 4))
    scores, field_err = score_windows(net, windows, mask, [("f0", 0, 1), ("f1", 1, 3)])
    assert scores.shape == (5,) and np.isfinite(scores).all()
    np.testing.assert_allclose(field_err.sum(axis=1) / 3, scores)
    scale = np.array([0.5, 2.0])
    scaled, scaled_err = score_windows(net, windows, mask, [("f0", 0, 1), ("f1", 1, 3)], field_scale=scale)
    np.testing.assert_allclose(scaled_err, field_err / scale)
    np.testing.assert_allclose(scaled, (field_err / scale).mean(axis=1))


def test_field_scales_are_rms_with_a_floor_for_fields_rebuilt_perfectly():
    err = np.array([[1.0, 0.0, 4.0], [3.0, 0.0, 4.0]])
    scale = field_scales(err)
    np.testing.assert_allclose(scale[[0, 2]], [np.sqrt(5.0), 4.0])
    assert scale[1] == pytest.approx(np.sqrt(5.0) * 1e-2)  # floored at 1% of the median field's


@pytest.mark.parametrize("scoring", ["mse", "field-scaled"])
def test_calibration_scores_are_on_the_scale_the_detector_scores(scoring):
    batch = toy_batch(1200, seed=2, attack_rate=0.0)
    model = train(
        batch, TrainConfig(window=4, hidden=8, latent=4, epochs=2, seed=3, scoring=scoring), progress=False
    )
    assert (model.field_scale is not None) == (scoring == "field-scaled")
    scores = Detector(model).process_batch(toy_batch(2000, seed=3, attack_rate=0.0)).scores
    ratio = np.median(scores) / np.median(model.calibration)
    assert 0.5 < ratio < 2.0, ratio


def test_cli_scoring_choices_are_the_detectors():
    from flowsentinel.cli import build_parser

    action = next(a for a in build_parser()._subparsers._group_actions[0].choices["train"]._actions
                  if a.dest == "scoring")  # fmt: skip
    assert tuple(action.choices) == SCORINGS


def test_cli_train_help_states_the_training_defaults():
    import re

    from flowsentinel.cli import build_parser

    actions = build_parser()._subparsers._group_actions[0].choices["train"]._actions
    stated = {
        a.dest: m.group(1) for a in actions if a.help and (m := re.search(r"\(default (\S+)\)", a.help))
    }
    assert "hidden" in stated  # the --help text is written by hand: it must follow TrainConfig
    for dest, text in stated.items():
        default = getattr(TrainConfig, dest)
        assert text == ({True: "on", False: "off"}[default] if isinstance(default, bool) else str(default)), (
            dest
        )


def test_readme_states_the_training_defaults():
    """docs/usage.md's list of ``train`` options gives each default by hand, like ``--help``; it said
    ``--hidden`` (32) two default changes after 32 stopped being the default."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[3] / "docs" / "usage.md").read_text()
    para = text[text.index("Options: `--window`") :]
    para = para[: para.index("\n\n")]
    stated = dict(re.findall(r"`--([\w-]+)` \(([^)]*)\)", para))
    checked = 0
    for option, words in stated.items():
        default = getattr(TrainConfig, option.replace("-", "_"), None)
        if default is None:
            continue
        assert str(default) in re.findall(r"[\w.]+", words), (option, words, default)
        checked += 1
    assert checked >= 10, stated


def test_top_features_explain_the_score(tiny_model):
    batch = toy_batch(200, seed=41, attack_rate=0.5)
    v = Detector(tiny_model).process_batch(batch)
    i = int(np.argmax(v.scores))
    top = v.top_features(i)
    assert len(top) == 3 and top[0][1] >= top[1][1] >= top[2][1]
    assert sum(share for _, share in v.top_features(i, k=10)) == pytest.approx(1.0)
    assert {name for name, _ in top} <= set(v.field_names)


def test_training_config_errors_name_the_value():
    with pytest.raises(ConfigError, match="window = 0"):
        TrainConfig(window=0)
    with pytest.raises(ConfigError, match="seed = -1 must be a non-negative integer"):
        TrainConfig(seed=-1)
    with pytest.raises(ConfigError, match="scoring = 'l1'"):
        TrainConfig(scoring="l1")
    with pytest.raises(ConfigError, match="val_fraction = 0.9"):
        TrainConfig(val_fraction=0.9)
    with pytest.raises(ConfigError, match="latent = 99"):
        TrainConfig(latent=99, hidden=8)
    with pytest.raises(ConfigError, match="at least 10 normal records"):
        train(toy_batch(5), TrainConfig(), progress=False)


def test_padded_inference_batches_score_exactly_like_unpadded(tiny_model):
    """Inference pads chunks to power-of-two sizes (bounded kernel-plan memory); padding must not leak
    into any record's score."""
    batch = toy_batch(300, seed=51, attack_rate=0.1)
    x, _ = tiny_model.encoder.transform(batch)
    windows, mask = gather_windows(x, window_indices(batch.keys, tiny_model.config.window))
    groups = tiny_model.encoder.groups
    whole, _ = score_windows(
        tiny_model.net, windows, mask, groups, batch_size=1024
    )  # one chunk padded to 512
    small, _ = score_windows(tiny_model.net, windows, mask, groups, batch_size=37)  # many odd chunks
    one_by_one = np.concatenate([score_windows(tiny_model.net, windows[i : i + 1], mask[i : i + 1], groups)[0]
                                 for i in range(0, 300, 29)])  # fmt: skip
    np.testing.assert_allclose(whole, small, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(whole[::29], one_by_one, rtol=1e-5, atol=1e-9)


def test_the_experimental_record_path_trains_and_round_trips(tmp_path):
    from flowsentinel.detector.artifact import load_artifact, save_artifact

    batch = toy_batch(600, seed=71)
    model = train(
        batch, TrainConfig(window=4, hidden=8, latent=4, epochs=2, record_path=True), progress=False
    )
    assert model.config.record_path and model.net.members[0].record is not None
    save_artifact(model, tmp_path / "m")
    loaded = load_artifact(tmp_path / "m")
    assert loaded.config.record_path
    a = Detector(model).score_many(batch)[0]
    b = Detector(loaded).score_many(batch)[0]
    np.testing.assert_array_equal(a, b)


def test_an_ensemble_scores_the_mean_of_its_members_errors(tmp_path):
    from flowsentinel.detector.artifact import load_artifact, save_artifact

    batch = toy_batch(600, seed=81)
    model = train(batch, TrainConfig(hidden=8, latent=4, epochs=3, members=3), progress=False)
    assert model.config.members == 3 and len(model.net.members) == 3
    assert model.training["members"] == 3 and len(model.training["best_epoch"]) == 3
    first = model.net.members[0].state_dict()
    for other in model.net.members[1:]:  # each member has its own seed
        assert any(not torch.equal(v, other.state_dict()[k]) for k, v in first.items())
    x, _ = model.encoder.transform(batch)
    windows, mask = gather_windows(x, window_indices(batch.keys, 1))
    groups = model.encoder.groups
    scores, field_err = score_windows(model.net, windows, mask, groups)
    each = [score_windows(m, windows, mask, groups)[0] for m in model.net.members]
    np.testing.assert_allclose(scores, np.mean(each, axis=0), rtol=1e-5)
    np.testing.assert_allclose(scores, field_err.sum(axis=1) / model.encoder.width, rtol=1e-12)
    save_artifact(model, tmp_path / "m")
    loaded = load_artifact(tmp_path / "m")
    np.testing.assert_array_equal(Detector(loaded).score_many(batch)[0], Detector(model).score_many(batch)[0])


def test_member_zero_of_an_ensemble_is_the_one_member_model():
    batch = toy_batch(600, seed=82)
    cfg = dict(hidden=8, latent=4, epochs=2, seed=4)
    one = train(batch, TrainConfig(members=1, **cfg), progress=False)
    three = train(batch, TrainConfig(members=3, **cfg), progress=False)
    for k, v in one.net.members[0].state_dict().items():
        assert torch.equal(v, three.net.members[0].state_dict()[k]), k


def test_members_must_be_a_positive_integer():
    with pytest.raises(ConfigError, match="members = 0 must be a positive integer"):
        TrainConfig(members=0)


def test_val_split_last_holds_out_and_calibrates_on_the_most_recent_records():
    batch = toy_batch(600, seed=4, attack_rate=0.0)
    cfg = dict(hidden=8, latent=4, epochs=2, members=1, seed=2)
    last = train(batch, TrainConfig(val_split="last", **cfg), progress=False)
    assert last.training["val_records"] == 60 and last.training["train_records"] == 540
    recent, _, _ = Detector(last).score_many(batch.take(np.arange(540, 600)))
    np.testing.assert_allclose(sorted(last.calibration), sorted(recent), rtol=1e-5)
    rand = train(batch, TrainConfig(**cfg), progress=False)
    recent, _, _ = Detector(rand).score_many(batch.take(np.arange(540, 600)))
    assert not np.allclose(sorted(rand.calibration), sorted(recent), rtol=1e-5)
    with pytest.raises(ConfigError, match="val_split = 'newest' must be one of random, last"):
        TrainConfig(val_split="newest")


def test_calibrate_on_latest_holds_the_newest_records_out_of_training_and_calibrates_on_them():
    batch = toy_batch(600, seed=4, attack_rate=0.0)
    model = train(
        batch, TrainConfig(calibrate_on="latest", hidden=8, latent=4, epochs=2, members=1), progress=False
    )
    tr = model.training
    assert tr["calibration_records"] == 60 and tr["train_records"] + tr["val_records"] == 540
    assert tr["val_records"] == 54  # early stopping: a random tenth of the other 540
    newest, _, _ = Detector(model).score_many(batch.take(np.arange(540, 600)))
    np.testing.assert_allclose(sorted(model.calibration), sorted(newest), rtol=1e-5)
    with pytest.raises(ConfigError, match="calibrate_on = 'newest' must be one of validation, latest"):
        TrainConfig(calibrate_on="newest")
    with pytest.raises(ConfigError, match="use val_split 'random'"):
        TrainConfig(calibrate_on="latest", val_split="last")


@pytest.mark.parametrize("record_path", [False, True])
def test_one_record_windows_score_as_the_full_lstm_forward_pass_does(record_path):
    """Scoring takes a shortcut for windows of one record (no recurrent product on the zero state); it
    must rebuild exactly what the LSTM's own forward pass rebuilds, to float rounding, with random
    weights and biases in every gate (a wrong gate order or a dropped bias fails by far more)."""
    from flowsentinel.detector.model import AutoencoderEnsemble, squared_errors

    torch.manual_seed(3)
    net = AutoencoderEnsemble(
        ModelConfig(n_features=7, hidden=16, latent=4, members=2, record_path=record_path)
    )
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.5)
    windows = torch.rand(64, 1, 7) * 3
    mask = torch.ones(64, 1)
    for member in net.members:
        full = member(windows, mask)
        one = member.forward_one_step(torch.cat([windows[:, 0], mask], dim=-1))
        torch.testing.assert_close(one, full, rtol=1e-5, atol=1e-6)
    with torch.inference_mode():
        fast = squared_errors(net, windows, mask)
    with torch.enable_grad():
        slow = squared_errors(net, windows, mask).detach()  # gradients on: the LSTM's own pass
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-6)
