"""The churn model: features, splits, direction audit, LightGBM, calibration, explanations, weight
proposals and held-out evaluation."""
