"""Customer-grouped, out-of-time splits: train / validation (early stopping) / calibration / held-out.

Customers are first assigned to one group each (seeded, stratified by whether they ever churned), so
no customer is fitted on and calibrated on at once. Rows whose label is empty (censored: their label
window has not elapsed) are in no slice.

**With a date column** the evaluation is out of time, with a label gap. The *held-out period* is the
latest snapshot dates holding about a quarter of the labelled rows; it starts at ``heldout_start``
(T). A snapshot's label looks ``horizon_days`` ahead, so training, validation and calibration use only
rows dated on or before ``label_cutoff``, the latest snapshot date <= T - ``horizon_days``: every label
they learn from was known before the held-out period began, and the calibrator never sees the
held-out period's churn rate. The held-out slice is the labelled rows dated >= T of *every* customer:
in production the model scores the customers it was trained on, a quarter later, so that is what
the backtest measures. Beside it, two subsets of the held-out group's customers (never fitted or
calibrated on): ``unseen`` (their rows in the held-out period) and ``in_time`` (their rows dated up
to ``label_cutoff``, the training period), whose calibration error against the out-of-time one shows
drift.

**Without a date column** every row of a customer goes to its group (today's grouped split).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml.card import Card
from ml.errors import DataError

SLICES = ("train", "valid", "calibration", "holdout")
HELDOUT_FRACTION = 0.25  # share of labelled rows in the held-out period (latest snapshot dates)
_EMPTY = np.array([], dtype=np.int64)


@dataclass(frozen=True)
class Splits:
    """Row positions of each slice, plus what was decided (for ``split.json``)."""

    train: np.ndarray
    valid: np.ndarray
    calibration: np.ndarray
    holdout: np.ndarray
    cutoff: str | None  # first date of the held-out period (= heldout_start), if time-aware
    customer_slice: pd.Series  # customer id -> group
    label_cutoff: str | None = None  # latest snapshot date used to fit or calibrate
    horizon_days: int | None = None
    unseen: np.ndarray = field(default_factory=lambda: _EMPTY)  # held-out rows of never-seen customers
    in_time: np.ndarray = field(default_factory=lambda: _EMPTY)  # never-seen customers, training period
    censored: int = 0  # rows with an empty label (in no slice)

    @property
    def heldout_start(self) -> str | None:
        return self.cutoff

    def rows(self, name: str) -> np.ndarray:
        return getattr(self, name)

    def summary(self, y: np.ndarray, dates: pd.Series | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "cutoff": self.cutoff,
            "time_aware": self.cutoff is not None,
            "label_cutoff": self.label_cutoff,
            "heldout_start": self.cutoff,
            "horizon_days": self.horizon_days,
            "rows_censored": int(self.censored),
            "heldout_customers": (
                "every customer's labelled rows dated >= heldout_start (the customers the model will score "
                "next); metrics.json -> subsets.never_seen has the held-out group's customers alone"
                if self.cutoff is not None
                else "the held-out group's customers (grouped split, no date column)"
            ),
            "slices": {},
        }
        names = SLICES + (("unseen", "in_time") if self.cutoff is not None else ())
        for name in names:
            idx = self.rows(name)
            entry = {
                "rows": int(len(idx)),
                "churners": int(np.nansum(y[idx])),
                "churn_rate": float(np.mean(y[idx])) if len(idx) else None,
                "customers": int((self.customer_slice == name).sum()) if name in SLICES else None,
            }
            if dates is not None and len(idx):
                d = dates.iloc[idx]
                entry["dates"] = [str(d.min().date()), str(d.max().date())]
            out["slices"][name] = entry
        return out


def _assign_groups(ids: np.ndarray, ever: np.ndarray, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Seeded group per customer, stratified by ``ever`` (churned at least once)."""
    rng = np.random.default_rng(seed)
    groups = np.empty(len(ids), dtype=object)
    names = list(fractions)
    cum = np.cumsum([fractions[n] for n in names])
    for stratum in (False, True):
        pos = np.flatnonzero(ever == stratum)
        pos = pos[rng.permutation(len(pos))]
        # equal-count quantiles of a random order: each group gets its share of this stratum
        u = (np.arange(len(pos)) + 0.5) / max(len(pos), 1)
        groups[pos] = np.asarray(names, dtype=object)[
            np.searchsorted(cum, u * cum[-1], side="right").clip(0, len(names) - 1)
        ]
    return groups


def parse_dates(frame: pd.DataFrame, column: str) -> pd.Series:
    """The date column as timestamps; one clear error if any value is not a date."""
    dates = pd.to_datetime(frame[column], errors="coerce")
    if dates.isna().any():
        bad = frame.loc[dates.isna(), column].astype(str).unique()[:3].tolist()
        raise DataError(
            f"date column {column!r} has {int(dates.isna().sum())} value(s) that are not dates "
            f"(e.g. {bad}); fix them or remove `date_column` from the card."
        )
    return dates


def out_of_time_dates(dates: pd.Series, horizon_days: int) -> tuple[pd.Timestamp, pd.Timestamp]:
    """(label_cutoff, heldout_start) for labelled rows dated ``dates``.

    heldout_start T is the first of the latest dates that hold about ``HELDOUT_FRACTION`` of the rows;
    label_cutoff is the latest date <= T - horizon_days. If no date is that early, T moves later (a
    shorter held-out period) until one is; with too short a history that is one clear error."""
    uniq = np.sort(dates.unique())
    counts = dates.value_counts().reindex(uniq).to_numpy()
    from_end = np.cumsum(counts[::-1]) / len(dates)
    k = int(np.searchsorted(from_end, HELDOUT_FRACTION)) + 1  # number of held-out dates
    k = min(max(k, 1), len(uniq) - 1) if len(uniq) >= 2 else 1
    gap = pd.Timedelta(days=horizon_days)
    for kk in range(k, 0, -1):
        start = pd.Timestamp(uniq[-kk])
        earlier = uniq[uniq <= np.datetime64(start - gap)]
        if len(earlier):
            return pd.Timestamp(earlier[-1]), start
    first, last = pd.Timestamp(uniq[0]).date(), pd.Timestamp(uniq[-1]).date()
    raise DataError(
        f"out-of-time evaluation needs snapshots at least horizon_days ({horizon_days}) before the held-out "
        f"period, but the labelled snapshots span only {first} to {last}. Provide a longer history, or "
        "remove `date_column` from the card for a grouped split (evaluation then is not out of time)."
    )


def make_splits(frame: pd.DataFrame, y: np.ndarray, card: Card) -> Splits:
    """Slices of the labelled rows of ``frame``; ``y`` is the label with NaN where it is empty."""
    spec = card.model
    y = np.asarray(y, dtype=float)
    known = ~np.isnan(y)
    ids = frame[card.id_column].astype(str).to_numpy()
    codes, uniques = pd.factorize(ids, sort=True)
    ever = np.zeros(len(uniques), dtype=bool)
    np.logical_or.at(ever, codes, np.where(known, y, 0.0).astype(bool))
    train_share = 1.0 - spec.holdout_fraction - spec.calibration_fraction
    fractions = {
        "train": train_share * (1 - spec.validation_fraction),
        "valid": train_share * spec.validation_fraction,
        "calibration": spec.calibration_fraction,
        "holdout": spec.holdout_fraction,
    }
    # only customers with a known label take part in the draw, so rows that are not known yet (and
    # customers who have nothing else) change no one's slice: training on the data with or without
    # its censored rows gives the same model
    has_known = np.zeros(len(uniques), dtype=bool)
    np.logical_or.at(has_known, codes, known)
    groups = np.full(len(uniques), None, dtype=object)
    groups[has_known] = _assign_groups(uniques[has_known], ever[has_known], fractions, spec.seed)
    row_group = groups[codes]
    customer_slice = pd.Series(groups[has_known], index=uniques[has_known], name="slice")
    pos = np.arange(len(frame))
    censored = int((~known).sum())
    if card.date_column:
        dates = parse_dates(frame, card.date_column)
        if dates[known].nunique() >= 2:
            label_cutoff, start = out_of_time_dates(dates[known], card.horizon_days)
            d = dates.to_numpy()
            fit_period = known & (d <= np.datetime64(label_cutoff))
            held_period = known & (d >= np.datetime64(start))
            return Splits(
                train=pos[(row_group == "train") & fit_period],
                valid=pos[(row_group == "valid") & fit_period],
                calibration=pos[(row_group == "calibration") & fit_period],
                holdout=pos[held_period],
                cutoff=str(start.date()),
                customer_slice=customer_slice,
                label_cutoff=str(label_cutoff.date()),
                horizon_days=card.horizon_days,
                unseen=pos[(row_group == "holdout") & held_period],
                in_time=pos[(row_group == "holdout") & fit_period],
                censored=censored,
            )
    return Splits(
        train=pos[(row_group == "train") & known],
        valid=pos[(row_group == "valid") & known],
        calibration=pos[(row_group == "calibration") & known],
        holdout=pos[(row_group == "holdout") & known],
        cutoff=None,
        customer_slice=customer_slice,
        censored=censored,
    )
