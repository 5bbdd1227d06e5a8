"""Held-out metrics, checked against numbers worked out by hand (not by calling the code under test)."""

from __future__ import annotations

import numpy as np
import pytest

from ml.model.evaluate import calibration_metrics, expected_calibration_error, ranking_metrics, top_decile_lift

BANDS = ["Healthy", "Stable", "At risk"]


def test_ece_by_hand():
    # two equal-count bins of the sorted probabilities:
    #   {0.1, 0.2}: mean predicted 0.15, observed 0/2 = 0    -> |0 - 0.15| = 0.15, weight 2
    #   {0.3, 0.4}: mean predicted 0.35, observed 2/2 = 1    -> |1 - 0.35| = 0.65, weight 2
    # ECE = (2 x 0.15 + 2 x 0.65) / 4 = 0.4
    p = np.array([0.3, 0.1, 0.4, 0.2])
    y = np.array([1, 0, 1, 0])
    assert expected_calibration_error(p, y, bins=2) == pytest.approx(0.4, abs=1e-12)


def test_ece_is_zero_when_every_bin_is_right():
    # bin {0.25 x4}: observed 1/4 = 0.25; bin {0.75 x4}: observed 3/4 = 0.75
    p = np.array([0.25] * 4 + [0.75] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert expected_calibration_error(p, y, bins=2) == pytest.approx(0.0, abs=1e-12)


def test_top_decile_lift_by_hand():
    # 20 rows, 4 churners: base rate 0.2. The top decile is the 2 riskiest rows (risk 19 and 18);
    # one of them churned: rate 0.5, lift 0.5 / 0.2 = 2.5
    risk = np.arange(20, dtype=float)
    y = np.zeros(20, int)
    y[[19, 3, 5, 7]] = 1
    assert top_decile_lift(risk, y) == pytest.approx(2.5, abs=1e-12)


def test_ranking_metrics_by_hand():
    # health scores (higher = healthier) and who churned:
    score = np.array([90.0, 80.0, 70.0, 60.0, 50.0])
    y = np.array([0, 1, 0, 1, 1])
    band = ["Healthy", "Healthy", "Stable", "Stable", "At risk"]
    m = ranking_metrics(score, band, y, BANDS)
    # ROC-AUC: churner/non-churner pairs where the churner scores lower:
    #   80<90 yes, 80<70 no, 60<90 yes, 60<70 yes, 50<90 yes, 50<70 yes -> 5 of 6
    assert m["roc_auc"] == pytest.approx(5 / 6, abs=1e-12)
    # PR-AUC (average precision), riskiest first: 50 (churn), 60 (churn), 70, 80 (churn), 90
    #   precision at each churner: 1/1, 2/2, 3/4 -> (1 + 1 + 0.75) / 3
    assert m["pr_auc"] == pytest.approx((1 + 1 + 0.75) / 3, abs=1e-12)
    # top decile of 5 rows = 1 row (score 50, churned): 1 / (3/5)
    assert m["top_decile_lift"] == pytest.approx(5 / 3, abs=1e-12)
    assert m["rows_by_band"] == {"Healthy": 2, "Stable": 2, "At risk": 1}
    assert m["churn_rate_by_band"] == {"Healthy": 0.5, "Stable": 0.5, "At risk": 1.0}
    # 1 of the 3 churners sits in the lowest band
    assert m["at_risk_capture"] == pytest.approx(1 / 3, abs=1e-12)
    assert (m["rows"], m["churners"]) == (5, 3)


def test_ranking_metrics_skip_missing_scores_and_empty_bands():
    score = np.array([90.0, np.nan, 40.0, 30.0])
    y = np.array([0, 1, 1, 0])
    m = ranking_metrics(score, ["Healthy", "Healthy", "At risk", "At risk"], y, BANDS)
    assert m["rows"] == 3
    assert m["churn_rate_by_band"]["Stable"] is None
    # pairs: churner 40 vs non-churners 90 (lower: yes) and 30 (no) -> 1/2
    assert m["roc_auc"] == pytest.approx(0.5)


def test_single_class_has_no_auc():
    m = ranking_metrics(np.array([1.0, 2.0]), ["Healthy", "Healthy"], np.array([0, 0]), BANDS)
    assert m["roc_auc"] is None and m["top_decile_lift"] is None and m["at_risk_capture"] is None


def test_calibration_metrics_per_band_by_hand():
    p = np.array([0.1, 0.1, 0.5, 0.5])
    y = np.array([0, 0, 1, 0])
    m = calibration_metrics(p, y, ["Healthy", "Healthy", "At risk", "At risk"], BANDS)
    assert m["by_band"]["Healthy"] == {"rows": 2, "predicted": pytest.approx(0.1), "observed": 0.0}
    assert m["by_band"]["At risk"] == {"rows": 2, "predicted": pytest.approx(0.5), "observed": 0.5}
    assert m["by_band"]["Stable"] == {"rows": 0, "predicted": None, "observed": None}
    # Brier: (0.01 + 0.01 + 0.25 + 0.25) / 4 = 0.13
    assert m["brier"] == pytest.approx(0.13)
    assert m["mean_predicted"] == pytest.approx(0.3) and m["observed_rate"] == pytest.approx(0.25)
