"""The manual weighted scorecard: golden examples, each scoring method and missing-data policy,
bands, and invariants (range, monotonicity, row order, batch size)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from ml.card import load_card, parse_card
from ml.errors import DataError, HealthScoreWarning
from ml.scorecard import WeightedScorecard, assign_bands, percentile_rank, score_table

NAMES = ["interactions", "response", "resolution", "csat", "activity"]


def _fit_score(card, frame, **kwargs):
    return WeightedScorecard(card).fit(frame).score(frame, **kwargs)


def _x(values, dtype=None):
    """A frame with one indicator column `x` and ids."""
    return pd.DataFrame({"customer_id": [f"C{i}" for i in range(len(values))], "x": pd.Series(values, dtype=dtype)})


def _subscores(one_indicator, scoring, values, direction="higher_is_better", dtype=None):
    card = parse_card(one_indicator(scoring, direction))
    frame = _x(values, dtype)
    return WeightedScorecard(card).fit(frame).subscores(frame)["x"].to_numpy()


# ---- the worked example -------------------------------------------------------------------------
def test_worked_example(card_dict, worked_frame):
    card = parse_card(card_dict())
    out = _fit_score(card, worked_frame, subscores=True)
    # points = weight x sub-score / 100:
    #   interactions 25% x 90 = 22.5, response 20% x 80 = 16, resolution 25% x 70 = 17.5,
    #   csat 20% x 85 = 17, activity 10% x 60 = 6;   22.5 + 16 + 17.5 + 17 + 6 = 79 -> Stable (60 <= 79 < 80)
    expected_points = {"interactions": 22.5, "response": 16.0, "resolution": 17.5, "csat": 17.0, "activity": 6.0}
    for name, pts in expected_points.items():
        assert out.loc[0, f"points__{name}"] == pts
    assert out.loc[0, "health_score"] == 79.0
    assert out.loc[0, "band"] == "Stable"
    assert out.loc[0, "coverage"] == 100.0
    assert out.loc[0, [f"subscore__{n}" for n in NAMES]].tolist() == [90, 80, 70, 85, 60]
    assert list(out.columns[:3]) == ["health_score", "band", "coverage"]


def test_transform_points_sum_to_the_score(configs_dir, generated):
    card = load_card(configs_dir / "default.yaml")
    frame = generated.frame
    sc = WeightedScorecard(card).fit(frame)
    points = sc.transform(frame)
    scores = sc.score(frame)
    assert list(points.columns) == card.names
    np.testing.assert_allclose(points.sum(axis=1), scores["health_score"], rtol=0, atol=1e-9)


def test_score_table_puts_ids_first(card_dict, worked_frame):
    table = score_table(parse_card(card_dict()), worked_frame)
    assert list(table.columns) == ["customer_id", "health_score", "band", "coverage", *[f"points__{n}" for n in NAMES]]
    assert table.loc[0, "health_score"] == 79.0


def test_score_before_fit_raises(card_dict, worked_frame):
    with pytest.raises(NotFittedError, match="call fit"):
        WeightedScorecard(parse_card(card_dict())).score(worked_frame)


def test_score_checks_columns(card_dict, worked_frame):
    sc = WeightedScorecard(parse_card(card_dict())).fit(worked_frame)
    with pytest.raises(DataError, match=r"missing column 'csat' \(needed by indicator 'csat'\)"):
        sc.score(worked_frame.drop(columns="csat"))


# ---- bands --------------------------------------------------------------------------------------
BOUNDARIES = [
    (0, "At risk"),
    (59.999, "At risk"),
    (60, "Stable"),
    (79.999, "Stable"),
    (80, "Healthy"),
    (100, "Healthy"),
]


def test_assign_bands_boundaries(card_dict):
    bands = parse_card(card_dict()).bands
    scores = np.array([s for s, _ in BOUNDARIES])
    assert list(assign_bands(scores, bands)) == [b for _, b in BOUNDARIES]


def test_assign_bands_keeps_card_order_and_nan():
    from ml.card import Band

    bands = (Band("Top", 50, "#000"), Band("Bottom", 0, "#fff"))
    out = assign_bands(np.array([np.nan, 49.0, 50.0]), bands)
    assert list(out.categories) == ["Top", "Bottom"]
    assert pd.isna(out[0])
    assert list(out[1:]) == ["Bottom", "Top"]


def test_assign_bands_absorbs_float_error(card_dict):
    # a sum that lands a hair below a boundary by floating-point error still reads the boundary
    bands = parse_card(card_dict()).bands
    assert list(assign_bands(np.array([80 - 1e-12, 60 - 1e-12]), bands)) == ["Healthy", "Stable"]


def test_band_boundaries_through_a_card(one_indicator):
    card = parse_card(one_indicator({"method": "identity"}))
    frame = _x([s for s, _ in BOUNDARIES])
    out = _fit_score(card, frame)
    assert out["band"].tolist() == [b for _, b in BOUNDARIES]


def test_quantile_bands(one_indicator):
    card = parse_card(
        one_indicator(
            {"method": "identity"},
            bands_by="quantile",
            bands=[{"name": "Healthy", "min": 75}, {"name": "Stable", "min": 25}, {"name": "At risk", "min": 0}],
        )
    )
    values = np.linspace(0, 100, 1000)  # 1,000 distinct scores
    frame = _x(values).sample(frac=1, random_state=0)
    sc = WeightedScorecard(card).fit(frame)
    share = sc.score(frame)["band"].value_counts(normalize=True)
    assert share["Healthy"] == pytest.approx(0.25, abs=0.005)
    assert share["Stable"] == pytest.approx(0.50, abs=0.005)
    assert share["At risk"] == pytest.approx(0.25, abs=0.005)
    # the cut-offs are learned at fit: a new customer is banded against them, not against its batch
    alone = sc.score(_x([90.0]))
    assert alone.loc[0, "band"] == "Healthy"
    assert sc.score(_x([10.0])).loc[0, "band"] == "At risk"
    # and they survive a state round trip
    again = WeightedScorecard.from_state(card, sc.state())
    pd.testing.assert_frame_equal(again.score(frame), sc.score(frame))


def test_fixed_bands_store_no_cuts(card_dict, worked_frame):
    sc = WeightedScorecard(parse_card(card_dict())).fit(worked_frame)
    assert sc.band_cuts_ is None
    assert sc.state() == {"reference": {}, "band_cuts": None}


# ---- missing data -------------------------------------------------------------------------------
def _with_missing(worked_frame, *columns):
    frame = worked_frame.astype({c: float for c in NAMES})
    frame.loc[0, list(columns)] = np.nan
    return frame


def test_missing_renormalize(card_dict, worked_frame):
    out = _fit_score(parse_card(card_dict()), _with_missing(worked_frame, "csat"))
    # csat (weight 20) missing: the other weights 25 + 20 + 25 + 10 = 80 are rescaled to 100
    #   (90*25 + 80*20 + 70*25 + 60*10) / 80 = (2250 + 1600 + 1750 + 600) / 80 = 6200 / 80 = 77.5
    assert out.loc[0, "health_score"] == 77.5
    assert out.loc[0, "band"] == "Stable"
    assert out.loc[0, "coverage"] == 80.0  # 80 % of the card's weight had data
    assert out.loc[0, "points__interactions"] == 2250 / 80  # 28.125
    assert out.loc[0, "points__csat"] == 0.0


def test_missing_neutral(card_dict, worked_frame):
    out = _fit_score(parse_card(card_dict(missing="neutral")), _with_missing(worked_frame, "csat"))
    # csat scored 50: 22.5 + 16 + 17.5 + 20% x 50 + 6 = 22.5 + 16 + 17.5 + 10 + 6 = 72
    assert out.loc[0, "health_score"] == 72.0
    assert out.loc[0, "points__csat"] == 10.0
    assert out.loc[0, "coverage"] == 80.0


def test_missing_worst(card_dict, worked_frame):
    out = _fit_score(parse_card(card_dict(missing="worst")), _with_missing(worked_frame, "csat"))
    # csat scored 0: 22.5 + 16 + 17.5 + 0 + 6 = 62
    assert out.loc[0, "health_score"] == 62.0
    assert out.loc[0, "points__csat"] == 0.0
    assert out.loc[0, "coverage"] == 80.0


def test_missing_per_indicator_override(card_dict, worked_frame):
    d = card_dict(missing="neutral")
    d["indicators"][3]["missing"] = "worst"  # csat
    out = _fit_score(parse_card(d), _with_missing(worked_frame, "csat", "activity"))
    # csat -> worst (0), activity -> card policy neutral (50):
    #   22.5 + 16 + 17.5 + 20% x 0 + 10% x 50 = 22.5 + 16 + 17.5 + 0 + 5 = 61
    assert out.loc[0, "health_score"] == 61.0
    assert out.loc[0, "coverage"] == 70.0


def test_missing_override_mixed_with_renormalize(card_dict, worked_frame):
    d = card_dict()  # renormalize
    d["indicators"][3]["missing"] = "neutral"  # csat
    out = _fit_score(parse_card(d), _with_missing(worked_frame, "csat", "activity"))
    # activity dropped (weight 10), csat kept at 50: weights 25 + 20 + 25 + 20 = 90
    #   (90*25 + 80*20 + 70*25 + 50*20) / 90 = (2250 + 1600 + 1750 + 1000) / 90 = 6600 / 90 = 73.33...
    assert out.loc[0, "health_score"] == pytest.approx(6600 / 90, abs=1e-12)


def test_all_missing_under_renormalize_gives_no_score(card_dict, worked_frame):
    frame = pd.concat([worked_frame, worked_frame.assign(customer_id="C2")], ignore_index=True)
    frame = frame.astype({c: float for c in NAMES})
    frame.loc[1, NAMES] = np.nan
    sc = WeightedScorecard(parse_card(card_dict())).fit(frame)
    with pytest.warns(HealthScoreWarning, match=r"1 of 2 row\(s\) have no data for any renormalized indicator"):
        out = sc.score(frame)
    assert np.isnan(out.loc[1, "health_score"])
    assert pd.isna(out.loc[1, "band"])
    assert out.loc[1, "coverage"] == 0.0
    assert out.loc[0, "health_score"] == 79.0  # the other row is untouched


# ---- scoring methods ----------------------------------------------------------------------------
def test_linear_clips_to_0_100(one_indicator):
    with pytest.warns(HealthScoreWarning, match=r"1 negative value\(s\) \(-1\) in data row 1.*scale from 0"):
        got = _subscores(one_indicator, {"method": "linear", "worst": 0, "best": 4}, [-1, 0, 1, 2, 4, 10, np.nan])
    np.testing.assert_array_equal(got, [0, 0, 25, 50, 100, 100, np.nan])


def test_linear_lower_is_better(one_indicator):
    got = _subscores(
        one_indicator, {"method": "linear", "worst": 240, "best": 30}, [300, 240, 135, 30, 0], "lower_is_better"
    )
    # (135 - 240) / (30 - 240) x 100 = -105 / -210 x 100 = 50
    np.testing.assert_array_equal(got, [0, 0, 50, 100, 100])


def test_thresholds_boundaries(one_indicator):
    scoring = {"method": "thresholds", "cuts": [30, 60, 120, 240], "scores": [100, 85, 60, 30, 0]}
    values = [0, 29.9, 30, 59.9, 60, 120, 239.9, 240, 1e6, np.nan]
    got = _subscores(one_indicator, scoring, values, "lower_is_better")
    # x < cut stays in the band below the cut; x == cut moves up to the next band
    np.testing.assert_array_equal(got, [100, 100, 85, 85, 60, 30, 30, 0, 0, np.nan])


def test_thresholds_with_integer_column(one_indicator):
    scoring = {"method": "thresholds", "cuts": [1, 2], "scores": [100, 40, 0]}
    got = _subscores(one_indicator, scoring, [0, 1, 2, 5], "lower_is_better", dtype="int64")
    np.testing.assert_array_equal(got, [100, 40, 0, 0])


def test_percentile_rank_is_mid_rank():
    ref = np.array([10.0, 20.0, 30.0, 40.0])
    # 25: 2 below, none equal -> (2 + 2) / 8 = 50 %; 20: 1 below, 1 equal -> (1 + 2) / 8 = 37.5 %
    got = percentile_rank(np.array([25.0, 20.0, 5.0, 99.0, np.nan]), ref)
    np.testing.assert_array_equal(got, [50.0, 37.5, 0.0, 100.0, np.nan])
    assert np.isnan(percentile_rank(np.array([1.0]), np.array([]))).all()


@pytest.mark.parametrize(("direction", "expected"), [("higher_is_better", 37.5), ("lower_is_better", 62.5)])
def test_percentile_one_customer_alone_matches_the_batch(one_indicator, direction, expected):
    card = parse_card(one_indicator({"method": "percentile"}, direction))
    reference = _x([10.0, 20.0, 30.0, 40.0])
    sc = WeightedScorecard(card).fit(reference)
    batch = sc.score(_x([20.0, 35.0, 5.0]))
    alone = sc.score(_x([20.0]))
    # mid-rank of 20 in [10, 20, 30, 40]: (1 strictly below + 2 at or below) / (2 x 4) = 37.5 %;
    # lower is better: 100 - 37.5 = 62.5
    assert alone.loc[0, "health_score"] == expected
    assert batch.loc[0, "health_score"] == expected
    assert sc.state()["reference"] == {"x": [10.0, 20.0, 30.0, 40.0]}


def test_percentile_needs_data_to_rank_against(one_indicator):
    card = parse_card(one_indicator({"method": "percentile"}))
    with pytest.raises(DataError, match=r"column 'x' \(indicator 'x'\) has no values to rank against"):
        WeightedScorecard(card).fit(_x([np.nan, np.nan]))


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        pytest.param([True, False, True], "bool", [80, 20, 80], id="bools"),
        pytest.param([True, None, False], "boolean", [80, np.nan, 20], id="nullable-bools"),
        pytest.param([1, 0, np.nan], "float64", [80, 20, np.nan], id="zero-one"),
        pytest.param(
            ["yes", "No", " TRUE ", "false", "1", "0", None], None, [80, 20, 80, 20, 80, 20, np.nan], id="strings"
        ),
    ],
)
def test_boolean(one_indicator, values, dtype, expected):
    got = _subscores(one_indicator, {"method": "boolean", "true_score": 80, "false_score": 20}, values, dtype=dtype)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        pytest.param(["yes", "maybe"], r"1 value\(s\) are not booleans \(e\.g\. \['maybe'\]\)", id="text"),
        pytest.param([1, 2, 0], r"1 value\(s\) are not booleans \(e\.g\. \['2'\]\)", id="number"),
    ],
)
def test_boolean_rejects_other_values_with_a_warning(one_indicator, values, match):
    with pytest.warns(HealthScoreWarning, match=match):
        got = _subscores(one_indicator, {"method": "boolean"}, values)
    assert np.isnan(got[1])
    assert got[0] == 100


def test_categorical(one_indicator):
    scoring = {"method": "categorical", "map": {"basic": 40, "pro": 70, "enterprise": 100}}
    got = _subscores(one_indicator, scoring, ["basic", "enterprise", None, "pro"], "none")
    np.testing.assert_array_equal(got, [40, 100, np.nan, 70])


def test_categorical_numeric_codes(one_indicator):
    got = _subscores(one_indicator, {"method": "categorical", "map": {1: 30, 2: 90}}, [1.0, 2.0, np.nan], "none")
    np.testing.assert_array_equal(got, [30, 90, np.nan])


def test_categorical_unknown_value_is_missing_with_a_warning(one_indicator):
    card = parse_card(
        one_indicator({"method": "categorical", "map": {"basic": 40, "pro": 70}}, "none", missing="neutral")
    )
    frame = _x(["basic", "gold", "gold", "pro"])
    sc = WeightedScorecard(card).fit(frame)
    with pytest.warns(HealthScoreWarning, match=r"not in the card's map: 'gold' \(2\); treated as missing"):
        out = sc.score(frame, subscores=True)
    np.testing.assert_array_equal(out["subscore__x"], [40, np.nan, np.nan, 70])
    np.testing.assert_array_equal(out["health_score"], [40, 50, 50, 70])  # missing -> neutral 50


def test_identity_clips_with_a_warning(one_indicator):
    with pytest.warns(HealthScoreWarning, match=r"2 value\(s\) lie outside \(min -5, max 120\); clipped"):
        got = _subscores(one_indicator, {"method": "identity"}, [120, -5, 50])
    np.testing.assert_array_equal(got, [100, 0, 50])


# ---- text in numeric columns --------------------------------------------------------------------
def test_text_in_numeric_column_warns_and_is_missing(one_indicator):
    with pytest.warns(
        HealthScoreWarning,
        match=r"column 'x' \(indicator 'x'\): 2 value\(s\) are not numbers "
        r"\(e\.g\. \['n/a', 'high'\]\)",
    ):
        got = _subscores(one_indicator, {"method": "linear", "worst": 0, "best": 10}, ["5", "n/a", "10", "high", None])
    np.testing.assert_array_equal(got, [50, np.nan, 100, np.nan, np.nan])


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(["low", "high", "high"], id="only-text"),
        pytest.param(["low", None, "high", ""], id="text-and-blanks"),
    ],
)
def test_all_text_numeric_column_is_an_error(one_indicator, values):
    card = parse_card(one_indicator({"method": "linear", "worst": 0, "best": 10}))
    frame = _x(values)
    with pytest.raises(
        DataError,
        match=r"column 'x' \(indicator 'x'\) must be numeric for linear scoring, "
        r"found text such as \['low', 'high'\]; clean the column",
    ):
        WeightedScorecard(card).fit(frame).score(frame)


def test_all_missing_numeric_column_is_not_text(card_dict, worked_frame):
    # a column with no values at all is missing data, not text: renormalized away
    frame = worked_frame.astype({"csat": object})
    frame.loc[0, "csat"] = None
    out = _fit_score(parse_card(card_dict()), frame)
    assert out.loc[0, "health_score"] == 77.5


# ---- invariants ---------------------------------------------------------------------------------
def _key(frame):
    return frame["customer_id"] + "|" + frame["snapshot_date"].astype(str)


def test_shuffled_rows_give_identical_results(configs_dir, generated):
    card = load_card(configs_dir / "default.yaml")  # includes a percentile indicator
    frame = generated.frame
    first = score_table(card, frame, subscores=True).set_index(_key(frame).to_numpy())
    shuffled = frame.sample(frac=1, random_state=7)
    second = score_table(card, shuffled, subscores=True).set_index(_key(shuffled).to_numpy())
    assert not first.index.equals(second.index)  # the order really changed
    pd.testing.assert_frame_equal(second.loc[first.index], first)


def test_batches_of_any_size_agree(configs_dir, generated):
    card = load_card(configs_dir / "points.yaml")
    frame = generated.frame
    sc = WeightedScorecard(card).fit(frame)
    full = sc.score(frame)
    for size in (1, 7, 100):
        part = frame.iloc[:size]
        pd.testing.assert_frame_equal(sc.score(part), full.iloc[:size])


MIXED_INDICATORS = [
    {
        "name": "lin_up",
        "column": "lin_up",
        "weight": 20,
        "direction": "higher_is_better",
        "scoring": {"method": "linear", "worst": 0, "best": 10},
    },
    {
        "name": "lin_down",
        "column": "lin_down",
        "weight": 15,
        "direction": "lower_is_better",
        "scoring": {"method": "linear", "worst": 100, "best": 20},
    },
    {
        "name": "thr_up",
        "column": "thr_up",
        "weight": 15,
        "direction": "higher_is_better",
        "scoring": {"method": "thresholds", "cuts": [1, 5, 10], "scores": [0, 40, 70, 100]},
    },
    {
        "name": "thr_down",
        "column": "thr_down",
        "weight": 20,
        "direction": "lower_is_better",
        "scoring": {"method": "thresholds", "cuts": [2, 4, 7], "scores": [100, 70, 70, 0]},
    },
    {
        "name": "pct_up",
        "column": "pct_up",
        "weight": 15,
        "direction": "higher_is_better",
        "scoring": {"method": "percentile"},
    },
    {
        "name": "pct_down",
        "column": "pct_down",
        "weight": 15,
        "direction": "lower_is_better",
        "scoring": {"method": "percentile"},
    },
]
MIXED_COLUMNS = [ind["column"] for ind in MIXED_INDICATORS]
SIGNS = [1 if ind["direction"] == "higher_is_better" else -1 for ind in MIXED_INDICATORS]


@pytest.fixture(scope="module")
def mixed_scorecards(card_dict):
    """The mixed card fitted on a fixed reference, once per missing-data policy."""
    rng = np.random.default_rng(0)
    reference = pd.DataFrame(rng.uniform(-20, 120, size=(200, len(MIXED_COLUMNS))).round(1), columns=MIXED_COLUMNS)
    reference["customer_id"] = [f"R{i}" for i in range(len(reference))]
    return {
        policy: WeightedScorecard(parse_card(card_dict(indicators=MIXED_INDICATORS, missing=policy))).fit(reference)
        for policy in ("renormalize", "neutral", "worst")
    }


raw_value = st.floats(min_value=-50, max_value=150, allow_nan=False)
maybe_missing = st.one_of(raw_value, st.just(np.nan))


def _row_frame(values):
    frame = pd.DataFrame([values], columns=MIXED_COLUMNS, dtype=float)
    frame["customer_id"] = "C1"
    return frame


@pytest.mark.filterwarnings("ignore:.*negative value.*:ml.errors.HealthScoreWarning")  # any value, by design
@given(
    values=st.lists(maybe_missing, min_size=6, max_size=6), policy=st.sampled_from(["renormalize", "neutral", "worst"])
)
def test_score_lies_within_0_100(mixed_scorecards, values, policy):
    # a row with no data at all gets no score under renormalize (tested above)
    assume(policy != "renormalize" or not all(np.isnan(values)))
    out = mixed_scorecards[policy].score(_row_frame(values))
    score = out.loc[0, "health_score"]
    assert 0.0 <= score <= 100.0
    points = out[[f"points__{c}" for c in MIXED_COLUMNS]].to_numpy()
    assert points.sum() == pytest.approx(score, abs=1e-9)
    assert out.loc[0, "band"] in ("Healthy", "Stable", "At risk")


@pytest.mark.filterwarnings("ignore:.*negative value.*:ml.errors.HealthScoreWarning")  # any value, by design
@given(
    values=st.lists(maybe_missing, min_size=6, max_size=6),
    which=st.integers(min_value=0, max_value=5),
    bump=st.floats(min_value=1e-3, max_value=200),
    policy=st.sampled_from(["renormalize", "neutral", "worst"]),
)
def test_score_is_monotone_in_each_indicator(mixed_scorecards, values, which, bump, policy):
    values = list(values)
    if np.isnan(values[which]):
        values[which] = 0.0
    raised = list(values)
    raised[which] = values[which] + bump
    before = mixed_scorecards[policy].score(_row_frame(values)).loc[0, "health_score"]
    after = mixed_scorecards[policy].score(_row_frame(raised)).loc[0, "health_score"]
    # raising a higher-is-better indicator never lowers the score; a lower-is-better one never raises it
    if SIGNS[which] > 0:
        assert after >= before
    else:
        assert after <= before


def test_monotone_check_can_fail(mixed_scorecards):
    """Guard for the property test above: in this card a raise does move the score."""
    base = [5, 60, 3, 3, 50, 50]
    sc = mixed_scorecards["renormalize"]
    before = sc.score(_row_frame(base)).loc[0, "health_score"]
    for j, sign in enumerate(SIGNS):
        raised = list(base)
        raised[j] += 30
        after = sc.score(_row_frame(raised)).loc[0, "health_score"]
        assert np.sign(after - before) == sign


def test_perfect_customer_never_exceeds_100_after_renormalizing(card_dict):
    # weights 20/15/15/20/15/15: dropping some indicators rescales the rest by 100 / (sum left), which
    # is not exact in floating point; unclipped, some rows summed to 100.00000000000003
    weights = (20, 15, 15, 20, 15, 15)
    columns = [f"i{j}" for j in range(len(weights))]
    inds = [
        {"name": c, "column": c, "weight": w, "scoring": {"method": "identity"}}
        for c, w in zip(columns, weights, strict=True)
    ]
    masks = np.array([[(m >> j) & 1 for j in range(len(weights))] for m in range(1, 2 ** len(weights))])
    frame = pd.DataFrame(np.where(masks == 1, 100.0, np.nan), columns=columns).assign(customer_id="C")
    scores = _fit_score(parse_card(card_dict(indicators=inds)), frame)["health_score"]
    assert scores.max() <= 100.0
    np.testing.assert_allclose(scores, 100.0, rtol=0, atol=1e-9)


@given(
    weights=st.lists(st.integers(min_value=1, max_value=60), min_size=2, max_size=8),
    data=st.data(),
    policy=st.sampled_from(["renormalize", "neutral", "worst"]),
)
def test_score_within_0_100_for_any_weights(card_dict, weights, data, policy):
    columns = [f"i{j}" for j in range(len(weights))]
    inds = [
        {"name": c, "column": c, "weight": w, "scoring": {"method": "identity"}}
        for c, w in zip(columns, weights, strict=True)
    ]
    card = parse_card(card_dict(indicators=inds, normalize=True, missing=policy))
    subscore = st.one_of(st.sampled_from([0.0, 100.0]), st.floats(0, 100), st.just(np.nan))
    rows = data.draw(st.lists(st.lists(subscore, min_size=len(weights), max_size=len(weights)), min_size=1, max_size=5))
    rows = [r for r in rows if policy != "renormalize" or not all(np.isnan(r))]
    assume(rows)
    frame = pd.DataFrame(rows, columns=columns, dtype=float).assign(customer_id="C")
    scores = _fit_score(card, frame)["health_score"]
    assert ((scores >= 0) & (scores <= 100)).all()
