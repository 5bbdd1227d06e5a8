"""The numbers a CS lead acts on (issue 12): the out-of-time backtest with a label gap, censored rows,
the refitted saved model, capture at the manual card's list size, the default scale's bands, and the
adoptable proposal cards that `healthscore score` runs as they are.

``demo_run`` trains the default card once on the demo's data (2,000 customers x 12 months, seed 0)
and writes the model directory; the other tests use smaller data.
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from ml.card import load_card, parse_card
from ml.cli.app import app
from ml.data.generate import generate_snapshots
from ml.errors import CardError, DataError, HealthScoreWarning
from ml.model.evaluate import capture_at_share, expected_calibration_error
from ml.model.features import label_array, label_values
from ml.model.splits import make_splits, out_of_time_dates
from ml.pipeline import train
from ml.serving.bundle import load_model


@pytest.fixture(scope="module")
def demo_data():
    return generate_snapshots(2000, 12, seed=0).frame


@pytest.fixture(scope="module")
def demo_run(demo_data, default_card_raw, tmp_path_factory):
    raw = default_card_raw()
    raw["model"]["n_refits"] = 0  # intervals are not under test here
    return train(parse_card(raw), demo_data, tmp_path_factory.mktemp("demo") / "model", mlflow_files=False)


def _heldout_rows(model_dir, frame, card):
    """The held-out rows as a user finds them from the model directory: every customer's labelled
    snapshots dated on or after split.json's heldout_start."""
    split = json.loads((model_dir / "split.json").read_text(encoding="utf-8"))
    dates = pd.to_datetime(frame[card.date_column])
    known = ~np.isnan(label_values(frame, card.label_column))
    return frame[(dates >= pd.Timestamp(split["heldout_start"])).to_numpy() & known]


# ---- the default scale on the demo's data ---------------------------------------------------------
@pytest.mark.slow
def test_default_scale_bands_are_usable_on_the_demo_data(demo_run):
    m = demo_run.metrics["ranking"]["model"]
    rows = m["rows_by_band"]
    total = sum(rows.values())
    base = demo_run.metrics["holdout"]["churn_rate"]
    for band, n in rows.items():
        assert n / total >= 0.05, (band, rows)
    assert m["churn_rate_by_band"]["At risk"] >= 2 * base, (m["churn_rate_by_band"], base)
    # and the bands are ordered by churn
    rates = [m["churn_rate_by_band"][b] for b in ("Healthy", "Stable", "At risk")]
    assert rates == sorted(rates)


@pytest.mark.slow
def test_capture_at_the_cards_list_size(demo_run, demo_data):
    """Every scorer is compared at the manual card's list size: the share of held-out churners among
    the k lowest-scored rows, k = the rows the manual card puts in its lowest band."""
    metrics, model = demo_run.metrics, demo_run.backtest
    hold = model.splits_.holdout
    y = demo_data["churned"].to_numpy()[hold]
    pred = model.predict(demo_data.iloc[hold], drivers=0)
    k = int((pred["manual_band"] == "At risk").sum())
    assert metrics["holdout"]["card_list_size"] == k == metrics["ranking"]["manual"]["rows_by_band"]["At risk"]
    # the reference: take the k lowest health scores (a plain sort; scores have no ties here)
    lowest = np.argsort(pred["health_score"].to_numpy(), kind="stable")[:k]
    assert metrics["ranking"]["model"]["capture_at_card_share"] == pytest.approx(y[lowest].sum() / y.sum(), abs=1e-12)
    for key, m in metrics["ranking"].items():
        assert 0 <= m["capture_at_card_share"] <= 1, key
    # for the manual card it is its own at-risk capture; the model, at the same list size, catches more
    manual = metrics["ranking"]["manual"]
    assert manual["capture_at_card_share"] == pytest.approx(manual["at_risk_capture"], abs=1e-12)
    assert metrics["ranking"]["model"]["capture_at_card_share"] > manual["capture_at_card_share"]


def test_capture_at_share_golden():
    # scores 10, 20, 30, 40, nan; churners at 20 and 40: the 2 lowest (10, 20) catch 1 of 2
    score = np.array([40.0, 20.0, 10.0, np.nan, 30.0])
    y = np.array([1, 1, 0, 0, 0])
    assert capture_at_share(score, y, 2) == 0.5
    assert capture_at_share(score, y, 4) == 1.0  # 10, 20, 30, 40
    assert capture_at_share(score, y, 0) is None
    assert capture_at_share(score, np.zeros(5), 3) is None


@pytest.mark.slow
def test_proposal_cards_reproduce_the_heldout_auc_via_the_cli(demo_run, demo_data, tmp_path):
    """`healthscore score --config M/cards/shap.yaml` on the held-out rows gives card_shap's AUC to 1e-9
    (the default card has a percentile indicator: the card carries its reference population)."""
    model_dir = demo_run.model_dir
    card = demo_run.model.card
    hold = _heldout_rows(model_dir, demo_data, card)
    assert len(hold) == demo_run.metrics["holdout"]["rows"]
    data = tmp_path / "heldout.csv"
    hold.to_csv(data, index=False)
    runner = CliRunner()
    for name in ("shap", "gain", "linear"):
        path = model_dir / "cards" / f"{name}.yaml"
        proposal = load_card(path)  # a valid card
        assert sum(i.weight for i in proposal.indicators) == 100
        assert proposal.names == card.names  # card indicators only
        weights = demo_run.weights.set_index("indicator")[name]
        assert proposal.weights == pytest.approx(demo_run.metrics["reweighted_cards"][f"card_{name}"])
        assert all(proposal.weights[n] >= 0 for n in weights.index if n in proposal.weights)
        ref = proposal.indicator("product_activity").scoring
        assert ref.method == "percentile" and sum(ref.reference_counts) > 0
        # every digit: Parquet, or CSV with --full-precision (CSV rounds health to 2 decimals by default,
        # which ties a few customers and moves the AUC by ~1e-6)
        out = tmp_path / (f"{name}.parquet" if name != "gain" else f"{name}.csv")
        extra = ["--full-precision"] if name == "gain" else []
        result = runner.invoke(app, ["score", "--config", str(path), "--data", str(data), "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        scored = pd.read_parquet(out) if out.suffix == ".parquet" else pd.read_csv(out)
        assert scored["customer_id"].astype(str).tolist() == hold["customer_id"].astype(str).tolist()
        auc = roc_auc_score(hold["churned"].to_numpy(), -scored["health_score"].to_numpy())
        assert auc == pytest.approx(demo_run.metrics["ranking"][f"card_{name}"]["roc_auc"], abs=1e-9), name


@pytest.mark.slow
def test_metrics_and_split_record_the_backtest(demo_run):
    md = demo_run.model_dir
    metrics = json.loads((md / "metrics.json").read_text(encoding="utf-8"))
    split = json.loads((md / "split.json").read_text(encoding="utf-8"))
    assert metrics["rows_censored"] == 0
    ev = metrics["evaluation"]
    assert ev["kind"] == "backtest, out of time"
    assert ev["label_cutoff"] == split["label_cutoff"] and ev["heldout_start"] == split["heldout_start"]
    gap = pd.Timestamp(split["heldout_start"]) - pd.Timestamp(split["label_cutoff"])
    assert gap >= pd.Timedelta(days=split["horizon_days"]) and split["horizon_days"] == 90
    # the demo's 12 monthly snapshots: held out Oct-Dec, fitted on Jan-Jul (Aug, Sep: the label gap)
    assert (split["label_cutoff"], split["heldout_start"]) == ("2024-07-01", "2024-10-01")
    # the never-seen subset and the in-time comparison beside the main numbers
    sub = metrics["subsets"]["never_seen"]
    assert 0 < sub["rows"] < metrics["holdout"]["rows"]
    assert sub["ranking"]["model"]["roc_auc"] > 0.6
    assert metrics["calibration"]["in_time"]["rows"] > 0
    saved = metrics["saved_model"]
    assert saved["refit"] is True and split["saved_model"] == saved


# ---- out of time: a churn rate that rises over time ---------------------------------------------
def _rising_churn(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The generated labels plus churn that rises with the snapshot month (independent of the
    indicators): ~0 extra in the first month, +25 points of churn by the last."""
    rng = np.random.default_rng(seed)
    d = pd.to_datetime(frame["snapshot_date"])
    t = (d - d.min()).dt.days.to_numpy() / max((d.max() - d.min()).days, 1)
    extra = rng.random(len(frame)) < 0.25 * t
    return frame.assign(churned=(frame["churned"].to_numpy().astype(bool) | extra).astype(int))


@pytest.fixture(scope="module")
def rising_run(default_card_raw):
    raw = default_card_raw()
    raw["model"] = {"n_refits": 0, "extra_features": ["login_trend", "late_invoices_90d"], "refit": False}
    frame = _rising_churn(generate_snapshots(1500, 12, seed=5).frame)
    return train(parse_card(raw), frame, None), frame


def test_out_of_time_ece_differs_from_in_time_when_churn_rises(rising_run):
    """The calibrator learns the churn rate of the training period; the held-out period churns more,
    so out of time the model under-predicts. The in-time rows (never-seen customers, training period)
    are calibrated well: a split that peeked across time would hide the gap."""
    result, frame = rising_run
    model = result.backtest
    cal = result.metrics["calibration"]
    out_ece, in_ece = cal["model"]["ece"], cal["in_time"]["model"]["ece"]
    assert out_ece > in_ece + 0.05, (out_ece, in_ece)
    held = cal["model"]
    assert held["observed_rate"] > held["mean_predicted"] + 0.05  # under-predicted: drift
    # recomputed from the rows: the in-time rows are the never-seen customers' training-period rows
    y = frame["churned"].to_numpy()
    rows = model.splits_.in_time
    p = model.predict(frame.iloc[rows], drivers=0)["churn_probability"].to_numpy()
    assert in_ece == pytest.approx(expected_calibration_error(p, y[rows]), abs=1e-12)
    dates = pd.to_datetime(frame["snapshot_date"]).iloc[rows]
    assert dates.max() <= pd.Timestamp(model.splits_.label_cutoff)


def test_refit_false_saves_the_backtest_model(rising_run):
    result, _ = rising_run
    assert result.model is result.backtest
    assert result.metrics["saved_model"]["refit"] is False


# ---- censored rows ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def censored_frame():
    """Generated snapshots whose last 90 days of labels are not known yet (empty), as a raw-table
    builder writes them."""
    frame = generate_snapshots(1200, 12, seed=2).frame
    d = pd.to_datetime(frame["snapshot_date"])
    out = frame.astype({"churned": "float64"})
    out.loc[(d > d.max() - pd.Timedelta(days=90)).to_numpy(), "churned"] = np.nan
    return out


@pytest.mark.slow
def test_censored_rows_are_counted_left_out_and_still_scored(censored_frame, default_card_raw, tmp_path):
    raw = default_card_raw()
    raw["model"]["n_refits"] = 0
    card = parse_card(raw)
    n_censored = int(censored_frame["churned"].isna().sum())
    assert n_censored > 1000
    csv = tmp_path / "snapshots.csv"
    censored_frame.to_csv(csv, index=False)  # empty fields in the label column
    result = CliRunner().invoke(
        app,
        [
            "train",
            "--config",
            str(_card_file(raw, tmp_path)),
            "--data",
            str(csv),
            "--model-dir",
            str(tmp_path / "m"),
            "--no-track",
            "--refits",
            "0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"{n_censored:,} rows with an empty label" in result.stdout
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["rows_censored"] == n_censored
    split = json.loads((tmp_path / "m" / "split.json").read_text(encoding="utf-8"))
    assert split["rows_censored"] == n_censored
    model = load_model(tmp_path / "m")
    # no censored row in any slice: fitted, calibrated or evaluated
    r = train(card, censored_frame, None, n_refits=0)
    censored = np.flatnonzero(censored_frame["churned"].isna().to_numpy())
    for name in ("train", "valid", "calibration", "holdout", "unseen", "in_time"):
        assert not np.isin(r.backtest.splits_.rows(name), censored).any(), name
    assert r.metrics["holdout"]["rows"] == metrics["holdout"]["rows"]
    # the held-out period is the latest *labelled* dates; the censored dates come after it
    last_labelled = pd.to_datetime(censored_frame.loc[censored_frame["churned"].notna(), "snapshot_date"]).max()
    assert pd.Timestamp(metrics["holdout"]["period"][1]) == last_labelled
    # predict scores the censored rows (the current book) like any other
    latest = censored_frame.iloc[censored]
    pred = model.predict(latest)
    assert len(pred) == len(latest) and pred["health_score"].notna().all()


def _card_file(raw, tmp_path):
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1, 0, np.nan, 1], [1.0, 0.0, np.nan, 1.0]),
        (["yes", "no", "", None], [1.0, 0.0, np.nan, np.nan]),
        (["TRUE", " false ", "1", "0"], [1.0, 0.0, 1.0, 0.0]),
        ([True, False, True, False], [1.0, 0.0, 1.0, 0.0]),
    ],
)
def test_label_values_keep_empty_labels_as_censored(values, expected):
    y = label_values(pd.DataFrame({"churned": values}), "churned")
    np.testing.assert_array_equal(y, np.asarray(expected, float))


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([1, 0, 2, np.nan], r"label column 'churned' must be 0/1, found \[2\] in 1 row\(s\)"),
        (["yes", "maybe", ""], r"label column 'churned' must be 0/1 \(or yes/no, true/false\), found \['maybe'\]"),
        ([0.5, 1.0], r"found \[0\.5\]"),
    ],
)
def test_labels_other_than_0_1_or_empty_stay_an_error(values, match):
    with pytest.raises(DataError, match=match):
        label_values(pd.DataFrame({"churned": values}), "churned")


def test_label_array_still_refuses_empty_labels():
    with pytest.raises(DataError, match=r"label column 'churned' has 1 missing value\(s\)"):
        label_array(pd.DataFrame({"churned": [1, None, 0]}), "churned")


# ---- the split's dates ----------------------------------------------------------------------------
def test_out_of_time_dates_on_monthly_snapshots():
    dates = pd.Series(pd.to_datetime(np.repeat(pd.date_range("2024-01-01", periods=12, freq="MS"), 10)))
    label_cutoff, start = out_of_time_dates(dates, 90)
    # the last 3 of 12 equal months are ~25 %: held out from Oct 1; Oct 1 - 90 days = Jul 3 -> Jul 1
    assert (str(label_cutoff.date()), str(start.date())) == ("2024-07-01", "2024-10-01")
    label_cutoff, start = out_of_time_dates(dates, 30)
    assert (str(label_cutoff.date()), str(start.date())) == ("2024-09-01", "2024-10-01")


def test_a_short_history_moves_the_heldout_period_later_then_fails():
    dates = pd.Series(pd.to_datetime(np.repeat(pd.date_range("2024-01-01", periods=5, freq="MS"), 10)))
    # 25 % of 5 months: Apr-May from Apr 1; with a 100-day horizon Apr 1 - 100 days = Dec 23, before any
    # snapshot: the held-out period shrinks to May (May 1 - 100 days = Jan 22 -> label cutoff Jan 1)
    assert [str(x.date()) for x in out_of_time_dates(dates, 90)] == ["2024-01-01", "2024-04-01"]
    assert [str(x.date()) for x in out_of_time_dates(dates, 100)] == ["2024-01-01", "2024-05-01"]
    short = pd.Series(pd.to_datetime(np.repeat(pd.date_range("2024-01-01", periods=3, freq="MS"), 10)))
    with pytest.raises(DataError, match=r"needs snapshots at least horizon_days \(90\) before the held-out period"):
        out_of_time_dates(short, 90)


def test_without_a_date_column_the_split_is_grouped(censored_frame, default_card_raw):
    raw = default_card_raw()
    del raw["date_column"]
    card = parse_card(raw)
    y = label_values(censored_frame, "churned")
    s = make_splits(censored_frame, y, card)
    assert s.cutoff is None and s.label_cutoff is None and len(s.unseen) == 0
    assert s.censored == int(np.isnan(y).sum())
    rows = np.concatenate([s.train, s.valid, s.calibration, s.holdout])
    np.testing.assert_array_equal(np.sort(rows), np.flatnonzero(~np.isnan(y)))  # every labelled row once


# ---- sparse bands, cards and the refit --------------------------------------------------------------
def test_train_warns_when_a_band_is_nearly_empty(default_card_raw):
    raw = default_card_raw()
    raw["calibration"] = {"scale": "probability"}  # health = 100 (1 - p): At risk (< 30) needs p > 70 %
    raw["bands"] = [{"name": "Healthy", "min": 80}, {"name": "Stable", "min": 30}, {"name": "At risk", "min": 0}]
    raw["model"] = {"n_refits": 0, "extra_features": ["login_trend", "late_invoices_90d"], "refit": False}
    frame = generate_snapshots(1500, 12, seed=5).frame
    with pytest.warns(
        HealthScoreWarning,
        match=r"band 'At risk' holds \d+ of [\d,]+ held-out customers .*"
        r"under 2%.*scale: odds",
    ):
        train(parse_card(raw), frame, None)


def test_value_column_is_checked(default_card_raw):
    raw = default_card_raw()
    raw["value_column"] = "csat"
    with pytest.raises(CardError, match=r"\['csat'\] are also the id, label or value column"):
        parse_card(raw)
    raw["value_column"] = 5
    with pytest.raises(CardError, match=r"value_column: expected a column or name"):
        parse_card(raw)


@pytest.mark.parametrize(
    ("reference", "match"),
    [
        ([1, 2, 3], r"reference: expected a mapping \{values: \[\.\.\.\], counts: \[\.\.\.\]\}"),
        ({"values": [3, 1]}, r"reference\.values: must be strictly increasing"),
        ({"values": [1, 2], "counts": [1]}, r"reference\.counts: expected one count per value \(2\), got 1"),
        ({"values": [1, 2], "counts": [1, 0]}, r"reference\.counts: expected positive integers, got \[0\]"),
        ({"values": [1], "weights": [1]}, r"unknown key 'weights'"),
    ],
)
def test_bad_percentile_reference(one_indicator, reference, match):
    with pytest.raises(CardError, match=match):
        parse_card(one_indicator({"method": "percentile", "reference": reference}))


def test_a_stored_percentile_reference_scores_alike_on_any_data(one_indicator):
    from ml.scorecard import score_table

    # reference 1, 2, 2, 3: mid-rank percentile of 2 is (1 + 3) / 2 / 4 = 50; of 3: (3 + 4) / 8 = 87.5
    card = parse_card(one_indicator({"method": "percentile", "reference": {"values": [1, 2, 3], "counts": [1, 2, 1]}}))
    alone = score_table(card, pd.DataFrame({"customer_id": ["a"], "x": [2.0]}))
    batch = score_table(card, pd.DataFrame({"customer_id": ["a", "b", "c"], "x": [2.0, 3.0, 100.0]}))
    assert alone["health_score"].iloc[0] == batch["health_score"].iloc[0] == 50.0
    assert batch["health_score"].tolist() == [50.0, 87.5, 100.0]


def test_refit_trees_scale_with_the_data():
    from ml.pipeline import refit_trees

    assert refit_trees(100, 1000, 4000, 2000) == 200  # x sqrt(4)
    assert refit_trees(100, 1000, 1000, 2000) == 100
    assert refit_trees(100, 1000, 500, 2000) == 100  # never fewer than the backtest's
    assert refit_trees(100, 1000, 100_000, 500) == 500  # at most num_boost_round


@pytest.mark.slow
def test_the_saved_model_is_refitted_on_every_matured_row(demo_run, demo_data):
    from ml.pipeline import refit_rows

    saved, backtest = demo_run.model, demo_run.backtest
    assert saved is not backtest
    fit, cal, _ = refit_rows(backtest, demo_data, demo_data["churned"].to_numpy(dtype=float))
    ids = demo_data["customer_id"].to_numpy()
    assert not set(ids[fit]) & set(ids[cal])  # calibrated on customers it did not train on
    dates = pd.to_datetime(demo_data["snapshot_date"])
    assert dates.iloc[fit].max() == dates.max()  # it learns from the latest matured data
    assert dates.iloc[cal].max() == dates.max() and dates.iloc[cal].min() > dates.min()  # the latest matured slice
    assert len(cal) >= 2000 and demo_data["churned"].to_numpy()[cal].sum() >= 200
    info = demo_run.metrics["saved_model"]
    assert info["rows"] == len(fit) == saved.n_rows_ and info["calibration_rows"] == len(cal)
    assert saved.booster_.num_trees() == info["trees"] >= backtest.best_iteration_
    loaded = load_model(demo_run.model_dir)
    assert loaded.best_iteration_ == info["trees"]
    # the directory keeps the backtest numbers, and the saved model's predictions are its own
    sample = demo_data.tail(50)
    pd.testing.assert_frame_equal(loaded.predict(sample), saved.predict(sample), check_exact=True)


def test_dataclass_replace_keeps_the_refit_default(default_card_raw):
    card = parse_card(default_card_raw())
    assert card.model.refit is True
    off = parse_card({**default_card_raw(), "model": {"refit": False}})
    assert off.model.refit is False
    assert dataclasses.replace(card.model, seed=3).refit is True
    with pytest.raises(CardError, match=r"model\.refit: expected true or false, got 'yes'"):
        parse_card({**default_card_raw(), "model": {"refit": "yes"}})


# ---- predict: the current book, value at risk, rounding --------------------------------------------
@pytest.mark.slow
def test_predict_sorts_by_value_at_risk_and_summarises_the_current_book(demo_run, demo_data, tmp_path):
    md = demo_run.model_dir
    data = tmp_path / "snapshots.parquet"
    demo_data.to_parquet(data, index=False)
    runner = CliRunner()
    out = tmp_path / "pred.csv"
    result = runner.invoke(
        app, ["predict", "--model", str(md), "--data", str(data), "--out", str(out), "--sort", "value_at_risk"]
    )
    assert result.exit_code == 0, result.output
    pred = pd.read_csv(out)
    assert len(pred) == len(demo_data)  # every row is scored; only the summary is the current book
    var = pred["value_at_risk"].to_numpy()
    assert np.all(np.diff(var) <= 0)  # largest first
    # value at risk = value x churn probability (before rounding: 2 and 4 decimals in CSV)
    np.testing.assert_allclose(
        var, pred["value"] * pred["churn_probability"], rtol=0, atol=0.5 * pred["value"].max() * 1e-4 + 0.01
    )
    for col, d in (("health_score", 2), ("manual_score", 2), ("value_at_risk", 2), ("churn_probability", 4)):
        v = pred[col].dropna().to_numpy()
        np.testing.assert_array_equal(v, np.round(v, d))
    latest_date = pd.to_datetime(demo_data["snapshot_date"]).max()
    last = demo_data.groupby("customer_id")["snapshot_date"].transform("max")
    active = int(
        ((last == demo_data["snapshot_date"]) & (pd.to_datetime(demo_data["snapshot_date"]) == latest_date)).sum()
    )
    assert f"summary of the current book, {active:,} customers" in result.stdout
    assert f"left out {len(demo_data) - active:,} rows" in result.stdout
    assert "arr at risk by band" in result.stdout and "of arr sits in At risk" in result.stdout
    # --include-inactive counts every row; --full-precision keeps every digit in CSV
    full = tmp_path / "full.csv"
    result = runner.invoke(
        app,
        [
            "predict",
            "--model",
            str(md),
            "--data",
            str(data),
            "--out",
            str(full),
            "--include-inactive",
            "--full-precision",
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"summary of all {len(demo_data):,} rows" in result.stdout and "left out" not in result.stdout
    exact = pd.read_csv(full)
    model = load_model(md)
    expected = model.predict(demo_data)
    np.testing.assert_allclose(exact["health_score"], expected["health_score"], rtol=1e-15, atol=0)
    assert (exact["health_score"] != exact["health_score"].round(2)).any()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--sort", "revenue"], r"--sort: got 'revenue'; use one of: value_at_risk, churn_probability"),
        (["--sort", "value_at_risk"], r"--sort value_at_risk: the model's card has no value_column"),
    ],
)
def test_predict_sort_errors(args, match, tmp_path, default_card_raw):
    raw = default_card_raw()
    del raw["value_column"]
    raw["model"] = {"n_refits": 0, "extra_features": ["login_trend", "late_invoices_90d"], "refit": False}
    frame = generate_snapshots(1500, 12, seed=5).frame
    train(parse_card(raw), frame, tmp_path / "m", plots=False, mlflow_files=False)
    data = tmp_path / "d.csv"
    frame.head(20).to_csv(data, index=False)
    result = CliRunner().invoke(
        app, ["predict", "--model", str(tmp_path / "m"), "--data", str(data), "--out", str(tmp_path / "p.csv"), *args]
    )
    assert result.exit_code == 1
    assert re.search(match, result.stderr), result.stderr
    assert not (tmp_path / "p.csv").exists()


def test_value_columns_only_with_a_value_column(rising_run):
    result, frame = rising_run  # the default card: value_column arr
    pred = result.model.predict(frame.head(30), drivers=0)
    assert list(pred.columns[-2:]) == ["value", "value_at_risk"]
    np.testing.assert_allclose(
        pred["value_at_risk"], frame["arr"].head(30).to_numpy() * pred["churn_probability"], rtol=1e-12
    )
    # data without the value column (e.g. snapshots built from raw tables) is scored without them
    plain = result.model.predict(frame.head(30).drop(columns="arr"), drivers=0)
    assert "value" not in plain and "value_at_risk" not in plain
    pd.testing.assert_frame_equal(plain, pred.drop(columns=["value", "value_at_risk"]))
    bad = frame.head(30).astype({"arr": object})
    bad.loc[bad.index[0], "arr"] = "lots"
    with pytest.raises(
        DataError, match=r"value column 'arr' must hold numbers .* found text in 1 row\(s\), e\.g\. \['lots'\]"
    ):
        result.model.predict(bad, drivers=0)


def test_value_by_band_golden():
    from ml.model.book import money, value_by_band, value_sentence

    table = pd.DataFrame(
        {
            "band": ["At risk", "At risk", "Stable", "Healthy", "At risk"],
            "value": [100_000.0, 300_000.0, 50_000.0, 1_000_000.0, np.nan],
            "value_at_risk": [40_000.0, 60_000.0, 5_000.0, 20_000.0, np.nan],
        }
    )
    s = value_by_band(table, ["Healthy", "Stable", "At risk"])
    assert s.loc["At risk", "customers"] == 3 and s.loc["At risk", "value"] == 400_000.0
    assert s.loc["At risk", "value_at_risk"] == 100_000.0 and s.loc["At risk", "top_share"] == 1.0
    # 400 k of 1.45 M in At risk = 28 %; all of it in its (3 <= 10) largest accounts
    assert value_sentence(s, "At risk", "ARR") == (
        "400.0 k of ARR sits in At risk (28% of the book; 100% of it in the 3 largest accounts), "
        "of which 100.0 k is expected to churn within the horizon."
    )
    assert (money(1_234_567), money(45_600), money(950)) == ("1.2 M", "45.6 k", "950")


def test_the_current_book_is_the_latest_snapshot_on_the_latest_date(default_card_raw):
    from ml.data.io import active_mask, active_snapshots

    card = parse_card(default_card_raw())
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b", "b", "c", "d"],
            # a: current; b: left in February; c: current; d: a date that does not parse (never current)
            "snapshot_date": ["2024-02-01", "2024-03-01", "2024-01-01", "2024-02-01", "2024-03-01", "soon"],
        }
    )
    assert active_mask(frame, card).tolist() == [False, True, False, False, True, False]
    current, left_out = active_snapshots(frame.iloc[:5], card)
    assert current["customer_id"].tolist() == ["a", "c"] and left_out == 1  # b left
