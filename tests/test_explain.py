"""Explanations in health points: additivity (model and card), agreement with the shap package,
signs and order kept from log-odds, monotone response to CSAT, driver text, the ``explain`` command
and the global plots saved with the model.

One model is trained per module (1,500 generated customers x 8 months, two refits) and written to a
temporary directory without MLflow files; every test reads it.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ml.card import parse_card
from ml.cli.app import app
from ml.data.generate import generate_snapshots
from ml.model.explain import card_contributions, contributions, driver_text, feature_labels
from ml.model.features import CATEGORICAL
from ml.pipeline import train

pytestmark = pytest.mark.slow  # trains models: `make test-fast` skips this module

ADDITIVE = 1e-6  # base_score + sum(points) == score shown


@pytest.fixture(scope="module")
def train_result(default_card_raw, tmp_path_factory):
    raw = default_card_raw()
    raw["model"] = {**raw.get("model", {}), "n_refits": 2}
    frame = generate_snapshots(1500, 8, seed=7).frame
    model_dir = tmp_path_factory.mktemp("explain") / "model"
    return train(parse_card(raw), frame, model_dir, mlflow_files=False), frame


@pytest.fixture(scope="module")
def trained(train_result):
    """(model, frame, model_dir): the default card's saved model (refitted on every matured row after
    the backtest; two refits for the intervals) on seeded generated data."""
    result, frame = train_result
    return result.model, frame, result.model_dir


@pytest.fixture(scope="module")
def model(trained):
    return trained[0]


@pytest.fixture(scope="module")
def holdout(trained):
    """The held-out rows (never used to fit or calibrate)."""
    model, frame, _ = trained
    return frame.iloc[model.splits_.holdout]


@pytest.fixture(scope="module")
def shown(model, holdout):
    """What `healthscore predict` shows for the held-out rows."""
    return model.predict(holdout)


@pytest.fixture(scope="module")
def model_contrib(model, holdout):
    return contributions(model, model.schema_.matrix(holdout))


# ---- additivity ---------------------------------------------------------------------------------
def test_model_points_add_up_to_the_health_score(model_contrib, shown):
    total = model_contrib.base_score + model_contrib.points.sum(axis=1).to_numpy()
    assert len(total) == len(shown) > 500
    assert np.isfinite(total).all()
    np.testing.assert_allclose(total, shown["health_score"].to_numpy(), rtol=0, atol=ADDITIVE)
    np.testing.assert_allclose(model_contrib.score, shown["health_score"].to_numpy(), rtol=0, atol=ADDITIVE)


def test_card_points_add_up_to_the_manual_score(model, holdout, shown):
    mc = card_contributions(model.scorecard_, holdout, model.manual_base_subscores_)
    assert list(mc.points.columns) == model.card.names
    manual = shown["manual_score"].to_numpy()
    assert np.isfinite(manual).all()  # every generated row has some indicator
    # rows with a missing CSAT are renormalised: their points still add up
    assert holdout["csat"].isna().any()
    total = mc.base_score + mc.points.sum(axis=1).to_numpy()
    np.testing.assert_allclose(total, manual, rtol=0, atol=ADDITIVE)
    # the base is the card at the portfolio's mean sub-scores: sum_j w_j x mean_j / 100
    w = np.array([ind.weight for ind in model.card.indicators])
    assert mc.base_score == pytest.approx(float(w @ model.manual_base_subscores_ / 100), abs=1e-9)


def test_a_reloaded_model_explains_alike(trained, model_contrib, holdout):
    from ml.serving.bundle import load_model

    loaded = load_model(trained[2])
    c = contributions(loaded, loaded.schema_.matrix(holdout))
    np.testing.assert_allclose(c.points.to_numpy(), model_contrib.points.to_numpy(), rtol=0, atol=1e-9)
    assert c.base_score == pytest.approx(model_contrib.base_score, abs=1e-9)


# ---- agreement with the shap package ------------------------------------------------------------
def test_pred_contrib_equals_shap_tree_explainer(model, holdout, model_contrib):
    """LightGBM's own TreeSHAP (``pred_contrib``) against ``shap.TreeExplainer``, on a booster with
    a categorical feature (`plan`): shap handles it (it calls LightGBM's pred_contrib for LightGBM
    models, so this pins that our scoring path and the plots' cross-check use the same values)."""
    shap = pytest.importorskip("shap")
    assert any(f.kind == CATEGORICAL for f in model.schema_.features)
    X = model.schema_.matrix(holdout)
    with warnings.catch_warnings():
        # "LightGBM binary classifier with TreeExplainer shap values output has changed ..."
        warnings.filterwarnings("ignore", message=".*shap values output has changed.*", category=UserWarning)
        explainer = shap.TreeExplainer(model.booster_)
        values = explainer.shap_values(X)
    values = np.asarray(values)
    if values.ndim == 3:  # older shap: one array per class
        values = values[-1]
    assert values.shape == model_contrib.log_odds.shape
    np.testing.assert_allclose(values, model_contrib.log_odds, rtol=0, atol=1e-9)
    expected = float(np.ravel(explainer.expected_value)[-1])
    raw = model.booster_.predict(X, pred_contrib=True)
    np.testing.assert_allclose(raw[:, -1], expected, rtol=0, atol=1e-9)
    # TreeSHAP is additive in log-odds: bias + sum(phi) == the raw margin
    np.testing.assert_allclose(raw.sum(axis=1), model.margin(holdout), rtol=0, atol=1e-9)


# ---- signs and order ----------------------------------------------------------------------------
def test_points_keep_the_sign_and_order_of_the_log_odds(model_contrib):
    pts = model_contrib.points.to_numpy()
    phi = model_contrib.log_odds
    # more churn risk (phi > 0) = fewer health points, and vice versa; zero stays zero
    np.testing.assert_array_equal(np.sign(pts), -np.sign(phi))
    # per customer, sorting by |log-odds| sorts |points| too (a tie may appear, never a swap)
    order = np.argsort(np.abs(phi), axis=1, kind="stable")
    sorted_pts = np.take_along_axis(np.abs(pts), order, axis=1)
    assert (np.diff(sorted_pts, axis=1) >= 0).all()
    order_pts = np.argsort(np.abs(pts), axis=1, kind="stable")
    sorted_phi = np.take_along_axis(np.abs(phi), order_pts, axis=1)
    assert (np.diff(sorted_phi, axis=1) >= 0).all()


# ---- monotone in CSAT ---------------------------------------------------------------------------
def test_csat_direction_is_not_contradicted(model):
    verdicts = {c.indicator: c for c in model.audit_}
    assert verdicts["csat"].verdict != "contradicted", verdicts["csat"]
    assert verdicts["csat"].constrained


@pytest.mark.parametrize("decrement", [0.1, 0.5, 1.0, 2.0, 4.0])
def test_lower_csat_never_raises_the_score(model, holdout, model_contrib, decrement):
    answered = holdout["csat"].notna().to_numpy()
    assert answered.sum() > 300
    before = holdout[answered]
    after = before.copy()
    after["csat"] = np.maximum(before["csat"] - decrement, 1.0)  # CSAT is 1-5
    assert (after["csat"] < before["csat"]).sum() > 100
    c0 = model_contrib.points["csat"].to_numpy()[answered]
    h0 = model_contrib.score[answered]
    c1 = contributions(model, model.schema_.matrix(after))
    # all else equal: the CSAT contribution gets more negative (or stays) and the score never rises
    assert (c1.points["csat"].to_numpy() <= c0 + 1e-9).all()
    assert (c1.score <= h0 + 1e-9).all()
    # and the score shown by predict agrees
    np.testing.assert_allclose(
        model.predict(after, drivers=0)["health_score"].to_numpy(), c1.score, rtol=0, atol=ADDITIVE
    )


# ---- driver text --------------------------------------------------------------------------------
_REFERENCE = re.compile(r" \((portfolio median [^()]+|usual: [^()]+|the usual value)\): ")
_POINTS = re.compile(r"([+-]?\d+(\.\d)?) points$")


def _parse_driver(text: str, labels: list[str]) -> tuple[str, str, float]:
    """(label, value text, points) of 'CSAT 2.1 (portfolio median 4.2): -11 points'."""
    label = max((lab for lab in labels if text.startswith(lab + " ")), key=len, default=None)
    assert label is not None, f"{text!r} names no indicator label of {labels}"
    ref = _REFERENCE.search(text)
    assert ref is not None, f"{text!r} names no reference value"
    assert text.endswith(" points"), text
    pts = _POINTS.search(text)
    assert pts is not None, text
    return label, text[len(label) + 1 : ref.start()], float(pts.group(1))


def _value_matches(value_text: str, raw, feature) -> bool:
    if pd.isna(raw):
        return value_text == "missing"
    if feature.kind == CATEGORICAL:
        return value_text == str(raw)
    if feature.boolean:
        return value_text == ("yes" if bool(raw) else "no")
    return float(value_text) == pytest.approx(float(raw), rel=5e-3, abs=1e-9)  # 3 significant digits


def test_drivers_name_indicator_value_reference_and_points(model, holdout, shown, model_contrib):
    labels = feature_labels(model)
    features = {lab: f for lab, f in zip(labels, model.schema_.features, strict=True)}
    pts = model_contrib.points.to_numpy()
    assert [c for c in shown.columns if c.startswith("driver_")] == ["driver_1", "driver_2", "driver_3"]
    texts = shown[["driver_1", "driver_2", "driver_3"]].to_numpy()
    n_nonempty = 0
    for i in range(len(shown)):
        parsed = []
        for text in texts[i]:
            assert isinstance(text, str)
            if not text:
                continue
            label, value, points = _parse_driver(text, labels)
            f = features[label]
            assert _value_matches(value, holdout[f.column].iloc[i], f), (text, holdout[f.column].iloc[i])
            assert points < 0, text
            assert points == pytest.approx(model_contrib.points[f.name].iloc[i], abs=0.05 + 1e-9), text
            parsed.append(points)
            n_nonempty += 1
        # empty drivers only come after the named ones
        nonempty = [bool(t) for t in texts[i]]
        assert nonempty == sorted(nonempty, reverse=True), texts[i]
        if parsed:
            # driver_1 is the most negative contribution, then in order
            assert parsed[0] == pytest.approx(pts[i].min(), abs=0.05 + 1e-9)
            assert parsed == sorted(parsed)
    assert n_nonempty > len(shown)  # most customers have some driver


def test_drivers_are_empty_when_nothing_lowers_the_score(model, holdout, shown, model_contrib):
    # On the odds scale a point of log-odds is ~14 health points, so nearly every real customer has
    # some visible negative contribution: make some whose contributions are all non-negative (and some
    # with one small negative) from the real ones, and check the text of all of them.
    pts = model_contrib.points.to_numpy().copy()
    pts[:40] = np.abs(pts[:40])
    pts[40:60] = np.abs(pts[40:60])
    pts[40:60, 0] = -0.04  # lowers by less than what is shown (0.1 points)
    contrib = dataclasses.replace(model_contrib, points=pd.DataFrame(pts, columns=model_contrib.points.columns))
    texts = driver_text(model, model.schema_.matrix(holdout).reset_index(drop=True), contrib, k=3)
    drivers = pd.DataFrame({f"driver_{j + 1}": t for j, t in enumerate(texts)})
    nothing_lowers = (pts >= -0.05).all(axis=1)  # nothing lowers the score by a shown amount
    assert nothing_lowers[:60].all()
    for col in drivers:
        assert (drivers.loc[nothing_lowers, col] == "").all()
    # and a customer with something lowering the score by a visible amount has a driver_1
    visible = pts.min(axis=1) <= -0.1
    assert visible[60:].any() and (drivers.loc[visible, "driver_1"] != "").all()
    # with fewer lowering indicators than drivers, the rest are empty
    n_lowering = (np.round(pts, 1) < 0).sum(axis=1)
    n_shown = (drivers != "").sum(axis=1).to_numpy()
    np.testing.assert_array_equal(n_shown, np.minimum(n_lowering, 3))
    # the real predictions follow the same rule
    real = model_contrib.points.to_numpy()
    real_shown = (shown[["driver_1", "driver_2", "driver_3"]] != "").sum(axis=1).to_numpy()
    np.testing.assert_array_equal(real_shown, np.minimum((np.round(real, 1) < 0).sum(axis=1), 3))


def test_categorical_drivers_say_what_the_usual_value_is_worth(model, holdout, model_contrib):
    """A category is never compared with itself: the usual value says so, another value names the
    usual one and its average points."""
    cats = [f for f in model.schema_.features if f.kind == CATEGORICAL]
    assert cats
    f = cats[0]
    usual = model.reference_values_[f.name]
    worth = model.reference_points_[f.name]
    pts = model_contrib.points.copy()
    pts.iloc[:, :] = 0.0
    pts[f.name] = -3.0  # make this category every customer's only driver
    contrib = dataclasses.replace(model_contrib, points=pts.reset_index(drop=True))
    X = model.schema_.matrix(holdout).reset_index(drop=True)
    text = pd.Series(driver_text(model, X, contrib, k=1)[0])
    values = X[f.name].astype(object)
    same, other = (values == usual).to_numpy(), (values.notna() & (values != usual)).to_numpy()
    assert same.any() and other.any()
    label = feature_labels(model)[model.schema_.names.index(f.name)]
    assert (text[same] == f"{label} {usual} (the usual value): -3 points").all()
    worth_text = f"{'+' if round(worth, 1) > 0 else ''}{round(worth, 1):g} points"
    expected = label + " " + values[other].astype(str) + f" (usual: {usual}, {worth_text} on average): -3 points"
    assert (text[other] == expected).all(), (text[other].iloc[0], expected.iloc[0])


def test_driver_references_are_the_portfolio_values(trained, train_result):
    """The reference shown is the median (numbers) / most common value (categories) of the rows the
    model learnt from (the saved model: every matured row of the customers outside calibration)."""
    from ml.pipeline import refit_rows

    model, frame, _ = trained
    result, _ = train_result
    fit_rows, _, _ = refit_rows(result.backtest, frame, frame["churned"].to_numpy(dtype=float))
    assert model.n_rows_ == len(fit_rows) > len(result.backtest.splits_.train)
    fit = frame.iloc[fit_rows]
    assert set(model.reference_values_) == set(model.schema_.names)
    for f in model.schema_.features:
        ref = model.reference_values_[f.name]
        if f.kind == CATEGORICAL:
            assert ref == fit[f.column].astype(str).mode().iloc[0]
        else:
            assert ref == pytest.approx(np.nanmedian(fit[f.column].to_numpy(dtype=float)))


# ---- the explain command ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data_file(holdout, tmp_path_factory):
    path = tmp_path_factory.mktemp("explain-data") / "holdout.csv"
    holdout.to_csv(path, index=False)
    return path


@pytest.fixture
def runner(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def _customer_ids(holdout, model_contrib):
    """A few customers: the riskiest, the healthiest and one with an unanswered CSAT survey."""
    latest = holdout.sort_values("snapshot_date").groupby("customer_id").tail(1)
    ids = []
    scores = pd.Series(model_contrib.score, index=holdout.index).loc[latest.index]
    ids.append(latest.loc[scores.idxmin(), "customer_id"])
    ids.append(latest.loc[scores.idxmax(), "customer_id"])
    ids.append(latest.loc[latest["csat"].isna(), "customer_id"].iloc[0])
    return ids


def test_explain_json(runner, trained, data_file, holdout, model_contrib):
    model, _, model_dir = trained
    ids = _customer_ids(holdout, model_contrib)
    latest = holdout.sort_values("snapshot_date").groupby("customer_id").tail(1).set_index("customer_id")
    for cid in ids:
        result = runner.invoke(
            app, ["explain", "--model", str(model_dir), "--data", str(data_file), "--customer", cid, "--json"]
        )
        assert result.exit_code == 0, result.output
        out = json.loads(result.stdout)
        for key in (
            "customer_id",
            "health_score",
            "band",
            "churn_probability",
            "base_score",
            "contributions",
            "manual",
        ):
            assert key in out, key
        assert out["customer_id"] == cid
        assert {"score", "band", "base_score", "contributions"} <= set(out["manual"])
        for items in (out["contributions"], out["manual"]["contributions"]):
            assert all({"indicator", "value", "points"} <= set(it) for it in items)
            pts = [it["points"] for it in items]
            assert pts == sorted(pts)  # most negative first
        assert {it["indicator"] for it in out["contributions"]} == set(model.schema_.names)
        assert {it["indicator"] for it in out["manual"]["contributions"]} == set(model.card.names)
        # JSON shows 2 decimals (points, scores) and 4 (probabilities): each number is off by at most
        # half its last digit, so the sum of n + 1 rounded numbers is within 0.005 (n + 2) of the score
        n_items = len(out["contributions"])
        assert out["base_score"] + sum(it["points"] for it in out["contributions"]) == pytest.approx(
            out["health_score"], abs=0.005 * (n_items + 2)
        )
        m = out["manual"]
        assert m["base_score"] + sum(it["points"] for it in m["contributions"]) == pytest.approx(
            m["score"], abs=0.005 * (len(m["contributions"]) + 2)
        )
        for v in [out["health_score"], out["base_score"], m["score"], *(it["points"] for it in out["contributions"])]:
            assert v == round(v, 2)
        assert out["churn_probability"] == round(out["churn_probability"], 4)
        # the same numbers as predict on the customer's latest snapshot
        row = latest.loc[[cid]].reset_index()
        pred = model.predict(row).iloc[0]
        assert out["health_score"] == round(pred["health_score"], 2)
        assert out["band"] == pred["band"]
        assert out["churn_probability"] == round(pred["churn_probability"], 4)
        assert m["score"] == round(pred["manual_score"], 2)
        assert m["band"] == pred["manual_band"]
        values = {it["indicator"]: it["value"] for it in out["contributions"]}
        csat = row["csat"].iloc[0]
        assert values["csat"] is None if pd.isna(csat) else values["csat"] == pytest.approx(csat)


def test_explain_json_is_strict_json_without_card_data(runner, trained, holdout, tmp_path):
    model, _, model_dir = trained
    row = holdout.iloc[[0]].copy()
    for ind in model.card.indicators:
        row[ind.column] = np.nan
    data = tmp_path / "blank.csv"
    row.to_csv(data, index=False)
    cid = row["customer_id"].iloc[0]
    result = runner.invoke(
        app, ["explain", "--model", str(model_dir), "--data", str(data), "--customer", cid, "--json"]
    )
    assert result.exit_code == 0, result.output

    def reject(constant):
        raise ValueError(f"{constant} is not JSON")

    out = json.loads(result.stdout, parse_constant=reject)
    assert out["manual"]["score"] is None


def test_explain_tables(runner, trained, data_file, holdout, model_contrib):
    model, _, model_dir = trained
    cid = _customer_ids(holdout, model_contrib)[0]
    result = runner.invoke(app, ["explain", "--model", str(model_dir), "--data", str(data_file), "--customer", cid])
    assert result.exit_code == 0, result.output
    assert cid in result.stdout
    assert "Model: contributions in health points" in result.stdout
    assert "Manual card: contributions in health points" in result.stdout
    assert "base score" in result.stdout
    for label in feature_labels(model):
        assert label in result.stdout
    assert result.stderr == ""


def test_explain_unknown_customer(runner, trained, data_file):
    _, _, model_dir = trained
    result = runner.invoke(
        app, ["explain", "--model", str(model_dir), "--data", str(data_file), "--customer", "NO-SUCH-ID", "--json"]
    )
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "NO-SUCH-ID" in lines[0]
    assert "Traceback" not in result.output


# ---- global plots -------------------------------------------------------------------------------
def test_global_plots_are_saved_with_the_model(trained):
    model, _, model_dir = trained
    png = b"\x89PNG\r\n\x1a\n"
    paths = [model_dir / "shap_summary.png"] + [
        model_dir / "plots" / f"dependence_{n}.png" for n in model.schema_.names
    ]
    for p in paths:
        assert p.is_file(), p
        assert p.read_bytes()[:8] == png, p
        assert p.stat().st_size > 1000, p
    manifest = json.loads((model_dir / "MANIFEST.json").read_text())
    for p in paths:
        assert p.relative_to(model_dir).as_posix() in manifest["files"]


# ---- the manual card's breakdown under `missing:` policies ---------------------------------------
@pytest.mark.parametrize(
    ("policy", "csat_points", "score"),
    [
        # renormalize: 22.5 + 16 + 17.5 + 6 = 62 over the 80 points of known weight -> 77.5; CSAT is
        # scored like the customer's other indicators: 20 x 77.5 / 100 = 15.5 (not 0, i.e. not -10)
        ("renormalize", 15.5, 77.5),
        ("neutral", 10.0, 72.0),  # 20 x 50 / 100 = 10; 62 + 10 = 72
        ("worst", 0.0, 62.0),
    ],
)
def test_card_breakdown_of_a_missing_indicator_is_what_the_policy_did(
    card_dict, worked_frame, policy, csat_points, score
):
    from ml.scorecard import WeightedScorecard

    frame = worked_frame.assign(csat=np.nan)
    sc = WeightedScorecard(parse_card(card_dict(missing=policy))).fit(frame)
    mc = card_contributions(sc, frame, np.full(5, 50.0))  # base: every sub-score 50 -> 50 points
    assert mc.base_score == pytest.approx(50.0)
    pts = mc.points.iloc[0]
    # contributions relative to the base points (weight x 50 / 100)
    expected = {"interactions": 22.5 - 12.5, "response": 16 - 10, "resolution": 17.5 - 12.5, "activity": 6 - 5}
    for name, v in expected.items():
        assert pts[name] == pytest.approx(v, abs=1e-9), name
    assert pts["csat"] == pytest.approx(csat_points - 10.0, abs=1e-9)
    assert mc.score[0] == pytest.approx(score, abs=1e-9)
    assert sc.score(frame)["health_score"].iloc[0] == pytest.approx(score, abs=1e-9)
    assert mc.base_score + pts.sum() == pytest.approx(score, abs=1e-9)
