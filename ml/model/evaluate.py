"""Held-out metrics that put the manual card, re-weighted cards and the model on one footing.

Every scorer is a health score (higher = healthier) and its band; risk is the negated score.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from ml.model.booster import HealthModel
from ml.model.calibration import fit_platt
from ml.model.weights import PROPOSALS, reweighted_card
from ml.scorecard import WeightedScorecard


def top_decile_lift(risk: np.ndarray, y: np.ndarray) -> float:
    """Churn rate among the 10 % riskiest rows over the overall churn rate (ties broken by order)."""
    n = len(y)
    k = max(1, int(np.ceil(0.1 * n)))
    top = np.argsort(-risk, kind="stable")[:k]
    base = y.mean()
    return float(y[top].mean() / base) if base > 0 else float("nan")


def ranking_metrics(score: np.ndarray, band, y: np.ndarray, band_order: list[str]) -> dict[str, Any]:
    """ROC-AUC, PR-AUC, top-decile lift, churn per band and the share of churners in the lowest band."""
    score = np.asarray(score, float)
    ok = ~np.isnan(score)
    s, yy = score[ok], y[ok]
    risk = -s
    band = pd.Series(pd.Categorical(np.asarray(band)[ok], categories=band_order))
    per_band = pd.DataFrame({"band": band, "y": yy}).groupby("band", observed=False)["y"]
    counts = per_band.size().reindex(band_order, fill_value=0)
    rates = per_band.mean().reindex(band_order)
    lowest = band_order[-1]
    churners = int(yy.sum())
    both = 0 < churners < len(yy)
    return {
        "rows": int(len(yy)),
        "churners": churners,
        "roc_auc": float(roc_auc_score(yy, risk)) if both else None,
        "pr_auc": float(average_precision_score(yy, risk)) if both else None,
        "top_decile_lift": top_decile_lift(risk, yy) if churners else None,
        "rows_by_band": {b: int(counts[b]) for b in band_order},
        "churn_rate_by_band": {b: (None if counts[b] == 0 else float(rates[b])) for b in band_order},
        "at_risk_capture": float(yy[np.asarray(band == lowest)].sum() / churners) if churners else None,
    }


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """ECE over ``bins`` equal-count bins of the predicted probability (weighted mean |obs - pred|)."""
    p = np.asarray(p, float)
    y = np.asarray(y, float)
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, bins)
    return float(sum(len(g) * abs(y[g].mean() - p[g].mean()) for g in groups if len(g)) / len(p))


def reliability_table(p: np.ndarray, y: np.ndarray, bins: int = 10) -> pd.DataFrame:
    order = np.argsort(np.asarray(p, float), kind="stable")
    groups = [g for g in np.array_split(order, bins) if len(g)]
    return pd.DataFrame(
        {
            "predicted": [float(np.mean(p[g])) for g in groups],
            "observed": [float(np.mean(y[g])) for g in groups],
            "rows": [len(g) for g in groups],
        }
    )


def calibration_metrics(p: np.ndarray, y: np.ndarray, band, band_order: list[str]) -> dict[str, Any]:
    """ECE (10 equal-count bins), Brier, calibration slope and intercept (logistic regression of the
    outcome on logit(p): 1 and 0 when perfectly calibrated), observed vs predicted churn per band."""
    p = np.clip(np.asarray(p, float), 1e-12, 1 - 1e-12)
    y = np.asarray(y, int)
    slope, intercept = fit_platt(np.log(p / (1 - p)), y) if 0 < y.sum() < len(y) else (None, None)
    frame = pd.DataFrame({"band": pd.Categorical(np.asarray(band), categories=band_order), "p": p, "y": y})
    g = frame.groupby("band", observed=False)
    per_band = {
        b: {"rows": int(n), "predicted": None if n == 0 else float(pp), "observed": None if n == 0 else float(oo)}
        for b, n, pp, oo in zip(
            band_order,
            g.size().reindex(band_order, fill_value=0),
            g["p"].mean().reindex(band_order),
            g["y"].mean().reindex(band_order),
            strict=True,
        )
    }
    return {
        "ece": expected_calibration_error(p, y),
        "brier": float(brier_score_loss(y, p)),
        "calibration_slope": slope,
        "calibration_intercept": intercept,
        "mean_predicted": float(p.mean()),
        "observed_rate": float(y.mean()),
        "by_band": per_band,
        "reliability": reliability_table(p, y).to_dict(orient="list"),
    }


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


def heldout_auc(model: HealthModel, frame: pd.DataFrame, y: np.ndarray) -> float | None:
    """The model's ROC-AUC on its held-out rows."""
    hold = model.splits_.holdout
    pred = model.predict(frame.iloc[hold], drivers=0, strict=False)
    yh = y[hold]
    if not 0 < yh.sum() < len(yh):
        return None
    return float(roc_auc_score(yh, -pred["health_score"].to_numpy()))


def side_by_side(other: HealthModel, frame: pd.DataFrame, y: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """Held-out ranking and calibration metrics of a second model trained on the same splits."""
    hold = other.splits_.holdout
    yh = y[hold]
    order = [b.name for b in other.card.bands]
    pred = other.predict(frame.iloc[hold], drivers=0, strict=False)
    ranking = ranking_metrics(pred["health_score"].to_numpy(), pred["band"], yh, order)
    calibration = calibration_metrics(pred["churn_probability"].to_numpy(), yh, pred["band"], order)
    return ranking, calibration
