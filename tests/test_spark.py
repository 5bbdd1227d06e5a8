"""Scoring on Spark (``ml.spark``) gives the pandas engine's numbers: every column of ``predict`` on
generated data split over several partitions, the CLI's ``--engine spark``, the model from the MLflow
registry, executor errors coming back as the package's errors, and the Java check.

One local Spark session (``local[2]``, 1 GB driver, no UI; the ``spark`` fixture in conftest.py) serves
the whole run; the tests are skipped, with the reason, when PySpark or Java 17 is missing.
"""

from __future__ import annotations

import os
import stat
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ml.card import parse_card
from ml.cli.app import app
from ml.data.generate import generate_snapshots
from ml.data.raw import generate_raw, write_raw
from ml.data.snapshots import build_snapshots
from ml.errors import DataError, HealthScoreWarning
from ml.pipeline import train
from ml.serving.bundle import load_model

pytest.importorskip("pyspark", reason="PySpark is not installed: pip install 'healthscore[spark]'")

from ml import spark as hs_spark

pytestmark = pytest.mark.slow  # a Spark session (JVM start ~10-30 s on this machine): `make test-fast` skips these

REPO = Path(__file__).resolve().parents[1]
KEYS = ["customer_id", "snapshot_date"]
FLOATS = ["health_score", "churn_probability", "manual_score", "manual_churn_probability", "value", "value_at_risk"]
TEXTS = ["band", "manual_band", "driver_1", "driver_2", "driver_3"]


@pytest.fixture(scope="module")
def model_dir(default_card_raw, tmp_path_factory):
    """The default card (a percentile indicator, gaps in CSAT) trained on 9,000 generated snapshots."""
    raw = default_card_raw()
    raw["model"]["n_refits"] = 0
    frame = generate_snapshots(1500, 6, seed=5).frame
    # the data's own warnings (a direction the audit contradicts on this small sample) are not what
    # these tests check: they compare the engines on whatever model comes out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthScoreWarning)
        return train(parse_card(raw), frame, tmp_path_factory.mktemp("spark") / "model", plots=False).model_dir


@pytest.fixture(scope="module")
def new_data(tmp_path_factory):
    """Snapshots the model never saw, as a Parquet file (without the label, as at scoring time)."""
    frame = generate_snapshots(700, 4, seed=11).frame.drop(columns=["churned"])
    path = tmp_path_factory.mktemp("spark-data") / "new.parquet"
    frame.to_parquet(path, index=False)
    return path


def _invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEYS, kind="stable").reset_index(drop=True)


def assert_same_predictions(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Spark's result equals the pandas engine's: same columns in the same order, same rows, health
    and probabilities to 1e-9, the same text (bands, drivers), missing where the pandas engine is."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    got, want = _sorted(got), _sorted(want)
    assert got["customer_id"].astype(str).tolist() == want["customer_id"].astype(str).tolist()
    assert (pd.to_datetime(got["snapshot_date"]) == pd.to_datetime(want["snapshot_date"])).all()
    for col in [c for c in FLOATS if c in want]:
        a, b = got[col].to_numpy(float), want[col].to_numpy(float)
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=col)
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9, err_msg=col)
    for col in [c for c in TEXTS if c in want]:
        a = got[col].astype(object).where(got[col].notna(), None).tolist()
        b = want[col].astype(object).where(want[col].notna(), None).tolist()
        assert a == b, col


# ---- the numbers ---------------------------------------------------------------------------------
def test_spark_predict_equals_pandas_predict_on_several_partitions(spark, model_dir, new_data):
    frame = spark.read.parquet(str(new_data)).repartition(4, "customer_id")
    assert frame.rdd.getNumPartitions() == 4
    sizes = frame.rdd.glom().map(len).collect()
    assert len([s for s in sizes if s]) >= 3, sizes  # the rows really are scored in separate batches
    got = hs_spark.predict(frame, str(model_dir)).toPandas()
    want = load_model(model_dir).predict(pd.read_parquet(new_data))
    assert_same_predictions(got, want)
    # the card's percentile indicator ranks against the reference stored with the model, so a
    # partition's scores do not depend on which other rows share its batch: the scores of one
    # partition alone equal those of the whole table
    assert got["manual_score"].notna().all() and got["band"].nunique() >= 2
    assert (got["driver_1"] != "").any()


def test_output_schema_keeps_the_input_types(spark, model_dir, new_data):
    from pyspark.sql.types import DoubleType, StringType, TimestampNTZType, TimestampType

    scored = hs_spark.predict(spark.read.parquet(str(new_data)), str(model_dir), drivers=1)
    types = {f.name: f.dataType for f in scored.schema.fields}
    assert list(types) == [*KEYS, "health_score", "band", "churn_probability", "manual_score", "manual_band"] + [
        "manual_churn_probability",
        "value",  # the default card's value_column (arr) is in the data
        "value_at_risk",
        "driver_1",
    ]
    assert isinstance(types["customer_id"], StringType)
    assert isinstance(types["snapshot_date"], TimestampNTZType | TimestampType)
    assert all(isinstance(types[c], DoubleType) for c in FLOATS)


@pytest.fixture(scope="module")
def unseen_data(new_data, tmp_path_factory):
    """``new_data`` with a plan the model never saw in every 50th row."""
    pdf = pd.read_parquet(new_data)
    pdf.loc[pdf.index[::50], "plan"] = "platinum"
    path = tmp_path_factory.mktemp("spark-unseen") / "unseen.parquet"
    pdf.to_parquet(path, index=False)
    return path


def test_no_drivers_and_unseen_categories_as_missing(spark, model_dir, unseen_data):
    frame = spark.read.parquet(str(unseen_data)).repartition(3)
    got = hs_spark.predict(frame, str(model_dir), drivers=0, unseen="missing").toPandas()
    with pytest.warns(HealthScoreWarning, match="platinum"):
        want = load_model(model_dir).predict(pd.read_parquet(unseen_data), drivers=0, unseen="missing")
    assert "driver_1" not in got.columns
    assert_same_predictions(got, want)


def test_model_from_the_registry(spark, model_dir, new_data, tmp_path, monkeypatch):
    """``models:/name@alias``: resolved on the driver, scored like the directory."""
    from ml.serving.tracking import CHALLENGER, mlflow_module

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the downloaded copy stays in tmp_path
    mlflow = mlflow_module()
    mlflow.set_experiment("spark-test")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(model_dir), artifact_path="model")
    mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", "health-score")
    mlflow.MlflowClient().set_registered_model_alias("health-score", CHALLENGER, mv.version)
    frame = spark.read.parquet(str(new_data)).limit(300)
    got = hs_spark.predict(frame, "models:/health-score@challenger").toPandas()
    want = load_model(model_dir).predict(frame.toPandas())
    assert_same_predictions(got, want)


# ---- bad input ------------------------------------------------------------------------------------
def test_missing_columns_are_reported_before_any_job(spark, model_dir, new_data):
    frame = spark.read.parquet(str(new_data)).drop("csat", "plan")
    with pytest.raises(DataError, match=r"missing column\(s\) \['csat', 'plan'\]"):
        hs_spark.predict(frame, str(model_dir))
    with pytest.raises(DataError, match="missing the id column 'customer_id'"):
        hs_spark.predict(spark.read.parquet(str(new_data)).drop("customer_id"), str(model_dir))
    with pytest.raises(DataError, match=r"missing column 'snapshot_date' \(needed by date_column\)"):
        hs_spark.predict(spark.read.parquet(str(new_data)).drop("snapshot_date"), str(model_dir))


def test_an_executor_error_comes_back_as_the_same_error(spark, model_dir, unseen_data, tmp_path):
    """``--strict``: the category check runs on the executors and fails there; the CLI prints the
    pandas engine's message, word for word, as one line."""
    with pytest.raises(DataError, match=r"column 'plan' has categories unseen in training: \['platinum'\]") as want:
        load_model(model_dir).predict(pd.read_parquet(unseen_data))
    out = tmp_path / "out.parquet"
    result = _invoke("predict", "--engine", "spark", "--strict", "-m", model_dir, "-d", unseen_data, "-o", out)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"error: {' '.join(str(want.value).split())}"
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing half-written


# ---- the command line -----------------------------------------------------------------------------
def test_cli_predict_engine_spark_writes_parquet(spark, model_dir, new_data, tmp_path):
    out = tmp_path / "pred.parquet"
    result = _invoke("predict", "--engine", "spark", "--master", "local[2]", "-m", model_dir, "-d", new_data, "-o", out)
    assert result.exit_code == 0, result.output
    assert out.is_dir() and any(out.glob("part-*.parquet"))
    got = pd.read_parquet(out)
    want = load_model(model_dir).predict(pd.read_parquet(new_data))
    assert_same_predictions(got, want)
    assert f"predicted {len(want):,} rows -> {out}" in result.stdout
    assert "Band summary (model)" in result.stdout
    # a second run replaces the previous output (and only it)
    again = _invoke("predict", "--engine", "spark", "-m", model_dir, "-d", new_data, "-o", out, "--drivers", 0)
    assert again.exit_code == 0, again.output
    assert "driver_1" not in pd.read_parquet(out).columns


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--engine", "spark", "-o", "{tmp}/p.csv"], "the Spark engine writes Parquet"),
        (["--engine", "pandas", "--master", "local[2]", "-o", "{tmp}/p.csv"], "--master applies to --engine spark"),
        (["--engine", "dask", "-o", "{tmp}/p.parquet"], "--engine must be pandas or spark; got 'dask'"),
        (["--engine", "spark", "-o", "{tmp}/existing"], "is a directory that holds other files"),
    ],
)
def test_cli_predict_engine_spark_bad_options(spark, model_dir, new_data, tmp_path, args, match):
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "notes.txt").write_text("keep me")
    result = _invoke("predict", "-m", model_dir, "-d", new_data, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code != 0
    assert result.stderr.startswith("error: ") and match in result.stderr, result.output
    assert "Traceback" not in result.output
    assert (tmp_path / "existing" / "notes.txt").read_text() == "keep me"


def test_cli_reads_only_parquet(spark, model_dir, tmp_path):
    data = tmp_path / "new.csv"
    generate_snapshots(20, 2, seed=1).frame.to_csv(data, index=False)
    result = _invoke("predict", "--engine", "spark", "-m", model_dir, "-d", data, "-o", tmp_path / "p.parquet")
    assert result.exit_code == 1
    assert "the Spark engine reads Parquet" in result.stderr


# ---- Java ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("banner", "major"),
    [
        ('openjdk version "1.8.0_392"', 8),
        ('openjdk version "11.0.21" 2023-10-17', 11),
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "21" 2023-09-19 LTS', 21),
        ("no version here", None),
    ],
)
def test_java_version_is_read_from_java_home(tmp_path, monkeypatch, banner, major):
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text(f"#!/bin/sh\necho '{banner}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    assert hs_spark.java_version() == (major, str(java))


@pytest.mark.parametrize(
    ("setup", "match"),
    [
        ("none", r"Spark needs Java 17 or newer and none was found"),
        ("java11", r"Spark needs Java 17 or newer; .*java is Java 11"),
    ],
)
def test_check_java_says_how_to_install_it(tmp_path, monkeypatch, setup, match):
    if setup == "java11":
        java = tmp_path / "bin" / "java"
        java.parent.mkdir()
        java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\"' >&2\n")
        java.chmod(java.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    monkeypatch.setenv("PATH", os.defpath)
    with pytest.raises(hs_spark.EngineError, match=match) as info:
        hs_spark.check_java()
    assert "apt-get install openjdk-17-jre-headless" in str(info.value)


# ---- snapshots ---------------------------------------------------------------------------------------
def assert_same_table(spark_out, duckdb_out) -> None:
    """The Spark engine's Parquet output holds the DuckDB engine's rows, in the same order, with the
    same column names and types (Spark marks every column nullable; that is the only difference).
    Floating-point sums may differ in the last bits (the engines add in different orders)."""
    import pyarrow.parquet as pq

    got, want = pq.read_table(spark_out), pq.read_table(duckdb_out)
    assert got.column_names == want.column_names
    assert [f.type for f in got.schema] == [f.type for f in want.schema]
    assert got.num_rows == want.num_rows > 0
    for name in want.column_names:
        a, b = got[name].to_pandas(), want[name].to_pandas()
        if pd.api.types.is_float_dtype(b):
            np.testing.assert_array_equal(a.isna(), b.isna(), err_msg=name)
            np.testing.assert_allclose(a.to_numpy(float), b.to_numpy(float), rtol=1e-12, atol=0, err_msg=name)
        else:
            assert a.equals(b), name


def _same_summary(a, b) -> None:
    import dataclasses

    skip = {"seconds", "path"}
    assert {k: v for k, v in dataclasses.asdict(a).items() if k not in skip} == {
        k: v for k, v in dataclasses.asdict(b).items() if k not in skip
    }


@pytest.fixture(scope="module")
def raw_spec(tmp_path_factory):
    """The raw-table generator's tables (CSV and Parquet) with its demo spec."""
    return write_raw(generate_raw(150, 6, seed=4), tmp_path_factory.mktemp("raw"))


def test_cli_snapshots_engine_spark_equals_duckdb_on_generated_raw_tables(spark, raw_spec, tmp_path):
    duck = build_snapshots(raw_spec, tmp_path / "duckdb.parquet")
    out = tmp_path / "spark.parquet"
    result = _invoke("snapshots", "--engine", "spark", "--master", "local[2]", "--spec", raw_spec, "--out", out)
    assert result.exit_code == 0, result.output
    assert out.is_dir()
    assert_same_table(out, tmp_path / "duckdb.parquet")
    assert f"{duck.summary.rows:,}" in result.stdout


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--master", "local[2]", "--out", "{tmp}/s.parquet"], "--master applies to --engine spark"),
        (["--engine", "spark", "--out", "{tmp}/s.csv"], "the Spark engine writes Parquet"),
        (["--engine", "dask", "--out", "{tmp}/s.parquet"], "--engine must be duckdb or spark; got 'dask'"),
    ],
)
def test_cli_snapshots_bad_options(raw_spec, tmp_path, args, match):
    result = _invoke("snapshots", "--spec", raw_spec, *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("error: ") and match in result.stderr, result.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_spark_snapshots_equal_duckdb_on_ravenstack(spark, tmp_path):
    spec = REPO / "configs" / "snapshots" / "ravenstack.yaml"  # CSV tables, usage joined to accounts
    duck = build_snapshots(spec, tmp_path / "duckdb.parquet")
    before = {k: spark.conf.get(k) for k in hs_spark.SNAPSHOT_CONF}
    got = hs_spark.build_snapshots(spec, tmp_path / "spark.parquet", spark=spark)
    assert {k: spark.conf.get(k) for k in hs_spark.SNAPSHOT_CONF} == before  # the session's settings restored
    assert not [t for t in spark.catalog.listTables() if t.name.startswith("healthscore_")]  # no view left
    assert_same_table(tmp_path / "spark.parquet", tmp_path / "duckdb.parquet")
    _same_summary(got.summary, duck.summary)
    assert duck.summary.rows == 3073 and duck.summary.churners > 0
    # the Spark SQL is the DuckDB engine's query, rendered by sqlglot: no DuckDB-only function left
    assert "EPOCH(" not in got.sql.upper() and "STRUCT_EXTRACT" not in got.sql.upper()


def test_whole_days_agree_to_the_microsecond(spark):
    """``days_since`` and ``tenure_days`` count whole days; an event half a second before a day
    boundary must not gain a day on Spark (``EPOCH`` became whole-second ``UNIX_TIMESTAMP`` there)."""
    import duckdb

    from ml.data.sql import render, whole_days

    pairs = [
        ("2024-01-01 00:00:00.5", "2024-01-02 00:00:00.25"),  # 23:59:59.75 apart: 0 days
        ("2023-12-31 23:59:59.999999", "2024-01-02 00:00:00"),  # 1 day and 1 microsecond: 1
        ("2024-01-01 00:00:00", "2024-01-31 00:00:00"),  # exactly 30 days: 30
        ("2024-01-02 00:00:01", "2024-01-01 00:00:00"),  # backwards: floor(-1.00001) = -2
    ]
    rows = " UNION ALL ".join(
        f"SELECT TIMESTAMP '{a}' AS a, TIMESTAMP '{b}' AS b, {i} AS i" for i, (a, b) in enumerate(pairs)
    )
    sql = f"SELECT i, {whole_days('b', 'a')} AS d FROM ({rows}) AS t ORDER BY i"
    want = [d for _, d in duckdb.sql(sql).fetchall()]
    got = [r["d"] for r in spark.sql(render(sql, "spark")).collect()]
    assert want == [0, 1, 30, -2]
    assert got == want


@pytest.mark.parametrize(
    ("duckdb_type", "spark_type"),
    [
        ("VARCHAR", "STRING"),
        ("BIGINT", "BIGINT"),
        ("INTEGER", "INT"),
        ("DOUBLE", "DOUBLE"),
        ("BOOLEAN", "BOOLEAN"),
        ("DATE", "DATE"),
        ("TIMESTAMP", "TIMESTAMP_NTZ"),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP"),
        ("DECIMAL(18, 3)", "DECIMAL(18,3)"),
    ],
)
def test_duckdb_types_map_to_spark_types(duckdb_type, spark_type):
    assert hs_spark.spark_type(duckdb_type, "tables.t: column 'c'") == spark_type


@pytest.mark.parametrize("duckdb_type", ["INTEGER[]", "STRUCT(a INTEGER)", "MAP(VARCHAR, INTEGER)", "BLOB"])
def test_unmapped_duckdb_types_are_one_clear_error(duckdb_type):
    with pytest.raises(DataError, match=r"tables\.t: column 'c': DuckDB reads it as .* which the Spark engine"):
        hs_spark.spark_type(duckdb_type, "tables.t: column 'c'")
