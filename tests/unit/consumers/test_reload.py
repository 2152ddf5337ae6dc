"""Hot reload never takes the service down: a model that does not load, check, verify or fit is refused with a
log line and a metric, the live model keeps scoring, and the directory is tried again until it loads or
changes. No broker here: the reload runs between batches, before any Kafka call."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from prometheus_client import CollectorRegistry

from flowsentinel.consumers.decode import InputMessage
from flowsentinel.consumers.metrics import Metrics
from flowsentinel.consumers.service import DetectorService
from flowsentinel.consumers.settings import Settings
from flowsentinel.detector.artifact import METADATA, WEIGHTS, save_artifact
from flowsentinel.detector.errors import ArtifactError, ConfigError
from flowsentinel.producers.publisher import batch_to_records
from tests.artifacts import BROKEN, write_broken
from tests.support import toy_batch

KEY = "s" * 32


@pytest.fixture(scope="module")
def other_model():
    from flowsentinel.detector.train import TrainConfig, train

    return train(toy_batch(500, seed=2), TrainConfig(hidden=8, latent=4, members=1, epochs=1, seed=9),
                 progress=False)  # fmt: skip


def _service(live, tmp_path, **settings):
    registry = CollectorRegistry()
    s = Settings(model=str(live), state_dir=str(tmp_path / "state"), reload_check_s=0.001, **settings)
    service = DetectorService(s, Metrics.create(registry))
    return service, registry


def _check(service) -> None:
    service.episodes.open.clear()  # (no producer here to publish their closing messages to)
    service.check_model(now=True)


def _refused(registry) -> float:
    return registry.get_sample_value("flowsentinel_model_reloads_total", {"result": "refused"})


def test_every_broken_model_is_refused_and_the_live_one_keeps_scoring(
    tiny_model, other_model, tmp_path, caplog
):
    good = tmp_path / "good"
    save_artifact(tiny_model, good)
    live = tmp_path / "live"
    shutil.copytree(good, live)
    service, registry = _service(live, tmp_path)
    assert _refused(registry) == 0  # the series exists before the first refusal
    version = service.model.version
    values = [json.dumps(r).encode() for r in batch_to_records(toy_batch(50, seed=5))]
    for n, case in enumerate(sorted(BROKEN), start=1):
        write_broken(good, tmp_path / "staged", case)
        for name in (WEIGHTS, METADATA):
            shutil.copy(tmp_path / "staged" / name, live / name)
        with caplog.at_level(logging.ERROR, logger="flowsentinel.consumers.service"):
            _check(service)
            _check(service)  # tried again, but logged and counted once
        assert _refused(registry) == n, case
        assert service.model.version == version
        refusals = [r.getMessage() for r in caplog.records if "model reload refused" in r.getMessage()]
        assert len(refusals) == 1 and BROKEN[case][1] in refusals[0] and "\n" not in refusals[0], case
        caplog.clear()
        dead = service.process(
            [InputMessage("t", 0, i, None, v, 0) for i, v in enumerate(values)]
        ).dead_letters
        assert not dead
    save_artifact(other_model, live)
    _check(service)
    assert service.model.version == other_model.version
    assert registry.get_sample_value("flowsentinel_model_reloads_total", {"result": "ok"}) == 1


def test_a_model_copied_metadata_first_is_taken_once_its_weights_arrive(tiny_model, other_model, tmp_path):
    """The copy caught half done used to be refused once and never tried again (until a SIGHUP)."""
    live, staged = tmp_path / "live", tmp_path / "staged"
    save_artifact(tiny_model, live)
    save_artifact(other_model, staged)
    service, registry = _service(live, tmp_path)
    shutil.copy(staged / METADATA, live / METADATA)
    _check(service)
    assert _refused(registry) == 1 and service.model.version == tiny_model.version
    shutil.copy(staged / WEIGHTS, live / WEIGHTS)
    _check(service)
    assert service.model.version == other_model.version


def test_a_symlink_swapped_to_a_version_with_older_files_is_followed(tiny_model, other_model, tmp_path):
    versions = tmp_path / "versions"
    save_artifact(other_model, versions / "b")
    save_artifact(tiny_model, versions / "a")  # a: the newer files
    live = tmp_path / "live"
    live.symlink_to(versions / "a")
    service, _ = _service(live, tmp_path)
    assert service.model.version == tiny_model.version
    tmp = tmp_path / "live.tmp"
    tmp.symlink_to(versions / "b")
    tmp.replace(live)
    _check(service)
    assert service.model.version == other_model.version


def test_require_signed_refuses_unsigned_and_wrongly_signed_models_at_start_and_on_reload(
    tiny_model, other_model, tmp_path
):
    live = tmp_path / "live"
    save_artifact(tiny_model, live)
    with pytest.raises(ArtifactError, match="is not signed"):
        _service(live, tmp_path, require_signed=True, model_key=KEY)
    save_artifact(tiny_model, live, key=KEY.encode())
    service, registry = _service(live, tmp_path, require_signed=True, model_key=KEY)
    save_artifact(other_model, live, key=b"w" * 32)
    _check(service)
    assert _refused(registry) == 1 and service.model.version == tiny_model.version
    save_artifact(other_model, live)  # unsigned (the old signature left beside it)
    _check(service)
    assert _refused(registry) == 2 and service.model.version == tiny_model.version
    save_artifact(other_model, live, key=KEY.encode())
    _check(service)
    assert service.model.version == other_model.version


def test_signing_settings_are_checked_at_start(tmp_path):
    with pytest.raises(ConfigError, match="setting require_signed = True: needs the key"):
        Settings(require_signed=True)
    with pytest.raises(ConfigError, match="setting model_key_file = .*no such file"):
        Settings(model_key_file=str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match="setting model_max_params = 10"):
        Settings(model_max_params=10)
    with pytest.raises(ArtifactError, match="setting model_key holds 5 bytes") as err:
        Settings(require_signed=True, model_key="short").signing_key()
    assert "short" not in str(err.value).replace("holds 5 bytes", "")
    loaded = Settings.load(environ={"FLOWSENTINEL_MODEL_KEY": KEY, "FLOWSENTINEL_REQUIRE_SIGNED": "1"})
    assert loaded.effective()["model_key"] == "***" and KEY not in repr(loaded)
    assert loaded.signing_key() == KEY.encode()
