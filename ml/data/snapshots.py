"""Build the snapshot table (one row per customer per observation date) from raw event tables.

The rules (stated once, in the README too): a feature at observation date t uses events strictly
before t (``t - window <= time < t``); the label uses churn on or after t (``t <= churn < t + horizon``).
A customer has a row at t when they started on or before t and have no churn date before t, so
churned customers keep their earlier rows; rows whose horizon passes the label end have no label.

How it runs fast: each event is joined to the few observation dates whose lookback holds it (a small
``cover`` table: one row per day and observation date, with a flag per window) and every feature of
that table is computed in one hash aggregate over (customer, date), with ``FILTER`` clauses for the
windows and ``where`` conditions. Aggregates without a window (``days_since``, counts of all events so
far ...) take a per-interval partial from the same pass and a running total over the dates.

The SQL is generated from the typed spec by the small functions below, in DuckDB's dialect as sqlglot
reads it, and transpiled by sqlglot for other engines (``snapshot_sql(spec, bounds, dialect="spark")``).
Identifiers are quoted and values are literals rendered by sqlglot; the only user SQL is each
feature's ``where`` condition, parsed by sqlglot and embedded as an expression.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml.data.spec import INTEGER_TYPES, Feature, SnapshotSpec, Window, check_columns, load_spec, table_source
from ml.data.sql import (
    as_ts,
    connect,
    date_lit,
    duckdb_errors,
    ident,
    literal,
    render,
    ts_lit,
    whole_days,
    whole_months,
)
from ml.errors import CardError, DataError, warn

ENGINES = ("duckdb",)
LEAKAGE_AUC = 0.95  # a static attribute this predictive of eventual churn describes the final state
LEAKAGE_MIN_CLASS = 10  # customers needed on each side before judging
LEAKAGE_MAX_LEVELS = 50  # categorical attributes with more distinct values are not judged
_SECONDS_PER_DAY = 86400


def running(expr: str, func: str = "SUM") -> str:
    """``func`` over this customer's dates up to and including the current one."""
    return f"{func}({expr}) OVER (PARTITION BY g.__cid ORDER BY g.k ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"


# ---- the plan: observation dates, windows and partial aggregates ------------------------------------
@dataclass(frozen=True)
class Bounds:
    """What the data decides: the observation dates and the label end."""

    dates: tuple[dt.date, ...]
    label_end: dt.date | None


def resolve_bounds(spec: SnapshotSpec, latest_event: dt.date | None, latest_churn: dt.date | None) -> Bounds:
    """The observation dates (``end`` defaults to the latest event date) and the label end (``label_end``,
    else the latest churn date)."""
    end = spec.observations.end or latest_event or latest_churn
    dates = spec.observations.dates(end)
    if not dates:
        raise DataError(
            f"observations: no observation date between start {spec.observations.start} and end {end} "
            "(the latest event date when `end` is not set); move `start` earlier or set `end`."
        )
    return Bounds(tuple(dates), spec.label_end or latest_churn)


def bounds_sql(spec: SnapshotSpec, dialect: str = "duckdb", sources: Mapping[str, str] | None = None) -> str:
    """One row: the latest date of each event table's time column, then the latest churn date."""
    parts = []
    for i, (table, _id, time_col) in enumerate(_groups(spec)):
        src = table_source(spec, table, sources=sources)
        parts.append(f"(SELECT MAX(CAST({as_ts(ident(time_col))} AS DATE)) FROM {src} AS src) AS e{i}")
    churn = spec.churn
    src = table_source(spec, churn.table, sources=sources)
    parts.append(f"(SELECT MAX(CAST({as_ts(ident(churn.date))} AS DATE)) FROM {src} AS src) AS churn_end")
    return render("SELECT " + ", ".join(parts), dialect)


def _groups(spec: SnapshotSpec) -> list[tuple[str, str, str]]:
    """Event tables by (table, id column, time column): one pass over the events each."""
    return list(dict.fromkeys(f.source for f in spec.event_features))


@dataclass(frozen=True)
class _Group:
    index: int
    table: str
    id: str
    time: str
    features: tuple[Feature, ...]
    windows: tuple[Window, ...]  # distinct windows of its windowed features
    previous: tuple[bool, ...]  # per window: does a change_of need the window before it
    buckets: bool  # any aggregate without a window (a running total over the dates)

    @property
    def alias(self) -> str:
        return f"a{self.index}"


def _plan(spec: SnapshotSpec) -> list[_Group]:
    changed = {f.change_of for f in spec.features if f.kind == "change"}
    groups = []
    for i, key in enumerate(_groups(spec)):
        feats = tuple(f for f in spec.event_features if f.source == key)
        windows = tuple(dict.fromkeys(f.window for f in feats if f.window is not None))
        previous = tuple(any(f.window == w and f.name in changed for f in feats) for w in windows)
        buckets = any(f.window is None for f in feats)
        groups.append(_Group(i, *key, feats, windows, previous, buckets))
    return groups


def _cover_rows(group: _Group, dates: Sequence[dt.date]) -> tuple[list[str], dt.date]:
    """VALUES rows of the group's observation table: k, t, span (days of lookback), bucket start and
    the lower bound of each window (and of the window before it); plus the sentinel day that events
    older than every window are clamped to."""
    first_lows = [w.shift(dates[0], -2 if prev else -1) for w, prev in zip(group.windows, group.previous, strict=True)]
    sentinel = min(first_lows, default=dates[0]) - dt.timedelta(days=1)
    rows = []
    for k, t in enumerate(dates):
        lows = [w.shift(t, -1) for w in group.windows]
        prev_lows = [w.shift(t, -2) for w, prev in zip(group.windows, group.previous, strict=True) if prev]
        bucket_from = dates[k - 1] if k else sentinel
        start = min([*lows, *prev_lows, *([bucket_from] if group.buckets else [])], default=t)
        span = (t - start).days
        cells = [str(k), date_lit(t), str(span), date_lit(bucket_from), *map(date_lit, lows), *map(date_lit, prev_lows)]
        rows.append("(" + ", ".join(cells) + ")")
    return rows, sentinel


def _cover_columns(group: _Group) -> list[str]:
    lows = [f"lo{i}" for i in range(len(group.windows))]
    prev = [f"plo{i}" for i, p in enumerate(group.previous) if p]
    return ["k", "t", "span", "bucket_from", *lows, *prev]


def _window_index(group: _Group, w: Window) -> int:
    return group.windows.index(w)


def _value(spec: SnapshotSpec, f: Feature) -> str:
    col = ident(f.column)
    if f.agg in ("sum", "mean") and spec.column_type(f.table, f.column) == "BOOLEAN":
        return f"CAST({col} AS INTEGER)"
    return col


def _partials(spec: SnapshotSpec, group: _Group) -> list[str]:
    """The aggregate expressions of one group: ``<feature>__cur``/``__prev`` for windowed features,
    ``__b`` (``__bn`` for means) per interval for the others, each FILTERed to its window and ``where``."""
    changed = {f.change_of for f in spec.features if f.kind == "change"}
    out = []
    for f in group.features:
        m = [f"e.{ident('m__' + f.name)}"] if f.where else []
        v = f"e.{ident('v__' + f.name)}"
        if f.window is not None:
            i = _window_index(group, f.window)
            flags = [("cur", f"c.w{i}")] + ([("prev", f"c.p{i}")] if f.name in changed else [])
        else:
            flags = [("b", "c.b")]
        for suffix, flag in flags:
            cond = " AND ".join([flag, *m] + ([f"{v} IS NOT NULL"] if f.agg == "last" else []))
            name = ident(f"{f.name}__{suffix}")
            agg = {
                "count": "COUNT(*)",
                "sum": f"SUM({v})",
                "mean": f"AVG({v})" if suffix != "b" else f"SUM({v})",
                "min": f"MIN({v})",
                "max": f"MAX({v})",
                "last": f"MAX({{'t': e.__ts, 'v': {v}}})",
                "distinct": f"COUNT(DISTINCT {v})",
                "days_since": "MAX(e.__ts)",
            }[f.agg]
            out.append(f"{agg} FILTER (WHERE {cond}) AS {name}")
            if f.agg == "mean" and suffix == "b":
                out.append(f"COUNT({v}) FILTER (WHERE {cond}) AS {ident(f.name + '__bn')}")
    return out


def _events_cte(spec: SnapshotSpec, group: _Group, sentinel: dt.date, last: dt.date, sources) -> str:
    ts = as_ts(f"src.{ident(group.time)}")
    day = f"CAST({ts} AS DATE)"
    if group.buckets:
        day = f"GREATEST({day}, {date_lit(sentinel)})"
    cols = [f"CAST(src.{ident(group.id)} AS VARCHAR) AS __cid", f"{ts} AS __ts", f"{day} AS __day"]
    for f in group.features:
        if f.column:
            cols.append(f"{_value(spec, f)} AS {ident('v__' + f.name)}")
        if f.where:
            cols.append(f"COALESCE(({f.where}), FALSE) AS {ident('m__' + f.name)}")
    cond = [f"src.{ident(group.id)} IS NOT NULL", f"{ts} IS NOT NULL", f"{ts} < {ts_lit(last)}"]
    if not group.buckets:
        cond.append(f"{ts} > {ts_lit(sentinel)}")  # older events are in no window
    src = table_source(spec, group.table, sources=sources)
    return f"SELECT {', '.join(cols)} FROM {src} AS src WHERE {' AND '.join(cond)}"


def _feature_expr(spec: SnapshotSpec, f: Feature, groups: Mapping[tuple[str, str, str], _Group]) -> str:
    """The output column for feature ``f`` over the joined grid ``r`` (aliases ``a<i>`` per group)."""
    if f.kind == "static":
        return f"s_{_static_index(spec, f.table)}.{ident(f.name)}"
    if f.kind == "tenure":
        if f.tenure == "months":
            return whole_months("r.ts", "r.__start")
        return whole_days("r.ts", "r.__start")
    if f.kind == "change":
        target = spec.feature(f.change_of)
        cur = _windowed(spec, target, "cur")
        prev = _windowed(spec, target, "prev")
        return f"CASE WHEN {prev} IS NULL OR {prev} = 0 THEN NULL ELSE (CAST({cur} AS DOUBLE) - {prev}) / {prev} END"
    if f.window is not None:
        return _windowed(spec, f, "cur")
    col = f"r.{ident(f.name + '__run')}"
    if f.agg in ("count", "sum"):
        return _typed_sum(spec, f, f"COALESCE({col}, 0)")
    if f.agg == "mean":
        n = f"r.{ident(f.name + '__runn')}"
        return f"CASE WHEN {n} > 0 THEN CAST({col} AS DOUBLE) / {n} END"
    if f.agg == "last":
        return f"STRUCT_EXTRACT({col}, 'v')"
    if f.agg == "days_since":
        return whole_days("r.ts", col)
    return col  # min, max


def _windowed(spec: SnapshotSpec, f: Feature, suffix: str) -> str:
    col = f"r.{ident(f.name + '__' + suffix)}"
    if f.agg in ("count", "sum", "distinct"):
        return _typed_sum(spec, f, f"COALESCE({col}, 0)")
    if f.agg == "mean":
        return f"CAST({col} AS DOUBLE)"
    if f.agg == "last":
        return f"STRUCT_EXTRACT({col}, 'v')"
    return col


def _typed_sum(spec: SnapshotSpec, f: Feature, expr: str) -> str:
    if f.agg != "sum":
        return f"CAST({expr} AS BIGINT)"
    kind = spec.column_type(f.table, f.column)
    return f"CAST({expr} AS {'BIGINT' if kind in INTEGER_TYPES else 'DOUBLE'})"


def _static_tables(spec: SnapshotSpec) -> list[tuple[str, str]]:
    return list(dict.fromkeys((f.table, f.id) for f in spec.features if f.kind == "static"))


def _static_index(spec: SnapshotSpec, table: str) -> int:
    for i, (t, _id) in enumerate(_static_tables(spec)):
        if t == table:
            return i
    raise KeyError(table)


def snapshot_sql(
    spec: SnapshotSpec, bounds: Bounds, dialect: str = "duckdb", sources: Mapping[str, str] | None = None
) -> str:
    """The SELECT that builds the snapshot table, ordered by customer and date, for ``dialect``
    (any sqlglot dialect). ``sources`` maps table names to FROM expressions written in DuckDB's
    dialect like the rest (e.g. ``'"db"."usage"'`` for a Spark table); by default DuckDB reads the files."""
    dates = bounds.dates
    last = dates[-1]
    groups = _plan(spec)
    by_source = {(g.table, g.id, g.time): g for g in groups}
    ctes: list[str] = []
    for g in groups:
        rows, sentinel = _cover_rows(g, dates)
        cols = _cover_columns(g)
        ctes.append(f"obs{g.index} AS (SELECT * FROM (VALUES {', '.join(rows)}) AS v({', '.join(cols)}))")
        flags = [f"d >= lo{i} AS w{i}" for i in range(len(g.windows))]
        flags += [f"d >= plo{i} AND d < lo{i} AS p{i}" for i, p in enumerate(g.previous) if p]
        flags.append("d >= bucket_from AS b")
        ctes.append(
            f"days{g.index} AS (SELECT o.*, CAST(DATE_ADD(o.t, -o.j) AS DATE) AS d FROM "
            f"(SELECT *, UNNEST(GENERATE_SERIES(1, span)) AS j FROM obs{g.index}) AS o)"
        )
        ctes.append(f"cover{g.index} AS (SELECT k, d, {', '.join(flags)} FROM days{g.index})")
        ctes.append(f"ev{g.index} AS ({_events_cte(spec, g, sentinel, last, sources)})")
        ctes.append(
            f"agg{g.index} AS (SELECT e.__cid, c.k, {', '.join(_partials(spec, g))} FROM ev{g.index} AS e "
            f"JOIN cover{g.index} AS c ON c.d = e.__day GROUP BY e.__cid, c.k)"
        )
    head = []
    obs_rows = ", ".join(f"({k}, {date_lit(t)})" for k, t in enumerate(dates))
    head.append(f"obs AS (SELECT * FROM (VALUES {obs_rows}) AS v(k, t))")
    c = spec.customers
    start = f"MIN({as_ts(ident(c.start))})" if c.start else "CAST(NULL AS TIMESTAMP)"
    head.append(
        f"cust AS (SELECT CAST({ident(c.id)} AS VARCHAR) AS __cid, {start} AS __start "
        f"FROM {table_source(spec, c.table, sources=sources)} AS src WHERE {ident(c.id)} IS NOT NULL GROUP BY 1)"
    )
    ch = spec.churn
    head.append(
        f"churn AS (SELECT CAST({ident(ch.id)} AS VARCHAR) AS __cid, MIN({as_ts(ident(ch.date))}) AS __first "
        f"FROM {table_source(spec, ch.table, sources=sources)} AS src "
        f"WHERE {ident(ch.id)} IS NOT NULL AND {ident(ch.date)} IS NOT NULL GROUP BY 1)"
    )
    for i, (table, id_col) in enumerate(_static_tables(spec)):
        cols = ", ".join(
            f"{ident(f.column)} AS {ident(f.name)}" for f in spec.features if f.kind == "static" and f.table == table
        )
        head.append(
            f"static{i} AS (SELECT CAST({ident(id_col)} AS VARCHAR) AS __cid, {cols} "
            f"FROM {table_source(spec, table, sources=sources)} AS src WHERE {ident(id_col)} IS NOT NULL)"
        )

    # the grid (every customer x every date), each group's partials, running totals for the
    # aggregates without a window; the customers' rows are chosen only after the running totals
    joins = "".join(
        f" LEFT JOIN agg{g.index} AS {g.alias} ON {g.alias}.__cid = g.__cid AND {g.alias}.k = g.k" for g in groups
    )
    cols = ["g.__cid", "g.k", "CAST(g.t AS TIMESTAMP) AS ts", "g.__start"]
    for g in groups:
        for f in g.features:
            if f.window is not None:
                cols.append(f"{g.alias}.{ident(f.name + '__cur')}")
                if any(x.kind == "change" and x.change_of == f.name for x in spec.features):
                    cols.append(f"{g.alias}.{ident(f.name + '__prev')}")
                continue
            part = f"{g.alias}.{ident(f.name + '__b')}"
            func = {"min": "MIN", "max": "MAX", "last": "MAX", "days_since": "MAX"}.get(f.agg, "SUM")
            cols.append(f"{running(part, func)} AS {ident(f.name + '__run')}")
            if f.agg == "mean":
                cols.append(f"{running(f'{g.alias}.' + ident(f.name + '__bn'))} AS {ident(f.name + '__runn')}")
    grid = f"grid AS (SELECT {', '.join(cols)} FROM (SELECT cust.__cid, cust.__start, obs.k, obs.t FROM cust CROSS JOIN obs) AS g{joins})"
    out = spec.output
    select = [f"r.__cid AS {ident(out.id)}", f"CAST(r.ts AS DATE) AS {ident(out.date)}"]
    select += [f"{_feature_expr(spec, f, by_source)} AS {ident(f.name)}" for f in spec.features]
    horizon_end = f"r.ts + INTERVAL '{int(spec.horizon_days)}' DAY"
    label = f"CASE WHEN ch.__first < {horizon_end} THEN 1"
    if bounds.label_end is not None:
        label += f" WHEN {horizon_end} <= {ts_lit(bounds.label_end)} THEN 0"
    select.append(f"CAST({label} END AS INTEGER) AS {ident(out.label)}")
    static_joins = "".join(
        f" LEFT JOIN static{i} AS s_{i} ON s_{i}.__cid = r.__cid" for i in range(len(_static_tables(spec)))
    )
    body = (
        f"SELECT {', '.join(select)} FROM grid AS r LEFT JOIN churn AS ch ON ch.__cid = r.__cid{static_joins} "
        "WHERE (r.__start IS NULL OR r.__start <= r.ts) AND (ch.__first IS NULL OR ch.__first >= r.ts) "
        "ORDER BY 1, 2"
    )
    return render(f"WITH {', '.join(head + ctes + [grid])} {body}", dialect)


# ---- running it on DuckDB ------------------------------------------------------------------------
def uniqueness_checks(spec: SnapshotSpec, sources: Mapping[str, str] | None = None) -> list[tuple[str, str, str]]:
    """(field, table, SQL) for every table that must hold one row per key: the customers, each static
    attribute's table and each join's lookup table. The SQL returns up to 3 duplicated keys and counts."""
    checks = [("customers.id", spec.customers.table, spec.customers.id)]
    checks += [(f"features ({f.name}).table", f.table, f.id) for f in spec.features if f.kind == "static"]
    checks += [(f"tables.{t.name}.join", t.join.table, t.join.key) for t in spec.tables.values() if t.join]
    out, seen = [], set()
    for where, table, key in checks:
        if (table, key) in seen:
            continue
        seen.add((table, key))
        src = table_source(spec, table, joined=False, sources=sources)
        out.append(
            (
                where,
                table,
                f"SELECT CAST({ident(key)} AS VARCHAR) AS key, COUNT(*) AS n FROM {src} AS src "
                f"WHERE {ident(key)} IS NOT NULL GROUP BY 1 HAVING COUNT(*) > 1 ORDER BY 2 DESC, 1 LIMIT 3",
            )
        )
    return out


def check_unique(con: Any, spec: SnapshotSpec, sources: Mapping[str, str] | None = None) -> None:
    """Run :func:`uniqueness_checks` on ``con`` (DuckDB, or anything with DuckDB's ``execute().fetchall()``)
    and raise one error naming the first table whose key repeats."""
    for where, table, sql in uniqueness_checks(spec, sources):
        dups = con.execute(sql).fetchall()
        if dups:
            listed = ", ".join(f"{k!r} ({n} rows)" for k, n in dups)
            raise DataError(
                f"{where}: table {table!r} must hold one row per key, but {listed} repeat; "
                "deduplicate the table (or use an event feature with agg: last for values that change)."
            )


@dataclass(frozen=True)
class SnapshotSummary:
    """What a build produced (printed by the CLI)."""

    rows: int
    customers: int
    dates: int
    first_date: dt.date | None
    last_date: dt.date | None
    labelled: int
    churners: int
    censored: int
    label_end: dt.date | None
    seconds: float
    path: Path | None = None

    @property
    def churn_rate(self) -> float | None:
        return self.churners / self.labelled if self.labelled else None


@dataclass
class SnapshotResult:
    frame: pd.DataFrame | None
    summary: SnapshotSummary
    sql: str = dataclasses.field(repr=False, default="")


def build_snapshots(
    spec: SnapshotSpec | str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    engine: str = "duckdb",
    threads: int | None = None,
) -> SnapshotResult:
    """Build the snapshot table from the spec's raw tables. With ``out`` (``.csv`` or ``.parquet``),
    write it there atomically (the frame is not loaded into pandas); else return it as ``result.frame``.

    Warns (with evidence) when a static attribute separates the customers who churn from the others
    (a column describing the final state leaks the label), when churn ids are not customers, and
    when a feature is empty on every row."""
    if engine not in ENGINES:
        raise CardError(f"engine: {engine!r} is not available here; use one of: {', '.join(ENGINES)}.")
    spec = spec if isinstance(spec, SnapshotSpec) else load_spec(spec)
    if not spec.schemas:
        spec = check_columns(spec)
    started = time.perf_counter()
    con = connect(threads)
    try:
        result = _build(con, spec, out, started)
    finally:
        con.close()
    return result


def materialize(con: Any, spec: SnapshotSpec) -> dict[str, str]:
    """Read each CSV table once into a temporary table (DuckDB sniffs a CSV's types each time it is
    read, which costs more than reading it); Parquet files are read in place. Returns the sources
    for :func:`snapshot_sql` and the other queries."""
    sources = {}
    for name, table in spec.tables.items():
        if table.format == "csv":
            target = ident(f"__src_{name}")
            con.execute(f"CREATE TEMP TABLE {target} AS SELECT * FROM {table_source(spec, name, joined=False)} AS src")
            sources[name] = target
    return sources


def _build(con: Any, spec: SnapshotSpec, out: str | os.PathLike | None, started: float) -> SnapshotResult:
    with duckdb_errors("building the snapshots"):
        sources = materialize(con, spec)
        check_unique(con, spec, sources)
        _check_text_times(con, spec, sources)
        latest = con.execute(bounds_sql(spec, sources=sources)).fetchone()
        events = [d for d in latest[:-1] if d is not None]
        bounds = resolve_bounds(spec, max(events) if events else None, latest[-1])
        sql = snapshot_sql(spec, bounds, sources=sources)
        con.execute(f"CREATE TEMP TABLE snapshots AS {sql}")
        summary = summarize(con, spec, bounds, time.perf_counter() - started)
        warn_about(con, spec, summary, sources)
        frame = None
        if out is None:
            frame = con.execute("SELECT * FROM snapshots").df()
        else:
            summary = dataclasses.replace(summary, path=Path(out))
            write_snapshots(con, "snapshots", out)
    return SnapshotResult(frame, dataclasses.replace(summary, seconds=time.perf_counter() - started), sql)


def time_columns(spec: SnapshotSpec) -> list[tuple[str, str, str]]:
    """(field, table, column) of every date or time the spec reads."""
    out = [("churn.date", spec.churn.table, spec.churn.date)]
    if spec.customers.start:
        out.append(("customers.start", spec.customers.table, spec.customers.start))
    out += [(f"features ({f.name}).time", f.table, f.time) for f in spec.event_features]
    return list(dict.fromkeys(out))


def _check_text_times(con: Any, spec: SnapshotSpec, sources: Mapping[str, str]) -> None:
    """Times stored as text must all read as timestamps: one error naming the first that does not."""
    for where, table, column in time_columns(spec):
        if spec.column_type(table, column) != "VARCHAR":
            continue
        col = ident(column)
        bad = con.execute(
            f"SELECT {col}, COUNT(*) OVER () FROM {table_source(spec, table, sources=sources)} AS src "
            f"WHERE {col} IS NOT NULL AND TRY_CAST({col} AS TIMESTAMP) IS NULL LIMIT 1"
        ).fetchone()
        if bad:
            raise DataError(
                f"{where}: {table}.{column} holds text that is not a date or time, e.g. {bad[0]!r} ({bad[1]:,} "
                "such values); write ISO dates (2024-01-31) or times (2024-01-31 09:30:00), or point to another column."
            )


def write_snapshots(con: Any, table: str, out: str | os.PathLike) -> Path:
    """COPY a DuckDB table to CSV or Parquet (by suffix), atomically."""
    from ml.data.io import atomic_path

    out = Path(out)
    name = out.name.lower()
    if name.endswith((".parquet", ".pq")):
        options = "FORMAT parquet"
    elif name.endswith(".csv.gz"):
        options = "FORMAT csv, HEADER, COMPRESSION gzip"
    elif name.endswith((".csv", ".txt")):
        options = "FORMAT csv, HEADER"
    else:
        raise DataError(f"{out}: unknown table format {out.suffix!r}; use a .csv or .parquet file.")
    with atomic_path(out) as tmp:
        con.execute(f"COPY {ident(table)} TO {literal(str(tmp))} ({options})")
    return out


def summarize(
    con: Any, spec: SnapshotSpec, bounds: Bounds, seconds: float, table: str = "snapshots"
) -> SnapshotSummary:
    """What a build produced, read from the built table ``table`` (any connection with DuckDB's
    ``execute``: the Spark engine passes its own)."""
    o = spec.output
    row = con.execute(
        f"SELECT COUNT(*), COUNT(DISTINCT {ident(o.id)}), COUNT(DISTINCT {ident(o.date)}), MIN({ident(o.date)}), "
        f"MAX({ident(o.date)}), COUNT({ident(o.label)}), COALESCE(SUM({ident(o.label)}), 0) FROM {ident(table)}"
    ).fetchone()
    rows, customers, n_dates, first, last, labelled, churners = row
    return SnapshotSummary(
        rows=rows,
        customers=customers,
        dates=n_dates,
        first_date=first,
        last_date=last,
        labelled=labelled,
        churners=int(churners),
        censored=rows - labelled,
        label_end=bounds.label_end,
        seconds=seconds,
    )


def warn_about(
    con: Any, spec: SnapshotSpec, summary: SnapshotSummary, sources: Mapping[str, str], table: str = "snapshots"
) -> None:
    """The build's warnings (empty table, no label, churn ids that are not customers, empty features,
    leaking static attributes), read from the built table ``table``."""
    if summary.rows == 0:
        warn(
            "the snapshot table is empty: no customer has started and not churned by any observation date; "
            "check customers.start, the churn dates and observations."
        )
        return
    o = spec.output
    if summary.labelled == 0:
        warn(
            f"no row has a label: every date + {spec.horizon_days} days passes the label end "
            f"({summary.label_end or 'no churn dates'}); set `label_end:` or observe earlier dates."
        )
    ch = spec.churn
    orphans, total = con.execute(
        f"SELECT COUNT(*) FILTER (WHERE c.__cid IS NULL), COUNT(*) FROM "
        f"(SELECT DISTINCT CAST({ident(ch.id)} AS VARCHAR) AS id FROM {table_source(spec, ch.table, sources=sources)} AS src "
        f"WHERE {ident(ch.id)} IS NOT NULL) AS x LEFT JOIN "
        f"(SELECT DISTINCT CAST({ident(spec.customers.id)} AS VARCHAR) AS __cid FROM "
        f"{table_source(spec, spec.customers.table, sources=sources)} AS src) AS c ON c.__cid = x.id"
    ).fetchone()
    if orphans:
        warn(
            f"churn: {orphans:,} of the {total:,} customer ids in {ch.table!r} are not in the customers table "
            f"{spec.customers.table!r}; their churn is ignored. Check that both use the same ids."
        )
    counts = con.execute(
        "SELECT " + ", ".join(f"COUNT({ident(f.name)})" for f in spec.features) + f" FROM {ident(table)}"
    ).fetchone()
    empty = [f.name for f, n in zip(spec.features, counts, strict=True) if n == 0]
    if empty:
        warn(
            f"feature(s) {empty} are empty on every one of the {summary.rows:,} rows; check their table, "
            "`where` and `window`."
        )
    statics = [f for f in spec.features if f.kind == "static"]
    if statics:
        frame = con.execute(
            f"SELECT s.*, (ch.__first IS NOT NULL) AS __churned FROM (SELECT {ident(o.id)}, "
            + ", ".join(f"ANY_VALUE({ident(f.name)}) AS {ident(f.name)}" for f in statics)
            + f" FROM {ident(table)} GROUP BY 1) AS s LEFT JOIN (SELECT CAST({ident(ch.id)} AS VARCHAR) AS __cid, "
            f"MIN({ident(ch.date)}) AS __first FROM {table_source(spec, ch.table, sources=sources)} AS src GROUP BY 1) AS ch "
            f"ON ch.__cid = s.{ident(o.id)}"
        ).df()
        for f in statics:
            evidence = leakage_evidence(frame[f.name], frame["__churned"].to_numpy(dtype=bool))
            if evidence:
                warn(
                    f"static feature {f.name!r} ({f.table}.{f.column}) separates the customers who churn from "
                    f"the others: {evidence}. A column that describes the customer's final state leaks the label; "
                    "remove it from the spec, or compute it from dated events."
                )


def _auc(score: np.ndarray, y: np.ndarray) -> float:
    """ROC AUC of ``score`` for the positives ``y`` (ties count half): the Mann-Whitney statistic."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    pos = int(y.sum())
    neg = len(y) - pos
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def leakage_evidence(values: pd.Series, churned: np.ndarray) -> str | None:
    """Evidence text when a per-customer attribute separates eventual churners (AUC >= 0.95), else None.

    Numbers are ranked as they are; other values (up to 50 distinct, and 10 customers per value on
    average) by their churn share. Missing values count as their own value. Needs at least 10
    customers on each side."""
    pos = int(churned.sum())
    if pos < LEAKAGE_MIN_CLASS or len(churned) - pos < LEAKAGE_MIN_CLASS:
        return None
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric:
        x = values.to_numpy(dtype=float)
        ok = ~np.isnan(x)
        if ok.sum() < len(x) * 0.9 or len(np.unique(x[ok])) < 2:
            numeric = False
        else:
            auc = _auc(x[ok], churned[ok])
            if max(auc, 1 - auc) < LEAKAGE_AUC:
                return None
            med_c, med_o = np.median(x[ok][churned[ok]]), np.median(x[ok][~churned[ok]])
            return (
                f"customer-level AUC {max(auc, 1 - auc):.2f} for churning at all "
                f"(median {med_c:g} among churners, {med_o:g} among the others)"
            )
    labels = values.astype("string").fillna("(empty)").to_numpy(dtype=object)
    codes, uniques = pd.factorize(labels)
    if len(uniques) < 2 or len(uniques) > min(LEAKAGE_MAX_LEVELS, len(labels) / LEAKAGE_MIN_CLASS):
        return None  # (nearly) one value per customer: in-sample shares would separate anything
    n = np.bincount(codes, minlength=len(uniques))
    share = np.bincount(codes, weights=churned, minlength=len(uniques)) / n
    auc = _auc(share[codes], churned)
    if auc < LEAKAGE_AUC:
        return None
    order = np.argsort(-share)
    parts = [f"{uniques[i]!r}: {share[i]:.0%} of {n[i]:,} churned" for i in order[:3]]
    return f"customer-level AUC {auc:.2f} ({'; '.join(parts)})"
