"""MLflow tracking and the model registry. Imported only by the commands that need it.

Tracking URI: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<cwd>/mlflow.db``; never a remote
default. Every training is a run (params, metrics, artifacts); the model directory is logged as the
run's ``model`` artifact (it already is an MLflow pyfunc model), registered as a new version of the
card's model name, and given the alias ``challenger``. ``promote`` moves ``champion``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ml.errors import HealthScoreError

DEFAULT_EXPERIMENT = "health-score"
CHALLENGER, CHAMPION = "challenger", "champion"


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri if uri else f"sqlite:///{Path.cwd().resolve() / 'mlflow.db'}"


def quiet_mlflow_env() -> None:
    """Before MLflow is imported: no usage telemetry (nothing may reach the network at run time) and
    no download progress bars."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def mlflow_module():
    """``mlflow``, imported quietly and pointed at :func:`tracking_uri`."""
    quiet_mlflow_env()
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def _flatten(prefix: str, obj: Any, out: dict[str, float]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            key = "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in str(k)).replace(" ", "_")
            _flatten(f"{prefix}.{key}" if prefix else key, v, out)
    elif isinstance(obj, bool):
        return
    elif isinstance(obj, int | float) and obj == obj:  # skip NaN
        out[prefix] = float(obj)


def run_params(card, frame, result, config_path=None, data_path=None) -> dict[str, Any]:
    import json

    import pandas as pd

    model = result.model
    split = model.split_summary_
    params: dict[str, Any] = {
        "card_name": card.name,
        "card_sha256": card.sha256,
        "card_yaml": card.to_yaml()[:6000],
        "config_path": str(config_path) if config_path else "",
        "data_path": str(data_path) if data_path else "",
        "data_rows": len(frame),
        "data_customers": int(frame[card.id_column].nunique()),
        "churn_rate": round(float(pd.to_numeric(frame[card.label_column], errors="coerce").mean()), 6)
        if pd.api.types.is_numeric_dtype(frame[card.label_column])
        else "",
        "horizon_days": card.horizon_days,
        "monotone": card.model.monotone,
        "extra_features": ",".join(card.model.extra_features),
        "calibration_method": model.calibrator_.method_,
        "calibration_scale": card.calibration.scale,
        "split_cutoff": split.get("cutoff") or "",
        "split": json.dumps(split)[:6000],
        "best_iteration": model.best_iteration_,
    }
    if card.date_column:
        d = pd.to_datetime(frame[card.date_column], errors="coerce")
        params["date_min"], params["date_max"] = str(d.min().date()), str(d.max().date())
    for k, v in model.params_.items():
        params[f"lgb.{k}"] = v if not isinstance(v, list | tuple) else ",".join(map(str, v))
    return params


def run_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    _flatten(
        "",
        {
            "ranking": metrics["ranking"],
            "holdout": metrics["holdout"],
            "calibration": {
                k: {kk: vv for kk, vv in v.items() if kk != "reliability"}
                for k, v in metrics["calibration"].items()
                if isinstance(v, dict)
            },
        },
        out,
    )
    return out


def promote(name: str, version: int, alias: str = CHAMPION) -> None:
    mlflow = mlflow_module()
    client = mlflow.MlflowClient()
    try:
        client.get_model_version(name, str(version))
    except Exception as exc:
        raise HealthScoreError(
            f"registered model {name!r} has no version {version} at {tracking_uri()} ({type(exc).__name__}); "
            "list versions with `mlflow ui` or check --name / MLFLOW_TRACKING_URI."
        ) from None
    client.set_registered_model_alias(name, alias, str(version))


def download_model(uri: str) -> Path:
    """A local copy of ``models:/<name>@<alias>`` (or ``models:/<name>/<version>``)."""
    import atexit
    import shutil

    mlflow = mlflow_module()
    dst = tempfile.mkdtemp(prefix="healthscore-model-")
    atexit.register(shutil.rmtree, dst, True)  # the copy lives as long as this process
    try:
        return Path(mlflow.artifacts.download_artifacts(uri, dst_path=dst))
    except Exception as exc:
        shutil.rmtree(dst, ignore_errors=True)
        raise HealthScoreError(
            f"could not resolve {uri!r} at {tracking_uri()} ({type(exc).__name__}: {str(exc)[:200]}); "
            "check the name and alias, and MLFLOW_TRACKING_URI."
        ) from None
