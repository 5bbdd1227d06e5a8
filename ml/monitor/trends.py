"""What the report shows over time, from the score history: band shares per scoring date (model and
manual card), score lines of chosen customers, and what changed since the previous scoring (who moved
band, the biggest drops and their drivers)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml.monitor.alerts import driver_texts, feature_labels
from ml.monitor.history import POINTS, VALUE, History

MAX_LINES = 10
MAX_DROPS = 10


@dataclass
class Trends:
    dates: list[str]
    band_shares: pd.DataFrame  # rows: dates; columns: bands (model), shares
    manual_band_shares: pd.DataFrame
    lines: dict[str, pd.Series]  # customer -> health score by date
    latest: str | None = None
    previous: str | None = None
    transitions: pd.DataFrame | None = None  # previous band x current band, customers
    moved: int = 0
    compared: int = 0
    drops: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def shares(t: pd.DataFrame) -> dict[str, dict[str, float]]:
            return {str(d): {str(b): float(v) for b, v in row.items()} for d, row in t.iterrows()}

        return {
            "dates": self.dates,
            "band_shares": shares(self.band_shares),
            "manual_band_shares": shares(self.manual_band_shares),
            "lines": {c: {str(d.date()): float(v) for d, v in s.items()} for c, s in self.lines.items()},
            "latest": self.latest,
            "previous": self.previous,
            "transitions": None
            if self.transitions is None
            else {str(a): {str(b): int(v) for b, v in row.items()} for a, row in self.transitions.iterrows()},
            "moved": self.moved,
            "compared": self.compared,
            "drops": self.drops,
        }


def trend_summary(
    history: str | os.PathLike | History,
    card,
    *,
    customers: list[str] | None = None,
    max_lines: int = MAX_LINES,
    max_drops: int = MAX_DROPS,
) -> Trends:
    """Trends over the whole history; score lines for ``customers`` (default: the lowest band at the
    latest scoring, lowest scores first), at most ``max_lines`` of them."""
    hist = history if isinstance(history, History) else History(history)
    hist.require()
    rows = hist.frame(["customer_id", "scoring_date", "health_score", "band", "manual_band"])
    rows["scoring_date"] = pd.to_datetime(rows["scoring_date"])
    order = [b.name for b in card.bands]
    dates = sorted(rows["scoring_date"].unique())

    def shares(col: str) -> pd.DataFrame:
        t = pd.crosstab(rows["scoring_date"], rows[col].astype(str), normalize="index")
        return t.reindex(columns=order, fill_value=0.0).rename(index=lambda d: str(pd.Timestamp(d).date()))

    latest_day = dates[-1]
    last = rows[rows["scoring_date"] == latest_day]
    if customers is None:
        low = last[last["band"].astype(str) == order[-1]].sort_values("health_score", kind="stable")
        customers = low["customer_id"].head(max_lines).tolist()
    wanted = [str(c) for c in customers][:max_lines]
    sel = rows[rows["customer_id"].isin(wanted)]
    lines = {c: g.set_index("scoring_date")["health_score"] for c, g in sel.groupby("customer_id", sort=False)}
    lines = {c: lines[c] for c in wanted if c in lines}
    out = Trends(
        dates=[str(pd.Timestamp(d).date()) for d in dates],
        band_shares=shares("band"),
        manual_band_shares=shares("manual_band"),
        lines=lines,
        latest=str(pd.Timestamp(latest_day).date()),
    )
    if len(dates) < 2:
        return out
    prev_day = dates[-2]
    out.previous = str(pd.Timestamp(prev_day).date())
    before = rows[rows["scoring_date"] == prev_day].set_index("customer_id")
    now = last.set_index("customer_id")
    both = now.index.intersection(before.index)
    a = before.loc[both, "band"].astype(str)
    b = now.loc[both, "band"].astype(str)
    out.transitions = pd.crosstab(a, b).reindex(index=order, columns=order, fill_value=0)
    out.compared = len(both)
    out.moved = int((a != b).sum())
    change = (now.loc[both, "health_score"] - before.loc[both, "health_score"]).sort_values(kind="stable")
    drops = change[change < 0].head(max_drops)
    if len(drops):
        out.drops = _drops_with_drivers(hist, card, drops, before, now, prev_day, latest_day)
    return out


def _drops_with_drivers(hist, card, drops: pd.Series, before, now, prev_day, latest_day) -> list[dict[str, Any]]:
    cols = hist.columns()
    features = [c[len(POINTS) :] for c in cols if c.startswith(POINTS) and VALUE + c[len(POINTS) :] in cols]
    detail = hist.frame(
        ["customer_id", "scoring_date", *[p + f for f in features for p in (POINTS, VALUE)]],
        dates=[pd.Timestamp(prev_day).date(), pd.Timestamp(latest_day).date()],
        customers=list(drops.index),
    )
    detail["scoring_date"] = pd.to_datetime(detail["scoring_date"])
    d = detail.set_index(["customer_id", "scoring_date"])
    ids = list(drops.index)
    b = d.reindex(pd.MultiIndex.from_arrays([ids, [prev_day] * len(ids)])).reset_index(drop=True)
    a = d.reindex(pd.MultiIndex.from_arrays([ids, [latest_day] * len(ids)])).reset_index(drop=True)
    texts = driver_texts(b, a, features, feature_labels(card, features))
    return [
        {
            "customer_id": str(c),
            "previous_score": float(before.loc[c, "health_score"]),
            "health_score": float(now.loc[c, "health_score"]),
            "change": float(drops[c]),
            "previous_band": str(before.loc[c, "band"]),
            "band": str(now.loc[c, "band"]),
            "drivers": [t[i] for t in texts if t[i]],
        }
        for i, c in enumerate(ids)
    ]


def share_table(t: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows for a template: date and the share of each band."""
    return [{"date": d, **{b: float(v) for b, v in row.items()}} for d, row in t.iterrows()]


def finite_lines(lines: dict[str, pd.Series]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {c: (s.index.to_numpy(), s.to_numpy(float)) for c, s in lines.items()}
