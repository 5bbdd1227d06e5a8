"""Weight rounding (largest remainder) and the best non-negative linear weights for the manual card."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ml.model.weights import largest_remainder, nonnegative_logistic_weights, shares


# ---- largest_remainder: golden cases computed by hand ------------------------------------------
@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # exact shares: 50, 25, 25 -> nothing to round
        pytest.param([2, 1, 1], [50, 25, 25], id="exact"),
        pytest.param([0.1, 0.2, 0.3, 0.4], [10, 20, 30, 40], id="exact-fractions"),
        # 16.67, 33.33, 50 -> floors 16 + 33 + 50 = 99; the one seat left goes to the largest remainder (.67)
        pytest.param([1, 2, 3], [17, 33, 50], id="one-seat"),
        # 33.4, 33.3, 33.3 -> floors 33 x 3 = 99; remainders .4, .3, .3 -> the first gets the seat
        pytest.param([33.4, 33.3, 33.3], [34, 33, 33], id="largest-remainder-wins"),
        # 33.33 x 3 -> floors 99; a three-way tie in remainders (.33): the earliest entry gets the seat
        pytest.param([1, 1, 1], [34, 33, 33], id="tie-three-way"),
        # 16.67 x 6 -> floors 96; four seats for a six-way tie: the first four
        pytest.param([1] * 6, [17, 17, 17, 17, 16, 16], id="tie-six-way"),
        # 14.29 x 7 -> floors 98; two seats: the first two
        pytest.param([1] * 7, [15, 15, 14, 14, 14, 14, 14], id="tie-seven-way"),
        # 33.33, 16.67, 16.67, 33.33 -> floors 98; remainders .33 .67 .67 .33 -> both .67 win, not position
        pytest.param([2, 1, 1, 2], [33, 17, 17, 33], id="tie-remainder-beats-position"),
        # 42.86, 14.29, 42.86 -> floors 42 + 14 + 42 = 98; remainders .86 .29 .86 -> both 42.86 round up
        pytest.param([3, 1, 3], [43, 14, 43], id="tie-split-by-gap"),
        # a zero share earns nothing: 0, 33.33 x 3 -> 0, 34, 33, 33
        pytest.param([0, 1, 1, 1], [0, 34, 33, 33], id="zero-with-tie"),
        pytest.param([0, 1, 0, 1], [0, 50, 0, 50], id="zeros-exact"),
        pytest.param([0, 0, 5], [0, 0, 100], id="single-positive"),
        # nothing to share at all: treated as equal shares (33.33 x 3 -> 34, 33, 33)
        pytest.param([0, 0, 0], [34, 33, 33], id="all-zero"),
        pytest.param([7], [100], id="single"),
    ],
)
def test_largest_remainder_golden(values, expected):
    out = largest_remainder(values)
    assert out.tolist() == expected
    assert out.sum() == 100
    assert np.issubdtype(out.dtype, np.integer)


def test_largest_remainder_other_total():
    # 3.33 x 3 of 10 -> floors 9, one seat to the first
    assert largest_remainder([1, 1, 1], total=10).tolist() == [4, 3, 3]


def test_largest_remainder_empty():
    assert largest_remainder([]).tolist() == []


@pytest.mark.parametrize(
    ("values", "match"),
    [
        pytest.param([1, -1, 2], r"finite and non-negative", id="negative"),
        pytest.param([1, float("nan")], r"finite and non-negative", id="nan"),
        pytest.param([1, float("inf")], r"finite and non-negative", id="inf"),
    ],
)
def test_largest_remainder_rejects_bad_shares(values, match):
    with pytest.raises(ValueError, match=match):
        largest_remainder(values)


_share_lists = st.lists(
    st.one_of(st.just(0.0), st.floats(min_value=0.0, max_value=1e9, allow_nan=False, allow_infinity=False)),
    min_size=1,
    max_size=30,
)


@given(_share_lists)
def test_largest_remainder_always_totals_100_within_one_of_exact(values):
    out = largest_remainder(values)
    s = np.asarray(values, float)
    exact = s / s.sum() * 100 if s.sum() > 0 else np.full(len(s), 100 / len(s))
    assert out.sum() == 100
    assert (out >= 0).all()
    assert np.all(np.abs(out - exact) < 1), (values, out.tolist(), exact.tolist())
    # rounding only ever moves to a neighbouring integer
    assert np.all((out == np.floor(exact)) | (out == np.ceil(exact)) | (np.abs(out - exact) < 1e-9))


@given(_share_lists.filter(lambda v: sum(v) > 0))
def test_largest_remainder_gives_zero_shares_nothing(values):
    out = largest_remainder(values)
    assert np.all(out[np.asarray(values) == 0] == 0)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=20))
def test_shares_total_100_and_clip_negatives(values):
    out = shares(values)
    assert out.sum() == pytest.approx(100)
    assert (out >= 0).all()


# ---- nonnegative_logistic_weights ---------------------------------------------------------------
def _simulate(b_true, n=20_000, a=1.0, seed=0):
    """Sub-scores uniform on 0-100 and churn from P = sigmoid(a - sum_j b_j S_j / 100)."""
    rng = np.random.default_rng(seed)
    S = rng.uniform(0, 100, size=(n, len(b_true)))
    p = 1 / (1 + np.exp(-(a - S / 100 @ np.asarray(b_true, float))))
    return S, (rng.random(n) < p).astype(int)


def test_nonnegative_logistic_weights_recover_planted_order():
    b_true = [4.0, 2.0, 1.0, 0.0]
    S, y = _simulate(b_true)
    b = nonnegative_logistic_weights(S, y)
    assert (b >= 0).all()
    assert np.argsort(-b).tolist() == [0, 1, 2, 3], b
    # and close to the planted values (n = 20,000: standard errors ~0.1)
    np.testing.assert_allclose(b, b_true, atol=0.4)


def test_nonnegative_logistic_weights_never_negative_for_anticorrelated_subscore():
    # sub-score 2 is anti-correlated with health: the higher it is, the MORE churn (b = -3)
    S, y = _simulate([3.0, 1.5, -3.0])
    b = nonnegative_logistic_weights(S, y)
    assert (b >= 0).all(), b
    assert b[2] == pytest.approx(0.0, abs=1e-6)
    assert b[0] > b[1] > b[2]
    # its proposal share is zero, and the rounded proposal still totals 100
    assert largest_remainder(shares(b)).tolist()[2] == 0
    assert largest_remainder(shares(b)).sum() == 100


def test_nonnegative_logistic_weights_handle_missing_subscores():
    S, y = _simulate([3.0, 1.0])
    S = S.copy()
    S[::7, 0] = np.nan  # missing sub-scores are filled with the column mean
    b = nonnegative_logistic_weights(S, y)
    assert np.isfinite(b).all() and (b >= 0).all()
    assert b[0] > b[1]
