"""The pyfunc wrapper MLflow serves: plain output types, the `drivers` parameter, the stable
``ml.pyfunc`` entry point, and the signature written beside the model."""

from __future__ import annotations

import pandas as pd
import pytest

import ml.pyfunc
from ml.serving.bundle import load_model
from ml.serving.pyfunc import HealthScorePyfunc, load_pyfunc

OLD = "model-v0.1.0"


@pytest.fixture(scope="module")
def model_dir(data_dir):
    return data_dir / OLD / "model"


@pytest.fixture(scope="module")
def sample(data_dir):
    return pd.read_csv(data_dir / OLD / "sample.csv")


def test_entry_point_is_the_serving_loader():
    assert ml.pyfunc._load_pyfunc is load_pyfunc


def test_output_is_plain_types_and_matches_the_model(model_dir, sample):
    wrapped = load_pyfunc(str(model_dir))
    out = wrapped.predict(sample)
    direct = load_model(model_dir).predict(sample)
    assert list(out.columns) == list(direct.columns)
    assert not any(isinstance(out[c].dtype, pd.CategoricalDtype) for c in out.columns)
    assert out["snapshot_date"].str.fullmatch(r"\d{4}-\d{2}-\d{2}").all()
    assert out["band"].tolist() == direct["band"].astype(str).tolist()
    pd.testing.assert_series_equal(out["health_score"], direct["health_score"])


@pytest.mark.parametrize(
    ("drivers", "columns"), [(0, []), (1, ["driver_1"]), (3, ["driver_1", "driver_2", "driver_3"])]
)
def test_drivers_parameter(model_dir, sample, drivers, columns):
    out = HealthScorePyfunc(str(model_dir)).predict(sample, params={"drivers": drivers})
    assert [c for c in out.columns if c.startswith("driver_")] == columns


def test_accepts_records_as_well_as_frames(model_dir, sample):
    wrapped = HealthScorePyfunc(str(model_dir))
    a = wrapped.predict(sample.head(3))
    b = wrapped.predict(sample.head(3).to_dict(orient="list"))
    pd.testing.assert_frame_equal(a, b)


def test_signature_lists_the_card_columns_as_optional_inputs(model_dir):
    import json

    from mlflow.models import Model

    sig = Model.load(str(model_dir)).signature
    inputs = {c["name"]: c for c in json.loads(sig.inputs.to_json())}
    assert inputs["customer_id"].get("required", True) is True
    assert inputs["csat"]["required"] is False
    outputs = [c["name"] for c in json.loads(sig.outputs.to_json())]
    assert outputs[:3] == ["customer_id", "snapshot_date", "health_score"]
