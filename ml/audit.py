"""Audit each indicator's declared direction against the data before constraining the model.

For every numeric card indicator with a declared direction, churn is compared between the lowest and
highest quartile of its values (or its lowest and highest value when it has few distinct values).
A difference opposite to the declared direction and larger than two standard errors is a
*contradiction*: with ``monotone: auto`` that indicator is left unconstrained and flagged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ml.features import NUMERIC, FeatureSchema

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


def audit_directions(X: pd.DataFrame, y: np.ndarray, schema: FeatureSchema) -> list[DirectionCheck]:
    """One :class:`DirectionCheck` per numeric card indicator with a declared direction."""
    out = []
    for f in schema.features:
        if not f.in_scorecard or f.kind != NUMERIC or f.direction == "none":
            continue
        x = X[f.name].to_numpy(dtype=float)
        ok = ~np.isnan(x)
        xv, yv = x[ok], y[ok]
        if len(xv) < 20 or np.unique(xv).size < 2:
            continue
        q25, q75 = np.quantile(xv, [0.25, 0.75])
        if q25 == q75:  # few distinct values: compare the extremes
            q25, q75 = xv.min(), xv.max()
        lo, hi = xv <= q25, xv >= q75
        if q25 == q75 or lo.sum() == 0 or hi.sum() == 0:
            continue
        p_lo, p_hi = yv[lo].mean(), yv[hi].mean()
        pooled = yv[lo | hi].mean()
        se = np.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / lo.sum() + 1 / hi.sum()))
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
