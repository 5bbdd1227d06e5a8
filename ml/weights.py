"""Weight proposals on the card's 100-point scale, and the rounding that makes them total 100."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize


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
