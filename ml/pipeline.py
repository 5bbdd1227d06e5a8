"""``train``: the one library call behind ``healthscore train``.

fit the model -> propose weights (mean |SHAP|, gain, best non-negative linear) with intervals from
refits on customer-bootstrap resamples -> evaluate the manual card, the re-weighted cards and the
model on held-out rows -> write the model directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.card import Card
from ml.data.io import active_snapshots, read_table, write_output_table, write_table
from ml.data.raw import HORIZON_DAYS, dates_for_months, generate_raw, write_raw
from ml.data.snapshots import SnapshotSummary, build_snapshots
from ml.errors import DataError, quiet, warn
from ml.model.additive import LEARNED_CARD, learned_card_reason, learned_card_yaml
from ml.model.booster import HealthModel
from ml.model.cards import proposal_cards
from ml.model.evaluate import evaluate, side_by_side, warn_sparse_bands
from ml.model.kinds import fit_kind
from ml.model.weights import propose_weights
from ml.monitor.drift import REFERENCE_FILE, reference_profile
from ml.scorecard import score_table
from ml.serving.tracking import CHALLENGER, DEFAULT_EXPERIMENT, mlflow_module, run_metrics, run_params


@dataclass
class TrainResult:
    """What ``train`` returns: the fitted model, ``weights.csv``, ``metrics.json`` and, once written or
    tracked, the model directory, the MLflow run id and the registered version."""

    model: HealthModel
    weights: pd.DataFrame
    metrics: dict[str, Any]
    model_dir: Path | None = None
    run_id: str | None = None
    version: int | None = None
    backtest: HealthModel | None = None  # the model the metrics describe (``model`` when not refitted)
    cards: dict[str, str] | None = None  # proposal name -> card YAML (``M/cards/<name>.yaml``)


def _noop(*_) -> None:
    pass


MIN_REFIT_CALIBRATION_ROWS = 2000
MIN_REFIT_CALIBRATION_CHURNERS = 200


def refit_rows(model: HealthModel, frame: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Rows for the saved model: it trains on every labelled row (every label window that has elapsed)
    of the customers outside the calibration group, and calibrates on the calibration group's latest
    matured rows: its latest labelled snapshot dates, going back only as far as needed for a steady
    Platt fit (>= 2,000 rows and >= 200 churners; on generated data a slice of under a thousand rows
    gave slopes from 0.57 to 1.1), or all of them when even that is not enough or there is no date
    column. Returns (fit rows, calibration rows, a description of the calibration rows)."""
    card, splits = model.card, model.splits_
    known = ~np.isnan(np.asarray(y, float))
    groups = splits.customer_slice.reindex(frame[card.id_column].astype(str).to_numpy()).to_numpy()
    fit = np.flatnonzero(known & (groups != "calibration"))
    cal = np.flatnonzero(known & (groups == "calibration"))
    what = "every labelled row of the calibration customers"
    if card.date_column and len(cal):
        d = pd.to_datetime(frame[card.date_column]).to_numpy()[cal]
        dates = np.sort(np.unique(d))[::-1]  # latest first
        rows_by_date = pd.Series(1, index=d).groupby(level=0).sum().reindex(dates).to_numpy()
        churn_by_date = pd.Series(y[cal], index=d).groupby(level=0).sum().reindex(dates).to_numpy()
        enough = (np.cumsum(rows_by_date) >= MIN_REFIT_CALIBRATION_ROWS) & (
            np.cumsum(churn_by_date) >= MIN_REFIT_CALIBRATION_CHURNERS
        )
        if enough.any() and np.argmax(enough) < len(dates) - 1:
            since = dates[np.argmax(enough)]
            cal = cal[d >= since]
            what = (
                f"the calibration customers' latest matured rows, dated {pd.Timestamp(since).date()} to "
                f"{pd.Timestamp(dates[0]).date()}"
            )
    return fit, cal, what


def refit_trees(best_iteration: int, backtest_rows: int, refit_rows: int, cap: int) -> int:
    """The backtest's early-stopped number of trees, scaled to the data: x sqrt(rows ratio), a
    conservative rule (more rows support more trees, less than proportionally), within [1, cap]."""
    scaled = round(best_iteration * np.sqrt(max(refit_rows, 1) / max(backtest_rows, 1)))
    return int(min(max(scaled, best_iteration, 1), max(cap, best_iteration)))


def refit_latest(model: HealthModel, frame: pd.DataFrame, X: pd.DataFrame, y: np.ndarray):
    """The backtest model refitted on every matured row (see ``refit_rows``), and what was done."""
    fit, cal, what = refit_rows(model, frame, y)
    trees = refit_trees(model.best_iteration_, len(model.splits_.train), len(fit), model.card.model.num_boost_round)
    new = model.refit(frame, X, y, fit, cal, trees)
    info = {
        "refit": True,
        "rows": int(len(fit)),
        "churners": int(y[fit].sum()),
        "customers": int(frame[model.card.id_column].iloc[fit].nunique()),
        "trees": trees,
        "backtest_trees": int(model.best_iteration_),
        "calibration_rows": int(len(cal)),
        "calibration_churners": int(y[cal].sum()),
        "calibration_slice": what,
        "base_rate": float(new.base_rate_),
        "note": "the saved model: refitted after the backtest on every labelled row whose label window has "
        "elapsed (calibration customers excepted), with the backtest's trees scaled to the data, and calibrated "
        "on rows it did not train on; metrics.json describes the backtest model",
    }
    if card_date := model.card.date_column:
        d = pd.to_datetime(frame[card_date].iloc[fit])
        info["dates"] = [str(d.min().date()), str(d.max().date())]
    return new, info


def train(
    card: Card,
    frame: pd.DataFrame,
    model_dir: str | Path | None = None,
    *,
    kind: str | None = None,
    n_refits: int | None = None,
    progress: Callable[..., None] = _noop,
    plots: bool = True,
    mlflow_files: bool = True,
) -> TrainResult:
    """Fit (``kind``: full, additive or both; default the card's ``model.kind``), propose weights,
    evaluate (a backtest: out of time with a date column), refit the saved model on every matured row
    (``model.refit``, default true; full models) and, if ``model_dir``, write the model directory with
    ``cards/<proposal>.yaml`` and ``cards/learned.yaml`` when the kept model is additive and its health
    score is linear in the margin. Rows with an empty label are censored: counted, never fitted on or
    evaluated."""
    frame = frame.reset_index(drop=True)
    model, X, y, comparison = fit_kind(card, frame, kind, progress)
    with quiet():  # the data was checked (and warned about) by fit; slices would repeat it
        progress("proposing weights")
        weights = propose_weights(model, frame, y, X, n_refits=n_refits, progress=progress)
        progress("evaluating on held-out rows")
        metrics = evaluate(model, frame, y, weights)
        if comparison is not None:
            other = comparison.pop("other")
            ranking, calibration = side_by_side(other, frame, y)
            kept_kind, other_kind = comparison["kept"], other.kind_
            metrics["ranking"][f"model_{kept_kind}"] = metrics["ranking"]["model"]
            metrics["ranking"][f"model_{other_kind}"] = ranking
            metrics["calibration"][f"model_{kept_kind}"] = metrics["calibration"]["model"]
            metrics["calibration"][f"model_{other_kind}"] = calibration
            metrics["model_kind"] = comparison
        else:
            metrics["model_kind"] = {"requested": "full", "kept": "full", "reason": "model.kind: full"}
    learned_text = None
    if model.kind_ == "full" and comparison is not None:
        metrics["learned_card"] = {
            "written": False,
            "reason": "the full model was kept (see model_kind); train with --kind additive for a learned card",
        }
    if model.kind_ == "additive":
        reason = learned_card_reason(model)
        if reason is None:
            learned_text = learned_card_yaml(model)
            metrics["learned_card"] = {"written": True, "path": LEARNED_CARD}
        else:
            metrics["learned_card"] = {"written": False, "reason": reason}
    warn_sparse_bands(metrics, card)
    fit_rows = np.concatenate([model.splits_.train, model.splits_.valid])
    cards = proposal_cards(card, weights, model.scorecard_, frame.iloc[fit_rows])
    saved = model
    if card.model.refit and getattr(model, "kind_", "full") != "full":
        info = {"refit": False, "reason": "the additive model is not refitted yet (it is saved as backtested)"}
    elif card.model.refit:
        progress("refitting on every matured row")
        with quiet():
            try:
                saved, info = refit_latest(model, frame, X, y)
            except DataError as exc:  # e.g. a calibration slice of one class: keep the backtest model
                saved, info = model, {"refit": False, "reason": f"refit failed: {exc}"}
        if not info["refit"]:
            warn(f"{info['reason']}; the saved model is the backtest model.")
    else:
        info = {"refit": False, "reason": "model.refit: false (the saved model is the backtest model)"}
    metrics["saved_model"] = info
    result = TrainResult(saved, weights, metrics, backtest=model, cards=cards)
    if model_dir is not None:
        progress("writing the model directory")
        from ml.serving.bundle import save_model

        split_customers = model.splits_.customer_slice.rename_axis(card.id_column).reset_index()
        extra: dict[str, Any] = {
            "weights.csv": weights,
            "metrics.json": metrics,
            "split.json": {**model.split_summary_, "saved_model": info},
            "split_customers.csv": split_customers,
            "audit.json": [c.to_dict() for c in model.audit_],
            **{f"cards/{name}.yaml": text for name, text in cards.items()},
        }
        extra[REFERENCE_FILE] = monitor_reference(saved, frame, X, y)
        if learned_text is not None:
            extra[LEARNED_CARD] = learned_text
        hook = None
        if plots:
            from ml.report.figures import write_model_plots

            hold = model.splits_.holdout

            def hook(tmp: Path) -> None:
                write_model_plots(model, frame.iloc[hold], y[hold], metrics, tmp)

        with quiet():
            result.model_dir = save_model(
                saved,
                model_dir,
                extra_files=extra,
                before_manifest=hook,
                mlflow_example=frame.iloc[model.splits_.holdout[:3]] if mlflow_files else None,
            )
        saved.model_dir_ = result.model_dir
    return result


def monitor_reference(model: HealthModel, frame: pd.DataFrame, X: pd.DataFrame, y) -> dict[str, Any]:
    """What ``healthscore monitor`` compares later scorings with: the rows the model was fitted on
    (for a refitted model, every matured row it was refitted on)."""
    rows = model.fit_rows_
    with quiet():
        return reference_profile(model, frame.iloc[rows], X.iloc[rows])


def tracked_training(
    card: Card,
    frame: pd.DataFrame,
    model_dir: str | Path,
    *,
    config_path: str | Path | None = None,
    data_path: str | Path | None = None,
    experiment: str | None = None,
    kind: str | None = None,
    n_refits: int | None = None,
    progress: Callable[..., None] = _noop,
    register: bool = True,
) -> TrainResult:
    """``pipeline.train`` inside an MLflow run; registers the model and sets ``@challenger``.
    A run that raises is marked FAILED (by ``mlflow.start_run``'s context manager)."""
    progress("starting the MLflow run")
    mlflow = mlflow_module()
    mlflow.set_experiment(experiment or card.experiment or DEFAULT_EXPERIMENT)
    with mlflow.start_run(run_name=f"train {card.name}") as run:
        mlflow.set_tags({"healthscore.card": card.name, "healthscore.model_dir": str(Path(model_dir).resolve())})
        result = train(card, frame, model_dir, kind=kind, n_refits=n_refits, progress=progress)
        progress("logging to MLflow")
        mlflow.log_params(run_params(card, frame, result, config_path, data_path))
        mlflow.log_metrics(run_metrics(result.metrics))
        md = Path(result.model_dir)
        for name in (
            "card.yaml",
            "weights.csv",
            "metrics.json",
            "split.json",
            "audit.json",
            "reliability.png",
            "shap_summary.png",
            "cards/learned.yaml",
        ):
            if (md / name).exists():
                mlflow.log_artifact(str(md / name))
        if (md / "plots").exists():
            mlflow.log_artifacts(str(md / "plots"), artifact_path="plots")
        mlflow.log_dict(result.model.schema_.to_dict(), "input_schema.json")
        mlflow.log_artifacts(str(md), artifact_path="model")
        result.run_id = run.info.run_id
        result.version = None
        if register:
            progress("registering the model")
            mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", card.name)
            client = mlflow.MlflowClient()
            client.set_registered_model_alias(card.name, CHALLENGER, mv.version)
            result.version = int(mv.version)
    return result


@dataclass
class DemoResult:
    """What ``demo`` produced: the snapshots built from the raw tables (and the build's summary), the
    manual card's scores, the training result, the latest predictions and the paths it wrote."""

    card: Card
    snapshots: pd.DataFrame
    manual_scores: pd.DataFrame
    train: TrainResult
    predictions: pd.DataFrame
    paths: dict[str, Path]
    alerts: pd.DataFrame | None = None  # the latest month's alerts (the card's rules on the history)
    monitor: dict[str, Any] | None = None  # `healthscore monitor` on the history
    build: SnapshotSummary | None = None  # what `healthscore snapshots` printed for the raw tables
    truth: pd.Series | None = None  # the generator's true importances


def demo(
    card: Card,
    out_dir: str | Path = "models",
    *,
    customers: int = 2000,
    months: int = 24,
    seed: int = 0,
    track: bool = True,
    progress: Callable[..., None] = _noop,
) -> DemoResult:
    """The whole job from raw tables: generate the raw tables (accounts, usage events, tickets,
    invoices, churn events ...; observation dates 90 days apart over ``months``), build the snapshots with
    the demo spec, score them with the manual card, train (an MLflow run when ``track``) on the rows
    whose label is known, predict and explain each customer's latest snapshot, and write the report.
    Files land in ``out_dir`` (see the README's table)."""
    from ml.report.report import write_report
    from ml.serving.bundle import load_model

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "raw": out / "demo-raw",
        "snapshots": out / "demo-snapshots.csv",
        "manual_scores": out / "demo-manual-scores.csv",
        "model": out / "demo",
        "predictions": out / "demo-predictions.csv",
        "report": out / "demo-report.html",
        "history": out / "demo-history",
        "alerts": out / "demo-alerts.csv",
        "monitor": out / "demo-monitor.json",
    }
    if card.horizon_days != HORIZON_DAYS:
        warn(
            f"the demo's snapshots label churn within {HORIZON_DAYS} days, but the card's horizon_days is "
            f"{card.horizon_days}; set horizon_days: {HORIZON_DAYS} in the card to match."
        )
    progress("generating raw tables")
    raw = generate_raw(customers, dates_for_months(months), seed=seed)
    paths["spec"] = write_raw(raw, paths["raw"])
    progress("building snapshots from the raw tables")
    build = build_snapshots(paths["spec"], paths["snapshots"]).summary
    frame = read_table(paths["snapshots"])
    progress("scoring with the manual card")
    manual = score_table(card, frame)
    write_table(manual, paths["manual_scores"])
    # the latest rows have no label yet (their horizon passes the end of the data): training leaves
    # them out as censored and counts them (metrics.json: rows_censored)
    if track:
        result = tracked_training(card, frame, paths["model"], data_path=paths["snapshots"], progress=progress)
    else:
        result = train(card, frame, paths["model"], progress=progress)
    progress("scoring and explaining the current book")
    current, _ = active_snapshots(frame, card)  # customers whose latest snapshot is the latest date
    preds = result.model.predict(current)
    if "value_at_risk" in preds:
        preds = preds.sort_values(["value_at_risk", "churn_probability"], ascending=False, kind="stable")
        preds = preds.reset_index(drop=True)
    write_output_table(preds, paths["predictions"])
    loaded = load_model(paths["model"])
    alerts, monitored = demo_history(loaded, frame, paths, months=min(DEMO_HISTORY_MONTHS, months), track=track)
    progress("writing the report")
    write_report(loaded, frame, paths["report"], history=paths["history"])  # it scores the current book
    return DemoResult(card, frame, manual, result, preds, paths, alerts, monitored, build=build, truth=raw.truth)


DEMO_HISTORY_MONTHS = 6


def demo_history(
    model: HealthModel, frame: pd.DataFrame, paths: dict[str, Path], *, months: int, track: bool
) -> tuple[pd.DataFrame | None, dict[str, Any]]:
    """The demo's history: the last ``months`` monthly snapshots scored one month at a time into
    ``paths["history"]`` (as `predict --history` does), the latest month's alerts (when the card has
    rules) and the monitor against the labelled snapshots."""
    import json
    import shutil

    from ml.data.io import write_text
    from ml.monitor.alerts import evaluate_alerts
    from ml.monitor.drift import log_monitor_run, monitor
    from ml.monitor.history import append_scores, model_identity, score_with_points

    card = model.card
    shutil.rmtree(paths["history"], ignore_errors=True)  # the demo's own output: start afresh
    identity = model_identity(model)
    when = pd.to_datetime(frame[card.date_column])
    with quiet():
        for day in sorted(when.unique())[-months:]:
            rows = frame[when == day]
            append_scores(paths["history"], score_with_points(model, rows), card, identity, frame=rows)
    alerts = None
    if card.alerts:
        alerts = evaluate_alerts(paths["history"], card)
        write_table(alerts, paths["alerts"])
    known = frame[frame[card.label_column].notna()] if card.label_column in frame else frame  # not censored
    result = monitor(model, paths["history"], labelled=known)
    if track:
        run_id, parent = log_monitor_run(result, model)
        result["mlflow"] = {"run_id": run_id, "training_run_id": parent}
    write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", paths["monitor"])
    return alerts, result
