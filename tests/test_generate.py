"""The seeded generator: reproducible, realistic gaps, consistent churn labels and a known truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.card import load_card
from ml.data.generate import generate_snapshots, true_logit
from ml.errors import DataError

REQUIRED_COLUMNS = [
    "customer_id",
    "snapshot_date",
    "segment",
    "plan",
    "arr",
    "tenure_months",
    "interactions_30d",
    "first_response_minutes",
    "fcr_rate",
    "csat",
    "nps",
    "logins_30d",
    "logins_prev_30d",
    "login_trend",
    "tickets_30d",
    "late_invoices_90d",
    "onboarding_completed",
    "churned",
]
N_MONTHS = 6  # as in the `generated` fixture


def test_same_seed_same_data(generated):
    again = generate_snapshots(300, N_MONTHS, seed=1)
    pd.testing.assert_frame_equal(again.frame, generated.frame)
    pd.testing.assert_series_equal(again.truth, generated.truth)


def test_different_seed_different_data(generated):
    other = generate_snapshots(300, N_MONTHS, seed=2).frame
    assert not other.equals(generated.frame)
    # not just a different row count: the values themselves differ
    n = min(len(other), len(generated.frame))
    assert not np.array_equal(other["logins_30d"].to_numpy()[:n], generated.frame["logins_30d"].to_numpy()[:n])


def test_required_columns(generated):
    assert list(generated.frame.columns) == REQUIRED_COLUMNS


def test_types_and_ranges(generated):
    f = generated.frame
    assert f["customer_id"].str.fullmatch(r"C\d{6}").all()
    assert set(f["segment"]) <= {"SMB", "Mid-Market", "Enterprise"}
    assert set(f["plan"]) <= {"basic", "pro", "enterprise"}
    assert set(f["churned"]) == {0, 1}
    assert f["fcr_rate"].between(0, 1).all()
    assert f["csat"].dropna().between(1, 5).all()
    assert f["nps"].dropna().between(0, 10).all()
    assert (f["first_response_minutes"] > 0).all()
    assert f["login_trend"].between(-1, 3).all()
    assert f["onboarding_completed"].dtype == bool
    assert not f.duplicated(["customer_id", "snapshot_date"]).any()
    assert f["snapshot_date"].nunique() == N_MONTHS
    assert (f["snapshot_date"].dt.day == 1).all()


def test_csat_has_realistic_gaps(generated):
    missing = generated.frame["csat"].isna().mean()
    assert 0.10 <= missing <= 0.60
    # the indicators the default card reads besides csat are complete
    for col in ("interactions_30d", "first_response_minutes", "fcr_rate", "logins_30d"):
        assert generated.frame[col].notna().all()


def test_churn_rate_is_plausible(generated):
    assert 0.03 <= generated.frame["churned"].mean() <= 0.25


def test_churn_labels_end_each_customers_history(generated):
    """`churned` = churn within 90 days (3 monthly snapshots). A churner's labels read 0...0 1 [1 [1]]
    and then the customer has no later snapshot: at most 2 rows follow the first churned row."""
    f = generated.frame.sort_values(["customer_id", "snapshot_date"])
    months = f["snapshot_date"].dt.to_period("M")
    n_leavers = 0
    for _cid, g in f.assign(month=months).groupby("customer_id", sort=False):
        labels = g["churned"].to_numpy()
        # monthly snapshots without gaps
        steps = np.diff(g["month"].astype("int64").to_numpy())
        assert (steps == 1).all()
        if labels.any():
            first = int(np.argmax(labels))
            after = labels[first:]
            assert after.all(), "a churned label is followed by an unchurned snapshot"
            assert len(after) <= 3, "snapshots continue after the churn"
            n_leavers += g["month"].iloc[-1] < months.max()
    assert n_leavers > 0  # some churners do leave inside the window, so the checks above bite


def test_customers_without_churn_stay_to_the_end(generated):
    f = generated.frame
    last = f.groupby("customer_id")["snapshot_date"].max()
    never = f.groupby("customer_id")["churned"].max() == 0
    # the label looks 3 months ahead, so a customer never labelled churned is present in the last month
    assert (last[never] == f["snapshot_date"].max()).all()


def test_truth_sums_to_100_and_is_sorted(generated):
    truth = generated.truth
    assert truth.sum() == pytest.approx(100)
    assert (truth >= 0).all()
    assert truth.is_monotonic_decreasing
    assert set(truth.index) <= set(REQUIRED_COLUMNS)


def test_truth_differs_from_the_default_card(generated, configs_dir):
    card = load_card(configs_dir / "default.yaml")
    top3 = list(generated.truth.index[:3])
    # the card weights interactions_30d and fcr_rate most (25 each); the truth plants other drivers
    heaviest = [ind.column for ind in card.indicators if ind.weight == max(card.weights.values())]
    assert sorted(heaviest) == ["fcr_rate", "interactions_30d"]
    assert not set(heaviest) & set(top3)
    assert {"logins_30d", "late_invoices_90d", "login_trend"} & set(top3)


def test_true_logit_separates_churners(generated):
    f = generated.frame
    logit = true_logit(f)
    assert logit[f["churned"].to_numpy() == 1].mean() > logit[f["churned"].to_numpy() == 0].mean()


def test_unpacks_to_frame_and_truth(generated):
    frame, truth = generated
    assert frame is generated.frame and truth is generated.truth
    assert generated.horizon_days == 90


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param(
            {"n_customers": 0, "n_months": 3},
            DataError,
            r"need at least 1 customer and 1 month, "
            r"got customers=0, months=3",
            id="no-customers",
        ),
        pytest.param({"n_customers": 5, "n_months": 0}, DataError, r"months=0", id="no-months"),
        pytest.param(
            {"n_customers": 5, "n_months": 3, "horizon_days": 0},
            DataError,
            r"horizon_days must be positive, got 0",
            id="horizon",
        ),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        generate_snapshots(**kwargs)
