"""SQL atoms shared by the spec checks and the snapshot builder, and the embedded DuckDB connection.

Queries are written in DuckDB's dialect as sqlglot reads it and rendered for each engine by
:func:`render` (sqlglot), so one definition serves DuckDB here and Spark SQL past one machine.
Identifiers are always quoted and values are always literals escaped here; the only user SQL is a
feature's ``where`` condition.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

from ml.errors import DataError

SECONDS_PER_DAY = 86400


def ident(name: str) -> str:
    """A quoted identifier: any name, embedded quotes escaped."""
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A SQL string literal, embedded quotes escaped."""
    return "'" + value.replace("'", "''") + "'"


def date_lit(d: dt.date) -> str:
    return f"DATE {literal(d.isoformat())}"


def ts_lit(d: dt.date) -> str:
    return f"TIMESTAMP {literal(dt.datetime.combine(d, dt.time()).isoformat(sep=' '))}"


def as_ts(expr: str) -> str:
    """A date or timestamp (or ISO text) as a timestamp: a date is its midnight."""
    return f"CAST({expr} AS TIMESTAMP)"


def whole_days(later: str, earlier: str) -> str:
    """Whole days from ``earlier`` to ``later`` (timestamps): the floor of the elapsed time in days.

    Counted in microseconds: sqlglot renders DuckDB's ``EPOCH`` (seconds with their fraction) as Spark's
    ``UNIX_TIMESTAMP`` (whole seconds), which put an event at 23:59:59.5 a day further back on Spark."""
    return f"CAST(FLOOR(DATE_DIFF('microsecond', {earlier}, {later}) / {SECONDS_PER_DAY * 1_000_000}) AS BIGINT)"


def whole_months(later: str, earlier: str) -> str:
    """Whole calendar months from ``earlier`` to ``later``: the largest m with earlier + m months <= later."""
    m0 = f"((YEAR({later}) - YEAR({earlier})) * 12 + MONTH({later}) - MONTH({earlier}))"
    return f"({m0} - CASE WHEN ADD_MONTHS({earlier}, {m0}) > {later} THEN 1 ELSE 0 END)"


def render(sql: str, dialect: str = "duckdb") -> str:
    """``sql`` (DuckDB dialect) parsed by sqlglot and written for ``dialect``."""
    import sqlglot

    return sqlglot.transpile(sql, read="duckdb", write=dialect)[0]


_DATABASES: dict[int | None, Any] = {}


def connect(threads: int | None = None) -> Any:
    """A connection to an in-memory DuckDB database that never downloads extensions.

    Opening a database costs ~0.1 s, a connection to it ~0.1 ms: the database is opened once per
    process (per thread count) and each caller gets its own connection (temp tables are its own);
    close it when done."""
    import duckdb

    if threads not in _DATABASES:
        config: dict[str, Any] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}
        if threads:
            config["threads"] = threads
        _DATABASES[threads] = duckdb.connect(":memory:", config=config)
    return _DATABASES[threads].cursor()


def first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split("\n")[0].split())


def describe(con: Any, source: str, where: str) -> dict[str, str]:
    """Column name -> DuckDB type of a FROM-able expression, or one :class:`DataError` naming ``where``."""
    import duckdb

    try:
        rows = con.execute(f"DESCRIBE SELECT * FROM {source} AS src").fetchall()
    except duckdb.Error as exc:
        raise DataError(f"{where}: could not read the table ({first_line(exc)}); check the file.") from None
    return {r[0]: r[1] for r in rows}


@contextlib.contextmanager
def duckdb_errors(doing: str) -> Iterator[None]:
    """DuckDB's errors on the data (a bad date in a CSV ...) as one :class:`DataError`."""
    import duckdb

    try:
        yield
    except duckdb.Error as exc:
        raise DataError(
            f"{doing}: DuckDB could not read the data ({first_line(exc)}); fix the value in the table "
            "or the column named in the spec."
        ) from None
