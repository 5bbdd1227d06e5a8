"""MLflow tracking and the model registry. Imported only by the commands that need it.

Tracking URI: ``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<cwd>/mlflow.db``; never a remote
default. Every training is a run (params, metrics, artifacts); the model directory is logged as the
run's ``model`` artifact (it already is an MLflow pyfunc model), registered as a new version of the
card's model name, and given the alias ``challenger``. ``promote`` moves ``champion``.
"""

from __future__ import annotations

import contextlib
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
    """``mlflow``, imported quietly, pointed at :func:`tracking_uri`, its store created or migrated
    (:func:`init_store`)."""
    quiet_mlflow_env()
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    init_store(mlflow, uri)
    return mlflow


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for other stores)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    rest = uri[len(prefix) :].split("?", 1)[0]
    return None if rest in ("", ":memory:") else Path(rest)


_READY: set[str] = set()


@contextlib.contextmanager
def store_lock(uri: str):
    """An exclusive lock on ``<db>.lock`` beside a SQLite store (no-op for other stores): MLflow creates
    and migrates a fresh SQLite store on first use, and two processes doing that at once collide
    (alembic's "Online migration expected to match one row"). Held only while the store is set up."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def init_store(mlflow, uri: str) -> None:
    """Create (or migrate) the tracking and registry store once per process, under :func:`store_lock`,
    so concurrent ``train`` runs on a fresh SQLite file do not race to create its tables."""
    if uri in _READY:
        return
    with store_lock(uri):
        client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
        client.search_experiments(max_results=1)  # the tracking store: tables created or migrated
        client.search_registered_models(max_results=1)  # the registry store (same file)
    _READY.add(uri)


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
            "rows_censored": metrics.get("rows_censored", 0),
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


def registered_name(version: int, card_name: str | None = None) -> str:
    """The registered model that ``promote --version N`` means when no ``--name`` is given: the card's
    ``name`` when a card is given, else the one registered model in the store that has version N
    (every ``train`` registers under its card's name). Several candidates or none is one clear error."""
    if card_name:
        return card_name
    mlflow = mlflow_module()
    client = mlflow.MlflowClient()
    names = [m.name for m in client.search_registered_models(max_results=1000)]
    having = []
    for name in names:
        try:
            client.get_model_version(name, str(version))
        except Exception:
            continue
        having.append(name)
    if len(having) == 1:
        return having[0]
    if not having:
        shown = ", ".join(map(repr, names[:10])) or "none"
        raise HealthScoreError(
            f"no registered model has a version {version} at {tracking_uri()} (registered models: {shown}); "
            "check --version, or MLFLOW_TRACKING_URI."
        )
    raise HealthScoreError(
        f"several registered models have a version {version} at {tracking_uri()}: {', '.join(map(repr, having))}; "
        "say which with --name (or --config with the card)."
    )


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


def registered_version(uri: str) -> str | None:
    """The version number behind ``models:/<name>/<version>`` or ``models:/<name>@<alias>``; None if
    the registry cannot say (the history then records the URI alone)."""
    body = uri.removeprefix("models:/")
    if "@" in body:
        name, alias = body.split("@", 1)
        try:
            return str(mlflow_module().MlflowClient().get_model_version_by_alias(name, alias).version)
        except Exception:
            return None
    name, _, version = body.rpartition("/")
    return version if name and version.isdigit() else None
