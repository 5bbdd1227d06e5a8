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


def capture_at_share(score: np.ndarray, y: np.ndarray, k: int) -> float | None:
    """Share of the churners among the ``k`` lowest-scored rows (ties broken by row order; rows
    without a score come last): what a CS team catches when it calls ``k`` customers."""
    score = np.asarray(score, float)
    churners = float(np.sum(y))
    if churners == 0 or k <= 0:
        return None
    order = np.lexsort((np.arange(len(score)), np.where(np.isnan(score), np.inf, score)))
    return float(np.sum(np.asarray(y)[order[:k]]) / churners)


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
    """Held-out ranking and calibration metrics for the manual card, re-weighted cards and the model.

    ``ranking[*].capture_at_card_share`` compares every scorer at the manual card's list size: the
    share of held-out churners among the lowest-scored customers, taking as many as the manual card
    puts in its lowest band. With a date column the held-out rows are out of time (see
    ``ml.model.splits``); ``subsets.never_seen`` has the held-out group's customers alone, and
    ``calibration.in_time`` the same customers' rows of the training period, for comparison."""
    card = model.card
    splits = model.splits_
    hold = splits.holdout
    fit_rows = np.concatenate([splits.train, splits.valid])
    fh = frame.iloc[hold]
    yh = np.asarray(y[hold], int)
    order = [b.name for b in card.bands]
    pred = model.predict(fh, drivers=0, strict=False)
    scores = {"manual": (pred["manual_score"].to_numpy(), pred["manual_band"])}
    new_weights = {}
    for name in PROPOSALS:
        rc = reweighted_card(card, weights, name)
        if rc is None:
            continue
        sc = WeightedScorecard.from_state(rc, model.scorecard_.state())
        sc.place_band_cuts(frame.iloc[fit_rows])  # quantile bands move with the weights
        scored = sc.score(fh)
        scores[f"card_{name}"] = (scored["health_score"].to_numpy(), scored["band"])
        new_weights[f"card_{name}"] = {ind.name: ind.weight for ind in rc.indicators}
    scores["model"] = (pred["health_score"].to_numpy(), pred["band"])
    manual_band = np.asarray(pred["manual_band"].astype(object))
    card_list = int(np.sum(manual_band == order[-1]))  # customers the manual card flags today
    ranking: dict[str, Any] = {}
    for key, (score, band) in scores.items():
        ranking[key] = ranking_metrics(score, band, yh, order)
        ranking[key]["capture_at_card_share"] = capture_at_share(score, yh, card_list)
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
    out: dict[str, Any] = {
        "evaluation": _evaluation_note(model),
        "rows_censored": int(getattr(model, "rows_censored_", 0)),
        "holdout": {
            "rows": int(len(hold)),
            "churners": int(yh.sum()),
            "churn_rate": float(yh.mean()),
            "customers": int(fh[card.id_column].nunique()),
            "card_list_size": card_list,
        },
        "ranking": ranking,
        "reweighted_cards": new_weights,
        "calibration": calibration,
        "model": {"best_iteration": model.best_iteration_, "features": model.schema_.names},
    }
    if splits.cutoff is not None:
        out["holdout"]["period"] = [splits.heldout_start, str(pd.to_datetime(fh[card.date_column]).max().date())]
        out["holdout"]["label_cutoff"] = splits.label_cutoff
        out["subsets"] = {"never_seen": _subset(model, frame, y, splits.unseen, order)}
        if len(splits.in_time):
            pin = model.predict(frame.iloc[splits.in_time], drivers=0, strict=False)
            yin = np.asarray(y[splits.in_time], int)
            calibration["in_time"] = {
                "rows": int(len(yin)),
                "model": calibration_metrics(pin["churn_probability"].to_numpy(), yin, pin["band"], order),
            }
    return out


def _evaluation_note(model: HealthModel) -> dict[str, Any]:
    s = model.splits_
    if s.cutoff is None:
        return {
            "kind": "backtest, grouped by customer (no date column: not out of time)",
            "heldout_customers": "the held-out group's customers, never fitted or calibrated on",
        }
    return {
        "kind": "backtest, out of time",
        "label_cutoff": s.label_cutoff,
        "heldout_start": s.heldout_start,
        "horizon_days": s.horizon_days,
        "heldout_customers": "every customer's labelled snapshots dated >= heldout_start (subsets.never_seen: "
        "customers never fitted or calibrated on)",
        "note": "these are the backtest model's numbers; the saved model may be refitted on every matured row "
        "(see saved_model)",
    }


def _subset(model, frame, y, rows, order) -> dict[str, Any]:
    """Ranking (manual card and model) and calibration of the model on a subset of held-out rows."""
    if len(rows) == 0:
        return {"rows": 0}
    f = frame.iloc[rows]
    yy = np.asarray(y[rows], int)
    pred = model.predict(f, drivers=0, strict=False)
    k = int(np.sum(np.asarray(pred["manual_band"].astype(object)) == order[-1]))
    ranking = {}
    for key, score, band in (
        ("manual", pred["manual_score"].to_numpy(), pred["manual_band"]),
        ("model", pred["health_score"].to_numpy(), pred["band"]),
    ):
        ranking[key] = ranking_metrics(score, band, yy, order)
        ranking[key]["capture_at_card_share"] = capture_at_share(score, yy, k)
    return {
        "rows": int(len(yy)),
        "churners": int(yy.sum()),
        "customers": int(f[model.card.id_column].nunique()),
        "ranking": ranking,
        "calibration": {"model": calibration_metrics(pred["churn_probability"].to_numpy(), yy, pred["band"], order)},
    }


SPARSE_BAND_SHARE = 0.02


def warn_sparse_bands(metrics: dict[str, Any], card) -> list[str]:
    """Warn for each band of the model holding under 2 % of the held-out customers (a band nobody is
    in cannot be acted on), naming the band and the fix. Returns the bands warned about."""
    from ml.errors import warn

    rows = metrics["ranking"]["model"]["rows_by_band"]
    total = max(sum(rows.values()), 1)
    sparse = [b for b, n in rows.items() if n / total < SPARSE_BAND_SHARE]
    for b in sparse:
        if card.calibration.scale == "probability":
            fix = (
                "the probability scale puts bands at fixed churn risks (At risk < 60 = over 40 % risk), so with a "
                "low base churn rate few customers reach them; use `calibration: {scale: odds}` (anchored at the "
                "base rate) or move the bands' `min`"
            )
        else:
            fix = "move the bands' `min` (or set `bands_by: quantile`, or change calibration.anchor_score / pdo)"
        warn(
            f"band {b!r} holds {rows[b]:,} of {total:,} held-out customers ({rows[b] / total:.1%}, under "
            f"{SPARSE_BAND_SHARE:.0%}): too few to act on. Fix: {fix}."
        )
    return sparse


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
