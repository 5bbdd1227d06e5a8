"""healthscore: churn-calibrated customer health scores.

The manual weighted card is the baseline; a LightGBM churn model proposes weights, a calibrator maps
scores onto churn probabilities, explanations come in health points, MLflow tracks every run.

The package is grouped by stage (each imports only from the ones before it):
``card``/``scorecard`` (the manual card) -> ``data`` (tables in and out, snapshots built from raw tables
with DuckDB, the generators) -> ``model``
(features, splits, LightGBM, calibration, explanations, weights, evaluation) -> ``serving`` (model
directory, MLflow) -> ``report`` -> ``pipeline`` (train, demo) -> ``cli``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ml.card import Band, Card, Indicator, Scoring, load_card, parse_card
from ml.data.generate import SyntheticData, generate_snapshots
from ml.data.io import latest_snapshots, read_table, write_table
from ml.errors import CardError, DataError, HealthScoreError, HealthScoreWarning, ModelError
from ml.scorecard import WeightedScorecard, assign_bands, percentile_rank, score_table

if TYPE_CHECKING:  # the heavier stages load on first use (see __getattr__), so `import ml` stays fast
    from ml.data.raw import RawData, generate_raw, write_raw
    from ml.data.snapshots import SnapshotResult, SnapshotSummary, build_snapshots, snapshot_sql
    from ml.data.spec import SnapshotSpec, load_spec, parse_spec
    from ml.model.additive import compile_additive, learned_card, shape_curves
    from ml.model.booster import HealthModel
    from ml.model.calibration import ScoreCalibrator
    from ml.model.explain import explain_customer
    from ml.monitor.alerts import evaluate_alerts, post_alerts
    from ml.monitor.drift import monitor as monitor_model
    from ml.monitor.history import History, append_scores, score_with_points
    from ml.monitor.trends import trend_summary
    from ml.pipeline import DemoResult, TrainResult, demo, tracked_training, train
    from ml.report.figures import reliability_figure, waterfall_figure, weights_figure
    from ml.report.report import HealthReport, build_report, write_report
    from ml.serving.bundle import load_model, save_model
    from ml.serving.tracking import promote

_LAZY = {
    "compile_additive": "ml.model.additive",
    "learned_card": "ml.model.additive",
    "shape_curves": "ml.model.additive",
    "SnapshotSpec": "ml.data.spec",
    "load_spec": "ml.data.spec",
    "parse_spec": "ml.data.spec",
    "build_snapshots": "ml.data.snapshots",
    "snapshot_sql": "ml.data.snapshots",
    "SnapshotResult": "ml.data.snapshots",
    "SnapshotSummary": "ml.data.snapshots",
    "generate_raw": "ml.data.raw",
    "write_raw": "ml.data.raw",
    "RawData": "ml.data.raw",
    "HealthModel": "ml.model.booster",
    "ScoreCalibrator": "ml.model.calibration",
    "explain_customer": "ml.model.explain",
    "History": "ml.monitor.history",
    "append_scores": "ml.monitor.history",
    "score_with_points": "ml.monitor.history",
    "evaluate_alerts": "ml.monitor.alerts",
    "post_alerts": "ml.monitor.alerts",
    "monitor_model": ("ml.monitor.drift", "monitor"),  # `ml.monitor` is the sub-package
    "trend_summary": "ml.monitor.trends",
    "train": "ml.pipeline",
    "tracked_training": "ml.pipeline",
    "demo": "ml.pipeline",
    "TrainResult": "ml.pipeline",
    "DemoResult": "ml.pipeline",
    "load_model": "ml.serving.bundle",
    "save_model": "ml.serving.bundle",
    "promote": "ml.serving.tracking",
    "build_report": "ml.report.report",
    "write_report": "ml.report.report",
    "HealthReport": "ml.report.report",
    "reliability_figure": "ml.report.figures",
    "waterfall_figure": "ml.report.figures",
    "weights_figure": "ml.report.figures",
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name] if isinstance(_LAZY[name], tuple) else (_LAZY[name], name)
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'ml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.1.0"

__all__ = [
    "Band",
    "Card",
    "CardError",
    "DataError",
    "DemoResult",
    "HealthModel",
    "HealthReport",
    "HealthScoreError",
    "HealthScoreWarning",
    "History",
    "Indicator",
    "ModelError",
    "RawData",
    "ScoreCalibrator",
    "Scoring",
    "SnapshotResult",
    "SnapshotSpec",
    "SnapshotSummary",
    "SyntheticData",
    "TrainResult",
    "WeightedScorecard",
    "append_scores",
    "assign_bands",
    "build_report",
    "build_snapshots",
    "compile_additive",
    "demo",
    "evaluate_alerts",
    "explain_customer",
    "generate_raw",
    "generate_snapshots",
    "latest_snapshots",
    "learned_card",
    "load_card",
    "load_model",
    "load_spec",
    "monitor_model",
    "parse_card",
    "parse_spec",
    "percentile_rank",
    "post_alerts",
    "promote",
    "read_table",
    "reliability_figure",
    "save_model",
    "score_table",
    "score_with_points",
    "shape_curves",
    "snapshot_sql",
    "tracked_training",
    "train",
    "trend_summary",
    "waterfall_figure",
    "weights_figure",
    "write_raw",
    "write_report",
    "write_table",
]
