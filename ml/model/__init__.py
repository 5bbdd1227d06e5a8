"""The churn model: features, splits, direction audit, LightGBM, calibration, explanations, weight
proposals and held-out evaluation."""

# The score columns ``HealthModel.predict`` writes after the id (and date), in order: text for the
# bands, floats otherwise. Kept here, outside the booster, so the history and the Spark engine can name
# them without importing LightGBM.
SCORE_COLUMNS = (
    "health_score",
    "band",
    "churn_probability",
    "manual_score",
    "manual_band",
    "manual_churn_probability",
)
