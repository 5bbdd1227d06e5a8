"""SQL atoms: quoting that cannot be broken out of, whole days and months as the rules define them,
one rendering for every engine."""

from __future__ import annotations

import datetime as dt

import pytest

from ml.data.sql import connect, date_lit, ident, literal, render, ts_lit, whole_days, whole_months


@pytest.mark.parametrize("name", ["plain", 'we"ird', "it's", "a b", "é"])
def test_identifiers_and_literals_round_trip(name):
    con = connect()
    try:
        row = con.execute(f"SELECT {literal(name)} AS {ident(name)}").fetchone()
        cols = [d[0] for d in con.description]
    finally:
        con.close()
    assert row == (name,) and cols == [name]


@pytest.mark.parametrize(
    ("later", "earlier", "days", "months"),
    [
        ("2023-02-01 00:00:00", "2023-01-31 23:00:00", 0, 0),  # one hour: 0 whole days
        ("2023-02-01 00:00:00", "2023-01-31 00:00:00", 1, 0),
        ("2023-02-28 00:00:00", "2023-01-31 00:00:00", 28, 1),  # 01-31 + 1 month = 02-28
        ("2023-02-27 00:00:00", "2023-01-31 00:00:00", 27, 0),
        ("2023-03-15 00:00:00", "2023-01-15 10:00:00", 58, 1),  # 03-15 10:00 is after 03-15 00:00
        ("2024-03-01 00:00:00", "2023-03-01 00:00:00", 366, 12),  # leap year
    ],
)
def test_whole_days_and_months(later, earlier, days, months):
    a, b = f"TIMESTAMP '{later}'", f"TIMESTAMP '{earlier}'"
    sql = render(f"SELECT {whole_days(a, b)}, {whole_months(a, b)}")
    con = connect()
    try:
        assert con.execute(sql).fetchone() == (days, months)
    finally:
        con.close()


def test_render_for_spark():
    sql = f"SELECT DATE_ADD({date_lit(dt.date(2023, 1, 31))}, -3), ADD_MONTHS({ts_lit(dt.date(2023, 1, 31))}, 1)"
    spark = render(sql, "spark")
    assert "DATE_ADD(CAST('2023-01-31' AS DATE), -3)" in spark and "ADD_MONTHS(" in spark
    con = connect()
    try:
        got = con.execute(render(sql)).fetchone()
    finally:
        con.close()
    assert [v.date() if isinstance(v, dt.datetime) else v for v in got] == [dt.date(2023, 1, 28), dt.date(2023, 2, 28)]
