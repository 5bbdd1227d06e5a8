"""The current book in money: value and value at risk per band, and the sentence a CS lead reads.

``value`` is the card's ``value_column`` (ARR, MRR, seats ...); ``value_at_risk`` = value x the
customer's churn probability over the horizon (what is expected to be lost if nothing is done).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TOP_ACCOUNTS = 10


def value_by_band(table: pd.DataFrame, band_order: list[str]) -> pd.DataFrame:
    """Per band (the card's order): customers, value, value_at_risk, and the share of the band's
    value held by its ``TOP_ACCOUNTS`` largest accounts. ``table`` has ``band``, ``value`` and
    ``value_at_risk`` columns (``predict``'s output)."""
    band = pd.Categorical(np.asarray(table["band"].astype(object)), categories=band_order)
    value = table["value"].to_numpy(dtype=float)
    frame = pd.DataFrame({"band": band, "value": value, "value_at_risk": table["value_at_risk"].to_numpy(float)})
    g = frame.groupby("band", observed=False)
    out = pd.DataFrame(
        {
            "customers": g.size().reindex(band_order, fill_value=0),
            "value": g["value"].sum().reindex(band_order, fill_value=0.0),
            "value_at_risk": g["value_at_risk"].sum().reindex(band_order, fill_value=0.0),
        }
    )
    ranked = frame.assign(v=np.nan_to_num(value)).sort_values(["band", "v"], ascending=[True, False], kind="stable")
    top = ranked.groupby("band", observed=False).head(TOP_ACCOUNTS).groupby("band", observed=False)["v"].sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["top_share"] = (top.reindex(band_order, fill_value=0.0) / out["value"]).where(out["value"] > 0)
    out.index.name = "band"
    return out


def money(x: float) -> str:
    """1234567 -> '1.2 M', 45600 -> '45.6 k', 950 -> '950'."""
    a = abs(x)
    if a >= 1e6:
        return f"{x / 1e6:.1f} M"
    if a >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:,.0f}"


def value_sentence(summary: pd.DataFrame, band: str, value_name: str) -> str:
    """'1.2 M of arr sits in At risk (38 % of the book; 40 % of it in the 10 largest accounts), of
    which 310.5 k is expected to churn.'"""
    row = summary.loc[band]
    total = summary["value"].sum()
    share = row["value"] / total if total > 0 else 0.0
    top = (
        ""
        if pd.isna(row["top_share"])
        else (f"; {row['top_share']:.0%} of it in the {min(TOP_ACCOUNTS, int(row['customers']))} largest accounts")
    )
    return (
        f"{money(row['value'])} of {value_name} sits in {band} ({share:.0%} of the book{top}), of which "
        f"{money(row['value_at_risk'])} is expected to churn within the horizon."
    )
