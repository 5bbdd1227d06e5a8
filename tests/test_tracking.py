"""MLflow tracking and the registry through the CLI: what a training run logs, registered versions and
aliases, failed runs, the pyfunc model against ``healthscore predict``, integrity of the model
directory, no unpickling, and mlflow staying out of the commands that do not need it.

Everything happens in a temporary directory with its own SQLite tracking store (the module's
``workspace`` fixture sets MLFLOW_TRACKING_URI and the working directory, and resets MLflow's
process-wide state afterwards). The model is trained once per module, a second time for the
registry test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ml.cli.app import app
from ml.data.generate import generate_snapshots
from ml.errors import ModelError

pytestmark = pytest.mark.slow  # trains models: `make test-fast` skips this module


NAME = "health-score"  # the default card's registered model name
PARAMS = (
    "card_sha256",
    "card_yaml",
    "data_rows",
    "date_min",
    "date_max",
    "churn_rate",
    "split",
    "lgb.learning_rate",
    "lgb.num_leaves",
    "lgb.monotone_constraints",
    "lgb.objective",
)
METRICS = (
    "ranking.model.roc_auc",
    "ranking.manual.roc_auc",
    "calibration.model.ece",
    "calibration.manual.ece",
    "holdout.rows",
)
ARTIFACTS = (
    "card.yaml",
    "weights.csv",
    "metrics.json",
    "reliability.png",
    "shap_summary.png",
    "input_schema.json",
    "model/MLmodel",
    "model/model.txt",
    "model/model.json",
    "model/MANIFEST.json",
)


def _reset_mlflow_globals() -> None:
    """MLflow keeps the tracking URI and the active experiment in module globals (and mirrors them
    into os.environ, restored by the monkeypatch): leave no trace for other test modules."""
    import mlflow
    import mlflow.tracking.fluent as fluent

    mlflow.set_tracking_uri(None)
    fluent._active_experiment_id = None


@pytest.fixture(scope="module")
def workspace(default_card_raw, tmp_path_factory):
    """A temp working directory with a SQLite tracking store, the card (two refits) and data."""
    root = tmp_path_factory.mktemp("tracking")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
        mp.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        for var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_REGISTRY_URI", "HEALTHSCORE_DEBUG"):
            mp.delenv(var, raising=False)
        mp.chdir(root)
        # temp files (e.g. models downloaded from the registry, never removed) stay in the workspace
        (root / "tmp").mkdir()
        mp.setattr(tempfile, "tempdir", str(root / "tmp"))
        raw = default_card_raw()
        raw["model"] = {**raw.get("model", {}), "n_refits": 2}
        (root / "card.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        frame = generate_snapshots(1500, 8, seed=7).frame
        frame.to_csv(root / "data.csv", index=False)
        # a small scoring file: 40 customers' snapshots
        ids = frame["customer_id"].drop_duplicates().iloc[:40]
        frame[frame["customer_id"].isin(ids)].to_csv(root / "new.csv", index=False)
        try:
            yield root
        finally:
            _reset_mlflow_globals()


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _assert_one_line_error(result, *needles, exit_code=1):
    assert result.exit_code == exit_code, result.output
    assert result.stdout.strip() == ""  # (train's progress spinner ends with a newline on stdout)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in lines[0], lines[0]


def _run_id(result) -> str:
    match = re.search(r"MLflow run ([0-9a-f]{32})", result.stdout)
    assert match, result.stdout
    return match.group(1)


@pytest.fixture(scope="module")
def first_training(workspace):
    """`healthscore train` -> (model dir, run id)."""
    result = _invoke("train", "-c", "card.yaml", "-d", "data.csv", "-M", "model")
    assert result.exit_code == 0, result.output
    assert "registered health-score version 1 as @challenger" in result.stdout
    return workspace / "model", _run_id(result)


@pytest.fixture(scope="module")
def client(workspace):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{workspace / 'mlflow.db'}")


# ---- the run ------------------------------------------------------------------------------------
def test_train_logs_params_metrics_and_artifacts(first_training, client, workspace):
    model_dir, run_id = first_training
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    for key in PARAMS:
        assert key in params, key
    card_text = (workspace / "card.yaml").read_text()
    assert yaml.safe_load(params["card_yaml"])["indicators"] == yaml.safe_load(card_text)["indicators"]
    from ml.card import load_card

    assert params["card_sha256"] == load_card(workspace / "card.yaml").sha256
    frame = pd.read_csv(workspace / "data.csv")
    assert int(params["data_rows"]) == len(frame)
    assert params["date_min"] == str(pd.to_datetime(frame["snapshot_date"]).min().date())
    assert params["date_max"] == str(pd.to_datetime(frame["snapshot_date"]).max().date())
    assert float(params["churn_rate"]) == pytest.approx(frame["churned"].mean(), abs=1e-6)
    assert float(params["lgb.learning_rate"]) == pytest.approx(0.05)
    assert json.loads(params["split"])  # the split summary, as JSON
    metrics = run.data.metrics
    for key in METRICS:
        assert key in metrics, key
    assert 0.5 < metrics["ranking.model.roc_auc"] <= 1
    assert 0 <= metrics["calibration.model.ece"] < 0.2
    saved = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["ranking.model.roc_auc"] == pytest.approx(saved["ranking"]["model"]["roc_auc"])
    assert metrics["ranking.manual.roc_auc"] == pytest.approx(saved["ranking"]["manual"]["roc_auc"])
    logged = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "model")}
    for name in ARTIFACTS:
        assert name in logged, name


def test_train_registers_a_challenger_and_promote_moves_the_champion(first_training, client, workspace):
    _, run_id = first_training
    v1 = client.get_model_version_by_alias(NAME, "challenger")
    assert int(v1.version) == 1
    assert v1.run_id == run_id

    result = _invoke("promote", "--version", 1)
    assert result.exit_code == 0, result.output
    assert "health-score@champion -> version 1" in result.stdout
    assert int(client.get_model_version_by_alias(NAME, "champion").version) == 1

    # a second training: version 2 is the new challenger, the champion stays on 1
    generate_snapshots(1500, 8, seed=8).frame.to_csv(workspace / "data2.csv", index=False)
    result = _invoke("train", "-c", "card.yaml", "-d", "data2.csv", "-M", "model2")
    assert result.exit_code == 0, result.output
    assert int(client.get_model_version_by_alias(NAME, "challenger").version) == 2
    assert int(client.get_model_version_by_alias(NAME, "champion").version) == 1
    assert client.get_model_version_by_alias(NAME, "challenger").run_id == _run_id(result)


def test_promote_an_unknown_version(first_training):
    result = _invoke("promote", "--version", 99)
    _assert_one_line_error(result, "health-score", "99")


def test_a_failed_training_is_marked_failed(first_training, client, workspace):
    frame = pd.read_csv(workspace / "data.csv")
    frame["churned"] = 0  # a single class: training must stop
    frame.to_csv(workspace / "one_class.csv", index=False)
    before = {r.info.run_id for r in client.search_runs(_experiments(client))}
    result = _invoke("train", "-c", "card.yaml", "-d", "one_class.csv", "-M", "model_one_class")
    _assert_one_line_error(result, "churned", "single class")
    new = [r for r in client.search_runs(_experiments(client)) if r.info.run_id not in before]
    assert len(new) == 1
    assert new[0].info.status == "FAILED"
    assert not (workspace / "model_one_class").exists()


def _experiments(client) -> list[str]:
    return [e.experiment_id for e in client.search_experiments()]


# ---- the pyfunc model against `healthscore predict` ---------------------------------------------
def _read_predictions(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _assert_same_predictions(cli: pd.DataFrame, other: pd.DataFrame) -> None:
    """Numbers within 1e-9 and text exactly (missing text = empty string)."""
    assert list(cli.columns) == list(other.columns)
    assert len(cli) == len(other)
    for col in cli.columns:
        theirs = other[col]
        if pd.api.types.is_float_dtype(theirs):
            mine = pd.to_numeric(cli[col].replace("", np.nan)).to_numpy(dtype=float)
            np.testing.assert_allclose(mine, theirs.to_numpy(dtype=float), rtol=0, atol=1e-9, err_msg=col)
        else:
            texts = theirs.astype(object).where(theirs.notna(), "").astype(str).to_numpy()
            np.testing.assert_array_equal(cli[col].to_numpy(), texts, err_msg=col)


def test_pyfunc_predicts_like_the_cli(first_training, workspace):
    import mlflow

    from ml.data.io import read_table

    model_dir, _ = first_training
    # every digit (CSV rounds health to 2 decimals and probabilities to 4 unless --full-precision)
    result = _invoke("predict", "--model", model_dir, "--data", "new.csv", "--out", "cli.csv", "--full-precision")
    assert result.exit_code == 0, result.output
    cli = _read_predictions(workspace / "cli.csv")
    assert {"health_score", "band", "churn_probability", "manual_score", "driver_1", "driver_3"} <= set(cli.columns)
    loaded = mlflow.pyfunc.load_model(str(model_dir))
    out = loaded.predict(read_table(workspace / "new.csv"))
    _assert_same_predictions(cli, out)
    assert (cli["driver_1"] != "").any()


def test_predict_from_the_registry(first_training, workspace):
    model_dir, _ = first_training
    assert _invoke("promote", "--version", 1).exit_code == 0
    local = _invoke("predict", "--model", model_dir, "--data", "new.csv", "--out", "local.csv")
    assert local.exit_code == 0, local.output
    result = _invoke("predict", "--model", f"models:/{NAME}@champion", "--data", "new.csv", "--out", "champion.csv")
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(
        _read_predictions(workspace / "champion.csv"), _read_predictions(workspace / "local.csv")
    )
    assert list((workspace / "tmp").glob("healthscore-model-*"))  # downloaded (and left) in the workspace


def test_predict_from_an_unknown_alias(first_training):
    result = _invoke("predict", "--model", f"models:/{NAME}@nobody", "--data", "new.csv", "--out", "x.csv")
    _assert_one_line_error(result, "nobody")


# ---- integrity ----------------------------------------------------------------------------------
def _alter_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    i = data.index(b'"base_rate"') + 2  # inside the JSON key: same size, different content
    data[i] = ord("B")
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(("file", "damage"), [("model.json", _alter_one_byte), ("model.txt", _truncate)])
def test_an_altered_model_directory_is_refused(first_training, tmp_path, file, damage):
    from ml.serving.bundle import load_model

    model_dir, _ = first_training
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    damage(copy / file)
    with pytest.raises(ModelError, match="integrity") as info:
        load_model(copy)
    assert file in str(info.value)
    result = _invoke("predict", "--model", copy, "--data", "new.csv", "--out", tmp_path / "p.csv")
    _assert_one_line_error(result, file, "integrity")
    assert not (tmp_path / "p.csv").exists()
    load_model(model_dir)  # the original is untouched


# ---- no pickle ----------------------------------------------------------------------------------
def test_loading_does_not_unpickle(first_training, workspace):
    import os

    import mlflow

    model_dir, run_id = first_training
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    assert not list(model_dir.rglob("*.pkl")) and not list(model_dir.rglob("*.pickle"))
    mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["loader_module"] == "ml.pyfunc"
    loaded = mlflow.pyfunc.load_model(str(model_dir))
    assert loaded.predict(pd.read_csv(workspace / "new.csv").head(3))["health_score"].notna().all()
    # the registered copy too
    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    assert loaded.predict(pd.read_csv(workspace / "new.csv").head(3))["health_score"].notna().all()


# ---- mlflow stays out of the scoring path -------------------------------------------------------
_PROBE = """
import sys
from typer.testing import CliRunner
from ml.cli.app import app
r = CliRunner().invoke(app, ["score", "-c", "card.yaml", "-d", "new.csv", "-o", "scores.csv"])
assert r.exit_code == 0, r.output
after_score = "mlflow" in sys.modules
from ml.serving.bundle import load_model
import pandas as pd

m = load_model(sys.argv[1])
m.predict(pd.read_csv("new.csv"))
print(after_score, "mlflow" in sys.modules)
"""


def test_scoring_does_not_import_mlflow(first_training, workspace):
    model_dir, _ = first_training
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(model_dir)], cwd=workspace, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"], done.stdout
    assert (workspace / "scores.csv").exists()
