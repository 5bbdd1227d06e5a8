"""Audit each indicator's declared direction against the data before constraining the model.

For every numeric card indicator with a declared direction, churn is compared between the lowest and
highest quartile of its values (or its lowest and highest value when it has few distinct values).
A difference opposite to the declared direction and larger than two standard errors (cluster-robust
by customer: a customer's monthly snapshots are not independent evidence) is a *contradiction*: with ``monotone: auto`` that indicator is left unconstrained and flagged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ml.model.features import NUMERIC, FeatureSchema

Z_CONTRADICT = 2.0


@dataclass(frozen=True)
class DirectionCheck:
    indicator: str
    column: str
    declared: str
    churn_low: float  # churn rate among the lowest values
    churn_high: float  # churn rate among the highest values
    n_low: int
    n_high: int
    z: float  # (churn_high - churn_low) / standard error
    observed: str  # higher_is_better | lower_is_better | unclear
    verdict: str  # supported | contradicted | inconclusive
    constrained: bool = False

    @property
    def evidence(self) -> str:
        more = "MORE" if self.churn_high > self.churn_low else "LESS"
        return (
            f"higher `{self.column}` goes with {more} churn: {self.churn_low:.0%} churn in the lowest "
            f"quartile, {self.churn_high:.0%} in the highest (declared {self.declared})"
        )

    def to_dict(self) -> dict:
        return {**asdict(self), "evidence": self.evidence}


def variance_of_mean(y: np.ndarray, groups: np.ndarray | None) -> float:
    """Variance of the mean of ``y``; with ``groups`` (customer codes) a cluster-robust one, since a
    customer's snapshots are not independent evidence."""
    n = len(y)
    if groups is None:
        p = y.mean()
        return float(p * (1 - p) / n)
    _, codes = np.unique(groups, return_inverse=True)
    sums = np.bincount(codes, weights=y - y.mean())
    return float((sums**2).sum() / n**2)


def audit_directions(
    X: pd.DataFrame, y: np.ndarray, schema: FeatureSchema, groups: np.ndarray | None = None
) -> list[DirectionCheck]:
    """One :class:`DirectionCheck` per numeric card indicator with a declared direction. ``groups``
    (one customer code per row) makes the standard error account for repeated snapshots."""
    out = []
    for f in schema.features:
        if not f.in_scorecard or f.kind != NUMERIC or f.direction == "none":
            continue
        x = X[f.name].to_numpy(dtype=float)
        ok = ~np.isnan(x)
        xv, yv = x[ok], y[ok].astype(float)
        gv = None if groups is None else np.asarray(groups)[ok]
        if len(xv) < 20 or np.unique(xv).size < 2:
            continue
        q25, q75 = np.quantile(xv, [0.25, 0.75])
        if q25 == q75:  # few distinct values: compare the extremes
            q25, q75 = xv.min(), xv.max()
        lo, hi = xv <= q25, xv >= q75
        if q25 == q75 or lo.sum() == 0 or hi.sum() == 0:
            continue
        p_lo, p_hi = yv[lo].mean(), yv[hi].mean()
        var = variance_of_mean(yv[lo], None if gv is None else gv[lo]) + variance_of_mean(
            yv[hi], None if gv is None else gv[hi]
        )
        se = np.sqrt(max(var, 1e-12))
        z = float((p_hi - p_lo) / se)
        observed = "unclear" if abs(z) < Z_CONTRADICT else ("lower_is_better" if z > 0 else "higher_is_better")
        if observed == "unclear":
            verdict = "inconclusive"
        else:
            verdict = "supported" if observed == f.direction else "contradicted"
        out.append(
            DirectionCheck(
                f.name,
                f.column,
                f.direction,
                float(p_lo),
                float(p_hi),
                int(lo.sum()),
                int(hi.sum()),
                z,
                observed,
                verdict,
            )
        )
    return out
