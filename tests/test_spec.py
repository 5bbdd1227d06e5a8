"""The snapshot spec: parsed once into typed objects, every mistake one clear error naming the field,
what was found and the fix."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from ml.data.spec import (
    AGGS,
    FEATURE_KEYS,
    SPEC_KEYS,
    Window,
    add_months,
    check_where,
    load_spec,
    parse_spec,
    parse_window,
)
from ml.errors import CardError, DataError

REPO = Path(__file__).resolve().parents[1]

BASE: dict[str, Any] = {
    "version": 1,
    "tables": {"accounts": "accounts.csv", "usage": "usage.csv", "churn": "churn.csv"},
    "customers": {"table": "accounts", "id": "account_id", "start": "signup_date"},
    "churn": {"table": "churn", "id": "account_id", "date": "churn_date"},
    "observations": {"every": "1 month", "start": "2023-01-01", "end": "2023-06-01"},
    "horizon_days": 90,
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
        {"name": "login_trend", "change_of": "logins_30d"},
        {"name": "plan", "table": "accounts", "column": "plan"},
        {"name": "tenure_days", "tenure": True},
    ],
}
TABLES = {
    "accounts.csv": "account_id,signup_date,plan\n007,2023-01-15,pro\n",
    "usage.csv": "account_id,event_time,event_type,minutes\n007,2023-01-20 10:00:00,login,5\n",
    "churn.csv": "account_id,churn_date\n007,2023-05-01\n",
}


def spec_dict(**changes: Any) -> dict[str, Any]:
    d = copy.deepcopy(BASE)
    d.update(copy.deepcopy(changes))
    return d


def with_feature(i: int, **changes: Any) -> dict[str, Any]:
    d = spec_dict()
    d["features"][i].update(changes)
    d["features"][i] = {k: v for k, v in d["features"][i].items() if v is not None}
    return d


@pytest.fixture
def folder(tmp_path) -> Path:
    for name, text in TABLES.items():
        (tmp_path / name).write_text(text)
    return tmp_path


def write_spec(folder: Path, raw: dict[str, Any]) -> Path:
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# ---- the good case -------------------------------------------------------------------------------
def test_parses_into_typed_objects(folder):
    spec = load_spec(write_spec(folder, BASE))
    assert spec.customers.start == "signup_date" and spec.churn.date == "churn_date"
    assert spec.observations.every == Window(1, "month") and spec.observations.start == dt.date(2023, 1, 1)
    assert [f.kind for f in spec.features] == ["event", "event", "change", "static", "tenure"]
    logins = spec.feature("logins_30d")
    assert (logins.id, logins.window, logins.where) == ("account_id", Window(30, "day"), "event_type = 'login'")
    assert spec.output.id == "customer_id" and spec.output.label == "churned"
    assert spec.tables["usage"].files == (folder / "usage.csv",)
    # ids are read as text whatever the sniffer thinks; other types as found
    assert spec.schemas["usage"]["minutes"] == "BIGINT" and spec.schemas["usage"]["event_time"] == "TIMESTAMP"


def test_shipped_specs_load():
    spec = load_spec(REPO / "configs" / "snapshots" / "ravenstack.yaml")
    assert spec.tables["usage"].join.columns == ("account_id",)
    assert "account_id" in spec.schemas["usage"]  # looked up from subscriptions
    demo = parse_spec(yaml.safe_load((REPO / "configs" / "snapshots" / "demo.yaml").read_text()))
    assert demo.observations.every == Window(90, "day") and demo.horizon_days == 90


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (dt.date(2023, 1, 31), 1, dt.date(2023, 2, 28)),  # clipped to the month's end
        (dt.date(2023, 1, 31), 2, dt.date(2023, 3, 31)),  # counted from the start, not step by step
        (dt.date(2024, 1, 31), 1, dt.date(2024, 2, 29)),  # leap year
        (dt.date(2023, 3, 31), -1, dt.date(2023, 2, 28)),
        (dt.date(2023, 12, 15), 1, dt.date(2024, 1, 15)),
        (dt.date(2023, 1, 15), -13, dt.date(2021, 12, 15)),
    ],
)
def test_add_months(start, months, expected):
    assert add_months(start, months) == expected


def test_observation_dates_step_by_calendar_month():
    spec = parse_spec(spec_dict(observations={"every": "1 month", "start": "2023-01-31", "end": "2023-05-31"}))
    assert spec.observations.dates() == [
        dt.date(2023, 1, 31),
        dt.date(2023, 2, 28),
        dt.date(2023, 3, 31),
        dt.date(2023, 4, 30),
        dt.date(2023, 5, 31),
    ]
    weekly = parse_spec(spec_dict(observations={"every": "2 weeks", "start": "2023-01-01"}))
    assert weekly.observations.dates(dt.date(2023, 1, 29)) == [
        dt.date(2023, 1, 1),
        dt.date(2023, 1, 15),
        dt.date(2023, 1, 29),
    ]


@pytest.mark.parametrize(
    ("text", "window"),
    [
        ("30 days", Window(30, "day")),
        ("1 day", Window(1, "day")),
        ("2 Weeks", Window(2, "week")),
        (" 3 months ", Window(3, "month")),
    ],
)
def test_windows(text, window):
    assert parse_window(text, "w") == window


# ---- structural mistakes: parse_spec ------------------------------------------------------------
BAD_SPECS = [
    (spec_dict(extra=1), "spec: unknown key 'extra'; allowed keys are: " + ", ".join(SPEC_KEYS)),
    ({k: v for k, v in BASE.items() if k != "churn"}, r"spec: missing required key 'churn'"),
    (spec_dict(version=2), r"version: .* got 2; set `version: 1`"),
    (spec_dict(tables={"accounts": "a.xlsx"}), r"tables.accounts: 'a.xlsx' is neither .csv nor .parquet"),
    (spec_dict(tables={"bad name": "a.csv"}), r"table name 'bad name' must be letters"),
    (
        spec_dict(
            tables={**BASE["tables"], "u2": {"path": "u.csv", "join": {"table": "nope", "key": "k", "columns": ["a"]}}}
        ),
        r"tables.u2.join.table: 'nope' is not a table",
    ),
    (
        spec_dict(
            tables={**BASE["tables"], "u2": {"path": "u.csv", "join": {"table": "usage", "on": "k", "columns": ["a"]}}}
        ),
        r"tables.u2.join: YAML read a key as True|tables.u2.join: unknown key 'on'",
    ),
    (
        spec_dict(
            tables={**BASE["tables"], "u2": {"path": "u.csv", "join": {"table": "usage", True: "k", "columns": ["a"]}}}
        ),
        r"YAML read a key as True .* quote it",
    ),
    (
        spec_dict(customers={"table": "acc", "id": "account_id"}),
        r"customers.table: 'acc' is not one of the tables \(accounts, usage, churn\)",
    ),
    (spec_dict(customers={"table": "accounts"}), r"customers: missing required key 'id'"),
    (spec_dict(churn={"table": "churn", "id": "account_id"}), r"churn: missing required key 'date'"),
    (
        spec_dict(observations={"every": "monthly", "start": "2023-01-01"}),
        r"observations.every: got 'monthly'; write a positive whole number of days, weeks or months",
    ),
    (spec_dict(observations={"every": "0 days", "start": "2023-01-01"}), r"observations.every: got '0 days'"),
    (spec_dict(observations={"every": "1 year", "start": "2023-01-01"}), r"observations.every: got '1 year'"),
    (
        spec_dict(observations={"every": "1 month", "start": "Jan 2023"}),
        r"observations.start: expected a date such as 2024-01-01, got 'Jan 2023'",
    ),
    (
        spec_dict(observations={"every": "1 month", "start": "2023-06-01", "end": "2023-01-01"}),
        r"end 2023-01-01 is before start 2023-06-01",
    ),
    (
        spec_dict(observations={"every": "1 month", "start": dt.datetime(2023, 1, 1, 10)}),
        r"got the date and time 2023-01-01 10:00:00; drop the time",
    ),
    (spec_dict(horizon_days=0), r"horizon_days: expected a positive whole number of days, got 0"),
    (spec_dict(horizon_days="90 days"), r"horizon_days: expected a positive whole number of days, got '90 days'"),
    (
        spec_dict(output={"id": "customer_id", "date": "customer_id"}),
        r"output: id, date and label need three different names",
    ),
    (spec_dict(features=[]), r"features: expected a non-empty list"),
    (with_feature(0, name="logins 30d"), r"features\[0\] \(logins 30d\).name: 'logins 30d' must start with a letter"),
    (with_feature(1, name="logins_30d"), r"features: duplicate name\(s\) \['logins_30d'\]"),
    (with_feature(3, name="churned"), r"features: name\(s\) \['churned'\] are also output columns"),
    (
        with_feature(0, agg="median"),
        r"features\[0\] \(logins_30d\).agg: unknown aggregate 'median'; use one of: " + ", ".join(AGGS),
    ),
    (
        with_feature(0, windw="30 days"),
        r"features\[0\] \(logins_30d\) \(event feature\): unknown key 'windw'; allowed keys are: "
        + ", ".join(FEATURE_KEYS["event"]),
    ),
    (with_feature(0, window="30"), r"features\[0\] \(logins_30d\).window: got '30'; write a positive whole number"),
    (with_feature(0, column="minutes"), r"features\[0\] \(logins_30d\).column: `count` reads no column"),
    (with_feature(1, column=None), r"features\[1\] \(minutes_30d\): agg sum needs `column:`"),
    (with_feature(1, agg="distinct", window=None), r"features\[1\] \(minutes_30d\): agg distinct needs `window:`"),
    (
        with_feature(0, agg="days_since"),
        r"features\[0\] \(logins_30d\).window: days_since looks at every matching event",
    ),
    (with_feature(0, table="events"), r"features\[0\] \(logins_30d\).table: 'events' is not one of the tables"),
    (with_feature(0, time=None), r"features\[0\] \(logins_30d\): missing required key 'time'"),
    (
        with_feature(0, where="event_type = "),
        r"features\[0\] \(logins_30d\).where: \"event_type = \" is not a SQL condition|is not a SQL condition",
    ),
    (with_feature(0, where="SELECT 1"), r"is not a SQL condition"),
    (with_feature(0, where="count(*) > 1"), r"holds a query, an aggregate or a window function"),
    (with_feature(0, where="event_type IN (SELECT 'login')"), r"holds a query, an aggregate or a window function"),
    (with_feature(2, change_of="logins_7d"), r"features\[2\] \(login_trend\).change_of: no feature named 'logins_7d'"),
    (with_feature(2, change_of="plan"), r"features\[2\] \(login_trend\).change_of: 'plan' is not a windowed aggregate"),
    (with_feature(2, agg="count"), r"a feature is one of an aggregate \(`agg`\), a change \(`change_of`\) or a tenure"),
    (
        with_feature(3, column=None),
        r"features\[3\] \(plan\) \(a static attribute: table and column\): missing required key 'column'",
    ),
    (
        with_feature(4, tenure="weeks"),
        r"features\[4\] \(tenure_days\).tenure: got 'weeks'; use true \(days\), days or months",
    ),
    (
        spec_dict(customers={"table": "accounts", "id": "account_id"}),
        r"features\[4\] \(tenure_days\): tenure needs the customers' start",
    ),
]


@pytest.mark.parametrize(("raw", "match"), BAD_SPECS, ids=[f"bad{i}" for i in range(len(BAD_SPECS))])
def test_bad_spec(raw, match):
    with pytest.raises(CardError, match=match):
        parse_spec(raw)


def test_where_is_kept_as_written():
    assert check_where("  kind IN ('a', 'b') AND n >= 1 ", "w") == "kind IN ('a', 'b') AND n >= 1"


# ---- mistakes found against the files: load_spec -------------------------------------------------
BAD_DATA = [
    (
        spec_dict(tables={**BASE["tables"], "usage": "nope/*.csv"}),
        DataError,
        r"tables.usage: no file matches 'nope/\*.csv' \(looked for .*nope/\*.csv\); paths are relative to the spec file",
    ),
    (
        spec_dict(customers={"table": "accounts", "id": "acct", "start": "signup_date"}),
        DataError,
        r"customers.id: table 'accounts' has no column 'acct'. Its columns: 'account_id', 'plan', 'signup_date'",
    ),
    (
        with_feature(1, column="mins"),
        DataError,
        r"features\[1\] \(minutes_30d\).column: table 'usage' has no column 'mins'",
    ),
    (with_feature(0, time="ts"), DataError, r"features\[0\] \(logins_30d\).time: table 'usage' has no column 'ts'"),
    (
        with_feature(0, time="minutes"),
        DataError,
        r"features\[0\] \(logins_30d\).time: usage.minutes holds BIGINT values, not dates or times",
    ),
    (
        with_feature(1, column="event_type"),
        DataError,
        r"features\[1\] \(minutes_30d\).column: usage.event_type holds VARCHAR values, but agg sum needs numbers",
    ),
    (
        with_feature(0, where="kind = 'login'"),
        DataError,
        r"features\[0\] \(logins_30d\).where: \"kind = 'login'\" reads column\(s\) \['kind'\] that usage does not have",
    ),
    (
        with_feature(0, where="minutes + 1"),
        DataError,
        r"features\[0\] \(logins_30d\).where: 'minutes \+ 1' gives BIGINT values, not true/false",
    ),
    (
        with_feature(3, column="tier"),
        DataError,
        r"features\[3\] \(plan\).column: table 'accounts' has no column 'tier'",
    ),
    (
        spec_dict(
            tables={
                **BASE["tables"],
                "usage": {
                    "path": "usage.csv",
                    "join": {"table": "accounts", "key": "account_id", "columns": ["plan", "nope"]},
                },
            }
        ),
        DataError,
        r"tables.usage.join: table 'accounts' has no column 'nope'",
    ),
    (
        spec_dict(
            tables={
                **BASE["tables"],
                "usage": {
                    "path": "usage.csv",
                    "join": {"table": "accounts", "key": "account_id", "columns": ["signup_date", "minutes"]},
                },
            }
        ),
        DataError,
        r"tables.usage.join: table 'accounts' has no column 'minutes'",
    ),
]


@pytest.mark.parametrize(("raw", "error", "match"), BAD_DATA, ids=[f"data{i}" for i in range(len(BAD_DATA))])
def test_bad_spec_against_the_files(folder, raw, error, match):
    path = write_spec(folder, raw)
    with pytest.raises(error, match=match) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}: ")  # the file is named first


def test_join_column_clash(folder):
    (folder / "usage.csv").write_text("account_id,event_time,event_type,minutes,plan\n007,2023-01-20,login,5,x\n")
    raw = spec_dict(
        tables={
            **BASE["tables"],
            "usage": {"path": "usage.csv", "join": {"table": "accounts", "key": "account_id", "columns": ["plan"]}},
        }
    )
    with pytest.raises(DataError, match=r"tables.usage.join.columns: \['plan'\] already is a column of usage"):
        load_spec(write_spec(folder, raw))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("version: 1\ntables: [\n", r"not valid YAML at line 3"),
        ("- a\n- b\n", r"expected a YAML mapping at the top level, got list"),
    ],
)
def test_bad_yaml(tmp_path, text, match):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(CardError, match=match):
        load_spec(path)


def test_missing_spec_file(tmp_path):
    with pytest.raises(CardError, match=r"spec file not found; pass an existing YAML file with --spec"):
        load_spec(tmp_path / "nope.yaml")
