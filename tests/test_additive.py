"""The additive model: compiled step tables equal LightGBM's pred_contrib, and the learned card
reproduces the model's health score."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import yaml

from ml.card import parse_card
from ml.errors import CardError, ModelError
from ml.model.additive import (
    ZERO_THRESHOLD,
    additive_tables,
    compile_additive,
    learned_card,
    learned_card_reason,
    learned_card_yaml,
)
from ml.model.booster import HealthModel
from ml.model.explain import contributions, driver_text
from ml.scorecard import score_table


# ---- compiled tables vs LightGBM, on hand-made data ------------------------------------------------
def _frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x_nan = rng.normal(size=n)
    x_nan[rng.random(n) < 0.2] = np.nan  # missing in training: missing_type NaN
    x_none = rng.integers(-3, 4, size=n).astype(float)  # never missing in training: missing_type None
    flag = (rng.random(n) < 0.4).astype(float)
    cat = pd.Categorical(rng.choice(["a", "b", "c", "d", None], size=n), categories=["a", "b", "c", "d"])
    logit = (
        np.nan_to_num(x_nan, nan=1.5)
        - 0.5 * x_none
        + 1.2 * flag
        + pd.Series(cat).map({"a": 0.0, "b": 1.0, "c": -1.0, "d": 0.5}).astype(float).fillna(2.0).to_numpy()
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    X = pd.DataFrame({"x_nan": x_nan, "x_none": x_none, "flag": flag, "cat": cat})
    return X, y


def _booster(X, y, **extra) -> lgb.Booster:
    params = {
        "objective": "binary",
        "num_leaves": 7,
        "min_data_in_leaf": 20,
        "learning_rate": 0.2,
        "verbose": -1,
        "deterministic": True,
        "num_threads": 1,
        "interaction_constraints": [[i] for i in range(X.shape[1])],
        "min_data_per_group": 10,
        "cat_smooth": 1,
        **extra,
    }
    return lgb.train(params, lgb.Dataset(X, label=y), num_boost_round=60)


def _probe(X: pd.DataFrame, booster: lgb.Booster) -> pd.DataFrame:
    """Rows that sit exactly on, just above and just below every split threshold, zeros, tiny values,
    missing values everywhere, and the training rows."""
    dump = booster.dump_model()
    extra = []
    for j, name in enumerate(dump["feature_names"]):
        if name == "cat":
            continue
        ts = [
            float(n["threshold"])
            for tree in dump["tree_info"]
            for n in _nodes(tree["tree_structure"])
            if n.get("split_feature") == j
        ]
        for t in ts:
            for v in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)):
                row = X.iloc[0].to_dict()
                row[name] = v
                extra.append(row)
    for v in (0.0, -0.0, ZERO_THRESHOLD, -ZERO_THRESHOLD, 1e-40, -1e-40, np.nan):
        row = {c: v for c in ("x_nan", "x_none", "flag")}
        row["cat"] = None
        extra.append(row)
    probe = pd.DataFrame(extra)
    probe["cat"] = pd.Categorical(probe["cat"], categories=X["cat"].cat.categories)
    return pd.concat([X, probe], ignore_index=True)


def _nodes(node):
    yield node
    if "split_index" in node:
        yield from _nodes(node["left_child"])
        yield from _nodes(node["right_child"])


@pytest.mark.parametrize(
    "extra",
    [
        {},  # NaN-type (x_nan) and None-type (x_none, flag) numerical splits, categorical splits
        {"zero_as_missing": True},  # missing_type Zero: zeros and NaN go the default way
        {"use_missing": False},  # missing_type None everywhere: NaN read as 0
        {"max_cat_to_onehot": 8},  # one-category-vs-rest categorical splits
    ],
    ids=["default", "zero_as_missing", "no_missing", "one_hot_categories"],
)
def test_tables_equal_pred_contrib(extra):
    X, y = _frame(3000, seed=7)
    booster = _booster(X, y, **extra)
    tables = compile_additive(booster, {"cat": 4})
    P = _probe(X, booster)
    phi, bias, margin = tables.log_odds(P)
    ref = booster.predict(P, pred_contrib=True)
    np.testing.assert_allclose(phi, ref[:, :-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(bias, ref[:, -1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(margin, booster.predict(P, raw_score=True), rtol=0, atol=1e-9)
    # every feature was used, so the test covers each kind of split
    assert all(t.n_trees > 0 for t in tables.features)
    assert tables.features[3].categorical and not tables.features[0].categorical
    if extra.get("zero_as_missing"):
        assert any(t.zero_is_special for t in tables.features)


@pytest.mark.parametrize(
    "x",
    [
        np.array([-3.0, -2.0, 0.0, -0.0, 1.0, 2.0, 3.0, np.nan, 7.0, -9.0]),  # small integers: a lookup table
        np.array([-3.0, 0.5, 1e-36, -1e-35, 2.0, np.nan]),  # not integers: searchsorted
        np.array([0.0, 1e9, np.nan]),  # integers spanning too many values: searchsorted
        np.array([np.inf, -np.inf, 1.0]),
    ],
    ids=["small-integers", "fractions-and-zero-range", "wide-integers", "infinities"],
)
def test_lookup_paths_follow_lightgbm_rules(x):
    X, y = _frame(3000, seed=7)
    tables = compile_additive(_booster(X, y), {"cat": 4})
    for t in tables.features[:3]:
        np.testing.assert_array_equal(t.lookup(x), t.exact_lookup(x))


def test_a_tree_on_two_features_is_not_additive():
    X, y = _frame(2000, seed=1)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1}, lgb.Dataset(X, label=y), 20
    )
    with pytest.raises(ModelError, match=r"splits on several features .* model.kind: additive"):
        compile_additive(booster, {"cat": 4})


# ---- on the package's model --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def additive_model(generated, default_card_raw):
    raw = default_card_raw()
    raw["model"]["kind"] = "additive"
    raw["model"]["extra_features"] += ["segment"]
    raw["calibration"] = {"method": "sigmoid", "scale": "odds"}
    card = parse_card(raw)
    frame = generated.frame.copy()
    frame.loc[frame.index[::7], "interactions_30d"] = np.nan  # missing values in a numeric indicator
    frame.loc[frame.index[::11], "plan"] = None  # ... and in a categorical one
    frame["onboarding_completed"] = frame["onboarding_completed"].astype("boolean")
    frame.loc[frame.index[::13], "onboarding_completed"] = None  # ... and in a boolean one
    with pytest.warns():  # the generated data trips some data warnings; not under test here
        model = HealthModel(card).fit(frame)
    return model, frame


@pytest.mark.slow  # trains a model
def test_model_trees_each_split_on_one_feature(additive_model):
    model, frame = additive_model
    assert model.kind_ == "additive"
    assert model.params_["interaction_constraints"] == [[i] for i in range(len(model.schema_.features))]
    additive_tables(model)  # raises if any tree mixes features
    used = [t.name for t in additive_tables(model).features if t.n_trees]
    assert len(used) >= 3


@pytest.mark.slow  # trains a model
def test_model_contributions_equal_pred_contrib(additive_model):
    model, frame = additive_model
    X = model.schema_.matrix(frame)
    phi, bias, margin = additive_tables(model).log_odds(X)
    ref = model.booster_.predict(X, pred_contrib=True)
    np.testing.assert_allclose(phi, ref[:, :-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(bias, ref[0, -1], rtol=0, atol=1e-9)
    # and in health points: the same conversion as for TreeSHAP values
    c = contributions(model, X)
    booster_margin = model.booster_.predict(X, raw_score=True)
    np.testing.assert_allclose(c.margin, booster_margin, rtol=0, atol=1e-9)
    np.testing.assert_allclose(c.base_score + c.points.sum(axis=1), c.score, rtol=0, atol=1e-9)
    pred = model.predict(frame, drivers=3)
    np.testing.assert_allclose(c.score, pred["health_score"], rtol=0, atol=1e-9)
    texts = driver_text(model, X, c, k=3)
    assert (texts[0] == pred["driver_1"].to_numpy()).mean() > 0.99  # equal but for 1e-12 ties


# ---- the learned card --------------------------------------------------------------------------------
@pytest.mark.slow  # trains a model
def test_learned_card_reproduces_health_score(additive_model):
    model, frame = additive_model
    text = learned_card_yaml(model)
    card = parse_card(yaml.safe_load(text))
    assert card.offset is not None and card.name == "health-score-learned"
    scored = score_table(card, frame)
    health = model.predict(frame, drivers=0)["health_score"].to_numpy()
    inside = (health > 0) & (health < 100)
    assert inside.mean() > 0.9
    np.testing.assert_allclose(scored["health_score"].to_numpy()[inside], health[inside], rtol=0, atol=1e-6)
    bands = model.predict(frame, drivers=0)["band"].astype(str).to_numpy()
    np.testing.assert_array_equal(scored["band"].astype(str).to_numpy()[inside], bands[inside])


@pytest.mark.slow  # trains a model
def test_learned_card_cuts_round_trip_exactly(additive_model):
    model, _ = additive_model
    card = parse_card(yaml.safe_load(learned_card_yaml(model)))
    tables = {t.name: t for t in additive_tables(model).features}
    numeric = [ind for ind in card.indicators if ind.scoring.method == "thresholds" and tables[ind.name].n_trees]
    assert numeric
    for ind in numeric:
        # the card's cut is the next float above LightGBM's threshold, bit for bit after YAML
        np.testing.assert_array_equal(np.asarray(ind.scoring.cuts), np.nextafter(tables[ind.name].thresholds, np.inf))
    kinds = {ind.name: ind.scoring.method for ind in card.indicators}
    assert kinds["plan"] == "categorical" and kinds["onboarding_completed"] == "boolean"
    # each sub-score lies in [0, 100], and each used indicator reaches both ends
    for ind in card.indicators:
        if ind.weight > 0:
            sc = ind.scoring
            vals = {
                "thresholds": list(sc.scores),
                "boolean": [sc.true_score, sc.false_score],
                "categorical": list(sc.map.values()),
            }[sc.method] + [ind.missing_score]
            assert min(vals) == 0.0 and max(vals) == 100.0


@pytest.mark.slow  # trains a model
def test_learned_card_needs_sigmoid_odds(generated, default_card_raw):
    raw = default_card_raw()
    raw["model"]["kind"] = "additive"
    raw["calibration"]["scale"] = "probability"  # the default card uses odds since issue 12
    model = HealthModel(parse_card(raw))
    with pytest.warns():
        model.fit(generated.frame)
    reason = learned_card_reason(model)
    assert "sigmoid calibration on the odds scale" in reason and "probability scale" in reason
    with pytest.raises(ModelError, match="no learned card: the health score is a card"):
        learned_card(model)


# ---- card contract extensions ------------------------------------------------------------------------
def test_points_card_offset_and_missing_score(card_dict):
    # offset 10 + 40 x 50 / 100 (x = 50) = 30; a missing x gets missing_score 25: 10 + 40 x 25 / 100 = 20
    raw = card_dict()
    raw["indicators"] = [
        {"name": "x", "column": "x", "weight": 40, "scoring": {"method": "identity"}, "missing_score": 25},
        {"name": "z", "column": "z", "weight": 30, "scoring": {"method": "identity"}},
    ]
    raw["offset"] = 10
    card = parse_card(raw)
    frame = pd.DataFrame({"customer_id": ["a", "b"], "x": [50.0, np.nan], "z": [0.0, 100.0]})
    out = score_table(card, frame)
    # b: 10 + 40 x 25 / 100 + 30 x 100 / 100 = 50
    np.testing.assert_allclose(out["health_score"], [30.0, 50.0], atol=1e-12)
    np.testing.assert_allclose(out["points__x"], [20.0, 10.0], atol=1e-12)


@pytest.mark.parametrize(
    "change, match",
    [
        ({"offset": "ten"}, r"offset: expected a finite number"),
        ({"ind": {"missing_score": 120}}, r"missing_score: sub-scores must lie in \[0, 100\]"),
        ({"ind": {"missing_score": 10, "missing": "neutral"}}, r"both `missing: neutral` and `missing_score: 10`"),
        ({"model": {"kind": "linear"}}, r"model.kind: got 'linear'; use one of: full, additive"),
        ({"weights_off": True}, r"weights must total 100"),
    ],
)
def test_card_extension_errors(card_dict, change, match):
    raw = card_dict()
    if "ind" in change:
        raw["indicators"][0].update(change["ind"])
    elif "weights_off" in change:
        raw["indicators"][0]["weight"] = 30  # no offset: weights must still total 100
    else:
        raw.update(change)
    with pytest.raises(CardError, match=match):
        parse_card(raw)


# ---- train --kind and the learned card through the command line ----------------------------------------
@pytest.fixture(scope="module")
def trained_additive(tmp_path_factory, generated, default_card_raw):
    """`healthscore train --kind additive` on the odds scale with sigmoid calibration (no MLflow)."""
    from typer.testing import CliRunner

    from ml.cli.app import app

    tmp = tmp_path_factory.mktemp("additive")
    raw = default_card_raw()
    raw["calibration"] = {"method": "sigmoid", "scale": "odds"}
    raw["model"]["n_refits"] = 0
    (tmp / "card.yaml").write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    generated.frame.to_csv(tmp / "snap.csv", index=False)
    args = ["train", "-c", tmp / "card.yaml", "-d", tmp / "snap.csv", "-M", tmp / "M", "--no-track"]
    result = CliRunner().invoke(app, [str(a) for a in [*args, "--kind", "additive"]])
    assert result.exit_code == 0, result.output
    return tmp, result


@pytest.mark.slow  # trains a model
def test_train_kind_additive_writes_the_learned_card(trained_additive):
    import json

    from typer.testing import CliRunner

    from ml.cli.app import app
    from ml.serving.bundle import load_model

    tmp, result = trained_additive
    M = tmp / "M"
    assert (M / "cards" / "learned.yaml").exists()
    assert "learned card: " in result.stdout and "cards/learned.yaml" in result.stdout
    metrics = json.loads((M / "metrics.json").read_text())
    assert metrics["model_kind"]["kept"] == "additive" and metrics["learned_card"]["written"]
    # the full model is measured beside it, on the same held-out rows
    assert set(metrics["ranking"]) >= {"manual", "model", "model_full", "model_additive"}
    assert metrics["ranking"]["model_additive"] == metrics["ranking"]["model"]
    assert metrics["ranking"]["model_full"]["rows"] == metrics["ranking"]["model"]["rows"]
    # the learned card runs as it is and gives every unclipped customer the model's health score
    out = tmp / "learned_scores.csv"
    scored = CliRunner().invoke(
        app,
        [
            "score",
            "--config",
            str(M / "cards" / "learned.yaml"),
            "--data",
            str(tmp / "snap.csv"),
            "-o",
            str(out),
            "--full-precision",  # CSV rounds health to 2 decimals otherwise
        ],
    )
    assert scored.exit_code == 0, scored.output
    model = load_model(M)
    assert model.kind_ == "additive"
    frame = pd.read_csv(tmp / "snap.csv")
    health = model.predict(frame, drivers=0)["health_score"].to_numpy()
    card_health = pd.read_csv(out)["health_score"].to_numpy()
    inside = (health > 0) & (health < 100)
    assert inside.sum() > 0.9 * len(health)
    np.testing.assert_allclose(card_health[inside], health[inside], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(card_health[health <= 0], 0.0)
    # `compare` shows both models and the learned card
    shown = CliRunner().invoke(app, ["compare", "--model", str(M)])
    assert shown.exit_code == 0, shown.output
    assert "model (full)" in shown.stdout and "model (kept: additive)" in shown.stdout
    assert "learned card:" in shown.stdout


@pytest.mark.parametrize(
    "aucs, kept",
    [
        ({"full": 0.80, "additive": 0.797}, "additive"),  # within the tolerance
        ({"full": 0.80, "additive": 0.81}, "additive"),
        ({"full": 0.80, "additive": 0.79}, "full"),
        ({"full": None, "additive": 0.79}, "full"),
    ],
)
def test_choose_kind(aucs, kept):
    from ml.model.kinds import choose_kind

    assert choose_kind(aucs)[0] == kept


@pytest.mark.slow  # trains a model
def test_train_kind_probability_scale_says_why_no_card(generated, default_card_raw):
    from ml.pipeline import train

    raw = default_card_raw()
    raw["model"]["n_refits"] = 0
    with pytest.warns():
        result = train(parse_card(raw), generated.frame, None, kind="both")
    kind = result.metrics["model_kind"]
    assert kind["requested"] == "both" and kind["kept"] in ("full", "additive")
    assert set(kind["heldout_auc"]) == {"full", "additive"}
    assert result.model.kind_ == kind["kept"] and result.model.card.model.kind == kind["kept"]
    assert result.metrics["learned_card"]["written"] is False


def test_train_rejects_unknown_kind(generated, default_card_raw):
    from ml.pipeline import train

    with pytest.raises(CardError, match=r"--kind: got 'tree'; use one of: full, additive, both"):
        train(parse_card(default_card_raw()), generated.frame, None, kind="tree")


@pytest.mark.slow  # trains a model
def test_shape_plots_in_model_directory_and_report(trained_additive):
    from ml.model.additive import shape_curves
    from ml.report.report import build_report
    from ml.serving.bundle import load_model

    tmp, _ = trained_additive
    model = load_model(tmp / "M")
    frame = pd.read_csv(tmp / "snap.csv")
    for name in model.schema_.names:
        assert (tmp / "M" / "plots" / f"shape_{name}.png").stat().st_size > 1000
    curves = {c.name: c for c in shape_curves(model, frame)}
    csat = curves["csat"]
    # the curve is the model's own: at each step, the points of a customer with that value
    tables = {t.name: t for t in additive_tables(model).features}
    assert len(csat.points) == len(csat.x) + 1 and np.all(np.diff(csat.points) >= 0)  # monotone: higher is better
    assert csat.manual_rule == "your card gives CSAT 20 points spread linearly from 1 to 5"
    assert csat.text.startswith("CSAT up to ") and "points" in csat.text
    assert tables["csat"].n_trees > 0
    assert curves["plan"].kind == "categorical" and curves["onboarding_completed"].kind == "boolean"
    html = build_report(model, frame).to_html()
    assert '<section id="learned">' in html and "<h2>Learned card</h2>" in html
    assert html.count('id="svg-shape-') >= len(model.schema_.names)
    assert "cards/learned.yaml" in html


def test_card_with_model_kind_keeps_fields_set_in_code(default_card_raw):
    import dataclasses

    from ml.card import card_with_model_kind

    card = parse_card(default_card_raw())
    card = dataclasses.replace(card, model=dataclasses.replace(card.model, extra_features=("nps",)))
    additive = card_with_model_kind(card, "additive")
    assert additive.model.kind == "additive" and additive.model.extra_features == ("nps",)
    assert additive.raw["model"]["kind"] == "additive"
    assert parse_card(additive.raw).model.kind == "additive"
    with pytest.raises(CardError, match="model.kind: got 'both'"):
        card_with_model_kind(card, "both")
