"""A brute-force reference for the snapshot rules, row by row, straight from the README's wording.

It reads the spec as a plain mapping (not through ``ml.data.spec``) and the tables as pandas frames,
and shares no code with the builder: observation dates by ``pd.DateOffset``, windows by comparing
timestamps, the label by looking at every churn date. Slow on purpose; used by the tests only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

OUTPUT = {"id": "customer_id", "date": "snapshot_date", "label": "churned"}
Predicate = Callable[[pd.DataFrame], pd.Series]


def parse_span(text: str) -> tuple[int, str]:
    m = re.fullmatch(r"\s*(\d+)\s*(day|week|month)s?\s*", text, re.IGNORECASE)
    assert m, text
    return int(m.group(1)), m.group(2).lower()


def shift(t: pd.Timestamp, span: tuple[int, str], times: int) -> pd.Timestamp:
    n, unit = span
    if unit == "month":
        return t + pd.DateOffset(months=n * times)
    return t + pd.Timedelta(days=n * times * (7 if unit == "week" else 1))


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v))


def aggregate(events: pd.DataFrame, agg: str, column: str | None) -> Any:
    if agg == "count":
        return len(events)
    values = events[column]
    ok = values.notna()
    values, times = values[ok], events["__time"][ok]
    if agg == "sum":
        return values.sum() if len(values) else 0
    if agg == "distinct":
        return values.nunique()
    if not len(values):
        return None
    if agg == "mean":
        return float(values.astype(float).mean())
    if agg == "min":
        return values.min()
    if agg == "max":
        return values.max()
    if agg == "last":  # the latest event's value; among events at the same time, the largest value
        return values[times == times.max()].max()
    raise AssertionError(agg)


def reference(
    raw: Mapping[str, Any], tables: Mapping[str, pd.DataFrame], predicates: Mapping[str, Predicate]
) -> pd.DataFrame:
    """The snapshot table the rules define for ``tables`` (ids as text, times as Timestamps)."""
    out = {**OUTPUT, **(raw.get("output") or {})}
    cust, ch, feats = raw["customers"], raw["churn"], raw["features"]
    default_id = cust["id"]

    def events_of(f: Mapping[str, Any]) -> pd.DataFrame:
        t = tables[f["table"]]
        e = t[t[f.get("id", default_id)].notna() & t[f["time"]].notna()].copy()
        e["__time"] = pd.to_datetime(e[f["time"]])
        e["__id"] = e[f.get("id", default_id)]
        if f.get("where"):
            e = e[predicates[f["where"]](e).fillna(False).astype(bool)]
        return e

    obs = raw["observations"]
    every = parse_span(obs["every"])
    start = pd.Timestamp(obs["start"])
    if obs.get("end") is not None:
        end = pd.Timestamp(obs["end"])
    else:
        ends = [pd.to_datetime(tables[f["table"]][f["time"]]).max() for f in feats if "agg" in f]
        end = max(e for e in ends if not pd.isna(e)).normalize()
    dates = []
    while (t := shift(start, every, len(dates))) <= end:
        dates.append(t)

    churn = tables[ch["table"]]
    churn = churn[churn[ch["id"]].notna() & churn[ch["date"]].notna()]
    churn_dates: dict[str, list[pd.Timestamp]] = {}
    for cid, d in zip(churn[ch["id"]], pd.to_datetime(churn[ch["date"]]), strict=True):
        churn_dates.setdefault(cid, []).append(d)
    if raw.get("label_end") is not None:
        label_end = pd.Timestamp(raw["label_end"])
    else:
        label_end = pd.to_datetime(churn[ch["date"]]).max().normalize() if len(churn) else pd.NaT
    horizon = pd.Timedelta(days=raw.get("horizon_days", 90))

    # each feature's matching events, by customer (only to keep the row-by-row loop affordable)
    events, none = {}, {}
    for f in feats:
        if "agg" in f:
            e = events_of(f)
            events[f["name"]], none[f["name"]] = dict(tuple(e.groupby("__id"))), e.iloc[:0]
    by_name = {f["name"]: f for f in feats}

    def event_value(f: Mapping[str, Any], cid: str, t: pd.Timestamp, times: int = 1) -> Any:
        e = events[f["name"]].get(cid, none[f["name"]])
        time = e["__time"].to_numpy()
        if f["agg"] == "days_since":
            before = time[time < np.datetime64(t)]
            return None if not len(before) else math.floor((t - pd.Timestamp(before.max())) / pd.Timedelta(days=1))
        lo, hi = None, t
        if f.get("window"):
            span = parse_span(f["window"])
            lo, hi = shift(t, span, -times), shift(t, span, -(times - 1))
        keep = time < np.datetime64(hi)
        if lo is not None:
            keep &= time >= np.datetime64(lo)
        return aggregate(e[keep], f["agg"], f.get("column"))

    customers = tables[cust["table"]]
    rows = []
    for _, c in customers.iterrows():
        cid = c[cust["id"]]
        if _missing(cid):
            continue
        s = pd.Timestamp(c[cust["start"]]) if cust.get("start") and not _missing(c[cust["start"]]) else pd.NaT
        mine = churn_dates.get(cid, [])
        for t in dates:
            if not pd.isna(s) and s > t:
                continue  # not started yet
            if any(d < t for d in mine):
                continue  # churned before t
            row: dict[str, Any] = {out["id"]: cid, out["date"]: t}
            for f in feats:
                if "agg" in f:
                    v = event_value(f, cid, t)
                elif "change_of" in f:
                    target = by_name[f["change_of"]]
                    cur, prev = event_value(target, cid, t), event_value(target, cid, t, times=2)
                    v = None if _missing(prev) or prev == 0 or _missing(cur) else (float(cur) - prev) / prev
                elif "tenure" in f:
                    if pd.isna(s):
                        v = None
                    elif f["tenure"] == "months":
                        v = 0
                        while s + pd.DateOffset(months=v + 1) <= t:
                            v += 1
                    else:
                        v = math.floor((t - s) / pd.Timedelta(days=1))
                else:
                    table = tables[f["table"]]
                    match = table[table[f.get("id", default_id)] == cid]
                    v = match[f["column"]].iloc[0] if len(match) else None
                row[f["name"]] = None if _missing(v) else v
            if any(t <= d < t + horizon for d in mine):
                row[out["label"]] = 1
            elif not pd.isna(label_end) and t + horizon <= label_end:
                row[out["label"]] = 0
            else:
                row[out["label"]] = None
            rows.append(row)
    columns = [out["id"], out["date"], *[f["name"] for f in feats], out["label"]]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values([out["id"], out["date"]], kind="stable").reset_index(drop=True)


def assert_same(got: pd.DataFrame, want: pd.DataFrame, context: str = "") -> None:
    """Same rows in the same order, same ids and dates; each cell equal (floats to 1e-9) or both empty."""
    assert list(got.columns) == list(want.columns), (list(got.columns), list(want.columns))
    id_col, date_col = got.columns[0], got.columns[1]
    got_keys = list(zip(got[id_col].astype(str), pd.to_datetime(got[date_col]), strict=True))
    want_keys = list(zip(want[id_col].astype(str), pd.to_datetime(want[date_col]), strict=True))
    assert got_keys == want_keys, f"rows differ{context}:\n got {got_keys}\nwant {want_keys}"
    for col in got.columns[2:]:
        for i, (g, w) in enumerate(zip(got[col].tolist(), want[col].tolist(), strict=True)):
            if _missing(w) or _missing(g):
                ok = _missing(w) and _missing(g)
            elif isinstance(w, str) or isinstance(g, str):
                ok = str(g) == str(w)
            else:
                ok = bool(np.isclose(float(g), float(w), rtol=1e-9, atol=1e-12))
            assert ok, f"{col} at row {i} ({got_keys[i]}): got {g!r}, want {w!r}{context}"
