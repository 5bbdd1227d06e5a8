"""From a risk margin to P(churn) to health points: the pure scale functions and ScoreCalibrator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError
from sklearn.metrics import brier_score_loss

from ml.errors import DataError, HealthScoreWarning
from ml.model.calibration import (
    ISOTONIC_MIN_POSITIVES,
    ISOTONIC_MIN_ROWS,
    ScoreCalibrator,
    health_to_probability,
    probability_to_health,
)


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _simulate(n, a, b, seed, scale=1.5):
    """Margins ~ N(0, scale^2) and outcomes drawn from the Platt map P = sigmoid(a m + b)."""
    rng = np.random.default_rng(seed)
    m = rng.normal(0, scale, n)
    return m, (rng.random(n) < _sigmoid(a * m + b)).astype(int)


# ---- the health scale ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("p", "health"),
    [
        (0.2, 80.0),  # 100 x (1 - 0.2): "Healthy >= 80" reads "at most 20 % risk"
        (0.4, 60.0),
        (0.0, 100.0),
        (1.0, 0.0),
        (0.05, 95.0),
    ],
)
def test_probability_scale_golden(p, health):
    assert probability_to_health(p) == pytest.approx(health)
    assert health_to_probability(health) == pytest.approx(p)


# Odds scale, base rate 10 % -> base odds 1/9, anchor 70, pdo 10:
#   p = 0.1            odds 1/9             -> 70 (the anchor)
#   p = 2/11           odds 2/9 (doubled)   -> 70 - 10 = 60
#   p = 4/13           odds 4/9 (x 4)       -> 50
#   p = 1/19           odds 1/18 (halved)   -> 80
@pytest.mark.parametrize(
    ("p", "health"),
    [
        (0.1, 70.0),
        (2 / 11, 60.0),
        (4 / 13, 50.0),
        (1 / 19, 80.0),
    ],
)
def test_odds_scale_golden(p, health):
    kw = {"base_rate": 0.1, "anchor": 70.0, "pdo": 10.0}
    assert probability_to_health(p, "odds", **kw) == pytest.approx(health, abs=1e-9)
    assert health_to_probability(health, "odds", **kw) == pytest.approx(p, rel=1e-9)


def test_odds_scale_other_anchor_and_pdo():
    # base 20 % (odds 1/4), anchor 50, pdo 20: odds 1/2 (doubled) -> 30, odds 1/8 (halved) -> 70
    kw = {"base_rate": 0.2, "anchor": 50.0, "pdo": 20.0}
    assert probability_to_health(np.array([0.2, 1 / 3, 1 / 9]), "odds", **kw) == pytest.approx([50, 30, 70])


def test_odds_scale_stays_within_0_100_without_ties():
    p = np.array([1e-15, 1e-6, 1e-4, 0.02, 0.5, 0.97, 0.9999, 1 - 1e-12])
    h = probability_to_health(p, "odds", base_rate=0.1)
    assert h.min() >= 0 and h.max() <= 100
    # 1e-15: log2(odds / base odds) ~ -46.7 -> 70 + 467, bent to 100 - 5 exp(-88) = 100.0 in floats
    assert h[0] == 100
    # everything else keeps its order: no ties where a clip would have put 100 or 0
    assert np.all(np.diff(h[1:]) < 0) and 0 < h[-1] < 1
    assert 95 < h[1] < 100 and 95 < h[2] < h[1]


def test_soft_bounds_are_linear_inside_and_join_smoothly():
    from ml.model.calibration import SOFT_EDGE, inverse_soft_bounds, soft_bounds

    inside = np.linspace(SOFT_EDGE, 100 - SOFT_EDGE, 91)
    np.testing.assert_array_equal(soft_bounds(inside), inside)  # the odds scale itself, untouched
    eps = 1e-7
    for edge in (SOFT_EDGE, 100 - SOFT_EDGE):  # same value and slope 1 on both sides of each edge
        assert soft_bounds(np.array([edge + eps]))[0] - edge == pytest.approx(eps, rel=1e-4)
        assert edge - soft_bounds(np.array([edge - eps]))[0] == pytest.approx(eps, rel=1e-4)
    raw = np.array([-300.0, -20.0, 0.0, 3.0, 50.0, 97.0, 120.0, 200.0])
    bent = soft_bounds(raw)
    assert np.all(np.diff(bent) > 0) and bent.min() > 0 and bent.max() < 100
    # (near 100 the bent score keeps fewer significant digits of the raw one: 100 - 5e-9 at 200)
    np.testing.assert_allclose(inverse_soft_bounds(bent), raw, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("scale", "kwargs", "match"),
    [
        ("odds", {}, r"odds scale needs the base churn rate"),
        ("logit", {}, r"unknown health scale 'logit'"),
    ],
)
def test_scale_errors(scale, kwargs, match):
    with pytest.raises(ValueError, match=match):
        probability_to_health(0.3, scale, **kwargs)


@given(st.floats(min_value=0.0, max_value=1.0))
def test_probability_scale_inverse(p):
    assert health_to_probability(probability_to_health(p)) == pytest.approx(p, abs=1e-12)


@given(st.floats(min_value=1e-4, max_value=1 - 1e-4), st.floats(min_value=0.01, max_value=0.6))
def test_odds_scale_inverse_within_clipping(p, base):
    h = probability_to_health(p, "odds", base_rate=base)
    if 0 < h < 100:  # within the float range of the bounds: an exact inverse
        assert health_to_probability(h, "odds", base_rate=base) == pytest.approx(p, rel=1e-6)
    h2 = np.linspace(0.5, 99.5, 50)
    back = probability_to_health(health_to_probability(h2, "odds", base_rate=base), "odds", base_rate=base)
    np.testing.assert_allclose(back, h2, atol=1e-8)


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=2, max_size=50, unique=True))
def test_health_is_strictly_decreasing_in_probability(ps):
    p = np.sort(np.asarray(ps))
    dh = np.diff(probability_to_health(p))
    assert np.all(dh <= 0)
    # strictly, wherever the probabilities differ by more than the scale's float resolution
    assert np.all(dh[np.diff(p) > 1e-13] < 0)


# ---- ScoreCalibrator ----------------------------------------------------------------------------
def test_sigmoid_recovers_a_known_platt_map():
    a, b = 0.8, -1.5
    m, y = _simulate(60_000, a, b, seed=0)
    cal = ScoreCalibrator("sigmoid").fit(m, y)
    assert cal.method_ == "sigmoid"
    # n = 60,000: standard errors ~0.01 for both
    assert cal.a_ == pytest.approx(a, abs=0.05)
    assert cal.b_ == pytest.approx(b, abs=0.05)
    grid = np.linspace(-4, 4, 9)
    np.testing.assert_allclose(cal.predict_proba(grid), _sigmoid(a * grid + b), atol=0.02)


@pytest.fixture(scope="module")
def isotonic():
    m, y = _simulate(20_000, 1.0, -2.0, seed=1)
    return ScoreCalibrator("isotonic").fit(m, y), m


def test_isotonic_is_strictly_increasing_including_the_tails(isotonic):
    cal, m = isotonic
    kx = cal.knots_x_
    assert len(kx) > 10
    # a grid that starts 3 units below the first knot and ends 3 above the last
    grid = np.linspace(kx[0] - 3, kx[-1] + 3, 20_001)
    assert (grid < kx[0]).sum() > 100 and (grid > kx[-1]).sum() > 100
    p = cal.predict_proba(grid)
    assert np.all(np.diff(p) > 0)
    assert p.min() > 0 and p.max() < 1


def test_isotonic_creates_no_ties(isotonic):
    cal, m = isotonic
    rng = np.random.default_rng(2)
    # fresh margins (inside and beyond the knots) with some repeated values
    x = np.concatenate([rng.normal(0, 2.5, 30_000), np.repeat(rng.normal(0, 1, 50), 4)])
    p = cal.predict_proba(x)
    assert len(np.unique(p)) == len(np.unique(x))
    # order is kept: ranking by probability equals ranking by margin
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(p[order]) >= 0)


def test_isotonic_follows_the_data_between_knots(isotonic):
    cal, _ = isotonic
    grid = np.linspace(-2, 2, 9)
    np.testing.assert_allclose(cal.predict_proba(grid), _sigmoid(grid - 2.0), atol=0.05)


def test_isotonic_warns_on_a_small_slice():
    m, y = _simulate(500, 1.0, -1.0, seed=3)
    with pytest.warns(HealthScoreWarning, match=r"isotonic calibration on only 500 rows overfits"):
        ScoreCalibrator("isotonic").fit(m, y)


def test_auto_chooses_sigmoid_on_a_small_slice():
    m, y = _simulate(2_000, 1.0, -1.5, seed=4)
    cal = ScoreCalibrator("auto").fit(m, y)
    assert cal.method_ == "sigmoid"
    reason = cal.reason_
    assert reason.startswith("auto: 2,000 rows and ")
    assert f">= {ISOTONIC_MIN_ROWS:,} rows" in reason and f">= {ISOTONIC_MIN_POSITIVES} churners" in reason
    assert "else sigmoid" in reason


def test_auto_chooses_isotonic_on_a_big_slice():
    m, y = _simulate(20_000, 1.0, -1.5, seed=5)
    assert y.sum() >= ISOTONIC_MIN_POSITIVES
    cal = ScoreCalibrator("auto").fit(m, y)
    assert cal.method_ == "isotonic"
    assert cal.reason_.startswith(f"auto: 20,000 rows and {int(y.sum()):,} churners")
    assert cal.to_dict()["rows"] == 20_000


def test_auto_needs_enough_churners_for_isotonic():
    # many rows but few churners: still sigmoid
    m, y = _simulate(20_000, 1.0, -6.0, seed=6)
    assert y.sum() < ISOTONIC_MIN_POSITIVES
    assert ScoreCalibrator("auto").fit(m, y).method_ == "sigmoid"


def test_method_chosen_in_the_card_is_recorded():
    m, y = _simulate(20_000, 1.0, -1.5, seed=7)
    cal = ScoreCalibrator("sigmoid").fit(m, y)
    assert cal.method_ == "sigmoid"
    assert cal.reason_ == "chosen in the card (calibration.method: sigmoid)"


@pytest.mark.parametrize(
    ("y", "match"),
    [
        pytest.param(np.zeros(500, int), r"500 rows and 0 churners", id="no-churners"),
        pytest.param(np.ones(500, int), r"500 rows and 500 churners", id="all-churners"),
        pytest.param(np.zeros(0, int), r"0 rows and 0 churners", id="empty"),
    ],
)
@pytest.mark.parametrize("method", ["auto", "sigmoid", "isotonic"])
def test_single_class_slice_is_a_data_error(y, match, method):
    m = np.linspace(-1, 1, len(y))
    with pytest.raises(DataError, match=match + r".*needs both churners and non-churners"):
        ScoreCalibrator(method).fit(m, y)


def test_margin_without_signal_is_a_data_error():
    # churn FALLS as the margin rises: no usable signal
    m, y = _simulate(5_000, -1.0, -1.0, seed=8)
    with pytest.raises(DataError, match=r"churn does not rise with the model's risk"):
        ScoreCalibrator("sigmoid").fit(m, y)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_brier_improves_after_calibration(method):
    # the raw margin is miscalibrated: the truth is sigmoid(0.5 m - 2), the naive reading sigmoid(m)
    m_fit, y_fit = _simulate(20_000, 0.5, -2.0, seed=9, scale=2.0)
    m_test, y_test = _simulate(20_000, 0.5, -2.0, seed=10, scale=2.0)
    raw = brier_score_loss(y_test, _sigmoid(m_test))
    cal = ScoreCalibrator(method).fit(m_fit, y_fit)
    calibrated = brier_score_loss(y_test, cal.predict_proba(m_test))
    oracle = brier_score_loss(y_test, _sigmoid(0.5 * m_test - 2.0))
    assert calibrated < raw - 0.02, (raw, calibrated)
    assert calibrated == pytest.approx(oracle, abs=0.002)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_round_trip_through_a_dict(method):
    m, y = _simulate(10_000, 1.0, -1.5, seed=11)
    cal = ScoreCalibrator(method).fit(m, y)
    again = ScoreCalibrator.from_dict(cal.to_dict())
    x = np.linspace(-8, 8, 1001)
    np.testing.assert_array_equal(again.predict_proba(x), cal.predict_proba(x))


def test_predict_before_fit_raises():
    with pytest.raises(NotFittedError, match=r"not fitted"):
        ScoreCalibrator().predict_proba(np.zeros(3))
