"""The snapshot spec: a validated YAML file that says how raw tables become snapshots.

It names the raw tables (CSV or Parquet files, globs allowed), which table lists the customers and
which one their churn dates, the observation dates, the label horizon, and the features. It is parsed
once into typed objects; every check names the field (``features[2] (csat_90d).window``), what it
found and the fix, and the allowed keys in each error come from the same constants the checks use.

``parse_spec`` checks the structure alone; ``load_spec`` also opens the tables (with DuckDB, reading
headers and types only) and checks that every table, column and ``where`` expression exists and fits.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import glob
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ml.card import allowed_text, check_keys, read_yaml, require_keys
from ml.data.sql import connect, describe, ident, literal
from ml.errors import CardError, DataError

SPEC_KEYS = (
    "version",
    "tables",
    "customers",
    "churn",
    "observations",
    "horizon_days",
    "label_end",
    "output",
    "features",
)
REQUIRED_SPEC_KEYS = ("tables", "customers", "churn", "observations", "features")
TABLE_KEYS = ("path", "join")
JOIN_KEYS = ("table", "key", "columns")
CUSTOMERS_KEYS = ("table", "id", "start")
CHURN_KEYS = ("table", "id", "date")
OBSERVATION_KEYS = ("every", "start", "end")
OUTPUT_KEYS = ("id", "date", "label")
DEFAULT_OUTPUT = {"id": "customer_id", "date": "snapshot_date", "label": "churned"}

AGGS = ("count", "sum", "mean", "min", "max", "last", "distinct", "days_since")
AGGS_WITHOUT_COLUMN = ("count", "days_since")
NUMERIC_AGGS = ("sum", "mean")  # need a numeric (or true/false) column
UNBOUNDED_AGGS = ("count", "sum", "mean", "min", "max", "last", "days_since")  # may omit `window`
TENURE_UNITS = ("days", "months")
WINDOW_UNITS = ("day", "week", "month")

# the keys of each kind of feature; a feature's kind is told by the key that only it has
FEATURE_KEYS: dict[str, tuple[str, ...]] = {
    "event": ("name", "table", "id", "time", "agg", "column", "where", "window"),
    "change": ("name", "change_of"),
    "static": ("name", "table", "id", "column"),
    "tenure": ("name", "tenure"),
}
_KIND_MARKERS = (("agg", "event"), ("change_of", "change"), ("tenure", "tenure"))
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_WINDOW = re.compile(r"^\s*(\d+)\s*(day|week|month)s?\s*$", re.IGNORECASE)
MAX_OBSERVATION_DATES = 20_000
TIME_TYPES = ("DATE", "TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S", "TIMESTAMP WITH TIME ZONE")
NUMERIC_TYPES = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
    "BOOLEAN",
)
INTEGER_TYPES = NUMERIC_TYPES[:10] + ("BOOLEAN",)


def _require(found: Mapping[str, Any], required: Iterable[str], where: str) -> None:
    """Required keys must be present and not empty (``key:`` alone reads as null)."""
    require_keys({k: v for k, v in found.items() if v is not None}, required, where)


def _mapping(raw: Any, where: str, example: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise CardError(f"{where}: expected a mapping like {example}, got {raw!r}.")
    return raw


def _column(raw: Any, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise CardError(f"{where}: expected a column name (a string), got {raw!r}.")
    return raw


def _date(raw: Any, where: str) -> dt.date:
    if isinstance(raw, dt.datetime):
        if raw.time() != dt.time(0):
            raise CardError(f"{where}: expected a date such as 2024-01-01, got the date and time {raw}; drop the time.")
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if isinstance(raw, str):
        try:
            return dt.date.fromisoformat(raw.strip())
        except ValueError:
            pass
    raise CardError(f"{where}: expected a date such as 2024-01-01, got {raw!r}.")


# ---- typed objects -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Window:
    """A calendar span: N days, weeks or months (months step by calendar month, clipped to its end)."""

    n: int
    unit: str  # day | week | month

    @property
    def text(self) -> str:
        return f"{self.n} {self.unit}{'s' if self.n != 1 else ''}"

    def shift(self, d: dt.date, times: int) -> dt.date:
        """``d`` moved by ``times`` windows (negative: back): 2023-01-31 + 1 month = 2023-02-28."""
        if self.unit == "month":
            return add_months(d, self.n * times)
        return d + dt.timedelta(days=self.n * times * (7 if self.unit == "week" else 1))


def add_months(d: dt.date, months: int) -> dt.date:
    """Calendar-month arithmetic: the same day of the month, clipped to the month's last day."""
    total = d.year * 12 + d.month - 1 + months
    year, month = divmod(total, 12)
    month += 1
    if not dt.MINYEAR <= year <= dt.MAXYEAR:
        raise OverflowError(f"date out of range: {d} + {months} months")
    last = (dt.date(year + month // 12, month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return dt.date(year, month, min(d.day, last))


def parse_window(raw: Any, where: str) -> Window:
    m = _WINDOW.match(raw) if isinstance(raw, str) else None
    if not m or int(m.group(1)) < 1:
        raise CardError(
            f"{where}: got {raw!r}; write a positive whole number of days, weeks or months, "
            "e.g. '30 days', '2 weeks' or '1 month'."
        )
    return Window(int(m.group(1)), m.group(2).lower())


@dataclass(frozen=True)
class Join:
    """Columns looked up from another table by a key (e.g. usage -> subscriptions -> account_id)."""

    table: str
    key: str  # the column both tables share (e.g. subscription_id)
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    name: str
    pattern: str  # as written in the spec
    files: tuple[Path, ...]  # the files it matched, sorted (empty when parsed without the files)
    format: str  # csv | parquet
    join: Join | None = None


@dataclass(frozen=True)
class Customers:
    table: str
    id: str
    start: str | None = None


@dataclass(frozen=True)
class Churn:
    table: str
    id: str
    date: str


@dataclass(frozen=True)
class Observations:
    every: Window
    start: dt.date
    end: dt.date | None = None

    def dates(self, end: dt.date | None = None) -> list[dt.date]:
        """start, start + every, start + 2 every, ... up to ``end`` (each step counted from start)."""
        end = self.end or end
        if end is None:
            raise CardError("observations.end: not set and no event dates to default it to; set `end:`.")
        out: list[dt.date] = []
        while True:
            t = self.every.shift(self.start, len(out))
            if t > end:
                return out
            out.append(t)
            if len(out) > MAX_OBSERVATION_DATES:
                raise CardError(
                    f"observations: more than {MAX_OBSERVATION_DATES:,} dates from {self.start} to {end} every "
                    f"{self.every.text}; use a longer `every` or a later `start`."
                )


@dataclass(frozen=True)
class Output:
    id: str = "customer_id"
    date: str = "snapshot_date"
    label: str = "churned"


@dataclass(frozen=True)
class Feature:
    """One output column. ``kind``: event (an aggregate of a table's events before each date),
    change (relative change of an event feature against its previous window), static (a column
    of a table with one row per customer) or tenure (time since the customer's start)."""

    name: str
    kind: str
    table: str | None = None
    id: str | None = None
    time: str | None = None
    agg: str | None = None
    column: str | None = None
    where: str | None = None
    window: Window | None = None
    change_of: str | None = None
    tenure: str | None = None  # days | months

    @property
    def source(self) -> tuple[str, str, str]:
        """Event features that read the same table by the same id and time share one pass."""
        assert self.kind == "event"
        return (self.table, self.id, self.time)


@dataclass(frozen=True)
class SnapshotSpec:
    """A parsed, validated snapshot spec."""

    tables: Mapping[str, Table]
    customers: Customers
    churn: Churn
    observations: Observations
    features: tuple[Feature, ...]
    horizon_days: int = 90
    label_end: dt.date | None = None
    output: Output = field(default_factory=Output)
    version: int = 1
    path: Path | None = None
    # column -> DuckDB type of every table (joined columns included); filled by load_spec
    schemas: Mapping[str, Mapping[str, str]] = field(default_factory=dict, compare=False, repr=False)
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def event_features(self) -> list[Feature]:
        return [f for f in self.features if f.kind == "event"]

    def column_type(self, table: str, column: str) -> str | None:
        return self.schemas.get(table, {}).get(column)

    def id_columns(self, table: str) -> list[str]:
        """Columns of ``table`` used as customer ids or join keys: read as text, byte for byte."""
        cols = []
        if self.customers.table == table:
            cols.append(self.customers.id)
        if self.churn.table == table:
            cols.append(self.churn.id)
        cols += [f.id for f in self.features if f.table == table and f.id]
        t = self.tables[table]
        if t.join:
            cols.append(t.join.key)
        for other in self.tables.values():
            if other.join and other.join.table == table:
                cols.append(other.join.key)
        return list(dict.fromkeys(cols))

    def to_yaml(self) -> str:
        return yaml.safe_dump(dict(self.raw), sort_keys=False, allow_unicode=True)


# ---- parsing -------------------------------------------------------------------------------------
def _table_format(pattern: str, where: str) -> str:
    low = pattern.lower()
    if low.endswith((".csv", ".csv.gz", ".txt")):
        return "csv"
    if low.endswith((".parquet", ".pq")):
        return "parquet"
    raise CardError(f"{where}: {pattern!r} is neither .csv nor .parquet; point it at CSV or Parquet files.")


def _parse_tables(raw: Any, base: Path | None) -> dict[str, Table]:
    raw = _mapping(raw, "tables", "{accounts: raw/accounts.csv, usage: raw/usage/*.parquet}")
    if not raw:
        raise CardError("tables: empty; name at least the customers' and the churn table.")
    tables: dict[str, Table] = {}
    for name, entry in raw.items():
        where = f"tables.{name}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise CardError(f"tables: table name {name!r} must be letters, digits and underscores; rename it.")
        join = None
        if isinstance(entry, Mapping):
            check_keys(entry, TABLE_KEYS, where)
            _require(entry, ("path",), where)
            path = entry["path"]
            if entry.get("join") is not None:
                j = _mapping(
                    entry["join"],
                    f"{where}.join",
                    "{table: subscriptions, key: subscription_id, columns: [account_id]}",
                )
                check_keys(j, JOIN_KEYS, f"{where}.join")
                _require(j, JOIN_KEYS, f"{where}.join")
                cols = j["columns"]
                if isinstance(cols, str):
                    cols = [cols]
                if not isinstance(cols, list) or not cols or not all(isinstance(c, str) and c for c in cols):
                    raise CardError(f"{where}.join.columns: expected a list of column names, got {j['columns']!r}.")
                join = Join(
                    table=_column(j["table"], f"{where}.join.table"),
                    key=_column(j["key"], f"{where}.join.key"),
                    columns=tuple(cols),
                )
        else:
            path = entry
        if not isinstance(path, str) or not path.strip():
            raise CardError(f"{where}: expected a file path or glob (a string), got {path!r}.")
        fmt = _table_format(path, where)
        files: tuple[Path, ...] = ()
        if base is not None:
            full = Path(path) if Path(path).is_absolute() else base / path
            files = tuple(sorted(Path(p) for p in glob.glob(str(full), recursive=True) if Path(p).is_file()))
            if not files:
                raise DataError(
                    f"{where}: no file matches {path!r} (looked for {full}); paths are relative to the spec file. "
                    "Fix the path or create the file."
                )
        tables[name] = Table(name=name, pattern=path, files=files, format=fmt, join=join)
    for t in tables.values():
        if t.join is None:
            continue
        if t.join.table not in tables:
            raise CardError(
                f"tables.{t.name}.join.table: {t.join.table!r} is not a table; use one of: {allowed_text(tables)}."
            )
        if t.join.table == t.name or tables[t.join.table].join is not None:
            raise CardError(
                f"tables.{t.name}.join.table: {t.join.table!r} must be a plain table (no join of its own, "
                "not the table itself); join one level only."
            )
    return tables


def _table_ref(raw: Any, tables: Mapping[str, Table], where: str) -> str:
    if not isinstance(raw, str) or raw not in tables:
        raise CardError(
            f"{where}: {raw!r} is not one of the tables ({allowed_text(tables)}); add it under `tables:` or fix the name."
        )
    return raw


def _parse_feature(raw: Any, i: int, tables: Mapping[str, Table], default_id: str) -> Feature:
    where = f"features[{i}]"
    raw = _mapping(raw, where, "{name: logins_30d, table: usage, time: event_time, agg: count, window: 30 days}")
    name = raw.get("name")
    if name is not None:
        where = f"features[{i}] ({name})"
    kinds = [kind for key, kind in _KIND_MARKERS if key in raw]
    if len(kinds) > 1:
        raise CardError(
            f"{where}: a feature is one of an aggregate (`agg`), a change (`change_of`) or a tenure (`tenure`), "
            f"got keys for {' and '.join(kinds)}; split it into separate features."
        )
    kind = kinds[0] if kinds else "static"
    check_keys(raw, FEATURE_KEYS[kind], f"{where} ({kind} feature)" if kind != "static" else where)
    _require(raw, ("name",), where)
    if not isinstance(name, str) or not _NAME.match(name):
        raise CardError(
            f"{where}.name: {name!r} must start with a letter or underscore and hold only letters, digits and "
            "underscores (it becomes a column name); rename it."
        )
    if kind == "change":
        target = raw["change_of"]
        if not isinstance(target, str) or not target:
            raise CardError(f"{where}.change_of: expected the name of a windowed feature, got {target!r}.")
        return Feature(name=name, kind=kind, change_of=target)
    if kind == "tenure":
        unit = raw["tenure"]
        if unit is True:
            unit = "days"
        if unit not in TENURE_UNITS:
            raise CardError(f"{where}.tenure: got {unit!r}; use true (days), days or months.")
        return Feature(name=name, kind=kind, tenure=unit)
    if kind == "static":
        _require(raw, ("table", "column"), f"{where} (a static attribute: table and column)")
        column = _column(raw["column"], f"{where}.column")
        return Feature(name=name, kind=kind, column=column, **_table_and_id(raw, tables, default_id, where))
    _require(raw, ("table", "time", "agg"), where)
    agg = raw["agg"]
    if agg not in AGGS:
        raise CardError(f"{where}.agg: unknown aggregate {agg!r}; use one of: {allowed_text(AGGS)}.")
    column = raw.get("column")
    if agg in AGGS_WITHOUT_COLUMN:
        if column is not None:
            raise CardError(
                f"{where}.column: `{agg}` reads no column (it counts or dates the matching events); remove "
                "`column` (use `where` to choose events, or agg: distinct to count distinct values)."
            )
    else:
        if column is None:
            raise CardError(f"{where}: agg {agg} needs `column:` (the column to aggregate); add it.")
        column = _column(column, f"{where}.column")
    window = None
    if raw.get("window") is not None:
        if agg == "days_since":
            raise CardError(
                f"{where}.window: days_since looks at every matching event before the date; remove `window`."
            )
        window = parse_window(raw["window"], f"{where}.window")
    elif agg not in UNBOUNDED_AGGS:
        raise CardError(f"{where}: agg {agg} needs `window:` (e.g. 30 days); add it.")
    where_sql = raw.get("where")
    if where_sql is not None:
        if not isinstance(where_sql, str) or not where_sql.strip():
            raise CardError(f"{where}.where: expected a SQL condition (a string), got {where_sql!r}.")
        where_sql = check_where(where_sql, f"{where}.where")
    return Feature(
        name=name,
        kind=kind,
        **_table_and_id(raw, tables, default_id, where),
        time=_column(raw["time"], f"{where}.time"),
        agg=agg,
        column=column,
        where=where_sql,
        window=window,
    )


def _table_and_id(raw: Mapping[str, Any], tables: Mapping[str, Table], default_id: str, where: str) -> dict[str, str]:
    """A feature's table (one of ``tables``) and id column (default: the customers' id)."""
    return {
        "table": _table_ref(raw["table"], tables, f"{where}.table"),
        "id": _column(raw.get("id", default_id), f"{where}.id"),
    }


def check_where(text: str, where: str) -> str:
    """Parse a ``where`` condition (DuckDB SQL): one expression on one row, no queries or aggregates."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        first = str(exc).splitlines()[0]
        raise CardError(f"{where}: {text!r} is not a SQL condition ({first}); fix the expression.") from None
    if not isinstance(tree, exp.Condition) or isinstance(tree, exp.Query):
        raise CardError(f"{where}: {text!r} is not a SQL condition; write e.g. \"event_type = 'login'\".")
    if tree.find(exp.Query, exp.AggFunc, exp.Window):
        raise CardError(
            f"{where}: {text!r} holds a query, an aggregate or a window function; `where` tests one event "
            "(one row) at a time, e.g. \"event_type = 'login' AND minutes > 0\"."
        )
    return text.strip()


def where_columns(text: str) -> list[str]:
    """The column names a ``where`` condition reads."""
    import sqlglot
    from sqlglot import exp

    tree = sqlglot.parse_one(text, read="duckdb")
    return list(dict.fromkeys(c.name for c in tree.find_all(exp.Column)))


def parse_spec(raw: Any, base: str | Path | None = None) -> SnapshotSpec:
    """Validate a spec given as a mapping (e.g. loaded from YAML). With ``base`` (the spec's folder),
    table paths are resolved against it and must match files; the columns are checked by
    :func:`check_columns` (``load_spec`` does both)."""
    if not isinstance(raw, Mapping):
        raise CardError(f"spec: expected a YAML mapping at the top level, got {type(raw).__name__}.")
    check_keys(raw, SPEC_KEYS, "spec")
    _require(raw, REQUIRED_SPEC_KEYS, "spec")
    version = raw.get("version", 1)
    if version != 1:
        raise CardError(f"version: this release reads snapshot spec version 1, got {version!r}; set `version: 1`.")
    tables = _parse_tables(raw["tables"], None if base is None else Path(base))

    c = _mapping(raw["customers"], "customers", "{table: accounts, id: account_id, start: signup_date}")
    check_keys(c, CUSTOMERS_KEYS, "customers")
    _require(c, ("table", "id"), "customers")
    customers = Customers(
        table=_table_ref(c["table"], tables, "customers.table"),
        id=_column(c["id"], "customers.id"),
        start=None if c.get("start") is None else _column(c["start"], "customers.start"),
    )
    ch = _mapping(raw["churn"], "churn", "{table: churn, id: account_id, date: churn_date}")
    check_keys(ch, CHURN_KEYS, "churn")
    _require(ch, CHURN_KEYS, "churn")
    churn = Churn(
        table=_table_ref(ch["table"], tables, "churn.table"),
        id=_column(ch["id"], "churn.id"),
        date=_column(ch["date"], "churn.date"),
    )

    o = _mapping(raw["observations"], "observations", "{every: 1 month, start: 2023-01-01, end: 2024-12-01}")
    check_keys(o, OBSERVATION_KEYS, "observations")
    _require(o, ("every", "start"), "observations")
    start = _date(o["start"], "observations.start")
    end = None if o.get("end") is None else _date(o["end"], "observations.end")
    if end is not None and end < start:
        raise CardError(f"observations: end {end} is before start {start}; swap them or fix the dates.")
    observations = Observations(every=parse_window(o["every"], "observations.every"), start=start, end=end)

    horizon = raw.get("horizon_days", 90)
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon <= 0:
        raise CardError(f"horizon_days: expected a positive whole number of days, got {horizon!r}.")
    label_end = None if raw.get("label_end") is None else _date(raw["label_end"], "label_end")

    out_raw = raw.get("output") or {}
    out_raw = _mapping(out_raw, "output", "{id: customer_id, date: snapshot_date, label: churned}")
    check_keys(out_raw, OUTPUT_KEYS, "output")
    out_names = {k: out_raw.get(k, DEFAULT_OUTPUT[k]) for k in OUTPUT_KEYS}
    for k, v in out_names.items():
        if not isinstance(v, str) or not _NAME.match(v):
            raise CardError(f"output.{k}: {v!r} must be a column name of letters, digits and underscores.")
    if len(set(out_names.values())) < 3:
        raise CardError(f"output: id, date and label need three different names, got {out_names}.")
    output = Output(**out_names)

    feats_raw = raw["features"]
    if not isinstance(feats_raw, list) or not feats_raw:
        raise CardError(f"features: expected a non-empty list of features, got {feats_raw!r}.")
    features = [_parse_feature(f, i, tables, customers.id) for i, f in enumerate(feats_raw)]
    names = [f.name for f in features]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CardError(f"features: duplicate name(s) {dup}; each feature needs a unique `name`.")
    clash = sorted(set(names) & set(out_names.values()))
    if clash:
        raise CardError(
            f"features: name(s) {clash} are also output columns (output: {out_names}); rename the feature(s)."
        )
    by_name = {f.name: f for f in features}
    for i, f in enumerate(features):
        where = f"features[{i}] ({f.name})"
        if f.kind == "change":
            target = by_name.get(f.change_of)
            if target is None:
                raise CardError(
                    f"{where}.change_of: no feature named {f.change_of!r}; use one of: {allowed_text(names)}."
                )
            if target.kind != "event" or target.window is None or target.agg == "days_since":
                raise CardError(
                    f"{where}.change_of: {f.change_of!r} is not a windowed aggregate (count, sum, mean, min, max, "
                    "last or distinct with a `window`); a change compares a window with the one before it."
                )
        if f.kind == "tenure" and customers.start is None:
            raise CardError(f"{where}: tenure needs the customers' start; add `start:` to `customers:`.")
    return SnapshotSpec(
        tables=tables,
        customers=customers,
        churn=churn,
        observations=observations,
        features=tuple(features),
        horizon_days=horizon,
        label_end=label_end,
        output=output,
        raw=dict(raw),
    )


def load_spec(path: str | Path, *, check_data: bool = True) -> SnapshotSpec:
    """Read and validate a YAML spec file; table paths are relative to it. With ``check_data`` (the
    default) the tables are opened and every column, type and ``where`` is checked."""
    path = Path(path)
    raw = read_yaml(path, "spec", "--spec")
    try:
        spec = parse_spec(raw, base=path.resolve().parent)
        spec = dataclasses.replace(spec, path=path.resolve())
        if check_data:
            spec = check_columns(spec)
    except (CardError, DataError) as exc:
        raise type(exc)(f"{path}: {exc}") from None
    return spec


# ---- reading the tables and checking the spec against them ---------------------------------------
def table_source(
    spec: SnapshotSpec, name: str, *, joined: bool = True, typed: bool = True, sources: Mapping[str, str] | None = None
) -> str:
    """A FROM-able expression for table ``name``: DuckDB's reader over its files (ids read as text,
    byte for byte), or ``sources[name]`` (e.g. a Spark view) when given; with its join applied."""
    table = spec.tables[name]
    if sources is not None and name in sources:
        base = sources[name]
    else:
        files = "[" + ", ".join(literal(str(p)) for p in table.files) + "]"
        union = ", union_by_name = TRUE" if len(table.files) > 1 else ""  # costly: only for several files
        if table.format == "parquet":
            base = f"READ_PARQUET({files}{union})"
        else:
            types = ""
            looked_up = table.join.columns if table.join else ()
            ids = [c for c in spec.id_columns(name) if c not in looked_up] if typed else []
            if ids:
                types = ", types = {" + ", ".join(f"{literal(c)}: 'VARCHAR'" for c in ids) + "}"
            base = f"READ_CSV({files}, header = TRUE{union}{types})"
    if not joined or table.join is None:
        return base
    j = table.join
    cols = ", ".join(f"r.{ident(c)}" for c in j.columns)
    right = table_source(spec, j.table, typed=typed, sources=sources)
    return (
        f"(SELECT l.*, {cols} FROM {base} AS l LEFT JOIN "
        f"(SELECT CAST({ident(j.key)} AS VARCHAR) AS __key, {', '.join(ident(c) for c in j.columns)} "
        f"FROM {right} AS s) AS r ON CAST(l.{ident(j.key)} AS VARCHAR) = r.__key)"
    )


def check_columns(spec: SnapshotSpec, con: Any = None) -> SnapshotSpec:
    """Open every table (headers and types only) and check the spec's columns against them; return
    the spec with its ``schemas`` filled. One :class:`DataError` for the first problem found."""
    if con is None:
        con = connect()
        try:
            return check_columns(spec, con)
        finally:
            con.close()
    schemas: dict[str, dict[str, str]] = {}
    for name, table in spec.tables.items():
        if table.join is None:
            schemas[name] = describe(con, table_source(spec, name, joined=False, typed=False), f"tables.{name}")
    for name, table in spec.tables.items():
        if table.join is None:
            continue
        j = table.join
        own = describe(con, table_source(spec, name, joined=False, typed=False), f"tables.{name}")
        _need(own, [j.key], name, f"tables.{name}.join.key")
        _need(schemas[j.table], [j.key, *j.columns], j.table, f"tables.{name}.join")
        clash = [c for c in j.columns if c in own]
        if clash:
            raise DataError(
                f"tables.{name}.join.columns: {clash} already {'are columns' if len(clash) > 1 else 'is a column'} "
                f"of {name}; look up only columns it lacks."
            )
        schemas[name] = {**own, **{c: schemas[j.table][c] for c in j.columns}}

    c = spec.customers
    _need(schemas[c.table], [c.id], c.table, "customers.id")
    if c.start:
        _need(schemas[c.table], [c.start], c.table, "customers.start")
        _time_type(schemas[c.table][c.start], c.table, c.start, "customers.start")
    _need(schemas[spec.churn.table], [spec.churn.id, spec.churn.date], spec.churn.table, "churn")
    _time_type(schemas[spec.churn.table][spec.churn.date], spec.churn.table, spec.churn.date, "churn.date")
    for i, f in enumerate(spec.features):
        where = f"features[{i}] ({f.name})"
        if f.kind in ("change", "tenure"):
            continue
        cols = schemas[f.table]
        _need(cols, [f.id], f.table, f"{where}.id")
        if f.column:
            _need(cols, [f.column], f.table, f"{where}.column")
        if f.kind == "static":
            continue
        _need(cols, [f.time], f.table, f"{where}.time")
        _time_type(cols[f.time], f.table, f.time, f"{where}.time")
        if f.agg in NUMERIC_AGGS and cols[f.column] not in NUMERIC_TYPES and not cols[f.column].startswith("DECIMAL"):
            raise DataError(
                f"{where}.column: {f.table}.{f.column} holds {cols[f.column]} values, but agg {f.agg} needs "
                "numbers (or true/false); pick a numeric column or use agg: count, distinct or last."
            )
        if f.where:
            missing = [col for col in where_columns(f.where) if col not in cols]
            if missing:
                shown = ", ".join(sorted(cols))
                raise DataError(
                    f"{where}.where: {f.where!r} reads column(s) {missing} that {f.table} does not have "
                    f"(it has: {shown}); fix the condition."
                )
            empty = _empty_table(con, f.table, cols)
            kind = describe(con, f"(SELECT ({f.where}) AS m FROM {empty} AS src)", f"{where}.where")
            if kind.get("m") != "BOOLEAN":
                raise DataError(
                    f"{where}.where: {f.where!r} gives {kind.get('m')} values, not true/false; write a condition "
                    "such as \"event_type = 'login'\"."
                )
    by_name = {f.name: f for f in spec.features}
    for i, f in enumerate(spec.features):
        if f.kind == "change":
            target = by_name[f.change_of]
            if target.agg in ("min", "max", "last"):
                ctype = schemas[target.table][target.column]
                if ctype not in NUMERIC_TYPES and not ctype.startswith("DECIMAL"):
                    raise DataError(
                        f"features[{i}] ({f.name}).change_of: {target.name!r} is {target.agg} of {ctype} values; "
                        "a relative change needs numbers."
                    )
    return dataclasses.replace(spec, schemas=schemas)


def _empty_table(con: Any, name: str, columns: Mapping[str, str]) -> str:
    """An empty temporary table with these columns and types (to check an expression without reading data)."""
    table = ident(f"__empty_{name}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} ({', '.join(f'{ident(c)} {t}' for c, t in columns.items())})")
    return table


def _need(columns: Mapping[str, str], wanted: Iterable[str | None], table: str, where: str) -> None:
    missing = [c for c in wanted if c is not None and c not in columns]
    if missing:
        available = sorted(columns)
        shown = ", ".join(map(repr, available[:40])) + (" ..." if len(available) > 40 else "")
        raise DataError(
            f"{where}: table {table!r} has no column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))}. Its columns: {shown}. Fix the column name in the spec."
        )


def _time_type(kind: str, table: str, column: str, where: str) -> None:
    if kind in TIME_TYPES or kind == "VARCHAR" or kind.startswith("TIMESTAMP"):
        return  # text is cast to a timestamp when read (an unreadable value is reported then)
    raise DataError(
        f"{where}: {table}.{column} holds {kind} values, not dates or times; point it at a date or "
        "timestamp column (ISO 8601 text such as 2024-01-31 or 2024-01-31 09:30:00 works too)."
    )
