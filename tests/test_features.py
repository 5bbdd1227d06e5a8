"""The feature schema: what each column becomes for LightGBM, the positional monotone constraints,
the label, and the one-error report of schema drift."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.card import parse_card
from ml.errors import DataError
from ml.model.features import CATEGORICAL, NUMERIC, FeatureSchema, label_array, monotone_constraints


@pytest.fixture
def card(card_dict):
    d = card_dict()
    d["indicators"] = [
        {"name": "csat", "column": "csat", "weight": 40, "direction": "higher_is_better",
         "scoring": {"method": "linear", "worst": 1, "best": 5}},
        {"name": "wait", "column": "wait_min", "weight": 30, "direction": "lower_is_better",
         "scoring": {"method": "linear", "worst": 60, "best": 0}},
        {"name": "plan", "column": "plan", "weight": 20, "direction": "higher_is_better",
         "scoring": {"method": "categorical", "map": {"basic": 20, "pro": 60, "enterprise": 100}}},
        {"name": "onboarded", "column": "onboarded", "weight": 10, "direction": "higher_is_better",
         "scoring": {"method": "boolean"}},
    ]  # fmt: skip
    return parse_card(d)


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "csat": ["4.5", "3", None, "2"],  # numbers stored as text stay numeric
            "wait_min": [5.0, 30.0, 12.0, np.nan],
            "plan": ["pro", "basic", "enterprise", "pro"],
            "onboarded": ["yes", "no", "yes", None],
        }
    )


def test_kinds_learned_from_card_and_data(card, frame):
    schema = FeatureSchema.learn(card, frame)
    kinds = {f.name: (f.kind, f.boolean, f.categories) for f in schema.features}
    assert kinds == {
        "csat": (NUMERIC, False, ()),
        "wait": (NUMERIC, False, ()),
        "plan": (CATEGORICAL, False, ("basic", "enterprise", "pro")),
        "onboarded": (NUMERIC, True, ()),
    }
    assert schema.columns == ["csat", "wait_min", "plan", "onboarded"]


def test_matrix_values(card, frame):
    X = FeatureSchema.learn(card, frame).matrix(frame)
    np.testing.assert_array_equal(X["csat"].to_numpy(), [4.5, 3.0, np.nan, 2.0])
    np.testing.assert_array_equal(X["onboarded"].to_numpy(), [1.0, 0.0, 1.0, np.nan])
    assert list(X["plan"].cat.categories) == ["basic", "enterprise", "pro"]
    assert X["plan"].tolist() == ["pro", "basic", "enterprise", "pro"]


def test_monotone_constraints_follow_names_not_positions(card, frame):
    schema = FeatureSchema.learn(card, frame)
    # csat higher is better -> -1 on the churn margin; wait lower is better -> +1; categorical -> 0;
    # a boolean is numeric and keeps its direction
    assert monotone_constraints(schema) == [-1, 1, 0, -1]
    assert monotone_constraints(schema, free={"wait"}) == [-1, 0, 0, -1]


def test_schema_round_trips_through_json(card, frame):
    schema = FeatureSchema.learn(card, frame)
    assert FeatureSchema.from_dict(schema.to_dict()) == schema


def test_drift_lists_missing_unexpected_and_new_categories_at_once(card, frame):
    schema = FeatureSchema.learn(card, frame)
    bad = frame.rename(columns={"wait_min": "Wait Min"}).assign(plan=["pro", "gold", "basic", "pro"])
    with pytest.raises(DataError) as e:
        schema.matrix(bad)
    msg = str(e.value)
    assert "missing column(s) ['wait_min']" in msg
    assert "'Wait Min' looks like 'wait_min'" in msg
    assert "categories unseen in training: ['gold']" in msg


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([0, 1, 1], [0, 1, 1]),
        ([True, False, True], [1, 0, 1]),
        (["yes", "No", " TRUE "], [1, 0, 1]),
        (["1", "0", "0"], [1, 0, 0]),
    ],
)
def test_label_array_accepts_the_usual_encodings(values, expected):
    assert label_array(pd.DataFrame({"churned": values}), "churned").tolist() == expected


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ([0, 2, 1], r"must be 0/1, found \[2\] in 1 row"),
        (["yes", "maybe"], r"found \['maybe'\]"),
    ],
)
def test_label_array_rejects_other_values(values, match):
    with pytest.raises(DataError, match=match):
        label_array(pd.DataFrame({"churned": values}), "churned")
