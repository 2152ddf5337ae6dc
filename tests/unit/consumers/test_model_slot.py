"""The model slot on its own, no service and no broker: load and install, reload on change or request (a
refused model leaves the live one), each model's threshold snapshot, the shadow from a model store."""

from __future__ import annotations

import json

import pytest
from prometheus_client import CollectorRegistry

from flowsentinel.consumers.metrics import Metrics
from flowsentinel.consumers.model_slot import ModelSlot
from flowsentinel.consumers.settings import Settings
from flowsentinel.consumers.state_file import write_state
from flowsentinel.detector.artifact import save_artifact
from flowsentinel.detector.errors import ConfigError
from flowsentinel.detector.store import ModelStore
from tests.support import toy_batch


@pytest.fixture(scope="module")
def other_model():
    from flowsentinel.detector.train import TrainConfig, train

    return train(toy_batch(500, seed=2), TrainConfig(hidden=8, latent=4, members=1, epochs=1, seed=9),
                 progress=False)  # fmt: skip


def _slot(tmp_path, **settings):
    registry = CollectorRegistry()
    s = Settings(state_dir=str(tmp_path / "state"), reload_check_s=3600.0, **settings)
    slot = ModelSlot(s, Metrics.create(registry), clock=lambda: 1_000.0)
    slot.install(slot.load())
    slot.check_state_dir()
    slot.restore_threshold()
    return slot, registry


def _reloads(registry, result):
    return registry.get_sample_value("flowsentinel_model_reloads_total", {"result": result})


def test_a_changed_directory_is_taken_at_the_next_check_and_a_broken_one_is_not(
    tiny_model, other_model, tmp_path
):
    live = tmp_path / "live"
    save_artifact(tiny_model, live)
    slot, registry = _slot(tmp_path, model=str(live))
    assert slot.live.version == tiny_model.version and slot.scorer.model is slot.model
    assert slot.due() is None  # nothing changed (and not due: reload_check_s is an hour)
    (live / "metadata.json").write_text("{")  # a copy caught half done
    assert slot.due() is None  # not looked at before reload_check_s ...
    assert slot.due(now=True) is None and _reloads(registry, "refused") == 1  # ... refused when looked at
    assert slot.due(now=True) is None and _reloads(registry, "refused") == 1  # counted once
    save_artifact(other_model, live)
    new = slot.due(now=True)
    assert new is not None and new.version == other_model.version
    assert slot.live.version == tiny_model.version  # due() only reads: the caller swaps
    slot.swap(new)
    assert slot.live.version == other_model.version and _reloads(registry, "ok") == 1
    slot.reload_requested.set()  # SIGHUP: the same model again keeps the live state
    detector = slot.scorer
    assert slot.due() is None and slot.scorer is detector and _reloads(registry, "unchanged") == 1


def test_each_model_keeps_its_own_threshold_snapshot(tiny_model, other_model, tmp_path):
    live = tmp_path / "live"
    save_artifact(tiny_model, live)
    slot, _ = _slot(tmp_path, model=str(live))
    slot.scorer.process_batch(toy_batch(300, seed=4))
    seen = slot.scorer.thresholder.seen
    assert seen > 0 and slot.save_threshold()
    assert slot.snapshot_path().name == f"threshold-{slot.settings.group}-{tiny_model.version}.json"
    save_artifact(other_model, live)
    slot.swap(slot.due(now=True))
    assert slot.scorer.thresholder.seen != seen  # the other model starts from its own calibration
    save_artifact(tiny_model, live)
    slot.swap(slot.due(now=True))
    assert slot.scorer.thresholder.seen == seen  # the first model's snapshot, restored


def test_a_snapshot_taken_under_other_settings_is_ignored(tiny_model, tmp_path):
    live = tmp_path / "live"
    save_artifact(tiny_model, live)
    slot, _ = _slot(tmp_path, model=str(live), risk=0.01)
    slot.scorer.process_batch(toy_batch(300, seed=4))
    assert slot.save_threshold()
    again, _ = _slot(tmp_path, model=str(live), risk=0.001)  # a restart must not undo a change of risk
    assert again.scorer.thresholder.seen != slot.scorer.thresholder.seen


def test_without_a_state_dir_nothing_is_saved_and_an_unwritable_one_is_refused(tiny_model, tmp_path):
    live = tmp_path / "live"
    save_artifact(tiny_model, live)
    slot = ModelSlot(
        Settings(model=str(live), state_dir=""), Metrics.create(CollectorRegistry()), clock=lambda: 0.0
    )
    slot.install(slot.load())
    assert slot.snapshot_path() is None and not slot.save_threshold()
    blocked = tmp_path / "file"
    blocked.write_text("")
    slot = ModelSlot(Settings(model=str(live), state_dir=str(blocked / "x")), slot.metrics, clock=lambda: 0.0)
    slot.install(slot.load())
    with pytest.raises(ConfigError, match="cannot write threshold snapshots there"):
        slot.check_state_dir()


def test_a_failed_state_write_is_counted_and_false(tmp_path):
    registry = CollectorRegistry()
    blocked = tmp_path / "file"
    blocked.write_text("")
    assert not write_state(blocked / "x" / "s.json", {"a": 1}, "the test state", Metrics.create(registry))
    assert registry.get_sample_value("flowsentinel_threshold_snapshot_failures_total") == 1
    assert write_state(tmp_path / "s.json", {"a": 1}, "the test state", Metrics.create(CollectorRegistry()))
    assert json.loads((tmp_path / "s.json").read_text()) == {"a": 1}


def test_the_shadow_follows_the_store_and_a_broken_one_is_refused(tiny_model, other_model, tmp_path):
    store = ModelStore(tmp_path / "store")
    store.set("live", store.add(tiny_model))
    slot, registry = _slot(tmp_path, model_store=str(store.root))
    slot.check_shadow()
    assert slot.shadow is None
    candidate = store.add(other_model)
    store.set("shadow", candidate)
    slot.check_shadow()
    assert slot.shadow is not None and slot.shadow.version == candidate
    assert registry.get_sample_value("flowsentinel_shadow_info", {"version": candidate}) == 1
    slot.tally([("no-such-alert", None, "benign")])  # a verdict on nothing the shadow saw: counted nowhere
    assert slot.shadow.stats.verdicts["benign"] == [0, 0]
    store.set("shadow", None)
    slot.check_shadow()
    assert slot.shadow is None
