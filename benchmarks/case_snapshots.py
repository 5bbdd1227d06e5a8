"""Building snapshots from raw events with DuckDB, against one plain GROUP BY over the same events."""

from __future__ import annotations

import time
from pathlib import Path

from _harness import Bench, Call, Context, case

SPEC = """\
version: 1
tables:
  accounts: accounts.parquet
  usage: usage.parquet
  churn: churn.parquet
customers: {table: accounts, id: account_id, start: signup_date}
churn: {table: churn, id: account_id, date: churn_date}
observations: {every: 1 month, start: 2023-01-01, end: 2024-12-01}
horizon_days: 90
features:
  - {name: logins_30d, table: usage, time: event_time, agg: count, where: "event_type = 'login'", window: 30 days}
  - {name: minutes_30d, table: usage, time: event_time, agg: sum, column: minutes, window: 30 days}
  - {name: login_trend, change_of: logins_30d}
  - {name: days_since_login, table: usage, time: event_time, agg: days_since, where: "event_type = 'login'"}
  - {name: plan, table: accounts, column: plan}
  - {name: segment, table: accounts, column: segment}
  - {name: tenure_days, tenure: true}
"""


def _events(folder: Path, customers: int, events: int) -> Path:
    """Raw tables written by DuckDB itself (seconds, not minutes): events spread over the two years of
    observation dates and the three months before, a few churns, accounts with a plan and a segment."""
    import duckdb

    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SELECT setseed(0.42)")
    con.execute(
        f"""COPY (SELECT 'C' || lpad(CAST(i AS VARCHAR), 7, '0') AS account_id,
                  DATE '2022-01-01' + CAST(floor(random() * 1000) AS INTEGER) AS signup_date,
                  ['basic', 'pro', 'enterprise'][1 + CAST(floor(random() * 3) AS INTEGER)] AS plan,
                  ['SMB', 'Mid-Market', 'Enterprise'][1 + CAST(floor(random() * 3) AS INTEGER)] AS segment
                FROM range({customers}) t(i)) TO '{folder / "accounts.parquet"}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT 'C' || lpad(CAST(CAST(floor(random() * {customers}) AS BIGINT) AS VARCHAR), 7, '0') AS account_id,
                  TIMESTAMP '2022-10-01' + to_microseconds(CAST(random() * 820 * 86400e6 AS BIGINT)) AS event_time,
                  CASE WHEN random() < 0.6 THEN 'login' ELSE 'feature_use' END AS event_type,
                  round(random() * 30, 1) AS minutes
                FROM range({events}) t(i)) TO '{folder / "usage.parquet"}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT 'C' || lpad(CAST(i AS VARCHAR), 7, '0') AS account_id,
                  DATE '2023-01-01' + CAST(floor(random() * 730) AS INTEGER) AS churn_date
                FROM range({customers}) t(i) WHERE random() < 0.15) TO '{folder / "churn.parquet"}' (FORMAT parquet)"""
    )
    (folder / "spec.yaml").write_text(SPEC)
    return folder / "spec.yaml"


def build(spec: str, out: str) -> dict:
    """`healthscore snapshots --spec S --out F` without the interpreter start-up: load, build, write Parquet."""
    import warnings

    from ml.data.snapshots import build_snapshots
    from ml.data.spec import load_spec

    warnings.simplefilter("ignore")
    start = time.perf_counter()
    result = build_snapshots(load_spec(spec), out)
    seconds = time.perf_counter() - start
    assert result.summary.rows > 0
    return {"seconds": seconds}


def group_by_month(events: str) -> dict:
    """The baseline: one GROUP BY customer, month over the same events file, the result materialized."""
    import duckdb

    con = duckdb.connect()
    start = time.perf_counter()
    con.execute(
        f"CREATE TABLE monthly AS SELECT account_id, date_trunc('month', event_time) AS month, COUNT(*) AS n "
        f"FROM read_parquet('{events}') GROUP BY ALL"
    )
    return {"seconds": time.perf_counter() - start}


@case(
    "snapshots_20m",
    "healthscore snapshots: 100,000 customers x 24 monthly dates from 20M Parquet events vs one GROUP BY",
)
def snapshots_20m(ctx: Context) -> Bench:
    customers, events = (10_000, 2_000_000) if ctx.quick else (100_000, 20_000_000)
    spec = ctx.cached(f"raw-events:{events}", lambda: _events(ctx.tmp / f"raw_{events}", customers, events))
    out = ctx.tmp / "snapshots_20m.parquet"

    def check() -> None:
        import pyarrow.parquet as pq

        table = pq.read_table(out)
        if table.num_rows < customers or "login_trend" not in table.column_names:
            raise AssertionError(f"unexpected snapshots: {table.num_rows} rows, columns {table.column_names}")

    return Bench(
        measured=Call(
            "case_snapshots:build", {"spec": str(spec), "out": str(out)}, label="build_snapshots(spec, out.parquet)"
        ),
        baseline=Call(
            "case_snapshots:group_by_month",
            {"events": str(spec.parent / "usage.parquet")},
            label="DuckDB: GROUP BY customer, date_trunc('month', time)",
        ),
        max_ratio=5.0,
        max_peak_mb=4096,
        outputs=(out,),
        check=check,
        info={"customers": customers, "events": events, "dates": 24},
    )
