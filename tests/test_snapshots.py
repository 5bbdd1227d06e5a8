"""The snapshot builder: equal to a brute-force reference of the rules, point in time, fast SQL that
transpiles, clear errors and warnings with evidence."""

from __future__ import annotations

import datetime as dt
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snapshot_reference import assert_same, parse_span, reference, shift

from ml.data.snapshots import build_snapshots
from ml.data.spec import check_columns, parse_spec
from ml.errors import HealthScoreWarning

IDS = ["007", "7", "C 1", "a'b", 'q"x', "é"]  # leading zeros, quotes and non-ASCII stay byte for byte
WHERES = {
    "kind = 'a'": lambda e: e["kind"] == "a",
    "amount > 2": lambda e: e["amount"] > 2,
    "kind IN ('a', 'b') AND n >= 1": lambda e: e["kind"].isin(["a", "b"]) & (e["n"] >= 1),
}
STARTS = [dt.date(2023, 1, 31), dt.date(2023, 1, 29), dt.date(2024, 2, 29), dt.date(2023, 3, 15)]
EVERY = ["1 day", "3 days", "1 week", "2 weeks", "1 month", "2 months"]
WINDOWS = ["1 day", "2 days", "1 week", "10 days", "1 month", "2 months"]
JITTER = [
    pd.Timedelta(0),
    pd.Timedelta(seconds=-1),
    pd.Timedelta(seconds=1),
    pd.Timedelta(hours=12),
    pd.Timedelta(days=-1),
]
EVENT_COLUMNS = {
    "amount": "sum mean min max last distinct",
    "n": "sum mean min max last distinct",
    "kind": "min max last distinct",
}


# ---- writing a generated example to files --------------------------------------------------------
def _arrow(frame: pd.DataFrame, time_cols: dict[str, str]) -> pa.Table:
    fields = []
    for col in frame.columns:
        if col in time_cols:
            kind = pa.date32() if time_cols[col] == "date" else pa.timestamp("us")
        elif col in ("amount",):
            kind = pa.float64()
        elif col in ("n",):
            kind = pa.int64()
        else:
            kind = pa.string()
        fields.append(pa.field(col, kind))
    data = {}
    for col in frame.columns:
        values = frame[col].tolist()
        if col in time_cols:
            values = [
                None if pd.isna(v) else (v.date() if time_cols[col] == "date" else v.to_pydatetime()) for v in values
            ]
        else:
            values = [None if (v is None or (isinstance(v, float) and np.isnan(v))) else v for v in values]
        data[col] = values
    return pa.Table.from_pydict(data, schema=pa.schema(fields))


def _as_read(frame: pd.DataFrame, time_cols: dict[str, str]) -> pd.DataFrame:
    """The frame as the builder sees it: dates are their midnight."""
    frame = frame.copy()
    for col, kind in time_cols.items():
        frame[col] = pd.to_datetime(frame[col])
        if kind == "date":
            frame[col] = frame[col].dt.normalize()
    return frame


def write_example(example: dict[str, Any], folder: Path, fmt: str = "parquet") -> tuple[dict, dict]:
    """Write the tables and return (spec mapping, tables as the reference reads them)."""
    tables = {}
    for name, (frame, time_cols) in example["tables"].items():
        path = folder / f"{name}.{fmt}"
        if fmt == "parquet":
            pq.write_table(_arrow(frame, time_cols), path)
        else:
            frame.to_csv(path, index=False)
        tables[name] = _as_read(frame, time_cols)
    raw = dict(example["spec"])
    raw["tables"] = {name: f"{name}.{fmt}" for name in example["tables"]}
    return raw, tables


def build(raw: dict, folder: Path) -> pd.DataFrame:
    spec = check_columns(parse_spec(raw, base=folder))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthScoreWarning)
        return build_snapshots(spec).frame


# ---- hypothesis: small random tables with the edges of every rule --------------------------------
@st.composite
def examples(draw) -> dict[str, Any]:
    start = draw(st.sampled_from(STARTS))
    every = draw(st.sampled_from(EVERY))
    n_obs = draw(st.integers(1, 4))
    dates = [shift(pd.Timestamp(start), parse_span(every), k) for k in range(n_obs)]
    horizon = draw(st.integers(1, 70))

    # features first: their windows decide where the edge-case events go
    feats: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 5))):
        table = draw(st.sampled_from(["ev", "tk"]))
        agg = draw(st.sampled_from(["count", "sum", "mean", "min", "max", "last", "distinct", "days_since"]))
        f: dict[str, Any] = {"name": f"f{i}", "table": table, "id": "cid", "time": "time", "agg": agg}
        if agg not in ("count", "days_since"):
            f["column"] = draw(st.sampled_from([c for c, aggs in EVENT_COLUMNS.items() if agg in aggs.split()]))
        if agg == "distinct" or (agg != "days_since" and draw(st.booleans())):
            f["window"] = draw(st.sampled_from(WINDOWS))
        if draw(st.booleans()):
            f["where"] = draw(st.sampled_from(sorted(WHERES)))
        feats.append(f)
    changeable = [f for f in feats if f.get("window") and f.get("column") != "kind"]
    if changeable and draw(st.booleans()):
        feats.append({"name": "trend", "change_of": draw(st.sampled_from(changeable))["name"]})
    with_start = draw(st.booleans())
    if with_start:
        feats.append({"name": "tenure", "tenure": draw(st.sampled_from([True, "days", "months"]))})
    if draw(st.booleans()):
        feats.append({"name": "plan", "table": "accounts", "id": "cid", "column": "plan"})
    spans = [parse_span(f["window"]) for f in feats if f.get("window")] or [(1, "day")]

    def moment(anchor_choices=dates) -> pd.Timestamp:
        if draw(st.integers(0, 4)) == 0:  # anywhere in the range
            return dates[0] - pd.Timedelta(days=70) + pd.Timedelta(minutes=draw(st.integers(0, 200 * 24 * 60)))
        t = draw(st.sampled_from(anchor_choices))
        back = shift(t, draw(st.sampled_from(spans)), -draw(st.integers(0, 2)))  # t, t - w, t - 2w exactly
        return back + draw(st.sampled_from(JITTER))

    ids = draw(st.lists(st.sampled_from(IDS), min_size=1, max_size=4, unique=True))
    starts = [moment() if draw(st.integers(0, 5)) else None for _ in ids]
    accounts = pd.DataFrame(
        {"cid": ids, "signup": starts, "plan": [draw(st.sampled_from(["pro", "basic", None])) for _ in ids]}
    )
    id_pool = [*ids, "zz"]  # events of a customer who is not in the customers table are ignored

    def event_table(max_size: int) -> pd.DataFrame:
        n = draw(st.integers(0, max_size))
        return pd.DataFrame(
            {
                "cid": [draw(st.sampled_from(id_pool)) for _ in range(n)],
                "time": [moment() for _ in range(n)],
                "kind": [draw(st.sampled_from(["a", "b", "c", None])) for _ in range(n)],
                "amount": [draw(st.sampled_from([0.5, 1.0, 2.5, 3.0, -1.0, np.nan])) for _ in range(n)],
                "n": [draw(st.integers(0, 3)) for _ in range(n)],
            }
        )

    ev, tk = event_table(25), event_table(10)
    n_churn = draw(st.integers(0, 4))
    churn = pd.DataFrame(
        {
            "cid": [draw(st.sampled_from(id_pool)) for _ in range(n_churn)],
            "date": [
                draw(st.sampled_from(dates))
                + draw(
                    st.sampled_from(
                        [
                            pd.Timedelta(0),
                            pd.Timedelta(days=1),
                            pd.Timedelta(days=-1),
                            pd.Timedelta(days=horizon),
                            pd.Timedelta(days=horizon) - pd.Timedelta(seconds=1),
                        ]
                    )
                )
                for _ in range(n_churn)
            ],
        }
    )
    time_kind = {name: draw(st.sampled_from(["date", "timestamp"])) for name in ("ev", "tk", "churn", "accounts")}
    end = dates[-1] + pd.Timedelta(days=draw(st.integers(0, 3)))
    if len(ev) + len(tk) and draw(st.integers(0, 3)) == 0:
        end = None  # the latest event date (of the tables features read)
    used = [{"ev": ev, "tk": tk}[t]["time"] for t in {f["table"] for f in feats if "agg" in f}]
    if end is None and max((t.max() for t in used if len(t)), default=pd.Timestamp.min) < dates[0]:
        end = dates[-1]
    spec: dict[str, Any] = {
        "version": 1,
        "customers": {"table": "accounts", "id": "cid", **({"start": "signup"} if with_start else {})},
        "churn": {"table": "churn", "id": "cid", "date": "date"},
        "observations": {
            "every": every,
            "start": start.isoformat(),
            **({"end": end.date().isoformat()} if end is not None else {}),
        },
        "horizon_days": horizon,
        "features": feats,
    }
    if draw(st.booleans()):
        spec["label_end"] = (dates[-1] + pd.Timedelta(days=draw(st.integers(-40, 40)))).date().isoformat()
    return {
        "tables": {
            "accounts": (accounts, {"signup": time_kind["accounts"]}),
            "ev": (ev, {"time": time_kind["ev"]}),
            "tk": (tk, {"time": time_kind["tk"]}),
            "churn": (churn, {"date": time_kind["churn"]}),
        },
        "spec": spec,
    }


@settings(max_examples=220, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(example=examples())
def test_builder_equals_the_brute_force_reference(example):
    with tempfile.TemporaryDirectory() as tmp:
        raw, tables = write_example(example, Path(tmp))
        got = build(raw, Path(tmp))
    want = reference(raw, tables, WHERES)
    assert_same(got, want, f"\nspec: {yaml.safe_dump(raw, sort_keys=False)}")
