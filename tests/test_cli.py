"""The command line through Typer's CliRunner: exit codes, messages and the files written.

Click >= 8.2 keeps the streams apart: ``result.stdout`` is stdout only, ``result.stderr`` is stderr
only and ``result.output`` is both, interleaved as a terminal would show them.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import typer.main
import yaml
from typer.testing import CliRunner

from ml.cli.app import app

NAMES = ["interactions", "response", "resolution", "csat", "activity"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def worked(tmp_path, card_dict, worked_frame):
    """The worked example as files: an identity card and one customer's data (CSV)."""
    card = tmp_path / "card.yaml"
    card.write_text(yaml.safe_dump(card_dict(), sort_keys=False), encoding="utf-8")
    data = tmp_path / "data.csv"
    worked_frame.to_csv(data, index=False)
    return card, data


def _invoke(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def _assert_one_line_error(result, exit_code=1):
    assert result.exit_code == exit_code, result.output
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.output


# ---- generate -----------------------------------------------------------------------------------
def test_generate_writes_the_snapshots(runner, tmp_path):
    out, truth = tmp_path / "snap.csv", tmp_path / "truth.csv"
    result = _invoke(runner, "generate", "--out", out, "--customers", 40, "--months", 3, "--seed", 5, "--truth", truth)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    match = re.search(
        r"wrote ([\d,]+) snapshots of (\d+) customers to .*snap\.csv \(churn within 90 days: "
        r"[\d.]+%\)",
        result.stdout,
    )
    assert match, result.stdout
    assert int(match.group(1).replace(",", "")) == len(frame)
    assert int(match.group(2)) == frame["customer_id"].nunique()
    assert pd.read_csv(truth)["true_importance"].sum() == pytest.approx(100)


def test_generate_is_seeded(runner, tmp_path):
    for name in ("a.parquet", "b.parquet"):
        assert _invoke(runner, "generate", "-o", tmp_path / name, "-n", 20, "-m", 2, "-s", 3).exit_code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))


def test_generate_rejects_bad_option(runner, tmp_path):
    result = _invoke(runner, "generate", "--out", tmp_path / "x.csv", "--customers", 0)
    assert result.exit_code == 2
    assert "customers" in result.stderr
    assert not (tmp_path / "x.csv").exists()


# ---- score --------------------------------------------------------------------------------------
def test_score_worked_example(runner, tmp_path, worked):
    card, data = worked
    out = tmp_path / "scores.csv"
    result = _invoke(runner, "score", "--config", card, "--data", data, "--out", out)
    assert result.exit_code == 0, result.output
    assert "scored 1 rows" in result.stdout
    scores = pd.read_csv(out)
    assert list(scores.columns) == ["customer_id", "health_score", "band", "coverage", *[f"points__{n}" for n in NAMES]]
    # 90 x 25% + 80 x 20% + 70 x 25% + 85 x 20% + 60 x 10% = 22.5 + 16 + 17.5 + 17 + 6 = 79 -> Stable
    row = scores.iloc[0]
    assert row["customer_id"] == "C1"
    assert row["health_score"] == 79.0
    assert row["band"] == "Stable"
    assert row["coverage"] == 100.0
    assert [row[f"points__{n}"] for n in NAMES] == [22.5, 16.0, 17.5, 17.0, 6.0]
    assert "Stable" in result.stdout  # the band summary


def test_score_with_subscores(runner, tmp_path, worked):
    card, data = worked
    out = tmp_path / "scores.csv"
    assert _invoke(runner, "score", "-c", card, "-d", data, "-o", out, "--subscores").exit_code == 0
    assert pd.read_csv(out).loc[0, [f"subscore__{n}" for n in NAMES]].tolist() == [90, 80, 70, 85, 60]


def test_score_parquet_in_and_out(runner, tmp_path, worked, worked_frame):
    card, _ = worked
    data, out = tmp_path / "data.parquet", tmp_path / "scores.parquet"
    worked_frame.to_parquet(data, index=False)
    result = _invoke(runner, "score", "-c", card, "-d", data, "-o", out)
    assert result.exit_code == 0, result.output
    scores = pd.read_parquet(out)
    assert scores.loc[0, "health_score"] == 79.0
    assert scores.loc[0, "band"] == "Stable"


def test_score_weights_not_totalling_100(runner, tmp_path, card_dict, worked):
    _, data = worked
    d = card_dict()
    d["indicators"][3]["weight"] = 15  # 25 + 20 + 25 + 15 + 10 = 95
    card = tmp_path / "bad.yaml"
    card.write_text(yaml.safe_dump(d), encoding="utf-8")
    out = tmp_path / "scores.csv"
    result = _invoke(runner, "score", "-c", card, "-d", data, "-o", out)
    _assert_one_line_error(result)
    assert "must total 100" in result.stderr
    assert "95" in result.stderr
    assert not out.exists()


def test_score_missing_column(runner, tmp_path, worked, worked_frame):
    card, _ = worked
    data = tmp_path / "partial.csv"
    worked_frame.drop(columns=["csat"]).to_csv(data, index=False)
    out = tmp_path / "scores.csv"
    result = _invoke(runner, "score", "-c", card, "-d", data, "-o", out)
    _assert_one_line_error(result)
    assert "'csat' (needed by indicator 'csat')" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        pytest.param(["-c", "{tmp}/nope.yaml", "-d", "{data}"], r"nope\.yaml: card file not found", id="no-card"),
        pytest.param(["-c", "{card}", "-d", "{tmp}/nope.csv"], r"nope\.csv: file not found", id="no-data"),
        pytest.param(["-c", "{card}", "-d", "{tmp}/data.xlsx"], r"unknown table format '\.xlsx'", id="bad-suffix"),
    ],
)
def test_score_input_errors(runner, tmp_path, worked, args, match):
    card, data = worked
    filled = [a.format(tmp=tmp_path, card=card, data=data) for a in args]
    result = _invoke(runner, "score", *filled, "-o", tmp_path / "scores.csv")
    _assert_one_line_error(result)
    assert re.search(match, result.stderr), result.stderr


def test_score_warnings_are_one_line_each(runner, tmp_path, worked, worked_frame):
    card, _ = worked
    data = tmp_path / "text.csv"
    # C1 answered csat with text, C2 is the worked example
    pd.concat([worked_frame.assign(csat="high"), worked_frame.assign(customer_id="C2")]).to_csv(data, index=False)
    out = tmp_path / "scores.csv"
    result = _invoke(runner, "score", "-c", card, "-d", data, "-o", out)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1, result.stderr
    assert "'csat'" in warnings[0] and "not numbers" in warnings[0]
    assert pd.read_csv(out)["health_score"].tolist() == [77.5, 79.0]  # csat renormalized away for C1


# ---- demo ---------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::ml.errors.HealthScoreWarning")
@pytest.mark.slow
def test_demo_runs_the_whole_job(runner, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    out_dir = tmp_path / "models"
    result = _invoke(runner, "demo", "--out-dir", out_dir, "--customers", 1500, "--months", 15)
    assert result.exit_code == 0, result.output + result.stderr
    for band in ("Healthy", "Stable", "At risk"):
        assert band in result.stdout
    assert "Band summary" in result.stdout
    snapshots = pd.read_csv(out_dir / "demo-snapshots.csv")
    scores = pd.read_csv(out_dir / "demo-manual-scores.csv")
    assert len(scores) == len(snapshots)
    assert f"generated {len(snapshots):,} snapshots of 1,500 customers" in result.stdout
    assert (out_dir / "demo" / "MLmodel").exists() and (out_dir / "demo" / "weights.csv").exists()
    # built from raw tables: the spec beside them, censored rows kept (scored), not trained on
    assert (out_dir / "demo-raw" / "spec.yaml").exists() and (out_dir / "demo-raw" / "usage.parquet").exists()
    assert snapshots["churned"].isna().any() and set(snapshots["churned"].dropna()) == {0, 1}
    assert "rows labelled" in result.stdout and "without a label yet" in result.stdout
    html = (out_dir / "demo-report.html").read_text()
    assert "<svg" in html
    preds = pd.read_csv(out_dir / "demo-predictions.csv")
    # the current book: each customer whose latest snapshot is on the latest date, by ARR at risk
    last = snapshots["snapshot_date"].max()
    latest = snapshots.groupby("customer_id")["snapshot_date"].max()
    assert len(preds) == int((latest == last).sum()) < snapshots["customer_id"].nunique()
    assert (preds["snapshot_date"] == last).all() and preds["customer_id"].is_unique
    assert "value_at_risk" not in preds or preds["value_at_risk"].is_monotonic_decreasing
    assert f"report:      {out_dir / 'demo-report.html'}" in result.stdout
    assert "mlflow ui --backend-store-uri sqlite:///" in result.stdout
    assert "registered health-score version 1 as @challenger" in result.stdout
    # health over time: six months scored into a history, the latest month's alerts, the monitor
    history = out_dir / "demo-history"
    assert len(list(history.glob("date=*/model=*.parquet"))) == 6
    alerts = pd.read_csv(out_dir / "demo-alerts.csv", keep_default_na=False)
    assert alerts["as_of"].unique().tolist() == [str(pd.Timestamp(snapshots["snapshot_date"].max()).date())]
    assert f"{len(alerts):,} alerts on " in result.stdout
    monitor = json.loads((out_dir / "demo-monitor.json").read_text())
    assert monitor["verdict"] in ("ok", "watch", "retrain") and monitor["realised"]["by_date"]
    assert f"verdict {monitor['verdict']}" in result.stdout
    assert monitor["mlflow"]["training_run_id"]  # the monitoring run is linked to the training run
    assert '<section id="trends">' in html


# ---- help ---------------------------------------------------------------------------------------
COMMANDS = sorted(typer.main.get_command(app).commands)


def test_every_expected_command_exists():
    assert {
        "generate",
        "snapshots",
        "score",
        "demo",
        "train",
        "compare",
        "predict",
        "explain",
        "promote",
        "report",
    } <= set(COMMANDS)
    assert {"history", "alerts", "monitor"} <= set(COMMANDS)


@pytest.mark.parametrize("command", [[], *[[c] for c in COMMANDS]], ids=["app", *COMMANDS])
def test_help(runner, command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.stdout
    assert "Traceback" not in result.output


# ---- raw tables and snapshots ---------------------------------------------------------------------
def test_generate_raw_then_snapshots(runner, tmp_path):
    raw = tmp_path / "raw"
    result = _invoke(runner, "generate", "--raw", raw, "--customers", 120, "--months", 6, "--truth", tmp_path / "t.csv")
    assert result.exit_code == 0, result.output + result.stderr
    assert f"wrote raw tables to {raw} (rows: accounts 120, subscriptions 120, usage " in result.stdout
    assert f"next: healthscore snapshots --spec {raw / 'spec.yaml'} --out snapshots.parquet" in result.stdout
    assert pd.read_csv(tmp_path / "t.csv")["true_importance"].sum() == pytest.approx(100)
    out = tmp_path / "snapshots.csv"
    result = _invoke(runner, "snapshots", "--spec", raw / "spec.yaml", "--out", out)
    assert result.exit_code == 0, result.output + result.stderr
    frame = pd.read_csv(out)
    assert f"built {len(frame):,} snapshots of {frame['customer_id'].nunique():,} customers at 3 dates" in result.stdout
    assert f"{frame['churned'].notna().sum():,} rows labelled" in result.stdout
    assert f"{frame['churned'].isna().sum():,} without a label yet" in result.stdout
    assert {"logins_30d", "login_trend", "csat", "late_invoices_90d", "tenure_months", "plan"} <= set(frame.columns)


@pytest.mark.parametrize("args", [["generate"], ["generate", "--out", "a.csv", "--raw", "r"]])
def test_generate_needs_one_target(runner, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = _invoke(runner, *args)
    _assert_one_line_error(result)
    assert "generate: give exactly one of --out FILE (snapshots) or --raw DIR (raw tables)." in result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"horizon_days": "soon"},
            "error: .*spec.yaml: horizon_days: expected a positive whole number of days, got 'soon'.",
        ),
        ({"observations": {"every": "1 fortnight", "start": "2023-01-01"}}, "observations.every: got '1 fortnight'"),
    ],
)
def test_snapshots_bad_spec_is_one_line(runner, tmp_path, change, match):
    runner.invoke(app, ["generate", "--raw", str(tmp_path), "--customers", "20", "--months", "3"])
    raw = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    raw.update(change)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(raw))
    result = _invoke(runner, "snapshots", "--spec", tmp_path / "spec.yaml", "--out", tmp_path / "s.csv")
    _assert_one_line_error(result)
    assert re.search(match, result.stderr), result.stderr
    assert not (tmp_path / "s.csv").exists()


def test_snapshots_unknown_engine(runner, tmp_path):
    runner.invoke(app, ["generate", "--raw", str(tmp_path), "--customers", "20", "--months", "3"])
    result = _invoke(
        runner, "snapshots", "--spec", tmp_path / "spec.yaml", "--out", tmp_path / "s.csv", "--engine", "dask"
    )
    _assert_one_line_error(result)
    assert "--engine must be duckdb or spark; got 'dask'." in result.stderr
