"""The YAML card: every validation error names the field, what it found and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ml.card import (
    BAND_KEYS,
    CARD_KEYS,
    INDICATOR_KEYS,
    SCORING_KEYS,
    SCORING_METHODS,
    Card,
    load_card,
    parse_card,
)
from ml.errors import CardError, DataError

REPO = Path(__file__).resolve().parents[1]


def _allowed(keys) -> str:
    return re.escape("allowed keys are: " + ", ".join(keys))


# ---- mutations of the minimal valid card --------------------------------------------------------
def _top(key, value):
    def patch(d):
        d[key] = value

    return patch


def _ind(i, key, value):
    def patch(d):
        d["indicators"][i][key] = value

    return patch


def _band(i, key, value):
    def patch(d):
        d["bands"][i][key] = value

    return patch


def _bands(*bands):
    return _top("bands", [dict(b) for b in bands])


def _scoring(scoring, direction="higher_is_better", i=0):
    def patch(d):
        d["indicators"][i]["scoring"] = scoring
        d["indicators"][i]["direction"] = direction

    return patch


def _drop(key, i=None):
    def patch(d):
        del (d if i is None else d["indicators"][i])[key]

    return patch


def _weights(*weights):
    def patch(d):
        for ind, w in zip(d["indicators"], weights, strict=True):
            ind["weight"] = w

    return patch


BAD_CARDS = [
    # unknown keys: the message lists the allowed set, built from the constant the check uses
    pytest.param(
        _top("colour", "red"), r"card: unknown key 'colour'; " + _allowed(CARD_KEYS), id="unknown-top-level-key"
    ),
    pytest.param(
        _ind(1, "wieght", 3),
        r"indicators\[1\] \(response\): unknown key 'wieght'; " + _allowed(INDICATOR_KEYS),
        id="unknown-indicator-key",
    ),
    pytest.param(
        _scoring({"method": "linear", "worst": 0, "best": 4, "min": 1}),
        r"indicators\[0\] \(interactions\)\.scoring \(method linear\): unknown key 'min'; "
        + _allowed(("method", *SCORING_KEYS["linear"])),
        id="unknown-scoring-key",
    ),
    pytest.param(
        _band(0, "minimum", 80), r"bands\[0\]: unknown key 'minimum'; " + _allowed(BAND_KEYS), id="unknown-band-key"
    ),
    pytest.param(
        _top("model", {"lr": 0.1}), r"model: unknown key 'lr'; allowed keys are: extra_features", id="unknown-model-key"
    ),
    pytest.param(
        _top("calibration", {"pdo": 10, "scal": "odds"}),
        r"calibration: unknown key 'scal'; allowed keys are: method, scale, anchor_score, pdo",
        id="unknown-calibration-key",
    ),
    # required keys
    pytest.param(_drop("id_column"), r"card: missing required key 'id_column'", id="no-id-column"),
    pytest.param(_drop("weight", 2), r"indicators\[2\] \(resolution\): missing required key 'weight'", id="no-weight"),
    pytest.param(_scoring({"method": "linear", "worst": 0}), r"missing required key 'best'", id="linear-without-best"),
    # weights
    pytest.param(
        _weights(25, 20, 25, 15, 10),
        r"weights must total 100; got 95 \(interactions 25 \+ response 20 \+ resolution 25 "
        r"\+ csat 15 \+ activity 10\)\. Adjust the weights or set `normalize: true`",
        id="weights-total-95",
    ),
    pytest.param(_weights(0, 0, 0, 0, 0), r"weights total 0", id="weights-all-zero"),
    pytest.param(
        _ind(0, "weight", -5), r"indicators\[0\] \(interactions\)\.weight: must be >= 0, got -5", id="negative-weight"
    ),
    pytest.param(
        _ind(0, "weight", "25"),
        r"indicators\[0\] \(interactions\)\.weight: expected a finite "
        r"number, got '25'",
        id="weight-as-text",
    ),
    # duplicates
    pytest.param(
        _ind(1, "name", "interactions"), r"duplicate name\(s\) \['interactions'\]", id="duplicate-indicator-name"
    ),
    pytest.param(
        _ind(1, "column", "interactions"),
        r"column\(s\) \['interactions'\] used by more than one indicator",
        id="duplicate-column",
    ),
    pytest.param(
        _ind(0, "column", "customer_id"),
        r"\['customer_id'\] are also the id, label or value column",
        id="indicator-is-id-column",
    ),
    # bands
    pytest.param(
        _bands({"name": "Stable", "min": 60}, {"name": "Healthy", "min": 80}, {"name": "At risk", "min": 0}),
        r"highest first with strictly decreasing `min`, got mins \[60\.0, 80\.0, 0\.0\]",
        id="bands-not-sorted",
    ),
    pytest.param(
        _bands({"name": "Healthy", "min": 80}, {"name": "Stable", "min": 80}, {"name": "At risk", "min": 0}),
        r"strictly decreasing `min`, got mins \[80\.0, 80\.0, 0\.0\]",
        id="bands-equal-mins",
    ),
    pytest.param(
        _bands({"name": "Healthy", "min": 80}, {"name": "Stable", "min": 60, "max": 85}, {"name": "At risk", "min": 0}),
        r"'Stable' \(max 85\) overlaps 'Healthy' \(min 80\); set 'Stable' max below 80",
        id="bands-overlap",
    ),
    pytest.param(
        _bands({"name": "Healthy", "min": 80}, {"name": "Stable", "min": 60, "max": 80}, {"name": "At risk", "min": 0}),
        r"'Stable' \(max 80\) overlaps 'Healthy' \(min 80\)",
        id="bands-max-equals-higher-min",
    ),
    pytest.param(
        _bands({"name": "Healthy", "min": 80}, {"name": "At risk", "min": 10}),
        r"the lowest band 'At risk' starts at 10, so lower scores fall in no band; set its `min: 0`",
        id="lowest-band-not-zero",
    ),
    pytest.param(
        _bands({"name": "Good", "min": 80}, {"name": "Good", "min": 60}, {"name": "Bad", "min": 0}),
        r"duplicate band name\(s\) \['Good'\]",
        id="duplicate-band-names",
    ),
    pytest.param(
        _band(0, "min", 120), r"bands\[0\]: need 0 <= min <= max <= 100, got min=120", id="band-min-above-100"
    ),
    pytest.param(_top("bands", []), r"bands: expected a non-empty list", id="no-bands"),
    pytest.param(
        lambda d: (d.update(bands_by="quantile"), d["bands"][1].update(max=79)),
        r"with `bands_by: quantile`, give only `min`",
        id="quantile-bands-with-max",
    ),
    # linear
    pytest.param(
        _scoring({"method": "linear", "worst": 5, "best": 5}),
        r"\.scoring: linear scoring needs worst != best, got both 5",
        id="linear-worst-equals-best",
    ),
    pytest.param(
        _scoring({"method": "linear", "worst": 0, "best": 10}, "lower_is_better"),
        r"worst=0, best=10 scores higher is better, but the indicator's direction is "
        r"lower_is_better; swap worst and best",
        id="linear-contradicts-lower",
    ),
    pytest.param(
        _scoring({"method": "linear", "worst": 10, "best": 0}, "higher_is_better"),
        r"worst=10, best=0 scores lower is better, but the indicator's direction is higher_is_better",
        id="linear-contradicts-higher",
    ),
    # thresholds
    pytest.param(
        _scoring({"method": "thresholds", "cuts": [30, 60], "scores": [0, 100]}),
        r"thresholds need len\(scores\) = len\(cuts\) \+ 1, got 2 cuts and 2 scores",
        id="thresholds-too-few-scores",
    ),
    pytest.param(
        _scoring({"method": "thresholds", "cuts": [30], "scores": [0, 50, 100]}),
        r"got 1 cuts and 3 scores",
        id="thresholds-too-many-scores",
    ),
    pytest.param(
        _scoring({"method": "thresholds", "cuts": [60, 30], "scores": [0, 50, 100]}),
        r"\.cuts: must be strictly increasing, got \[60, 30\]; sort them",
        id="thresholds-unsorted",
    ),
    pytest.param(
        _scoring({"method": "thresholds", "cuts": [30, 30], "scores": [0, 50, 100]}),
        r"\.cuts: must be strictly increasing, got \[30, 30\]",
        id="thresholds-repeated-cut",
    ),
    pytest.param(
        _scoring({"method": "thresholds", "cuts": [30, 60], "scores": [0, 80, 50]}),
        r"\.scores: \[0\.0, 80\.0, 50\.0\] falls as the value rises, but direction is higher_is_better",
        id="thresholds-not-monotone-higher",
    ),
    pytest.param(
        _scoring({"method": "thresholds", "cuts": [30, 60], "scores": [100, 40, 60]}, "lower_is_better"),
        r"\[100\.0, 40\.0, 60\.0\] rises with the value, but direction is lower_is_better",
        id="thresholds-not-monotone-lower",
    ),
    pytest.param(
        _scoring({"method": "thresholds", "cuts": [], "scores": [50]}),
        r"`cuts` and `scores` must be non-empty lists",
        id="thresholds-empty",
    ),
    pytest.param(
        _scoring({"method": "thresholds", "cuts": [30], "scores": [0, 150]}),
        r"sub-scores must lie in \[0, 100\], got \[150\.0\]",
        id="thresholds-score-above-100",
    ),
    # other methods
    pytest.param(
        _scoring({"method": "log"}),
        r"\.scoring\.method: unknown scoring method 'log'; use one of: " + re.escape(", ".join(SCORING_METHODS)),
        id="unknown-scoring-method",
    ),
    pytest.param(_scoring({"worst": 0}), r"\.scoring: missing `method`", id="scoring-without-method"),
    pytest.param(
        _scoring({"method": "percentile"}, "none"),
        r"percentile scoring needs a direction; set `direction:`",
        id="percentile-without-direction",
    ),
    pytest.param(
        _scoring({"method": "boolean", "true_score": 120}),
        r"sub-scores must lie in \[0, 100\]",
        id="boolean-score-above-100",
    ),
    pytest.param(
        _scoring({"method": "categorical", "map": {}}, "none"),
        r"\.map: expected a non-empty mapping",
        id="categorical-empty-map",
    ),
    pytest.param(
        _ind(0, "direction", "up"),
        r"\.direction: got 'up'; use one of: higher_is_better, "
        r"lower_is_better, none",
        id="unknown-direction",
    ),
    # top-level fields
    pytest.param(
        _top("version", 2), r"version: this release reads card version 1, got 2; set `version: 1`", id="version-2"
    ),
    pytest.param(_top("version", "1"), r"version: this release reads card version 1, got '1'", id="version-as-text"),
    pytest.param(
        _top("missing", "zero"),
        r"missing: got 'zero'; use one of: renormalize, neutral, worst",
        id="unknown-missing-policy",
    ),
    pytest.param(
        _ind(3, "missing", "mean"),
        r"indicators\[3\] \(csat\)\.missing: got 'mean'",
        id="unknown-indicator-missing-policy",
    ),
    pytest.param(_top("bands_by", "rank"), r"bands_by: got 'rank'; use one of: fixed, quantile", id="unknown-bands-by"),
    pytest.param(_top("normalize", "yes"), r"normalize: expected true or false, got 'yes'", id="normalize-not-bool"),
    pytest.param(
        _top("horizon_days", 0), r"horizon_days: expected a positive number of days, got 0", id="horizon-zero"
    ),
    pytest.param(_top("indicators", []), r"indicators: expected a non-empty list", id="no-indicators"),
    # model and calibration
    pytest.param(
        _top("model", {"params": {"is_unbalance": True}}),
        r"model\.params: \['is_unbalance'\] distort the churn probabilities",
        id="is-unbalance",
    ),
    pytest.param(
        _top("model", {"params": {"learning_rate": 0.05, "scale_pos_weight": 10}}),
        r"model\.params: \['scale_pos_weight'\] distort the churn probabilities",
        id="scale-pos-weight",
    ),
    pytest.param(
        _top("model", {"extra_features": ["csat"]}),
        r"model\.extra_features: \['csat'\] already used",
        id="extra-feature-is-indicator",
    ),
    pytest.param(
        _top("model", {"holdout_fraction": 0.7}), r"model\.holdout_fraction: expected a fraction", id="holdout-fraction"
    ),
    pytest.param(
        _top("calibration", {"anchor_score": 100}),
        r"calibration\.anchor_score: expected a score "
        r"in \(0, 100\), got 100",
        id="anchor-score",
    ),
    pytest.param(_top("calibration", {"pdo": 0}), r"calibration\.pdo: .* must be > 0, got 0", id="pdo"),
]


@pytest.mark.parametrize(("patch", "match"), BAD_CARDS)
def test_invalid_card_is_rejected(card_dict, patch, match):
    d = card_dict()
    parse_card(d)  # the base card is valid, so the patch alone causes the error
    patch(d)
    with pytest.raises(CardError, match=match):
        parse_card(d)


@pytest.mark.parametrize(
    ("raw", "error", "match"),
    [
        pytest.param([1, 2], CardError, r"expected a YAML mapping at the top level, got list", id="list"),
        pytest.param(None, CardError, r"expected a YAML mapping at the top level, got NoneType", id="empty-file"),
    ],
)
def test_card_must_be_a_mapping(raw, error, match):
    with pytest.raises(error, match=match):
        parse_card(raw)


def test_minimal_card_parses(card_dict):
    card = parse_card(card_dict())
    assert isinstance(card, Card)
    assert card.names == ["interactions", "response", "resolution", "csat", "activity"]
    assert card.weights == {"interactions": 25, "response": 20, "resolution": 25, "csat": 20, "activity": 10}
    assert [(b.name, b.min) for b in card.bands] == [("Healthy", 80), ("Stable", 60), ("At risk", 0)]
    # default colours: green top, red bottom, yellow between
    assert [b.color for b in card.bands] == ["#2e7d32", "#f9a825", "#c62828"]
    assert card.missing == "renormalize"
    assert card.bands_by == "fixed"


def test_normalize_rescales_weights_to_100(card_dict):
    d = card_dict(normalize=True)
    for ind, w in zip(d["indicators"], (25, 20, 25, 15, 10), strict=True):
        ind["weight"] = w
    card = parse_card(d)
    # total 95: each weight becomes w * 100 / 95
    assert card.weights == pytest.approx(
        {
            "interactions": 2500 / 95,
            "response": 2000 / 95,
            "resolution": 2500 / 95,
            "csat": 1500 / 95,
            "activity": 1000 / 95,
        }
    )
    assert sum(card.weights.values()) == pytest.approx(100)


def test_normalize_leaves_weights_totalling_100_alone(card_dict):
    assert parse_card(card_dict(normalize=True)).weights == parse_card(card_dict()).weights


def test_yaml_booleans_are_read_as_choices(card_dict):
    # YAML 1.1 reads `monotone: true` as a boolean; the parser maps it back to the choice "true"
    card = parse_card(card_dict(model={"monotone": True}))
    assert card.model.monotone == "true"


# ---- data columns -------------------------------------------------------------------------------
def test_check_columns_lists_every_missing_column(card_dict):
    card = parse_card(card_dict())
    with pytest.raises(DataError) as info:
        card.check_columns(["customer_id", "interactions", "response", "resolution"])
    msg = str(info.value)
    assert "'csat' (needed by indicator 'csat')" in msg
    assert "'activity' (needed by indicator 'activity')" in msg
    assert "missing columns" in msg
    assert "'interactions' (needed" not in msg  # present columns are not reported missing


@pytest.mark.parametrize(
    ("columns", "kwargs", "error", "match"),
    [
        pytest.param(
            ["interactions", "response", "resolution", "csat", "activity"],
            {},
            DataError,
            r"missing column 'customer_id' \(needed by id_column\)",
            id="no-id",
        ),
        pytest.param(
            ["customer_id", "interactions", "response", "resolution", "csat", "activity"],
            {"extra": ["plan"]},
            DataError,
            r"'plan' \(needed by model\.extra_features\)",
            id="extra",
        ),
        pytest.param(
            ["customer_id", "interactions", "response", "resolution", "csat", "activity"],
            {"need_label": True},
            CardError,
            r"label_column: not set",
            id="label-not-in-card",
        ),
    ],
)
def test_check_columns_errors(card_dict, columns, kwargs, error, match):
    card = parse_card(card_dict())
    with pytest.raises(error, match=match):
        card.check_columns(columns, **kwargs)


def test_check_columns_accepts_complete_data(card_dict):
    card = parse_card(card_dict(label_column="churned"))
    card.check_columns(["customer_id", "churned", *card.columns], need_label=True)


# ---- files --------------------------------------------------------------------------------------
def test_invalid_yaml_syntax_names_the_line(tmp_path):
    path = tmp_path / "card.yaml"
    path.write_text("id_column: customer_id\nindicators: [\n  {name: a\nbands: oops: here\n", encoding="utf-8")
    with pytest.raises(CardError, match=r"card\.yaml: not valid YAML at line \d+, column \d+.*fix the syntax"):
        load_card(path)


def test_missing_card_file(tmp_path):
    with pytest.raises(CardError, match=r"nope\.yaml: card file not found"):
        load_card(tmp_path / "nope.yaml")


def test_load_card_prefixes_errors_with_the_path(tmp_path, card_dict):
    d = card_dict(version=3)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(d), encoding="utf-8")
    with pytest.raises(CardError, match=r"bad\.yaml: version: this release reads card version 1, got 3"):
        load_card(path)


def test_card_round_trips_through_yaml(tmp_path, card_dict):
    card = parse_card(card_dict())
    path = tmp_path / "card.yaml"
    path.write_text(card.to_yaml(), encoding="utf-8")
    again = load_card(path)
    assert again == card
    assert again.sha256 == card.sha256


@pytest.mark.parametrize("name", ["default.yaml", "points.yaml"])
def test_shipped_configs_load(configs_dir, name):
    card = load_card(configs_dir / name)
    assert sum(card.weights.values()) == pytest.approx(100)
    assert card.bands[-1].min == 0


def test_default_card_contents(configs_dir):
    card = load_card(configs_dir / "default.yaml")
    assert card.weights == {
        "interaction_frequency": 25,
        "response_speed": 20,
        "first_contact_resolution": 25,
        "csat": 20,
        "product_activity": 10,
    }
    assert card.label_column == "churned"
    assert card.indicator("product_activity").scoring.method == "percentile"


def test_points_card_contents(configs_dir):
    card = load_card(configs_dir / "points.yaml")
    assert card.missing == "neutral"
    assert [b.name for b in card.bands] == ["Excellent", "Neutral", "At risk"]
    assert card.indicator("plan").scoring.map == {"basic": 40, "pro": 70, "enterprise": 100}


def test_packaged_default_card_is_the_configs_card(configs_dir):
    packaged = load_card(REPO / "ml" / "data" / "default.yaml")
    checkout = load_card(configs_dir / "default.yaml")
    assert packaged == checkout
    assert packaged.raw == checkout.raw


def test_unquoted_yes_no_map_keys_are_refused(card_dict):
    # YAML 1.1 reads unquoted yes/no as booleans, which would never match the text in the data
    raw = yaml.safe_load(
        """
        name: onboarding
        column: onboarding
        weight: 100
        direction: none
        scoring: {method: categorical, map: {yes: 100, no: 0}}
        """
    )
    card = card_dict()
    card["indicators"] = [raw]
    with pytest.raises(CardError, match=r"map: YAML read key\(s\) \[True, False\] as true/false/null.*quote them"):
        parse_card(card)
    raw["scoring"]["map"] = {"yes": 100, "no": 0}
    assert parse_card(card).indicators[0].scoring.map == {"yes": 100.0, "no": 0.0}
