"""The model directory: written atomically, verified against its manifest, loadable across releases,
and a loader that reports bad files as such but lets bugs surface."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from ml.card import parse_card
from ml.data.generate import generate_snapshots
from ml.errors import ModelError
from ml.pipeline import train
from ml.serving.bundle import load_model

OLD = "model-v0.1.0"


@pytest.fixture(scope="module")
def old_dir(data_dir):
    return data_dir / OLD / "model"


@pytest.fixture
def old_copy(old_dir, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(old_dir, dst)
    return dst


def _check_predictions(model, data_dir):
    sample = pd.read_csv(data_dir / OLD / "sample.csv")
    expected = pd.read_csv(data_dir / OLD / "expected.csv")
    got = model.predict(sample)
    for col in ("health_score", "churn_probability", "manual_score", "manual_churn_probability"):
        np.testing.assert_allclose(got[col].to_numpy(float), expected[col].to_numpy(float), rtol=0, atol=1e-9)
    for col in ("band", "manual_band"):
        assert got[col].astype(str).tolist() == expected[col].fillna("").astype(str).tolist()
    # issue 12 reworded categorical drivers: "plan pro (most common: pro)" compared a value with itself;
    # now "plan pro (the usual value)", and "plan basic (usual: pro)" otherwise (a model directory of
    # v0.1.0 has no average points of the usual value to add)
    old_text = expected["driver_1"].fillna("").astype(str)
    reworded = old_text.str.replace(r"(\S+) \(most common: \1\)", r"\1 (the usual value)", regex=True)
    reworded = reworded.str.replace("(most common: ", "(usual: ", regex=False)
    assert got["driver_1"].astype(str).tolist() == reworded.tolist()


def test_a_model_directory_from_the_previous_release_still_loads_and_predicts_the_same(old_dir, data_dir):
    _check_predictions(load_model(old_dir), data_dir)


def test_the_old_directory_loads_through_mlflow_loader_module(old_dir, data_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    mlmodel = (old_dir / "MLmodel").read_text()
    assert "loader_module: ml.pyfunc" in mlmodel
    pyfunc = mlflow.pyfunc.load_model(str(old_dir))
    sample = pd.read_csv(data_dir / OLD / "sample.csv")
    expected = pd.read_csv(data_dir / OLD / "expected.csv")
    out = pyfunc.predict(sample)
    np.testing.assert_allclose(out["health_score"].to_numpy(float), expected["health_score"].to_numpy(float), atol=1e-9)


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda d: (d / "model.txt").write_text("garbage"), r"model.txt.*(changed|checksum|altered)"),
        (lambda d: (d / "model.json").unlink(), r"model.json"),
        (lambda d: (d / "MANIFEST.json").unlink(), r"MANIFEST.json"),
    ],
)
def test_damaged_directories_are_one_model_error(old_copy, damage, match):
    damage(old_copy)
    with pytest.raises(ModelError, match=match):
        load_model(old_copy)


def test_a_model_json_without_a_key_is_a_model_error_naming_it(old_copy):
    state = json.loads((old_copy / "model.json").read_text())
    del state["base_rate"]
    (old_copy / "model.json").write_text(json.dumps(state))
    # re-sign the manifest so that only the content problem remains
    from ml.serving.bundle import write_manifest

    write_manifest(old_copy)
    with pytest.raises(ModelError, match=r"missing key 'base_rate'.*retrain"):
        load_model(old_copy)


def test_a_bug_in_the_loader_is_not_disguised_as_a_bad_model(old_dir, monkeypatch):
    from ml.scorecard import WeightedScorecard

    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a bad file")

    monkeypatch.setattr(WeightedScorecard, "from_state", broken)
    with pytest.raises(RuntimeError, match="a bug, not a bad file"):
        load_model(old_dir)


def test_save_then_load_gives_the_same_numbers(default_card_raw, tmp_path):
    raw = default_card_raw()
    raw["model"] = {**raw.get("model", {}), "n_refits": 0}
    # 9 months: with the 90-day label gap of the out-of-time split, 6 months left 2 to fit on
    frame = generate_snapshots(1500, 9, seed=5).frame
    result = train(parse_card(raw), frame, tmp_path / "m", plots=False, mlflow_files=False)
    loaded = load_model(tmp_path / "m")
    a = result.model.predict(frame.head(50))
    b = loaded.predict(frame.head(50))
    pd.testing.assert_frame_equal(a, b)
    assert not list(tmp_path.glob(".*")), "no temporary directory is left beside the model"
