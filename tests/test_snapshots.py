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
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from snapshot_reference import assert_same, parse_span, reference, shift

from ml.data.snapshots import build_snapshots, leakage_evidence, resolve_bounds, snapshot_sql
from ml.data.spec import check_columns, load_spec, parse_spec
from ml.errors import CardError, DataError, HealthScoreWarning

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


@pytest.mark.slow  # ~220 builds: about a minute
@settings(max_examples=220, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(example=examples())
def test_builder_equals_the_brute_force_reference(example):
    with tempfile.TemporaryDirectory() as tmp:
        raw, tables = write_example(example, Path(tmp))
        got = build(raw, Path(tmp))
    want = reference(raw, tables, WHERES)
    assert_same(got, want, f"\nspec: {yaml.safe_dump(raw, sort_keys=False)}")


# ---- a worked example, by hand -------------------------------------------------------------------
GOLDEN_TABLES = {
    "accounts.csv": "account_id,signup_date,plan\n007,2023-01-15,pro\n008,2023-03-01,basic\n009,2023-02-10,pro\n",
    "usage.csv": (
        "account_id,event_time,event_type,minutes\n"
        "007,2023-01-20 10:00:00,login,5\n"
        "007,2023-02-01 00:00:00,login,3\n"
        "007,2023-02-15 09:00:00,view,10\n"
        "007,2023-03-01 00:00:00,login,2\n"
        "008,2023-03-05 08:00:00,login,1\n"
        "008,2023-04-05 08:00:00,login,1\n"
        "009,2023-02-20 08:00:00,login,4\n"
    ),
    "churn.csv": "account_id,churn_date\n009,2023-03-15\n",
}
GOLDEN_SPEC = {
    "version": 1,
    "tables": {"accounts": "accounts.csv", "usage": "usage.csv", "churn": "churn.csv"},
    "customers": {"table": "accounts", "id": "account_id", "start": "signup_date"},
    "churn": {"table": "churn", "id": "account_id", "date": "churn_date"},
    "observations": {"every": "1 month", "start": "2023-02-01", "end": "2023-05-01"},
    "horizon_days": 30,
    "label_end": "2023-05-15",
    "features": [
        {
            "name": "logins_30d",
            "table": "usage",
            "time": "event_time",
            "agg": "count",
            "where": "event_type = 'login'",
            "window": "30 days",
        },
        {
            "name": "minutes_30d",
            "table": "usage",
            "time": "event_time",
            "agg": "sum",
            "column": "minutes",
            "window": "30 days",
        },
        {
            "name": "days_since_login",
            "table": "usage",
            "time": "event_time",
            "agg": "days_since",
            "where": "event_type = 'login'",
        },
        {"name": "login_trend", "change_of": "logins_30d"},
        {"name": "plan", "table": "accounts", "column": "plan"},
        {"name": "tenure_months", "tenure": "months"},
    ],
}


@pytest.fixture
def golden(tmp_path) -> Path:
    for name, text in GOLDEN_TABLES.items():
        (tmp_path / name).write_text(text)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(GOLDEN_SPEC, sort_keys=False))
    return path


def test_worked_example(golden):
    f = build_snapshots(golden).frame.set_index(["customer_id", "snapshot_date"])
    # 007 signed up 2023-01-15: rows from 02-01. 009 signed up 02-10 and churned 03-15: one row, 03-01.
    # 008 signed up 03-01: a row on its signup date (start <= t).
    assert [(c, d.date().isoformat()) for c, d in f.index] == [
        ("007", "2023-02-01"), ("007", "2023-03-01"), ("007", "2023-04-01"), ("007", "2023-05-01"),
        ("008", "2023-03-01"), ("008", "2023-04-01"), ("008", "2023-05-01"),
        ("009", "2023-03-01"),
    ]  # fmt: skip
    r = f.loc["007"]
    # t = 02-01: window [01-02, 02-01) holds the 01-20 login; the 02-01 00:00 login is at t, so not yet
    assert r.loc["2023-02-01", ["logins_30d", "minutes_30d", "days_since_login"]].tolist() == [1, 5, 11]  # 11.6 days
    # t = 03-01: window [01-30, 03-01): login 02-01 and the view 02-15 -> 1 login, 3 + 10 = 13 minutes;
    # the window before, [12-31, 01-30), holds one login: trend (1 - 1) / 1 = 0; 01-15 + 1 month <= 03-01
    assert r.loc["2023-03-01", ["logins_30d", "minutes_30d", "login_trend", "tenure_months"]].tolist() == [
        1,
        13,
        0.0,
        1,
    ]
    # t = 04-01: window [03-02, 04-01) is empty (03-01 00:00 is before 03-02); the window before,
    # [01-31, 03-02), holds two logins: trend (0 - 2) / 2 = -1; last login 03-01: 31 days
    assert r.loc["2023-04-01", ["logins_30d", "minutes_30d", "login_trend", "days_since_login"]].tolist() == [
        0,
        0,
        -1.0,
        31,
    ]
    assert pd.isna(f.loc[("008", "2023-03-01"), "days_since_login"])  # no login yet: empty, not 0
    assert f.loc[("008", "2023-03-01"), "logins_30d"] == 0  # a count of nothing is 0
    assert pd.isna(f.loc[("008", "2023-04-01"), "login_trend"])  # nothing in the window before: empty
    # labels: horizon 30 days, label end 05-15. 009 churned 03-15, within [03-01, 03-31): 1.
    # 007 at 04-01: 05-01 <= 05-15, no churn: 0. At 05-01: 05-31 > 05-15: not known yet, empty.
    assert f["churned"].tolist()[:4] == [0, 0, 0, pd.NA] or pd.isna(f["churned"].iloc[3])
    assert f.loc[("009", "2023-03-01"), "churned"] == 1
    assert pd.isna(f.loc[("007", "2023-05-01"), "churned"]) and pd.isna(f.loc[("008", "2023-05-01"), "churned"])
    assert f.loc[("007", "2023-04-01"), "churned"] == 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".csv.gz"])
def test_writes_csv_or_parquet_atomically_ids_byte_for_byte(golden, tmp_path, suffix):
    out = tmp_path / "out" / f"snapshots{suffix}"
    result = build_snapshots(golden, out)
    assert result.frame is None and result.summary.path == out
    assert result.summary.rows == 8 and result.summary.customers == 3 and result.summary.censored == 2
    assert result.summary.labelled == 6 and result.summary.churners == 1
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary file left
    if suffix == ".parquet":
        back = pd.read_parquet(out)
    else:
        back = pd.read_csv(out, dtype={"customer_id": str})
        assert out.read_bytes()[:2] != b"\x1f\x8b" or suffix == ".csv.gz"
    assert back["customer_id"].tolist()[:5] == ["007", "007", "007", "007", "008"]  # leading zeros kept
    assert back.columns.tolist() == ["customer_id", "snapshot_date", "logins_30d", "minutes_30d", "days_since_login", "login_trend", "plan", "tenure_months", "churned"]  # fmt: skip


def test_failed_build_leaves_no_file(golden, tmp_path):
    (golden.parent / "usage.csv").write_text("account_id,event_time,event_type,minutes\n007,not a time,login,5\n")
    out = tmp_path / "snapshots.csv"
    with pytest.raises(
        DataError,
        match=r"features \(logins_30d\).time: usage.event_time holds text that is not a date or time, e.g. 'not a time'",
    ):
        build_snapshots(golden, out)
    assert not out.exists()


def test_unknown_output_format_and_engine(golden, tmp_path):
    with pytest.raises(DataError, match=r"unknown table format '.xlsx'; use a .csv or .parquet file"):
        build_snapshots(golden, tmp_path / "x.xlsx")
    with pytest.raises(CardError, match=r"engine: 'spark' is not available here; use one of: duckdb"):
        build_snapshots(golden, engine="spark")


@pytest.mark.parametrize(
    ("table", "text", "match"),
    [
        (
            "accounts.csv",
            "account_id,signup_date,plan\n007,2023-01-15,pro\n007,2023-01-16,basic\n",
            r"customers.id: table 'accounts' must hold one row per key, but '007' \(2 rows\) repeat",
        ),
        (
            "churn.csv",
            "account_id,churn_date\n009,someday\n",
            r"churn.date: churn.churn_date holds text that is not a date or time, e.g. 'someday'",
        ),
    ],
)
def test_bad_data_is_one_clear_error(golden, table, text, match):
    (golden.parent / table).write_text(text)
    with pytest.raises(DataError, match=match):
        build_snapshots(golden)


def test_static_table_must_have_one_row_per_customer(golden):
    raw = yaml.safe_load(golden.read_text())
    raw["tables"]["plans"] = "plans.csv"
    raw["features"][4] = {"name": "plan", "table": "plans", "id": "account_id", "column": "plan"}
    (golden.parent / "plans.csv").write_text("account_id,plan\n007,pro\n007,basic\n008,pro\n")
    golden.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        DataError,
        match=r"features \(plan\).table: table 'plans' must hold one row per key, but '007' \(2 rows\) repeat.*agg: last",
    ):
        build_snapshots(golden)


def test_no_observation_date(golden):
    raw = yaml.safe_load(golden.read_text())
    raw["observations"] = {"every": "1 month", "start": "2030-01-01"}  # after every event
    golden.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        DataError, match=r"observations: no observation date between start 2030-01-01 and end 2023-04-05"
    ):
        build_snapshots(golden)


# ---- warnings with evidence ----------------------------------------------------------------------
def test_warns_when_a_static_attribute_separates_churners(tmp_path):
    ids = [f"A{i:03d}" for i in range(60)]
    churners = set(ids[:20])
    (tmp_path / "accounts.csv").write_text(
        "account_id,signup_date,status,region\n"
        + "".join(
            f"{c},2022-01-01,{'cancelled' if c in churners else 'active'},{'north' if i % 2 else 'south'}\n"
            for i, c in enumerate(ids)
        )
    )
    (tmp_path / "churn.csv").write_text(
        "account_id,churn_date\n" + "".join(f"{c},2023-03-10\n" for c in sorted(churners))
    )
    (tmp_path / "usage.csv").write_text("account_id,event_time\n" + "".join(f"{c},2023-01-05\n" for c in ids))
    raw = {
        "tables": {"accounts": "accounts.csv", "churn": "churn.csv", "usage": "usage.csv"},
        "customers": {"table": "accounts", "id": "account_id", "start": "signup_date"},
        "churn": {"table": "churn", "id": "account_id", "date": "churn_date"},
        "observations": {"every": "1 month", "start": "2023-01-01", "end": "2023-06-01"},
        "label_end": "2023-12-31",
        "features": [
            {"name": "events_30d", "table": "usage", "time": "event_time", "agg": "count", "window": "30 days"},
            {"name": "status", "table": "accounts", "column": "status"},
            {"name": "region", "table": "accounts", "column": "region"},
        ],
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.warns(HealthScoreWarning) as caught:
        build_snapshots(path)
    texts = [str(w.message) for w in caught]
    leak = [t for t in texts if "separates the customers who churn" in t]
    assert len(leak) == 1, texts  # status leaks, region does not
    assert "'status' (accounts.status)" in leak[0] and "customer-level AUC 1.00" in leak[0]
    assert "'cancelled': 100% of 20 churned" in leak[0] and "'active': 0% of 40 churned" in leak[0]


@pytest.mark.parametrize(
    ("values", "churned", "expected"),
    [
        (pd.Series([1.0] * 15 + [0.0] * 15), np.array([True] * 15 + [False] * 15), "AUC 1.00"),
        (pd.Series(np.arange(30.0)), np.array([True, False] * 15), None),  # no separation
        (pd.Series([1.0] * 5 + [0.0] * 25), np.array([True] * 5 + [False] * 25), None),  # too few churners to judge
        (
            pd.Series([f"id{i}" for i in range(30)]),
            np.array([True] * 15 + [False] * 15),
            None,
        ),  # unique text: not judged
    ],
)
def test_leakage_evidence(values, churned, expected):
    got = leakage_evidence(values, churned)
    assert (got is None) if expected is None else (expected in got)


def test_warns_about_unknown_churn_ids_and_empty_features(golden):
    (golden.parent / "churn.csv").write_text("account_id,churn_date\n009,2023-03-15\nX1,2023-03-01\n")
    raw = yaml.safe_load(golden.read_text())
    raw["features"].append(
        {
            "name": "views_7d",
            "table": "usage",
            "time": "event_time",
            "agg": "mean",
            "column": "minutes",
            "where": "event_type = 'nothing'",
            "window": "7 days",
        }
    )
    golden.write_text(yaml.safe_dump(raw))
    with pytest.warns(HealthScoreWarning) as caught:
        build_snapshots(golden)
    texts = " | ".join(str(w.message) for w in caught)
    assert "churn: 1 of the 2 customer ids in 'churn' are not in the customers table 'accounts'" in texts
    assert "feature(s) ['views_7d'] are empty on every one of the 8 rows" in texts


# ---- point in time: the future never changes the past ---------------------------------------------
@pytest.mark.slow  # 80 builds
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(example=examples(), data=st.data())
def test_events_on_or_after_t_never_change_the_row_at_t(example, data):
    spec = example["spec"]
    n, unit = parse_span(spec["observations"]["every"])
    t = shift(pd.Timestamp(spec["observations"]["start"]), (n, unit), data.draw(st.integers(0, 3)))
    ev, kinds = example["tables"]["ev"]
    k = data.draw(st.integers(1, 8))
    later = pd.DataFrame(
        {
            "cid": data.draw(st.lists(st.sampled_from([*IDS, "zz"]), min_size=k, max_size=k)),
            "time": [t + pd.Timedelta(hours=data.draw(st.integers(0, 24 * 60))) for _ in range(k)],  # on or after t
            "kind": data.draw(st.lists(st.sampled_from(["a", "b", None]), min_size=k, max_size=k)),
            "amount": data.draw(st.lists(st.sampled_from([1.0, 5.0, np.nan]), min_size=k, max_size=k)),
            "n": data.draw(st.lists(st.integers(0, 3), min_size=k, max_size=k)),
        }
    )
    more = dict(example, tables={**example["tables"], "ev": (pd.concat([ev, later], ignore_index=True), kinds)})
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        before = build(write_example(example, Path(a))[0], Path(a))
        after = build(write_example(more, Path(b))[0], Path(b))
    # (without an `end`, later events can add observation dates: compare the dates both grids have)
    limit = min(t, pd.to_datetime(before["snapshot_date"]).max()) if len(before) else t
    cut = pd.to_datetime(before["snapshot_date"]) <= limit
    keep = pd.to_datetime(after["snapshot_date"]) <= limit
    assert_same(
        after[keep].reset_index(drop=True), before[cut].reset_index(drop=True), f" (events added at or after {t})"
    )


# ---- the SQL: one definition for every engine ------------------------------------------------------
def test_sql_transpiles_to_spark_with_quoted_identifiers(golden):
    spec = load_spec(golden)
    bounds = resolve_bounds(spec, dt.date(2023, 4, 5), dt.date(2023, 3, 15))
    sources = {name: f'"raw"."{name}"' for name in spec.tables}  # e.g. Spark views (written as DuckDB SQL)
    spark = snapshot_sql(spec, bounds, dialect="spark", sources=sources)
    assert "READ_CSV" not in spark and "`raw`.`usage`" in spark
    assert "MAX_BY" not in spark and "FILTER(WHERE" in spark  # aggregates filtered to their windows
    assert "DATE_ADD(" in spark and "EXPLODE(SEQUENCE(1, span))" in spark
    assert "`logins_30d`" in spark and "event_type = 'login'" in spark
    duck = snapshot_sql(spec, bounds)
    assert '"logins_30d"' in duck and "READ_CSV" in duck
    import sqlglot

    sqlglot.parse_one(spark, read="spark")  # Spark's own parser reads it back


def test_names_are_quoted_not_pasted(tmp_path):
    """A table path and values with quotes stay literals; an odd column name stays an identifier."""
    folder = tmp_path / "it's here"
    folder.mkdir()
    (folder / "a.csv").write_text('id,"sign up"\nx\'1,2023-01-01\n')
    (folder / "e.csv").write_text('id,"when"\nx\'1,2023-01-10\n')
    (folder / "c.csv").write_text("id,d\n")
    raw = {
        "tables": {"a": "a.csv", "e": "e.csv", "c": "c.csv"},
        "customers": {"table": "a", "id": "id", "start": "sign up"},
        "churn": {"table": "c", "id": "id", "date": "d"},
        "observations": {"every": "1 month", "start": "2023-02-01", "end": "2023-02-01"},
        "features": [{"name": "n", "table": "e", "time": "when", "agg": "count", "window": "30 days"}],
    }
    (folder / "spec.yaml").write_text(yaml.safe_dump(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthScoreWarning)
        f = build_snapshots(folder / "spec.yaml").frame
    assert f["customer_id"].tolist() == ["x'1"] and f["n"].tolist() == [1]


# ---- real data: RavenStack, against the reference --------------------------------------------------
RAVENSTACK_WHERES = {
    "is_beta_feature": lambda e: e["is_beta_feature"].astype(bool),
    "priority IN ('high', 'urgent')": lambda e: e["priority"].isin(["high", "urgent"]),
    "downgrade_flag": lambda e: e["downgrade_flag"].astype(bool),
}


@pytest.mark.slow
def test_ravenstack_equals_the_reference(configs_dir, data_dir):
    path = configs_dir / "snapshots" / "ravenstack.yaml"
    raw = yaml.safe_load(path.read_text())
    spec = load_spec(path)
    folder = data_dir / "ravenstack"
    read = lambda name, **kw: pd.read_csv(folder / f"ravenstack_{name}.csv", dtype={"account_id": str}, **kw)  # noqa: E731
    subscriptions = read("subscriptions", parse_dates=["start_date", "end_date"])
    usage = read("feature_usage", parse_dates=["usage_date"]).merge(
        subscriptions[["subscription_id", "account_id"]], on="subscription_id", how="left"
    )
    tables = {
        "accounts": read("accounts", parse_dates=["signup_date"]),
        "subscriptions": subscriptions,
        "usage": usage,
        "tickets": read("support_tickets", parse_dates=["submitted_at", "closed_at"]),
        "churn": read("churn_events", parse_dates=["churn_date"]),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthScoreWarning)
        got = build_snapshots(spec).frame
    want = reference(raw, tables, RAVENSTACK_WHERES)
    assert len(got) > 2500 and got["churned"].notna().sum() > 2000
    assert_same(got, want)
    # churn comes from churn_events: the first event ends the customer's rows
    first = tables["churn"].groupby("account_id")["churn_date"].min()
    last_row = got.groupby("customer_id")["snapshot_date"].max()
    both = last_row.index.intersection(first.index)
    assert (pd.to_datetime(last_row[both]) <= first[both]).all()
