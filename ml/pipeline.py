"""``train``: the one library call behind ``healthscore train``.

fit the model -> propose weights (mean |SHAP|, gain, best non-negative linear) with intervals from
refits on customer-bootstrap resamples -> evaluate the manual card, the re-weighted cards and the
model on held-out rows -> write the model directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.card import Card
from ml.evaluate import calibration_metrics, ranking_metrics
from ml.model import HealthModel, predict_kw, quiet
from ml.scorecard import WeightedScorecard
from ml.weights import largest_remainder, nonnegative_logistic_weights, proposal_table, shares

PROPOSALS = ("shap", "gain", "linear")
SHAP_ROWS = 20_000  # held-out rows used for mean |SHAP| (all of them when fewer)
REFIT_SHAP_ROWS = 5_000  # ... and for each refit's shares (only their spread is used)
LINEAR_ROWS = 50_000  # rows for the non-negative logistic fit (a 5-20 parameter model)
SUBSAMPLE = 0.8  # share of customers in each refit for the intervals
EXTRA_FLAG_POINTS = 5


@dataclass
class TrainResult:
    model: HealthModel
    weights: pd.DataFrame
    metrics: dict[str, Any]
    model_dir: Path | None = None


def _noop(*_) -> None:
    pass


def _shap_shares(booster, X: pd.DataFrame) -> np.ndarray:
    contrib = booster.predict(X, pred_contrib=True, **predict_kw())[:, :-1]
    return shares(np.abs(contrib).mean(axis=0))


def _subsample(idx: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(idx) <= n:
        return idx
    return np.sort(np.random.default_rng(seed).choice(idx, n, replace=False))


def propose_weights(
    model: HealthModel,
    frame: pd.DataFrame,
    y: np.ndarray,
    X: pd.DataFrame,
    n_refits: int | None = None,
    progress: Callable[..., None] = _noop,
) -> pd.DataFrame:
    """``weights.csv``: manual weights beside the three proposals and their refit intervals."""
    card, schema, splits = model.card, model.schema_, model.splits_
    spec = card.model
    n_refits = spec.n_refits if n_refits is None else n_refits
    hold = _subsample(splits.holdout, SHAP_ROWS, spec.seed)
    hold_refit = _subsample(hold, REFIT_SHAP_ROWS, spec.seed)
    fit_rows = np.concatenate([splits.train, splits.valid])
    card_idx = [i for i, f in enumerate(schema.features) if f.in_scorecard]

    shap_share = _shap_shares(model.booster_, X.iloc[hold])
    gain_share = shares(model.booster_.feature_importance("gain"))
    S_fit = model.scorecard_.subscores(frame.iloc[fit_rows]).to_numpy()
    lin_rows = _subsample(np.arange(len(fit_rows)), LINEAR_ROWS, spec.seed)
    lin = nonnegative_logistic_weights(S_fit[lin_rows], y[fit_rows][lin_rows])
    linear_share = np.zeros(len(schema.features))
    linear_share[card_idx] = shares(lin)

    # intervals: refits on random subsets (SUBSAMPLE of the customers, without replacement) of the
    # rows behind each estimate: the model's training customers for shap, training + validation
    # customers for linear; each LightGBM refit grows the early-stopped model's number of trees
    rng = np.random.default_rng(spec.seed + 1)
    ids = frame[card.id_column].astype(str).to_numpy()

    def customer_subset(rows: np.ndarray) -> np.ndarray:
        codes, uniques = pd.factorize(ids[rows])
        return np.flatnonzero((rng.random(len(uniques)) < SUBSAMPLE)[codes])

    params = {**model.params_, "metric": "none"}
    shap_runs, linear_runs = [], []
    for r in range(n_refits):
        progress("refits for the weight intervals", r, n_refits)
        rows = splits.train[customer_subset(splits.train)]
        booster = model._train_booster(
            X, y, rows, None, {**params, "seed": spec.seed + 100 + r}, num_boost_round=model.best_iteration_
        )
        shap_runs.append(_shap_shares(booster, X.iloc[hold_refit]))
        local = _subsample(customer_subset(fit_rows), LINEAR_ROWS, spec.seed + r)
        lr = np.zeros(len(schema.features))
        lr[card_idx] = shares(nonnegative_logistic_weights(S_fit[local], y[fit_rows[local]]))
        linear_runs.append(lr)

    def band(runs, q):
        return np.percentile(np.vstack(runs), q, axis=0) if runs else np.full(len(schema.features), np.nan)

    audit = {c.indicator: c for c in model.audit_}
    manual = np.array([card.weights.get(f.name, 0.0) if f.in_scorecard else 0.0 for f in schema.features])
    base = pd.DataFrame(
        {
            "indicator": schema.names,
            "column": schema.columns,
            "in_scorecard": [f.in_scorecard for f in schema.features],
            "manual": manual,
        }
    )
    table = proposal_table(
        base,
        {"shap": shap_share, "gain": gain_share, "linear": linear_share},
        {
            "shap_low": band(shap_runs, 5),
            "shap_high": band(shap_runs, 95),
            "linear_low": band(linear_runs, 5),
            "linear_high": band(linear_runs, 95),
        },
    )
    table["manual"] = np.round(table["manual"], 6)
    table["shap_share"] = np.round(shap_share, 3)
    table["direction"] = [f.direction for f in schema.features]
    table["direction_check"] = [audit[n].verdict if n in audit else "" for n in schema.names]
    table["constrained"] = [bool(audit[n].constrained) if n in audit else False for n in schema.names]
    flags = []
    for f, s in zip(schema.features, table["shap"], strict=True):
        fl = []
        if f.name in audit and audit[f.name].verdict == "contradicted":
            fl.append("direction contradicted")
        if not f.in_scorecard and s >= EXTRA_FLAG_POINTS:
            fl.append(f"not on the card, earns {s} points")
        flags.append("; ".join(fl))
    table["flag"] = flags
    return table


def reweighted_card(card: Card, weights: pd.DataFrame, column: str) -> Card | None:
    """The manual card with its indicators re-weighted by a proposal (card indicators only, rescaled
    to total 100 with largest-remainder rounding); None if the proposal gives them no weight."""
    w = weights.set_index("indicator")[column]
    raw = np.array([float(w.get(ind.name, 0.0)) for ind in card.indicators])
    if raw.sum() <= 0:
        return None
    ints = largest_remainder(raw)
    inds = tuple(dataclasses.replace(ind, weight=float(v)) for ind, v in zip(card.indicators, ints, strict=True))
    return dataclasses.replace(card, indicators=inds)


def evaluate(model: HealthModel, frame: pd.DataFrame, y: np.ndarray, weights: pd.DataFrame) -> dict[str, Any]:
    """Held-out ranking and calibration metrics for the manual card, re-weighted cards and the model."""
    card = model.card
    hold = model.splits_.holdout
    fit_rows = np.concatenate([model.splits_.train, model.splits_.valid])
    fh = frame.iloc[hold]
    yh = y[hold]
    order = [b.name for b in card.bands]
    pred = model.predict(fh, drivers=0, strict=False)
    ranking: dict[str, Any] = {
        "manual": ranking_metrics(pred["manual_score"].to_numpy(), pred["manual_band"], yh, order)
    }
    new_weights = {}
    for name in PROPOSALS:
        rc = reweighted_card(card, weights, name)
        if rc is None:
            continue
        sc = WeightedScorecard.from_state(rc, model.scorecard_.state())
        sc.place_band_cuts(frame.iloc[fit_rows])  # quantile bands move with the weights
        scored = sc.score(fh)
        ranking[f"card_{name}"] = ranking_metrics(scored["health_score"].to_numpy(), scored["band"], yh, order)
        new_weights[f"card_{name}"] = {ind.name: ind.weight for ind in rc.indicators}
    ranking["model"] = ranking_metrics(pred["health_score"].to_numpy(), pred["band"], yh, order)
    ok = pred["manual_churn_probability"].notna().to_numpy()
    cal = model.calibrator_.to_dict()
    calibration = {
        "method": cal["method"],
        "reason": cal["reason"],
        "scale": card.calibration.scale,
        "slice_rows": cal["rows"],
        "slice_churners": cal["churners"],
        "model": calibration_metrics(pred["churn_probability"].to_numpy(), yh, pred["band"], order),
        "manual": calibration_metrics(
            pred["manual_churn_probability"].to_numpy()[ok], yh[ok], pred["manual_band"].to_numpy()[ok], order
        ),
    }
    return {
        "holdout": {"rows": int(len(hold)), "churners": int(yh.sum()), "churn_rate": float(yh.mean())},
        "ranking": ranking,
        "reweighted_cards": new_weights,
        "calibration": calibration,
        "model": {"best_iteration": model.best_iteration_, "features": model.schema_.names},
    }


def train(
    card: Card,
    frame: pd.DataFrame,
    model_dir: str | Path | None = None,
    *,
    n_refits: int | None = None,
    progress: Callable[..., None] = _noop,
    plots: bool = True,
    mlflow_files: bool = True,
) -> TrainResult:
    """Fit, propose weights, evaluate and (if ``model_dir``) write the model directory."""
    frame = frame.reset_index(drop=True)
    progress("fitting the churn model")
    model = HealthModel(card)
    X, y = model.fit_arrays(frame)
    with quiet():  # the data was checked (and warned about) by fit; slices would repeat it
        progress("proposing weights")
        weights = propose_weights(model, frame, y, X, n_refits=n_refits, progress=progress)
        progress("evaluating on held-out rows")
        metrics = evaluate(model, frame, y, weights)
    result = TrainResult(model, weights, metrics)
    if model_dir is not None:
        progress("writing the model directory")
        from ml.bundle import save_model

        split_customers = model.splits_.customer_slice.rename_axis(card.id_column).reset_index()
        extra: dict[str, Any] = {
            "weights.csv": weights,
            "metrics.json": metrics,
            "split.json": model.split_summary_,
            "split_customers.csv": split_customers,
            "audit.json": [c.to_dict() for c in model.audit_],
        }
        hook = None
        if plots:
            from ml.plots import write_model_plots

            hold = model.splits_.holdout

            def hook(tmp: Path) -> None:
                write_model_plots(model, frame.iloc[hold], y[hold], metrics, tmp)

        with quiet():
            result.model_dir = save_model(
                model,
                model_dir,
                extra_files=extra,
                before_manifest=hook,
                mlflow_example=frame.iloc[model.splits_.holdout[:3]] if mlflow_files else None,
            )
        model.model_dir_ = result.model_dir
    return result
