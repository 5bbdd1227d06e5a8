"""Monitoring: PSI (0 for identical data, large for a shifted indicator), missing shares and new
categories, realised churn per matured scoring date, the verdict, the fallback for model directories
without a training reference, and the CLI (history, predict --history, monitor logged to MLflow)."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ml.card import parse_card
from ml.cli.app import app
from ml.data.generate import generate_snapshots
from ml.errors import DataError, HealthScoreWarning
from ml.monitor.drift import (
    REFERENCE_FILE,
    categorical_shares,
    compare,
    monitor,
    numeric_edges,
    numeric_shares,
    psi,
    psi_status,
    reference_profile,
)
from ml.monitor.history import History, append_scores, model_identity, score_with_points
from ml.pipeline import train
from ml.serving.bundle import load_model

TRAIN_MONTHS = 6


# ---- PSI, the pure parts -------------------------------------------------------------------------
def test_psi_by_hand():
    # (0.5-0.25) ln(0.5/0.25) + (0.5-0.75) ln(0.5/0.75) = 0.25 ln 2 + 0.25 ln 1.5 = 0.27465...
    assert psi([0.25, 0.75], [0.5, 0.5]) == pytest.approx(0.25 * np.log(2) + 0.25 * np.log(1.5), abs=1e-12)
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    # an empty bin counts as 1e-4: finite
    assert np.isfinite(psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))


@pytest.mark.parametrize(
    ("value", "status"),
    [(0.0, "stable"), (0.0999, "stable"), (0.1, "watch"), (0.2499, "watch"), (0.25, "shifted"), (None, "unknown")],
)
def test_psi_bands(value, status):
    assert psi_status(value) == status


def test_bins_and_shares():
    v = np.array([1, 2, 2, 3, 4, 5, np.nan, np.nan, 9, 10], float)
    edges = numeric_edges(v, bins=4)
    assert edges == sorted(set(edges)) and len(edges) <= 3
    shares = numeric_shares(v, edges)
    assert shares.sum() == pytest.approx(1.0) and shares[-1] == 0.2  # missing share last
    shares, new = categorical_shares(np.array(["a", "b", "c", None, "a"], object), ["a", "b"])
    assert shares.tolist() == [0.4, 0.2, 0.2, 0.2] and new == {"c": 0.2}


def test_identical_data_has_zero_psi_and_a_shift_is_flagged():
    rng = np.random.default_rng(0)
    x = rng.lognormal(2.5, 0.6, 5000)
    x[rng.random(5000) < 0.1] = np.nan
    spec = {"kind": "numeric", "edges": numeric_edges(x), "shares": numeric_shares(x, numeric_edges(x)).tolist()}
    spec["rows"] = len(x)
    same = compare(spec, x)
    assert abs(same["psi"]) <= 1e-12 and same["status"] == "stable"
    assert same["missing_share"] == pytest.approx(np.isnan(x).mean())
    shifted = compare(spec, x * 0.4)
    assert shifted["psi"] >= 0.25 and shifted["status"] == "shifted" and shifted["rows"] == 5000


# ---- on a trained model ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup(tmp_path_factory, default_card_raw):
    """A model trained on the first 6 months of 1,500 customers; the next 6 months scored into a
    history; labelled snapshots of all 12 months."""
    root = tmp_path_factory.mktemp("monitor")
    card = parse_card(default_card_raw())
    frame = generate_snapshots(1500, 12, seed=5).frame
    dates = sorted(frame["snapshot_date"].unique())
    early = frame[frame["snapshot_date"] < dates[TRAIN_MONTHS]].reset_index(drop=True)
    late = frame[frame["snapshot_date"] >= dates[TRAIN_MONTHS]].reset_index(drop=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthScoreWarning)
        fitted = train(card, early, root / "model", n_refits=0, plots=False, mlflow_files=False).model
    model = load_model(root / "model")
    hist = History(root / "H")
    for d in dates[TRAIN_MONTHS:]:
        rows = late[late["snapshot_date"] == d]
        append_scores(hist, score_with_points(model, rows), card, model_identity(model), frame=rows)
    return {
        "root": root,
        "card": card,
        "frame": frame,
        "early": early,
        "late": late,
        "model": model,
        "fitted": fitted,
        "hist": hist,
    }


@pytest.mark.slow
def test_training_writes_the_reference_and_it_gives_zero_psi_on_the_training_rows(setup):
    model, early = setup["model"], setup["early"]
    ref = json.loads((model.model_dir_ / REFERENCE_FILE).read_text())
    assert set(ref["features"]) == set(model.schema_.names)
    fitted = setup["fitted"]  # the model as trained: the reference is the rows it was fitted on (the saved
    # model is refitted on every matured row after the backtest, see model.refit)
    fit = early.iloc[fitted.fit_rows_]
    assert len(fit) == ref["rows"] < len(early)
    again = reference_profile(model, fit)
    X = model.schema_.matrix(fit)
    for f in model.schema_.features:
        col = X[f.name]
        values = (
            col.astype(object).where(col.notna(), None).to_numpy() if f.kind == "categorical" else col.to_numpy(float)
        )
        assert abs(compare(ref["features"][f.name], values)["psi"]) <= 1e-12, f.name
        assert again["features"][f.name] == ref["features"][f.name]
    scores = model.predict(fit, drivers=0)
    assert abs(compare(ref["health_score"], scores["health_score"].to_numpy())["psi"]) <= 1e-12


@pytest.mark.slow
def test_a_shifted_indicator_is_flagged(setup, tmp_path):
    model, late, card = setup["model"], setup["late"], setup["card"]
    last = late[late["snapshot_date"] == late["snapshot_date"].max()].copy()
    last["logins_30d"] = np.round(last["logins_30d"] * 0.3)
    last["csat"] = np.nan  # the survey stopped
    hist = History(tmp_path / "H")
    append_scores(hist, score_with_points(model, last), card, model_identity(model), frame=last)
    result = monitor(model, hist)
    act = result["drift"]["indicators"]["product_activity"]
    assert act["psi"] >= 0.25 and act["status"] == "shifted" and act["rows"] == len(last)
    csat = result["drift"]["indicators"]["csat"]
    assert csat["missing_share"] == 1.0 and csat["reference_missing_share"] < 0.6
    assert result["verdict"] in ("watch", "retrain")
    assert any(r.startswith("watch: product_activity: PSI") for r in result["reasons"])
    assert any("csat: 100% missing" in r for r in result["reasons"])


@pytest.mark.slow
def test_new_categories_are_reported(setup, tmp_path):
    model, late, card = setup["model"], setup["late"], setup["card"]
    last = late[late["snapshot_date"] == late["snapshot_date"].max()].copy()
    run = score_with_points(model, last)
    run.values["plan"] = pd.Categorical(np.where(np.arange(len(last)) % 10 == 0, "platinum", "pro"))
    hist = History(tmp_path / "H")
    append_scores(hist, run, card, model_identity(model), frame=last)
    plan = monitor(model, hist)["drift"]["indicators"]["plan"]
    assert plan["new_categories"] == {"platinum": pytest.approx(0.1, abs=0.001)}


def labelled(setup, extra_churn: float) -> pd.DataFrame:
    """All 12 months with labels; after training, ``extra_churn`` of the non-churners churn too."""
    frame = setup["frame"].copy()
    dates = sorted(frame["snapshot_date"].unique())
    after = (frame["snapshot_date"] >= dates[TRAIN_MONTHS]).to_numpy()
    rng = np.random.default_rng(11)
    flip = after & (frame["churned"].to_numpy() == 0) & (rng.random(len(frame)) < extra_churn)
    frame.loc[flip, "churned"] = 1
    return frame


@pytest.mark.slow
def test_realised_churn_rising_after_training_says_retrain(setup):
    result = monitor(setup["model"], setup["hist"], labelled=labelled(setup, 0.25))
    real = result["realised"]
    # labels end 2024-12-01; with a 90-day horizon the scorings of Jul, Aug and Sep 1st have matured
    assert [r["date"] for r in real["by_date"]] == ["2024-07-01", "2024-08-01", "2024-09-01"]
    assert real["pending_dates"] == ["2024-10-01", "2024-11-01", "2024-12-01"]
    for r in real["by_date"]:
        assert r["observed_rate"] > r["mean_predicted"] + 0.1
        assert r["rows"] == int((setup["late"]["snapshot_date"] == pd.Timestamp(r["date"])).sum())
        assert set(r["by_band"]) == {"Healthy", "Stable", "At risk"}
        assert r["sentence"].startswith("the customers scored ") and "the model said" in r["sentence"]
    assert result["verdict"] == "retrain"
    assert any(
        x.startswith("retrain: realised churn departs from the predictions: 2024-09-01") for x in result["reasons"]
    )


@pytest.mark.slow
def test_unchanged_churn_is_not_a_reason_to_retrain(setup):
    result = monitor(setup["model"], setup["hist"], labelled=labelled(setup, 0.0))
    assert not any("realised churn departs" in r for r in result["reasons"])
    last = result["realised"]["by_date"][-1]
    assert abs(last["observed_rate"] - last["mean_predicted"]) < 0.05


@pytest.mark.slow
def test_old_model_directory_falls_back_to_the_first_scoring(setup, tmp_path):
    old = tmp_path / "old-model"
    shutil.copytree(setup["model"].model_dir_, old)
    (old / REFERENCE_FILE).unlink()
    manifest = json.loads((old / "MANIFEST.json").read_text())
    del manifest["files"][REFERENCE_FILE]
    (old / "MANIFEST.json").write_text(json.dumps(manifest))
    model = load_model(old)
    with pytest.warns(
        HealthScoreWarning, match=r"no monitor_reference.json .* first scoring in the history \(2024-07-01\)"
    ):
        result = monitor(model, setup["hist"], as_of="2024-07-01")
    assert result["reference"] == "first scoring in the history (2024-07-01)"
    assert abs(result["drift"]["health_score"]["psi"]) <= 1e-12  # compared with itself


@pytest.mark.slow
def test_labelled_data_errors(setup):
    bad = setup["frame"].drop(columns="churned")
    with pytest.raises(DataError, match=r"--data is missing column\(s\) \['churned'\]"):
        monitor(setup["model"], setup["hist"], labelled=bad)


# ---- CLI ------------------------------------------------------------------------------------------
@pytest.fixture
def tracking(tmp_path, monkeypatch):
    import mlflow
    import mlflow.tracking.fluent as fluent

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for var in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    mlflow.set_tracking_uri(None)
    fluent._active_experiment_id = None


@pytest.mark.slow
def test_cli_predict_history_then_history_and_monitor(setup, tracking, default_card_raw):
    root = tracking
    late = setup["late"]
    model_dir = setup["root"] / "model"
    for i, d in enumerate(sorted(late["snapshot_date"].unique())[:3]):
        part = late[late["snapshot_date"] == d]
        part.to_csv(root / f"m{i}.csv", index=False)
        r = CliRunner().invoke(
            app,
            [
                "predict",
                "--model",
                str(model_dir),
                "--data",
                str(root / f"m{i}.csv"),
                "--out",
                str(root / f"p{i}.csv"),
                "--history",
                str(root / "H"),
                "--full-precision",  # CSV rounds health to 2 decimals otherwise
            ],
        )
        assert r.exit_code == 0, r.output
        assert f"history: {len(part):,} rows on {pd.Timestamp(d).date()} -> " in r.output
        plain = setup["model"].predict(part)
        out = pd.read_csv(root / f"p{i}.csv")
        assert list(out.columns) == list(plain.columns)  # --history leaves predict's output alone
        np.testing.assert_allclose(out["health_score"], plain["health_score"])
    # re-scoring a month replaces its rows
    r = CliRunner().invoke(
        app,
        [
            "predict",
            "--model",
            str(model_dir),
            "--data",
            str(root / "m0.csv"),
            "--out",
            str(root / "p.csv"),
            "--history",
            str(root / "H"),
        ],
    )
    assert "replacing" in r.output
    assert History(root / "H").frame(["customer_id"]).shape[0] == sum(
        len(pd.read_csv(root / f"p{i}.csv")) for i in range(3)
    )
    cid = late["customer_id"].iloc[0]
    r = CliRunner().invoke(app, ["history", "--history", str(root / "H"), "--customer", cid, "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [x["scoring_date"][:10] for x in rows] == ["2024-07-01", "2024-08-01", "2024-09-01"][: len(rows)]
    assert rows[0]["moved"] == "" and (len(rows) < 2 or " → " in rows[1]["moved"] or rows[1]["moved"] == "")
    r = CliRunner().invoke(app, ["history", "--history", str(root / "H"), "--customer", "nobody"])
    assert r.exit_code == 1 and "customer 'nobody' is not in the history" in r.output

    labelled(setup, 0.25).to_csv(root / "labelled.csv", index=False)
    r = CliRunner().invoke(
        app,
        [
            "monitor",
            "--model",
            str(model_dir),
            "--history",
            str(root / "H"),
            "--data",
            str(root / "labelled.csv"),
            "--out",
            str(root / "monitor.json"),
        ],
    )
    assert r.exit_code == 0, r.output
    result = json.loads((root / "monitor.json").read_text())
    assert result["verdict"] == "retrain" and "verdict retrain" in r.output
    import mlflow

    run = mlflow.MlflowClient().get_run(result["mlflow"]["run_id"])
    assert run.data.tags["healthscore.verdict"] == "retrain"
    assert run.data.metrics["verdict"] == 2.0 and "psi.health_score" in run.data.metrics
    assert run.data.metrics["realised.observed_rate"] > run.data.metrics["realised.mean_predicted"]
    assert result["mlflow"]["training_run_id"] is None  # trained without tracking: a monitoring run on its own


def test_a_model_directory_from_an_earlier_release_is_monitored_against_its_first_scoring(data_dir, tmp_path):
    """tests/data/model-v0.1.0 predates monitor_reference.json: it loads, and the monitor falls back."""
    old = load_model(data_dir / "model-v0.1.0" / "model")
    assert not (old.model_dir_ / REFERENCE_FILE).exists()
    sample = pd.read_csv(data_dir / "model-v0.1.0" / "sample.csv")
    hist = History(tmp_path / "H")
    append_scores(hist, score_with_points(old, sample), old.card, model_identity(old), frame=sample)
    with pytest.warns(HealthScoreWarning, match=r"has no monitor_reference.json \(trained before monitoring existed\)"):
        result = monitor(old, hist)
    assert result["reference"] == "first scoring in the history (2024-01-01)"
    assert result["drift"]["health_score"]["psi"] == 0.0 and result["drift"]["health_score"]["rows"] == 20
