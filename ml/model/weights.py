"""Weight proposals on the card's 100-point scale, and the rounding that makes them total 100."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from ml._lgb import predict_kw
from ml.card import Card
from ml.model.booster import HealthModel, train_booster

PROPOSALS = ("shap", "gain", "linear")
SHAP_ROWS = 20_000  # held-out rows used for mean |SHAP| (all of them when fewer)
REFIT_SHAP_ROWS = 5_000  # ... and for each refit's shares (only their spread is used)
LINEAR_ROWS = 50_000  # rows for the non-negative logistic fit (a 5-20 parameter model)
SUBSAMPLE = 0.8  # share of customers in each refit for the intervals
EXTRA_FLAG_POINTS = 5


def _noop(*_) -> None:
    pass


def largest_remainder(shares, total: int = 100) -> np.ndarray:
    """Round non-negative ``shares`` to integers summing exactly to ``total`` (largest remainder /
    Hamilton method; ties go to the earlier entry, so the result is deterministic)."""
    s = np.asarray(shares, dtype=float)
    if s.size == 0:
        return s.astype(int)
    if np.any(s < 0) or not np.isfinite(s).all():
        raise ValueError(f"shares must be finite and non-negative, got {s.tolist()}")
    if s.sum() == 0:
        s = np.ones_like(s)
    exact = s / s.sum() * total
    floor = np.floor(exact).astype(int)
    short = total - floor.sum()
    order = np.lexsort((np.arange(len(s)), -(exact - floor)))  # largest remainder first, stable
    floor[order[:short]] += 1
    return floor


def shares(values) -> np.ndarray:
    """Non-negative values as percentages (floats) summing to 100."""
    v = np.clip(np.asarray(values, dtype=float), 0, None)
    return v / v.sum() * 100 if v.sum() > 0 else np.full(len(v), 100 / max(len(v), 1))


def nonnegative_logistic_weights(S: np.ndarray, y: np.ndarray, sample_weight=None) -> np.ndarray:
    """The best non-negative weights for the manual formula: a logistic regression of churn on the
    0-100 sub-scores ``S`` (higher = healthier), P(churn) = sigmoid(a - sum_j b_j S_j) with b_j >= 0,
    fitted by bounded L-BFGS. Missing sub-scores are filled with the column mean. Returns b."""
    S = np.asarray(S, dtype=float)
    col_mean = np.nanmean(np.where(np.isnan(S).all(axis=0), 50.0, S), axis=0)
    X = np.where(np.isnan(S), col_mean, S) / 100.0
    y = np.asarray(y, dtype=float)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    k = X.shape[1]
    base = np.clip(np.average(y, weights=w), 1e-6, 1 - 1e-6)

    def loss(theta):
        a, b = theta[0], theta[1:]
        z = a - X @ b
        # log(1 + exp(z)) - y z, stably
        ll = np.logaddexp(0.0, z) - y * z
        p = 1.0 / (1.0 + np.exp(-z))
        g = p - y
        return np.dot(w, ll) / w.sum(), np.concatenate([[np.dot(w, g)], -(X * (w * g)[:, None]).sum(0)]) / w.sum()

    theta0 = np.concatenate([[np.log(base / (1 - base))], np.zeros(k)])
    res = minimize(loss, theta0, jac=True, method="L-BFGS-B", bounds=[(None, None)] + [(0, None)] * k)
    return np.clip(res.x[1:], 0, None)


def proposal_table(
    features: pd.DataFrame, proposals: dict[str, np.ndarray], intervals: dict[str, np.ndarray]
) -> pd.DataFrame:
    """``weights.csv``: one row per model feature; each proposal column rounded to total 100."""
    out = features.copy()
    for name, values in proposals.items():
        out[name] = largest_remainder(values)
    for name, values in intervals.items():
        out[name] = np.round(values, 1)
    return out


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
        booster = train_booster(
            X, y, rows, None, {**params, "seed": spec.seed + 100 + r}, spec, num_boost_round=model.best_iteration_
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
