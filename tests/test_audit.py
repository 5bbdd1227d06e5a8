"""The direction audit: its z statistic by hand, clustering by customer, and the verdicts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.card import parse_card
from ml.model.audit import audit_directions, variance_of_mean
from ml.model.features import FeatureSchema


def _schema_and_matrix(one_indicator, x, direction):
    scoring = {"method": "linear", "worst": 0, "best": 20}
    if direction == "lower_is_better":
        scoring = {"method": "linear", "worst": 20, "best": 0}
    card = parse_card(one_indicator(scoring, direction=direction))
    frame = pd.DataFrame({"customer_id": [f"C{i}" for i in range(len(x))], "x": x})
    schema = FeatureSchema.learn(card, frame)
    return schema, schema.matrix(frame)


# x = 1..20: numpy's quartiles are 5.75 and 15.25, so the lowest quartile is x = 1..5 and the highest
# x = 16..20. Churn: 4 of 5 low (0.8), 1 of 5 high (0.2).
X = np.arange(1, 21, dtype=float)
Y = np.zeros(20, int)
Y[[0, 1, 2, 3, 19]] = 1


def test_z_statistic_by_hand(one_indicator):
    schema, M = _schema_and_matrix(one_indicator, X, "higher_is_better")
    (check,) = audit_directions(M, Y, schema)
    # var = 0.8 x 0.2 / 5 + 0.2 x 0.8 / 5 = 0.064; z = (0.2 - 0.8) / sqrt(0.064) = -2.3717...
    assert (check.churn_low, check.churn_high, check.n_low, check.n_high) == (0.8, 0.2, 5, 5)
    assert check.z == pytest.approx(-0.6 / np.sqrt(0.064), abs=1e-12)
    assert check.observed == "higher_is_better" and check.verdict == "supported"


def test_contradicted_direction(one_indicator):
    schema, M = _schema_and_matrix(one_indicator, X, "lower_is_better")
    (check,) = audit_directions(M, Y, schema)
    assert check.verdict == "contradicted"
    assert "higher `x` goes with LESS churn: 80% churn in the lowest quartile, 20% in the highest" in check.evidence


def test_weak_evidence_is_inconclusive(one_indicator):
    y = np.zeros(20, int)
    y[[0, 1, 19]] = 1  # low 2/5, high 1/5: z = -0.2 / sqrt(0.4*0.6/5 + 0.2*0.8/5) = -0.707
    schema, M = _schema_and_matrix(one_indicator, X, "lower_is_better")
    (check,) = audit_directions(M, y, schema)
    assert check.z == pytest.approx(-0.2 / np.sqrt(0.08), abs=1e-12)
    assert check.verdict == "inconclusive"


def test_clustered_variance_by_hand():
    # y = 1,1,1,1,0 (mean 0.8) from customers a,a,b,b,c: deviations summed per customer
    #   a: 0.2 + 0.2 = 0.4, b: 0.4, c: -0.8 -> (0.16 + 0.16 + 0.64) / 5^2 = 0.0384
    y = np.array([1, 1, 1, 1, 0], float)
    assert variance_of_mean(y, np.array(["a", "a", "b", "b", "c"])) == pytest.approx(0.0384, abs=1e-12)
    # independent rows: 0.8 x 0.2 / 5 = 0.032
    assert variance_of_mean(y, None) == pytest.approx(0.032, abs=1e-12)


def test_too_few_rows_are_not_audited(one_indicator):
    schema, M = _schema_and_matrix(one_indicator, X[:19], "higher_is_better")
    assert audit_directions(M, Y[:19], schema) == []
