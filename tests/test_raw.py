"""The raw-table generator: seeded, realistic tables whose built snapshots are exactly the ones the
generator computed, and whose true drivers the model recovers."""

from __future__ import annotations

import warnings

import pandas as pd
import pytest
from scipy.stats import spearmanr
from snapshot_reference import assert_same

from ml.card import parse_card
from ml.data.raw import TABLE_FILES, demo_spec_path, generate_raw, write_raw
from ml.data.snapshots import build_snapshots
from ml.data.spec import load_spec
from ml.errors import DataError, HealthScoreWarning
from ml.pipeline import train


@pytest.fixture(scope="module")
def small():
    return generate_raw(300, 4, seed=5)


def test_same_seed_same_tables(small):
    again = generate_raw(300, 4, seed=5)
    for name, frame in small.tables.items():
        pd.testing.assert_frame_equal(frame, again.tables[name], obj=name)
    pd.testing.assert_series_equal(small.truth, again.truth)
    other = generate_raw(300, 4, seed=6)
    assert not other.tables["usage"]["event_time"].equals(small.tables["usage"]["event_time"])


def test_tables_look_like_a_saas_export(small):
    t = small.tables
    assert set(t) == set(TABLE_FILES)
    assert t["accounts"]["account_id"].is_unique and len(t["accounts"]) == 300
    assert set(t["usage"]["event_type"]) == {"login", "feature_use"}
    assert t["usage"].loc[t["usage"]["event_type"] == "login", "minutes"].isna().all()
    assert t["tickets"]["satisfaction"].dropna().between(1, 5).all()
    assert 0.2 < t["tickets"]["satisfaction"].isna().mean() < 0.6  # surveys go unanswered
    assert (t["invoices"]["due_at"] - t["invoices"]["issued_at"]).dt.days.eq(14).all()
    late = t["invoices"]["paid_late"]
    paid = t["invoices"]["paid_at"].notna()
    assert ((t["invoices"]["paid_at"] > t["invoices"]["due_at"])[paid] == late[paid]).all()
    # nobody acts after churning
    churn = t["churn"].set_index("account_id")["churn_date"]
    last_login = t["usage"].groupby("account_id")["event_time"].max()
    gone = last_login.index.intersection(churn.index)
    assert (last_login[gone] < churn[gone]).all()


def test_built_snapshots_are_the_ones_the_generator_computed(small, tmp_path):
    spec = write_raw(small, tmp_path)
    assert spec.read_text() == demo_spec_path().read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*TABLE_FILES.values(), "spec.yaml"])
    result = build_snapshots(load_spec(spec))
    got = result.frame
    assert_same(got, small.expected[got.columns])
    # every row at the last date is unlabelled unless the customer churned within its horizon
    last = got["snapshot_date"] == got["snapshot_date"].max()
    assert got.loc[last, "churned"].isna().sum() > 0 and got.loc[~last, "churned"].notna().all()


def test_truth_is_the_shared_ground_truth(small):
    assert small.truth.sum() == pytest.approx(100)
    assert small.truth.index[0] in {"logins_30d", "late_invoices_90d", "csat"}  # activity, invoices, CSAT lead
    assert small.truth["nps"] == 0  # generated, but not a driver


@pytest.mark.parametrize(("customers", "dates"), [(0, 4), (10, 0)])
def test_bad_sizes(customers, dates):
    with pytest.raises(DataError, match=r"need at least 1 customer and 1 date"):
        generate_raw(customers, dates)


# the generator's true drivers as a card (indicator name = column, so the truth's index matches)
DRIVERS = {
    "logins_30d": "higher_is_better",
    "late_invoices_90d": "lower_is_better",
    "csat": "higher_is_better",
    "login_trend": "higher_is_better",
    "fcr_rate": "higher_is_better",
    "tickets_30d": "lower_is_better",
    "first_response_minutes": "lower_is_better",
    "interactions_30d": "higher_is_better",
}
TRUTH_CARD = {
    "id_column": "customer_id",
    "date_column": "snapshot_date",
    "label_column": "churned",
    "indicators": [
        {"name": c, "column": c, "weight": 1, "direction": d, "scoring": {"method": "percentile"}}
        for c, d in DRIVERS.items()
    ],
    "normalize": True,
    "bands": [{"name": "Healthy", "min": 80}, {"name": "Stable", "min": 60}, {"name": "At risk", "min": 0}],
    "model": {"n_refits": 0, "seed": 0},
}


@pytest.mark.slow
def test_model_recovers_the_true_drivers_from_built_snapshots(tmp_path):
    """The demo's path from raw tables: DuckDB builds the snapshots, the model trains on the rows whose
    label is known, and its SHAP proposal ranks the drivers like the generator's truth."""
    raw = generate_raw(6000, 6, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthScoreWarning)
        frame = build_snapshots(write_raw(raw, tmp_path)).frame
        labelled = frame[frame["churned"].notna()].reset_index(drop=True)  # censored rows: no label yet
        labelled["churned"] = labelled["churned"].astype(int)
        assert len(labelled) >= 20_000
        result = train(parse_card(TRUTH_CARD), labelled, None, n_refits=0)
    w = result.weights.set_index("indicator")
    truth = raw.truth.reindex(w.index)
    rho = spearmanr(w["shap_share"], truth).statistic
    table = pd.DataFrame({"shap_share": w["shap_share"], "truth": truth.round(1)}).sort_values("truth")
    assert rho >= 0.8, f"spearman(shap_share, truth) = {rho:.3f} < 0.8\n{table.to_string()}"
    # the three largest true drivers are the model's three largest
    assert set(w["shap_share"].nlargest(3).index) == set(truth.nlargest(3).index), table.to_string()
