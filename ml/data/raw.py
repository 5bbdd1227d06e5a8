"""Seeded raw tables (accounts, subscriptions, usage events, tickets, CS interactions, invoices, churn
events) whose churn comes from the same ground truth as :func:`ml.data.generate.generate_snapshots`.

Events are simulated in 30-day periods: each customer's usage, support and billing drift period to
period (AR(1) latents, and a usage level that keeps its direction for a while) and become dated
events. Observation dates are 90 days apart, the label's horizon. At each one the generator computes,
from its own events and by the snapshot rules, exactly the indicators that
``configs/snapshots/demo.yaml`` builds (logins in the last 30 days, the change of the last 60 days'
logins against the 60 before, CSAT of the tickets closed in the last 90 days, late invoices due in
the last 90 days, tenure in whole months ...); a live customer then churns within the next 90 days
with the probability of the true model (:func:`ml.data.generate.true_logit`; an unknown trend,
response time or resolution rate counts as neutral). So every label is one draw of the true model
given the row's own indicators, and the built snapshots carry a known truth:
:attr:`RawData.expected` is the table the builder must produce and :attr:`RawData.truth` each
indicator's true importance over the labelled rows.

Four periods of history precede the first observation date, so its windows are full; 90 days follow
the last one, whose rows stay unlabelled unless the customer churned (their horizon passes the
latest churn date).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

from ml.data.generate import PLANS, SEGMENTS, true_importance, true_logit
from ml.data.io import write_table
from ml.errors import DataError

PERIOD_DAYS = 30  # events are simulated period by period
STEP = 3  # periods between observation dates: 90 days, the label's horizon
HISTORY = 4  # periods of events before the first observation date (the trend compares 60-day windows)
HORIZON_DAYS = STEP * PERIOD_DAYS
TABLE_FILES = {
    "accounts": "accounts.csv",
    "subscriptions": "subscriptions.csv",
    "usage": "usage.parquet",
    "tickets": "tickets.csv",
    "interactions": "cs_interactions.csv",
    "invoices": "invoices.csv",
    "churn": "churn_events.csv",
}
NEUTRAL = {"login_trend": 0.0, "first_response_minutes": 60.0, "fcr_rate": 0.7}  # unknown -> no effect
_DAY = np.timedelta64(1, "D")
_SECOND = np.timedelta64(1, "s")


@dataclass(frozen=True)
class RawData:
    """Raw tables, the snapshot table the demo spec must build from them, and the true importances."""

    tables: dict[str, pd.DataFrame]
    expected: pd.DataFrame
    truth: pd.Series
    horizon_days: int


def dates_for_months(months: int) -> int:
    """Observation dates 90 days apart that span about ``months`` months (at least 2)."""
    return max(2, months // STEP + 1)


def demo_spec_path() -> Path:
    """The snapshot spec for these tables, shipped in the package (a link to configs/snapshots/demo.yaml)."""
    return Path(str(files("ml") / "data" / "snapshots-demo.yaml"))


def _ar1(rng: np.random.Generator, prev: np.ndarray, rho: float) -> np.ndarray:
    return rho * prev + np.sqrt(1 - rho**2) * rng.standard_normal(prev.shape)


def _window_sum(per_period: np.ndarray, width: int) -> np.ndarray:
    """Sum over the last ``width`` periods (this one included), along axis 1."""
    c = np.cumsum(per_period, axis=1)
    out = c.copy()
    out[:, width:] -= c[:, :-width]
    return out


def _bucket(n: int, n_periods: int, who: np.ndarray, period: np.ndarray, weights=None) -> np.ndarray:
    """Per (customer, period) count (or sum of ``weights``) of the events; periods outside are dropped."""
    ok = (period >= 0) & (period < n_periods)
    flat = who[ok] * n_periods + period[ok]
    w = None if weights is None else np.asarray(weights, dtype=float)[ok]
    return np.bincount(flat, weights=w, minlength=n * n_periods).reshape(n, n_periods)


def _whole_months(start: np.ndarray, t: np.datetime64) -> np.ndarray:
    """Whole calendar months from each (midnight) start date to the date t: the largest m with
    start + m months <= t (the day is clipped to the month's end)."""
    s = pd.DatetimeIndex(start)
    tt = pd.Timestamp(t)
    m0 = (tt.year - s.year) * 12 + (tt.month - s.month)
    day_after = np.minimum(s.day, tt.days_in_month)  # the day start + m0 months lands on
    return np.asarray(m0 - (day_after > tt.day), dtype=float)


def _events(rng, counts: np.ndarray, period_starts: np.ndarray, not_before: np.ndarray):
    """Expand per (customer, period) counts into events at uniform random seconds within each period,
    dropping those before the customer's signup. Returns (customer index, period index, time)."""
    n, n_periods = counts.shape
    who = np.repeat(np.arange(n), counts.sum(axis=1))
    period = np.concatenate([np.repeat(np.arange(n_periods), row) for row in counts]) if n else np.array([], int)
    seconds = rng.integers(0, PERIOD_DAYS * 86400, size=len(who))
    when = period_starts[period] + seconds * _SECOND
    keep = when >= not_before[who]
    return who[keep], period[keep], when[keep]


def generate_raw(n_customers: int = 2000, n_dates: int = 5, *, seed: int = 0, start: str = "2023-01-01") -> RawData:
    """Raw tables for ``n_customers`` over ``n_dates`` observation dates 90 days apart (see the module
    docstring). Same seed, same tables."""
    if n_customers < 1 or n_dates < 1:
        raise DataError(f"need at least 1 customer and 1 date, got customers={n_customers}, dates={n_dates}.")
    horizon_days = HORIZON_DAYS
    rng = np.random.default_rng(seed)
    n = n_customers
    t0 = np.datetime64(pd.Timestamp(start).date(), "s")
    # period j covers [t0 + (j - HISTORY) * 30 days, + 30 days): the first HISTORY periods precede the
    # first observation date, period HISTORY + STEP * p - 1 ends at observation date p, and the last
    # STEP periods follow the last observation date (its horizon)
    n_all = HISTORY + STEP * n_dates
    period_starts = t0 + (np.arange(n_all) - HISTORY) * PERIOD_DAYS * _DAY
    obs = t0 + np.arange(n_dates) * STEP * PERIOD_DAYS * _DAY
    data_end = period_starts[-1] + PERIOD_DAYS * _DAY

    ids = np.char.add("C", np.char.zfill(np.arange(1, n + 1).astype(str), max(6, len(str(n)))))
    seg_idx = rng.choice(3, size=n, p=[0.6, 0.3, 0.1])
    plan_idx = np.clip(seg_idx + rng.choice([-1, 0, 0, 1], size=n), 0, 2)
    existing = rng.random(n) < 0.7
    signup_days = np.where(
        existing,
        -rng.integers(1, 49 * 30, size=n),  # up to four years before the first observation date
        (rng.integers(1, max(n_dates, 2), size=n) - 1) * HORIZON_DAYS + rng.integers(1, HORIZON_DAYS, size=n),
    )
    signup = t0 + signup_days * _DAY
    base_activity = rng.normal(0, 0.45, size=n) + 0.15 * plan_idx
    base_service = rng.normal(0, 0.5, size=n) + 0.1 * seg_idx
    nps = np.clip(np.round(rng.normal(7 + base_service, 2)), 0, 10)
    nps[rng.random(n) < 0.5] = np.nan  # half never answered the survey
    interact_rate = np.exp(0.6 + 0.5 * seg_idx + rng.normal(0, 0.3, n))

    # latent drift per period, then the period's counts
    shape = (n, n_all)
    z = {k: np.zeros(shape) for k in ("act", "trend", "srv", "tix", "pay", "ops")}
    rho = {"act": 0.95, "trend": 0.9, "srv": 0.9, "tix": 0.9, "pay": 0.92, "ops": 0.9}
    prev = {k: rng.standard_normal(n) for k in z}
    for j in range(n_all):
        for k in z:
            prev[k] = _ar1(rng, prev[k], rho[k])
            z[k][:, j] = prev[k]
    # the direction of usage persists: a slowly reverting level pushed by a persistent trend latent
    level = np.zeros(shape)
    for j in range(1, n_all):
        level[:, j] = 0.8 * level[:, j - 1] + 0.1 * z["trend"][:, j]
    login_rate = np.exp(2.8 + base_activity[:, None] + 0.3 * z["act"] + level)
    logins = rng.poisson(login_rate)
    uses = rng.poisson(0.4 * login_rate)
    tickets_n = rng.poisson(np.exp(0.2 + 0.5 * z["tix"] + 0.3 * seg_idx[:, None]))
    touches = rng.poisson(np.broadcast_to(interact_rate[:, None], shape))

    # usage: logins and feature use (with minutes)
    lw, lp, lt = _events(rng, logins, period_starts, signup)
    uw, up, ut = _events(rng, uses, period_starts, signup)
    minutes = np.round(rng.gamma(2.0, 6.0, size=len(uw)), 1)
    # support tickets: opened in the period; first response, first-contact resolution, CSAT when answered
    tw, tp, opened = _events(rng, tickets_n, period_starts, signup)
    seg_t, ops_t, srv_t = seg_idx[tw], z["ops"][tw, tp], z["srv"][tw, tp]
    response = np.round(np.exp(np.log(60) - 0.35 * ops_t - 0.2 * seg_t + rng.normal(0, 0.5, len(tw))), 1)
    fcr = rng.random(len(tw)) < 1 / (1 + np.exp(-(0.9 + 0.5 * ops_t + rng.normal(0, 0.4, len(tw)))))
    closed = opened + np.round(rng.exponential(20 * 3600, len(tw))).astype(np.int64) * _SECOND
    sat = np.clip(np.round(3.8 + 0.55 * srv_t + 0.5 * base_service[tw] + rng.normal(0, 0.6, len(tw))), 1, 5)
    answered = rng.random(len(tw)) < 0.6
    still_open = closed >= data_end
    sat = np.where(answered & ~still_open, sat, np.nan)
    closed_period = ((closed - period_starts[0]) // (PERIOD_DAYS * _DAY)).astype(int)
    # CS interactions
    xw, xp, xt = _events(rng, touches, period_starts, signup)
    # invoices: one per period after the signup period, issued in its first 3 days, due 14 days later
    signup_period = ((signup - period_starts[0]) // (PERIOD_DAYS * _DAY)).astype(int)
    iw, ip = np.nonzero(np.arange(n_all)[None, :] > signup_period[:, None])
    issued = period_starts[ip] + rng.integers(0, 3 * 86400, size=len(iw)) * _SECOND
    due = issued + 14 * _DAY
    late = rng.random(len(iw)) < np.minimum(0.95, 0.06 * np.exp(z["pay"][iw, ip]))
    paid = due + np.where(late, rng.integers(1, 30, len(iw)), -rng.integers(0, 10, len(iw))) * _DAY
    # onboarding: most older customers finished soon after signup, the rest finish over their first periods
    onboarded_at = np.full(n, np.datetime64("NaT"), dtype="datetime64[s]")
    early = rng.random(n) < np.where(signup_days < -90, 0.85, 0.55)
    onboarded_at[early] = signup[early] + rng.integers(1, 20, early.sum()) * _DAY
    for j in range(n_all):
        todo = np.isnat(onboarded_at) & (period_starts[j] >= signup) & (rng.random(n) < 0.12)
        onboarded_at[todo] = period_starts[j] + rng.integers(0, PERIOD_DAYS * 86400, todo.sum()) * _SECOND
    onboarded_at[onboarded_at >= data_end] = np.datetime64("NaT")

    # the indicators at each observation date p (period HISTORY + STEP * p - 1 is the 30 days before it)
    cur = HISTORY - 1 + STEP * np.arange(n_dates)
    prv = cur - 2  # the 60 days before the last 60
    per = {
        "logins": _bucket(n, n_all, lw, lp),
        "minutes": _bucket(n, n_all, uw, up, minutes),
        "tickets": _bucket(n, n_all, tw, tp),
        "response": _bucket(n, n_all, tw, tp, response),
        "fcr": _bucket(n, n_all, tw, tp, fcr),
        "sat_sum": _bucket(n, n_all, tw, closed_period, np.nan_to_num(sat)),
        "sat_n": _bucket(n, n_all, tw, closed_period, ~np.isnan(sat)),
        "touches": _bucket(n, n_all, xw, xp),
        "late": _bucket(n, n_all, iw, ((due - period_starts[0]) // (PERIOD_DAYS * _DAY)).astype(int), late),
    }
    last_login = np.full(n * n_all, np.datetime64("NaT"), dtype="datetime64[s]").reshape(n, n_all)
    order = np.argsort(lt, kind="stable")
    last_login[lw[order], lp[order]] = lt[order]  # the latest login of each period wins
    last_login_so_far = np.maximum.accumulate(
        np.where(np.isnat(last_login), np.datetime64("1900-01-01", "s"), last_login), axis=1
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        t90 = {k: _window_sum(v, 3)[:, cur] for k, v in per.items()}
        logins_60d = _window_sum(per["logins"], 2)
        now, before = logins_60d[:, cur], logins_60d[:, prv]
        feats = {
            "logins_30d": per["logins"][:, cur].astype(float),
            "logins_60d": now.astype(float),
            "login_trend": np.where(before > 0, (now - before) / before, np.nan),
            "minutes_30d": per["minutes"][:, cur],
            "interactions_30d": per["touches"][:, cur].astype(float),
            "tickets_30d": per["tickets"][:, cur].astype(float),
            "first_response_minutes": np.where(t90["tickets"] > 0, t90["response"] / t90["tickets"], np.nan),
            "fcr_rate": np.where(t90["tickets"] > 0, t90["fcr"] / t90["tickets"], np.nan),
            "csat": np.where(t90["sat_n"] > 0, t90["sat_sum"] / t90["sat_n"], np.nan),
            "late_invoices_90d": t90["late"].astype(float),
        }
    seen = last_login_so_far[:, cur]
    days_since = np.where(seen > np.datetime64("1900-01-01", "s"), np.floor((obs[None, :] - seen) / _DAY), np.nan)
    feats["days_since_login"] = days_since
    feats["onboarding_completed"] = (~np.isnat(onboarded_at)[:, None] & (onboarded_at[:, None] < obs[None, :])).astype(
        float
    )
    feats["tenure_months"] = np.column_stack([_whole_months(signup, t) for t in obs])

    # churn: at each observation date a live customer churns within the next period with the true hazard
    churn_date = np.full(n, np.datetime64("NaT"), dtype="datetime64[s]")
    rows = []
    for p in range(n_dates):
        alive = (signup <= obs[p]) & (np.isnat(churn_date) | (churn_date >= obs[p]))
        if not alive.any():
            continue
        idx = np.flatnonzero(alive)
        frame = pd.DataFrame({k: v[idx, p] for k, v in feats.items()})
        hazard_frame = frame.fillna(NEUTRAL)
        eta = true_logit(hazard_frame)
        churns = rng.random(len(idx)) < 1 / (1 + np.exp(-eta))
        churn_date[idx[churns]] = obs[p] + rng.integers(0, HORIZON_DAYS, churns.sum()) * _DAY
        frame.insert(0, "customer_id", ids[idx])
        frame.insert(1, "snapshot_date", pd.Timestamp(obs[p]))
        frame["_idx"] = idx
        rows.append(frame)

    # the churn table and the expected labels (label end: the latest churn date)
    churned = ~np.isnat(churn_date)
    label_end = churn_date[churned].max() if churned.any() else None
    expected = pd.concat(rows, ignore_index=True)
    cd = churn_date[expected["_idx"].to_numpy()]
    t = expected["snapshot_date"].to_numpy().astype("datetime64[s]")
    horizon_end = t + horizon_days * _DAY
    in_horizon = ~np.isnat(cd) & (cd >= t) & (cd < horizon_end)
    known = label_end is not None and np.asarray(horizon_end <= label_end)
    expected["churned"] = pd.array(np.where(in_horizon, 1, np.where(known, 0, -1)), dtype="Int64")
    expected.loc[expected["churned"] == -1, "churned"] = pd.NA
    expected["plan"] = PLANS[plan_idx[expected["_idx"]]]
    expected["segment"] = SEGMENTS[seg_idx[expected["_idx"]]]
    expected["nps"] = nps[expected["_idx"]]
    truth_rows = expected.fillna(NEUTRAL)
    truth = true_importance(
        truth_rows[expected["churned"].notna()] if expected["churned"].notna().any() else truth_rows
    )
    expected = expected.drop(columns="_idx").sort_values(["customer_id", "snapshot_date"], ignore_index=True)

    # events stop at churn (and at the end of the data)
    stop = np.where(churned, churn_date, data_end)

    def alive_at(who: np.ndarray, when: np.ndarray) -> np.ndarray:
        return when < stop[who]

    keep_l, keep_u, keep_t, keep_x = alive_at(lw, lt), alive_at(uw, ut), alive_at(tw, opened), alive_at(xw, xt)
    keep_i = alive_at(iw, issued)
    usage = pd.concat(
        [
            pd.DataFrame({"account_id": ids[lw[keep_l]], "event_time": lt[keep_l], "event_type": "login"}),
            pd.DataFrame(
                {
                    "account_id": ids[uw[keep_u]],
                    "event_time": ut[keep_u],
                    "event_type": "feature_use",
                    "minutes": minutes[keep_u],
                }
            ),
        ],
        ignore_index=True,
    ).sort_values(["event_time", "account_id"], kind="stable", ignore_index=True)
    usage.insert(0, "event_id", np.char.add("E", np.arange(1, len(usage) + 1).astype(str)))
    closed_known = np.where(still_open, np.datetime64("NaT"), closed)
    tickets = pd.DataFrame(
        {
            "ticket_id": np.char.add("T", np.arange(1, keep_t.sum() + 1).astype(str)),
            "account_id": ids[tw[keep_t]],
            "opened_at": opened[keep_t],
            "closed_at": closed_known[keep_t],
            "first_response_minutes": response[keep_t],
            "resolved_first_contact": fcr[keep_t],
            "satisfaction": pd.array(sat[keep_t], dtype="Int64"),
        }
    ).sort_values("opened_at", kind="stable", ignore_index=True)
    invoices = pd.DataFrame(
        {
            "invoice_id": np.char.add("I", np.arange(1, keep_i.sum() + 1).astype(str)),
            "account_id": ids[iw[keep_i]],
            "issued_at": issued[keep_i].astype("datetime64[D]"),
            "due_at": due[keep_i].astype("datetime64[D]"),
            "paid_at": np.where(paid[keep_i] < data_end, paid[keep_i], np.datetime64("NaT")).astype("datetime64[D]"),
            "amount": np.round(
                np.array([49.0, 199.0, 899.0])[plan_idx[iw[keep_i]]] * (1 + 0.1 * seg_idx[iw[keep_i]]), 2
            ),
            "paid_late": late[keep_i],
        }
    ).sort_values("issued_at", kind="stable", ignore_index=True)
    interactions = pd.DataFrame(
        {
            "account_id": ids[xw[keep_x]],
            "occurred_at": xt[keep_x],
            "channel": np.array(["call", "email", "meeting"])[rng.integers(0, 3, keep_x.sum())],
        }
    ).sort_values("occurred_at", kind="stable", ignore_index=True)
    accounts = pd.DataFrame(
        {
            "account_id": ids,
            "signup_date": signup.astype("datetime64[D]"),
            "segment": SEGMENTS[seg_idx],
            "onboarded_at": onboarded_at,
            "nps": nps,
        }
    )
    subscriptions = pd.DataFrame(
        {
            "subscription_id": np.char.add("S", np.arange(1, n + 1).astype(str)),
            "account_id": ids,
            "start_date": signup.astype("datetime64[D]"),
            "end_date": churn_date.astype("datetime64[D]"),
            "plan": PLANS[plan_idx],
            "seats": np.maximum(1, np.round(np.exp(1.5 + 0.8 * seg_idx + rng.normal(0, 0.5, n)))).astype(int),
        }
    )
    reasons = np.array(["pricing", "support", "features", "budget", "competitor", "unknown"])
    churn = pd.DataFrame(
        {
            "churn_event_id": np.char.add("X", np.arange(1, churned.sum() + 1).astype(str)),
            "account_id": ids[churned],
            "churn_date": churn_date[churned].astype("datetime64[D]"),
            "reason": reasons[rng.integers(0, len(reasons), churned.sum())],
        }
    ).sort_values("churn_date", kind="stable", ignore_index=True)
    tables = {
        "accounts": accounts,
        "subscriptions": subscriptions,
        "usage": usage,
        "tickets": tickets,
        "interactions": interactions,
        "invoices": invoices,
        "churn": churn,
    }
    return RawData(tables=tables, expected=expected, truth=truth, horizon_days=horizon_days)


def write_raw(data: RawData, folder: str | os.PathLike, spec: str | os.PathLike | None = None) -> Path:
    """Write the raw tables into ``folder`` (usage as Parquet, the others as CSV, each atomically) with a
    copy of the demo spec beside them as ``spec.yaml``; return the spec's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in data.tables.items():
        write_table(frame, folder / TABLE_FILES[name])
    target = folder / "spec.yaml"
    shutil.copyfile(spec or demo_spec_path(), target)
    return target
