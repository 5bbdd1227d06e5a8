"""healthscore: churn-calibrated customer health scores.

The manual weighted card is the baseline; a LightGBM churn model proposes weights, a calibrator maps
scores onto churn probabilities, explanations come in health points, MLflow tracks every run.
"""

from ml.card import Band, Card, Indicator, Scoring, load_card, parse_card
from ml.errors import CardError, DataError, HealthScoreError, HealthScoreWarning, ModelError
from ml.generate import SyntheticData, generate_snapshots
from ml.io import read_table, write_table
from ml.scorecard import WeightedScorecard, assign_bands, percentile_rank, score_table

__version__ = "0.1.0"

__all__ = [
    "Band",
    "Card",
    "CardError",
    "DataError",
    "HealthScoreError",
    "HealthScoreWarning",
    "Indicator",
    "ModelError",
    "Scoring",
    "SyntheticData",
    "WeightedScorecard",
    "assign_bands",
    "generate_snapshots",
    "load_card",
    "parse_card",
    "percentile_rank",
    "read_table",
    "score_table",
    "write_table",
]
