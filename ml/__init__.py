"""healthscore: churn-calibrated customer health scores.

The manual weighted card is the baseline; a LightGBM churn model proposes weights, a calibrator maps
scores onto churn probabilities, explanations come in health points, MLflow tracks every run.
"""

from ml.card import Band, Card, Indicator, Scoring, load_card, parse_card
from ml.errors import CardError, DataError, HealthScoreError, HealthScoreWarning, ModelError
from ml.generate import SyntheticData, generate_snapshots
from ml.io import read_table, write_table
from ml.scorecard import WeightedScorecard, assign_bands, percentile_rank, score_table


def __getattr__(name: str):
    # the heavier stages load on first use, so `import ml` (and scoring) stays fast
    lazy = {
        "HealthModel": "ml.model",
        "ScoreCalibrator": "ml.calibration",
        "train": "ml.pipeline",
        "load_model": "ml.bundle",
        "save_model": "ml.bundle",
        "explain_customer": "ml.explain",
        "build_report": "ml.report",
        "write_report": "ml.report",
        "HealthReport": "ml.report",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name]), name)
    raise AttributeError(f"module 'ml' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "Band",
    "HealthModel",
    "HealthReport",
    "ScoreCalibrator",
    "build_report",
    "explain_customer",
    "load_model",
    "save_model",
    "train",
    "write_report",
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
