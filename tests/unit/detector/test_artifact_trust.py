"""A model directory is not trusted because its hash checks out: metadata is validated before anything is built
from it, oversized models are refused before allocation, and signatures are checked when asked for."""

from __future__ import annotations

import json
import os
import time

import pytest

from flowsentinel.cli import main
from flowsentinel.detector.artifact import (
    SIGNATURE,
    artifact_identity,
    count_params,
    load_artifact,
    save_artifact,
    sign_artifact,
)
from flowsentinel.detector.errors import ArtifactError
from tests.artifacts import BROKEN, write_broken

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


@pytest.fixture
def saved(tiny_model, tmp_path):
    save_artifact(tiny_model, tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_metadata_is_one_line_naming_the_key(saved, tmp_path, case):
    broken = write_broken(saved, tmp_path / case, case)
    with pytest.raises(ArtifactError) as err:
        load_artifact(broken)
    message = str(err.value)
    assert BROKEN[case][1] in message and "\n" not in message and len(message) < 400


@pytest.mark.parametrize("case", ["deeply-nested-value", "scoring-is-a-string", "huge-hidden-size"])
def test_score_refuses_a_broken_model_in_one_line(saved, tmp_path, capsys, case):
    broken = write_broken(saved, tmp_path / case, case)
    data = tmp_path / "data.csv"
    data.write_text("")
    assert main(["score", "--model", str(broken), "--data", str(data), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flowsentinel score: error: ") and BROKEN[case][1] in err[0]


def test_the_parameter_bound_is_counted_without_allocating(saved, tiny_model):
    n = count_params(tiny_model.config)
    assert n == sum(p.numel() for p in tiny_model.net.parameters())
    assert load_artifact(saved, max_params=n).version == tiny_model.version
    with pytest.raises(ArtifactError, match=f"holds {n:,} parameters, more than the limit of {n - 1:,}"):
        load_artifact(saved, max_params=n - 1)


def test_a_signed_model_loads_with_its_key_only(tiny_model, tmp_path):
    signed = tmp_path / "signed"
    save_artifact(tiny_model, signed, key=KEY)
    assert load_artifact(signed, key=KEY).version == tiny_model.version
    assert load_artifact(signed).version == tiny_model.version  # no key asked for: not checked
    with pytest.raises(ArtifactError, match="does not match this model under the given key"):
        load_artifact(signed, key=OTHER_KEY)
    body = (signed / SIGNATURE).read_text()
    assert KEY.decode() not in body and "signature" in json.loads(body)
    unsigned = tmp_path / "unsigned"
    save_artifact(tiny_model, unsigned)
    with pytest.raises(ArtifactError, match="is not signed"):
        load_artifact(unsigned, key=KEY)
    (unsigned / SIGNATURE).write_text("[[[[")
    with pytest.raises(ArtifactError, match="not a flowsentinel signature"):
        load_artifact(unsigned, key=KEY)


def test_a_signature_does_not_carry_over_to_another_model(tiny_model, saved, tmp_path):
    from flowsentinel.detector.train import TrainConfig, train
    from tests.support import toy_batch

    sign_artifact(saved, KEY)
    other = train(toy_batch(600, seed=4), TrainConfig(hidden=8, latent=4, members=1, epochs=1, seed=2),
                  progress=False)  # fmt: skip
    signature = (saved / SIGNATURE).read_bytes()
    save_artifact(other, saved)  # a new model, the old signature left beside it
    assert (saved / SIGNATURE).read_bytes() == signature
    with pytest.raises(ArtifactError, match="does not match"):
        load_artifact(saved, key=KEY)


def test_sign_command_takes_the_key_from_a_file_or_the_environment_and_never_prints_it(
    saved, tmp_path, capsys, monkeypatch
):
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")
    assert main(["sign", str(saved), "--model-key-file", str(key_file)]) == 0
    out = capsys.readouterr()
    assert KEY.decode() not in out.out + out.err
    assert load_artifact(saved, key=KEY)
    monkeypatch.setenv("FLOWSENTINEL_MODEL_KEY", OTHER_KEY.decode())
    assert main(["sign", str(saved)]) == 0
    assert load_artifact(saved, key=OTHER_KEY)
    monkeypatch.setenv("FLOWSENTINEL_MODEL_KEY", "short")
    assert main(["sign", str(saved)]) == 2
    err = capsys.readouterr().err
    assert "needs at least 16" in err and "short'" not in err


def test_identity_follows_a_symlink_to_a_directory_with_older_files(tiny_model, tmp_path):
    old, new = tmp_path / "v1", tmp_path / "v2"
    save_artifact(tiny_model, new)
    save_artifact(tiny_model, old)
    past = time.time() - 3600
    for f in old.iterdir():
        os.utime(f, (past, past))
    live = tmp_path / "live"
    live.symlink_to(new)
    before = artifact_identity(live)
    tmp = tmp_path / "live.tmp"
    tmp.symlink_to(old)
    tmp.replace(live)  # the atomic swap a deployment does
    assert artifact_identity(live) != before
