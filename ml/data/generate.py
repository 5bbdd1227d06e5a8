"""Seeded synthetic snapshots with a known ground-truth churn model.

Monthly snapshots for N customers: service indicators (interactions, first-response minutes,
first-contact resolution, CSAT with gaps, NPS), product activity (logins and their trend), tickets,
late invoices and onboarding, and each customer's annual recurring revenue (``arr``, not a churn
driver). Each customer's indicators drift month to month (AR(1) latents), and
churn comes from a monthly hazard whose logit is a known, nonlinear function of the indicators with
interactions (low CSAT x many tickets; onboarding not done x early tenure). ``churned`` on a
snapshot means the customer churned within ``horizon_days`` after it; customers who churned get no
later snapshots. The true drivers deliberately differ from the default card's weights: activity,
its trend and late invoices dominate; response speed, first-contact resolution and interaction
counts matter little.

The truth returned beside the data is each column's share (summing to 100) of the mean absolute
centred contribution to the true logit over the emitted rows; interaction terms are split evenly
between their two columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml.errors import DataError

SEGMENTS = np.array(["SMB", "Mid-Market", "Enterprise"])
PLANS = np.array(["basic", "pro", "enterprise"])
BASE_LOGIT = -4.15


@dataclass(frozen=True)
class SyntheticData:
    """Generated snapshots and the ground truth behind their churn labels."""

    frame: pd.DataFrame
    truth: pd.Series  # true importance share per column, summing to 100, largest first
    horizon_days: int

    def __iter__(self):  # allows ``frame, truth = generate_snapshots(...)``
        return iter((self.frame, self.truth))


def _ar1(rng: np.random.Generator, prev: np.ndarray, rho: float) -> np.ndarray:
    """One step of a stationary unit-variance AR(1)."""
    return rho * prev + np.sqrt(1 - rho**2) * rng.standard_normal(len(prev))


def _terms(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The true logit's additive terms, named by the column(s) they depend on ('a*b' = interaction)."""
    csat = np.where(np.isnan(f["csat"]), 3.8, f["csat"])
    tickets = np.minimum(f["tickets_30d"], 6)
    return {
        "login_trend": 3.0 * np.maximum(0.0, -0.2 - f["login_trend"]),
        "logins_30d": -0.9 * (np.log1p(f["logins_30d"]) - 2.8),
        "late_invoices_90d": 1.0 * np.minimum(f["late_invoices_90d"], 3),
        "csat": -0.6 * (csat - 3.8),
        "csat*tickets_30d": 0.22 * np.maximum(0.0, 3.6 - csat) * tickets,
        "onboarding_completed*tenure_months": 1.1 * (1 - f["onboarding_completed"]) * (f["tenure_months"] < 12),
        "tickets_30d": 0.05 * tickets,
        "first_response_minutes": 0.12 * (np.log(f["first_response_minutes"]) - np.log(60)),
        "fcr_rate": -1.2 * (f["fcr_rate"] - 0.7),
        "interactions_30d": -0.02 * np.minimum(f["interactions_30d"], 10),
    }


def true_logit(frame: pd.DataFrame) -> np.ndarray:
    """The monthly churn-hazard logit of the ground-truth model for each row of ``frame``."""
    f = {c: frame[c].to_numpy(dtype=float) for c in TRUTH_COLUMNS}
    return BASE_LOGIT + sum(_terms(f).values())


TRUTH_COLUMNS = (
    "login_trend",
    "logins_30d",
    "late_invoices_90d",
    "csat",
    "tickets_30d",
    "onboarding_completed",
    "tenure_months",
    "first_response_minutes",
    "fcr_rate",
    "interactions_30d",
)


def true_importance(frame: pd.DataFrame) -> pd.Series:
    """Each truth column's share (summing to 100, largest first) of the mean absolute centred
    contribution to the true logit over the rows of ``frame`` (interactions split evenly)."""
    f = {c: frame[c].to_numpy(dtype=float) for c in TRUTH_COLUMNS}
    imp = dict.fromkeys([*TRUTH_COLUMNS, "nps"], 0.0)
    for name, g in _terms(f).items():
        value = float(np.mean(np.abs(g - g.mean())))
        cols = name.split("*")
        for c in cols:
            imp[c] += value / len(cols)
    s = pd.Series(imp, name="true_importance")
    return (100 * s / s.sum()).sort_values(ascending=False)


def generate_snapshots(
    n_customers: int = 2000, n_months: int = 12, *, seed: int = 0, horizon_days: int = 90, start: str = "2024-01-01"
) -> SyntheticData:
    """Monthly snapshots for ``n_customers`` over ``n_months`` (see the module docstring)."""
    if n_customers < 1 or n_months < 1:
        raise DataError(f"need at least 1 customer and 1 month, got customers={n_customers}, months={n_months}.")
    if horizon_days < 1:
        raise DataError(f"horizon_days must be positive, got {horizon_days}.")
    rng = np.random.default_rng(seed)
    n = n_customers
    horizon = max(1, round(horizon_days / 30.4375))
    total_months = n_months + horizon

    ids = np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), max(6, len(str(n)))))  # sorted
    seg_idx = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    plan_idx = np.clip(seg_idx + rng.choice([-1, 0, 0, 1], size=n), 0, 2)
    start_month = np.where(rng.random(n) < 0.7, 0, rng.integers(1, max(n_months, 2), size=n))
    tenure0 = np.where(start_month == 0, rng.integers(0, 49, size=n), 0)
    onboarded = rng.random(n) < np.where(tenure0 > 3, 0.85, 0.55)
    base_activity = rng.normal(0, 0.45, size=n) + 0.15 * plan_idx
    base_service = rng.normal(0, 0.5, size=n) + 0.1 * seg_idx
    nps = np.clip(np.round(rng.normal(7 + base_service, 2)), 0, 10)
    interact_rate = np.exp(0.6 + 0.5 * seg_idx + rng.normal(0, 0.3, n))
    # annual recurring revenue per customer, from its own random stream so the other columns do not
    # depend on it: by plan (basic ~6k, pro ~24k, enterprise ~90k), log-normal around that
    arr_rng = np.random.default_rng([seed, 1])
    arr = np.round(np.array([6_000.0, 24_000.0, 90_000.0])[plan_idx] * np.exp(arr_rng.normal(0, 0.5, n)), -2)

    z_act, z_srv, z_tix, z_pay, z_ops, z_trend = (rng.standard_normal(n) for _ in range(6))
    alive = np.ones(n, dtype=bool)
    churn_month = np.full(n, -1)
    dates = pd.date_range(start, periods=n_months, freq="MS")
    pieces: list[pd.DataFrame] = []

    for t in range(total_months):
        z_act, z_srv = _ar1(rng, z_act, 0.92), _ar1(rng, z_srv, 0.9)
        z_tix, z_pay = _ar1(rng, z_tix, 0.9), _ar1(rng, z_pay, 0.92)
        z_ops = _ar1(rng, z_ops, 0.9)  # support operations: response speed and resolution
        z_trend = _ar1(rng, z_trend, 0.9)  # direction of product usage: declines tend to go on
        active = alive & (start_month <= t)
        tenure = tenure0 + np.maximum(0, t - start_month)
        logins = rng.poisson(np.exp(2.8 + base_activity + 0.45 * z_act)).astype(float)
        # the product team's trend metric: last 30 days against the previous 30, smoothed
        trend = np.clip(0.3 * z_trend + rng.normal(0, 0.05, n), -0.9, 3.0)
        logins_prev = np.round(logins / (1.0 + trend))
        interactions = rng.poisson(interact_rate).astype(float)
        response = np.round(np.exp(np.log(60) - 0.35 * z_ops - 0.2 * seg_idx + rng.normal(0, 0.5, n)), 1)
        fcr = np.round(1 / (1 + np.exp(-(0.9 + 0.5 * z_ops + rng.normal(0, 0.4, n)))), 3)
        csat = np.clip(np.round(3.8 + 0.55 * z_srv + base_service * 0.5 + rng.normal(0, 0.35, n), 1), 1, 5)
        csat = np.where(rng.random(n) < np.where(interactions == 0, 0.7, 0.25), np.nan, csat)
        tickets = rng.poisson(np.exp(0.2 + 0.5 * z_tix + 0.3 * seg_idx)).astype(float)
        late = rng.poisson(0.18 * np.exp(1.0 * z_pay)).astype(float)
        # the onboarding of new customers gets done over their first months
        onboarded = onboarded | ((tenure >= 1) & (rng.random(n) < 0.12))
        feats = {
            "tenure_months": tenure.astype(float),
            "interactions_30d": interactions,
            "first_response_minutes": response,
            "fcr_rate": fcr,
            "csat": csat,
            "logins_30d": logins,
            "login_trend": trend,
            "tickets_30d": tickets,
            "late_invoices_90d": late,
            "onboarding_completed": onboarded.astype(float),
        }
        eta = BASE_LOGIT + sum(_terms(feats).values())
        churns = active & (rng.random(n) < 1 / (1 + np.exp(-eta)))
        if t < n_months and active.any():
            idx = np.flatnonzero(active)
            piece = pd.DataFrame(
                {
                    "customer_id": ids[idx],
                    "snapshot_date": dates[t],
                    "segment": SEGMENTS[seg_idx[idx]],
                    "plan": PLANS[plan_idx[idx]],
                    "arr": arr[idx],
                    "tenure_months": tenure[idx],
                    "interactions_30d": interactions[idx],
                    "first_response_minutes": response[idx],
                    "fcr_rate": fcr[idx],
                    "csat": csat[idx],
                    "nps": nps[idx],
                    "logins_30d": logins[idx],
                    "logins_prev_30d": logins_prev[idx],
                    "login_trend": np.round(trend[idx], 4),
                    "tickets_30d": tickets[idx],
                    "late_invoices_90d": late[idx],
                    "onboarding_completed": onboarded[idx],
                    "_month": t,
                }
            )
            pieces.append(piece)
        churn_month[churns] = t
        alive &= ~churns

    frame = pd.concat(pieces, ignore_index=True)
    nps_missing = rng.random(len(frame)) < 0.5
    frame.loc[nps_missing, "nps"] = np.nan
    cm = churn_month[_customer_index(frame, ids)]
    frame["churned"] = ((cm >= frame["_month"].to_numpy()) & (cm < frame["_month"].to_numpy() + horizon)).astype(int)
    frame = frame.drop(columns="_month")
    for col in (
        "tenure_months",
        "interactions_30d",
        "logins_30d",
        "logins_prev_30d",
        "tickets_30d",
        "late_invoices_90d",
    ):
        frame[col] = frame[col].astype("int64")
    return SyntheticData(frame=frame, truth=true_importance(frame), horizon_days=horizon_days)


def _customer_index(frame: pd.DataFrame, ids: np.ndarray) -> np.ndarray:
    """Position of each row's customer in ``ids`` (ids are sorted, so a binary search)."""
    return np.searchsorted(ids, frame["customer_id"].to_numpy(dtype=str))
