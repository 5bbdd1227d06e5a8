"""Scoring past one machine: the same model directory run on Apache Spark (``pip install 'healthscore[spark]'``).

``predict(spark_df, model_uri)`` returns a Spark DataFrame with every column of ``healthscore
predict`` (id, date, ``health_score``, ``band``, ``churn_probability``, ``manual_score``,
``manual_band``, ``manual_churn_probability``, ``driver_1..k``), computed by the very code the pandas
engine runs (:meth:`ml.model.booster.HealthModel.predict`), one Arrow batch at a time on the executors.

Why ``mapInPandas`` over the model rather than ``mlflow.pyfunc.spark_udf``:

* **Whole rows in, whole rows out.** ``predict`` returns the id and date beside the scores. A UDF
  returns one (struct) column computed from the columns passed to it; the keys would have to go in
  as arguments and come back in the struct, then be unpacked. ``mapInPandas`` hands each task its
  rows as pandas frames and takes frames back under one declared schema: no struct juggling, no
  per-column argument list to keep in step with the model's features.
* **The same numbers and types as the pandas engine.** ``spark_udf`` goes through the pyfunc wrapper,
  which turns dates into strings for JSON serving; here the executors call ``HealthModel.predict``
  itself, so a Spark date stays a date and every number is bit-for-bit the pandas engine's.
* **Nothing but this package on the executors.** ``spark_udf`` loads the model with MLflow on every
  executor (MLflow installed there, the model archive unpacked per worker). Here the driver resolves
  the model (a directory, or ``models:/name@alias`` from the registry, where the tracking credentials
  live), verifies it, and ships the two files scoring needs (``model.txt``, ``model.json``, a few
  hundred kB, checked against the directory's manifest again on arrival) inside the task; each Python
  worker loads it once and keeps it for the following tasks.

Why per-batch scoring gives whole-table numbers: nothing in a prediction depends on the other rows
being scored. The booster and calibrators are fixed; ``percentile`` card indicators rank against the
reference population stored with the model (not the batch); quantile band cuts and the drivers'
"portfolio median" are stored too. ``tests/test_spark.py`` checks this on several partitions.

Errors raised on an executor (a new category, text in a numeric column) come back to the driver as
the same :class:`~ml.errors.HealthScoreError` subclass with the same message. Warnings raised on
executors (e.g. unknown categories for the manual card) stay in the executors' logs.

Spark needs Java 17 or newer; :func:`session` checks for it first and says how to install it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from ml.data.io import replace_directory
from ml.errors import CardError, DataError, HealthScoreError, ModelError
from ml.model import SCORE_COLUMNS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from ml.card import Card
    from ml.model.booster import HealthModel

MIN_JAVA = 17
JAVA_INSTALL_HINT = (
    "Install Java 17 (Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; macOS: `brew install openjdk@17`) "
    "or point JAVA_HOME at a Java 17+ installation."
)
SCORING_FILES = ("model.txt", "model.json")  # what load_model reads; the rest of the directory stays on the driver
_ERRORS = {cls.__name__: cls for cls in (CardError, DataError, ModelError, HealthScoreError)}


class EngineError(HealthScoreError):
    """The Spark engine cannot start: PySpark or Java missing, or a job failed for a reason outside the data."""


# ---- set-up --------------------------------------------------------------------------------------
def java_version() -> tuple[int | None, str]:
    """(major version or None, the java executable) of the Java that PySpark will start."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        return None, java or "java"
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None, java
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not m:
        return None, java
    major = int(m.group(1))
    return (int(m.group(2) or 0) if major == 1 else major), java  # "1.8.0_392" is Java 8


def java_problem() -> str | None:
    """Why Spark cannot start here (no Java, or one older than 17), with the install command; None if fine."""
    major, java = java_version()
    if major is None:
        return f"Spark needs Java {MIN_JAVA} or newer and none was found ({java}). {JAVA_INSTALL_HINT}"
    if major < MIN_JAVA:
        return f"Spark needs Java {MIN_JAVA} or newer; {java} is Java {major}. {JAVA_INSTALL_HINT}"
    return None


def check_java() -> None:
    """Raise :class:`EngineError` with the install command unless Java 17+ is available."""
    problem = java_problem()
    if problem:
        raise EngineError(problem)


def _pyspark():
    try:
        import pyspark
    except ImportError:
        raise EngineError(
            "the Spark engine needs PySpark: pip install 'healthscore[spark]' (or `make venv`, which installs it)."
        ) from None
    return pyspark


def session(master: str | None = None, *, app_name: str = "healthscore", conf: dict[str, str] | None = None):
    """A SparkSession: the running one when there is one on ``master`` (or ``master`` is None: under
    spark-submit or in a notebook on a cluster), else a new one on ``master`` (any Spark master URL;
    default ``local[*]``).

    A new local session is bound to 127.0.0.1 (nothing listens on the network) and its Python
    workers run this interpreter (``PYSPARK_PYTHON``), so they see the same packages as the driver."""
    _pyspark()
    import warnings

    from pyspark.sql import SparkSession

    # PySpark 4 warns that pandas 3 is "not fully supported"; the columns this package exchanges with
    # Spark are checked against the pandas engine by tests/test_spark.py
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    running = SparkSession.getActiveSession()
    if running is not None and (master is None or running.conf.get("spark.master", None) == master):
        for key, value in (conf or {}).items():
            try:  # runtime (SQL) settings apply to a running session; static ones only to a new one
                running.conf.set(key, value)
            except Exception:  # a static setting of a session already started
                pass
        return running
    check_java()
    # spark-submit starts the JVM (and sets its master) before this process: leave its network alone
    submitted = master is None and "PYSPARK_GATEWAY_PORT" in os.environ
    local = not submitted and (master is None or master.startswith("local"))
    if local:  # workers on this machine run this interpreter; a cluster's come from its own set-up
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    if local:
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
    builder = builder.config("spark.sql.execution.arrow.pyspark.enabled", "true")
    for key, value in (conf or {}).items():
        builder = builder.config(key, value)
    try:
        spark = builder.getOrCreate()
    except Exception as exc:
        raise EngineError(
            f"could not start Spark on {master or 'local[*]'} ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})."
        ) from None
    try:
        spark.sparkContext.setLogLevel("ERROR")
    except Exception:  # Spark Connect has no SparkContext
        pass
    return spark


# ---- the model on the executors -------------------------------------------------------------------
def model_directory(model_uri: str | os.PathLike) -> Path:
    """A local model directory for ``model_uri``: the directory itself, or a download of
    ``models:/<name>@<alias>`` (``models:/<name>/<version>``) from the MLflow registry."""
    uri = str(model_uri)
    if uri.startswith("models:/"):
        from ml.serving.tracking import download_model

        return download_model(uri)
    return Path(uri)


def model_payload(model_dir: str | os.PathLike) -> dict[str, bytes]:
    """The files scoring needs, verified, with a manifest listing just them (so the copy on each
    executor is checked against the original checksums again)."""
    from ml.serving.bundle import MANIFEST, verify

    model_dir = Path(model_dir)
    manifest = verify(model_dir)
    files = {name: (model_dir / name).read_bytes() for name in SCORING_FILES}
    subset = {"format_version": manifest["format_version"], "files": {n: manifest["files"][n] for n in SCORING_FILES}}
    files[MANIFEST] = json.dumps(subset).encode()
    return files


_WORKER_MODELS: dict[str, HealthModel] = {}  # per Python worker process, reused across tasks


def worker_model(payload: dict[str, bytes]) -> HealthModel:
    """The model in ``payload``, loaded once per process (by content digest)."""
    digest = hashlib.sha256(b"".join(payload[k] for k in sorted(payload))).hexdigest()
    model = _WORKER_MODELS.get(digest)
    if model is None:
        from ml.serving.bundle import load_model

        tmp = Path(tempfile.mkdtemp(prefix="healthscore-spark-model-"))
        try:
            for name, content in payload.items():
                (tmp / name).write_bytes(content)
            model = load_model(tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        _WORKER_MODELS[digest] = model
    return model


def to_plain(table: pd.DataFrame) -> pd.DataFrame:
    """Category columns as plain text (Arrow maps them to Spark strings); everything else unchanged."""
    out = table.copy()
    for col in out.columns:
        if isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out


def score_batches(
    batches: Iterator[pd.DataFrame], payload: dict[str, bytes], drivers: int, unseen: str = "error"
) -> Iterator[pd.DataFrame]:
    """The ``mapInPandas`` function: each Arrow batch of a partition through ``HealthModel.predict``."""
    model = worker_model(payload)
    for frame in batches:
        if len(frame):
            yield to_plain(model.predict(frame, drivers=drivers, unseen=unseen))


def output_schema(input_schema, card: Card, drivers: int):
    """The Spark schema of ``predict``'s result: the id (and date) typed as in the input, then the scores,
    ``value`` and ``value_at_risk`` when the card has a value column the data holds, and the drivers."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    types = {"double": DoubleType(), "string": StringType()}
    by_name = {f.name: f for f in input_schema.fields}
    keys = [card.id_column] + ([card.date_column] if card.date_column and card.date_column in by_name else [])
    fields = [StructField(k, by_name[k].dataType, True) for k in keys]
    fields += [StructField(c, types["string" if c.endswith("band") else "double"], True) for c in SCORE_COLUMNS]
    if card.value_column and card.value_column in by_name:  # as the pandas engine: only when the data has it
        fields += [StructField("value", DoubleType(), True), StructField("value_at_risk", DoubleType(), True)]
    fields += [StructField(f"driver_{j + 1}", StringType(), True) for j in range(drivers)]
    return StructType(fields)


def predict(spark_df: DataFrame, model_uri: str | os.PathLike, *, drivers: int = 3, unseen: str = "error") -> DataFrame:
    """Score ``spark_df`` with the model at ``model_uri`` (a directory or ``models:/name@alias``).

    Returns a lazy Spark DataFrame with the columns of ``healthscore predict``, one row per input
    row, in the input's partitioning and order. The schema is checked on the driver first (missing
    columns are one :class:`~ml.errors.DataError`, as with the pandas engine). ``unseen`` as in
    :meth:`~ml.model.booster.HealthModel.predict`: ``"error"`` refuses a category unseen in training,
    ``"missing"`` scores it as missing (the warning stays in the executor's log)."""
    return _predict(spark_df, model_directory(model_uri), drivers, unseen)[0]


def _predict(spark_df: DataFrame, model_dir: Path, drivers: int, unseen: str) -> tuple[DataFrame, Card]:
    from ml.serving.bundle import load_model

    if not 0 <= int(drivers) <= 10:
        raise DataError(f"drivers must be between 0 and 10; got {drivers}.")
    model = load_model(model_dir)
    card = model.card
    columns = list(spark_df.columns)
    if card.id_column not in columns:
        raise DataError(f"data is missing the id column {card.id_column!r}; add it (the card's id_column).")
    # every missing column at once, in the pandas engine's words and order
    model.schema_.check(pd.DataFrame(columns=columns))
    card.check_columns(columns)
    schema = output_schema(spark_df.schema, card, int(drivers))
    if unseen not in ("error", "missing"):
        raise DataError(f"unseen must be 'error' or 'missing'; got {unseen!r}.")
    func = functools.partial(score_batches, payload=model_payload(model_dir), drivers=int(drivers), unseen=unseen)
    return spark_df.mapInPandas(func, schema), card


def raise_from_spark(exc: BaseException) -> None:
    """Re-raise a Spark job failure: an error of this package raised on an executor comes back as
    itself (same class, same message); anything else as :class:`EngineError`."""
    text = str(exc)
    found = re.findall(r"ml\.errors\.(\w+): (.+)", text)
    if found:
        name, message = found[-1]
        raise _ERRORS.get(name, HealthScoreError)(message.strip()) from None
    first = next((line for line in text.splitlines() if line.strip()), type(exc).__name__)
    raise EngineError(f"the Spark job failed: {first.strip()[:400]}") from None


@contextlib.contextmanager
def spark_failures() -> Iterator[None]:
    """Inside: this package's own errors pass as they are, and a Spark failure is re-raised by
    :func:`raise_from_spark` (our error from an executor as itself, anything else as an EngineError)."""
    try:
        yield
    except HealthScoreError:
        raise
    except Exception as exc:
        if is_spark_failure(exc):
            raise_from_spark(exc)
        raise


def is_spark_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is an error reported by Spark (a failed job or query), not one of ours."""
    try:
        from pyspark.errors import PySparkException
    except ImportError:  # pragma: no cover - PySpark absent
        return False
    py4j = type(exc).__module__.startswith("py4j")
    return isinstance(exc, PySparkException) or py4j


# ---- files in and out ------------------------------------------------------------------------------
def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> Path:
    return Path(path[len("file://") :] if path.startswith("file://") else path)


def read_parquet(spark: SparkSession, path: str | os.PathLike) -> DataFrame:
    """A Parquet file or a directory of Parquet files (local or any URI Spark can read)."""
    path = str(path)
    if _is_local(path):
        p = _local(path)
        if not p.exists():
            raise DataError(f"{p}: file not found; check the --data path.")
        if p.is_file() and p.suffix.lower() not in (".parquet", ".pq"):
            raise DataError(
                f"{p}: the Spark engine reads Parquet (a .parquet file or a directory of them); "
                f"convert the table first (e.g. pandas: pd.read_csv(...).to_parquet('{p.stem}.parquet'))."
            )
    try:
        return spark.read.parquet(path)
    except Exception as exc:
        if is_spark_failure(exc):
            raise DataError(f"{path}: could not read Parquet ({' '.join(str(exc).split())[:300]}).") from None
        raise


def balanced(frame: DataFrame) -> DataFrame:
    """``frame`` dealt round-robin over at least as many partitions as Spark runs tasks at once.

    Spark splits Parquet by row group, and pandas writes up to ~1M rows per group: such a file is
    read as one busy partition and empty ones, and scoring it would keep one core busy. Scoring (with
    drivers) costs far more per row than the shuffle that spreads the rows."""
    try:
        parallelism = frame.sparkSession.sparkContext.defaultParallelism
        partitions = frame.rdd.getNumPartitions()
    except Exception:  # Spark Connect: no RDDs; leave the partitioning to the server
        return frame
    return frame.repartition(max(parallelism, partitions))


def _looks_like_spark_output(p: Path) -> bool:
    names = [q.name for q in p.iterdir()]
    return all(n.startswith(("part-", "_", ".")) for n in names)


def write_parquet(frame: DataFrame, path: str | os.PathLike) -> str:
    """Write ``frame`` as a Parquet dataset (a directory of part files, readable by pandas, DuckDB and
    Spark). A local path is written atomically: into a hidden sibling first, renamed into place when
    complete. An existing directory is replaced only if it holds nothing but a previous Spark output."""
    path = str(path)
    if not _is_local(path):
        frame.write.mode("overwrite").parquet(path)
        return path
    target = _local(path).resolve()
    if target.is_dir() and not _looks_like_spark_output(target):
        raise DataError(
            f"{target}: is a directory that holds other files; --out must be a new path or a previous Spark output."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        frame.write.mode("overwrite").parquet(str(tmp))
        replace_directory(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def band_summary(scored: DataFrame, card: Card) -> pd.DataFrame:
    """Rows, share and mean health per band of a scored Spark DataFrame (aggregated on Spark; only the
    per-band totals come back), in the shape of ``ml.cli.render.band_summary``."""
    from pyspark.sql import functions as F

    rows = scored.groupBy("band").agg(F.count("*").alias("n"), F.avg("health_score").alias("mean")).collect()
    got = {r["band"]: (int(r["n"]), r["mean"]) for r in rows}
    names = [b.name for b in card.bands]
    total = sum(n for n, _ in got.values())
    counts = pd.Series([got.get(b, (0, None))[0] for b in names], index=pd.Index(names, name="band"))
    mean = pd.Series([got.get(b, (0, float("nan")))[1] for b in names], index=counts.index, dtype=float)
    return pd.DataFrame({"customers": counts, "share": counts / max(total, 1), "mean_score": mean})


def predict_files(
    model_uri: str,
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    master: str | None = None,
    drivers: int = 3,
    unseen: str = "error",
    spark: SparkSession | None = None,
) -> tuple[str, pd.DataFrame, Card]:
    """``healthscore predict --engine spark``: Parquet in, Parquet out; returns (output path, band
    summary, card)."""
    if str(out).lower().endswith((".csv", ".txt", ".csv.gz")):
        raise DataError(f"{out}: the Spark engine writes Parquet; give --out a .parquet path (written as a directory).")
    if _is_local(str(data)) and _is_local(str(out)) and _local(str(data)).resolve() == _local(str(out)).resolve():
        raise DataError(f"{out}: --out is the --data path; write the predictions elsewhere.")
    spark = spark or session(master)
    model_dir = model_directory(model_uri)
    with spark_failures():
        scored, card = _predict(balanced(read_parquet(spark, data)), model_dir, drivers, unseen)
        written = write_parquet(scored, out)
        summary = band_summary(spark.read.parquet(written), card)
    return written, summary, card


# ---- snapshots on Spark ----------------------------------------------------------------------------
# DuckDB's types (what the spec's check found in each table) as Spark SQL types
SPARK_TYPES = {
    "VARCHAR": "STRING",
    "BOOLEAN": "BOOLEAN",
    "TINYINT": "TINYINT",
    "SMALLINT": "SMALLINT",
    "INTEGER": "INT",
    "BIGINT": "BIGINT",
    "HUGEINT": "DECIMAL(38,0)",
    "UTINYINT": "SMALLINT",
    "USMALLINT": "INT",
    "UINTEGER": "BIGINT",
    "UBIGINT": "DECIMAL(20,0)",
    "FLOAT": "FLOAT",
    "DOUBLE": "DOUBLE",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP_NTZ",
    "TIMESTAMP_NS": "TIMESTAMP_NTZ",
    "TIMESTAMP_MS": "TIMESTAMP_NTZ",
    "TIMESTAMP_S": "TIMESTAMP_NTZ",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
}
# while a build runs: timestamps without time zone (DuckDB's TIMESTAMP) and UTC for any conversion
SNAPSHOT_CONF = {"spark.sql.timestampType": "TIMESTAMP_NTZ", "spark.sql.session.timeZone": "UTC"}


def spark_type(duckdb_type: str, where: str) -> str:
    """The Spark SQL type for a DuckDB column type, or one :class:`DataError` naming the column."""
    t = duckdb_type.upper()
    if t in SPARK_TYPES:
        return SPARK_TYPES[t]
    if re.fullmatch(r"DECIMAL\(\d+,\s*\d+\)", t):
        return t.replace(" ", "")
    raise DataError(
        f"{where}: DuckDB reads it as {duckdb_type}, which the Spark engine does not map; store it as text, "
        "a number, a date or a timestamp."
    )


def _q(name: str) -> str:
    """A Spark SQL identifier (backquoted)."""
    return "`" + name.replace("`", "``") + "`"


class SparkSQL:
    """A DuckDB-style connection over a SparkSession: ``execute(sql)`` takes the builder's SQL (DuckDB's
    dialect, as sqlglot reads it), renders it for Spark and runs it; ``fetchone``/``fetchall``/``df``
    read the result. So the builder's own queries (bounds, key checks, summary, warnings) run on Spark
    as written, never as a second copy."""

    def __init__(self, spark: SparkSession):
        self.spark = spark
        self._result = None

    def execute(self, sql: str) -> SparkSQL:
        from ml.data.sql import render

        self._result = self.spark.sql(render(sql, "spark"))
        return self

    def fetchall(self) -> list[tuple]:
        return [tuple(r) for r in self._result.collect()]

    def fetchone(self) -> tuple | None:
        rows = self._result.take(1)
        return tuple(rows[0]) if rows else None

    def df(self) -> pd.DataFrame:
        return self._result.toPandas()


def register_tables(spark: SparkSession, spec, prefix: str, cached: list) -> dict[str, str]:
    """Each raw table of the spec as a Spark temporary view with DuckDB's column types; returns the
    ``sources`` for the builder's SQL. CSV is read as text and cast to the types DuckDB found (the same
    values as DuckDB's reader, ids byte for byte) and kept (``persist``, appended to ``cached``);
    Parquet is read as stored, in place."""
    from pyspark.sql.types import StringType, StructField, StructType

    from ml.data.sql import ident

    sources = {}
    for i, (name, table) in enumerate(spec.tables.items()):
        files = [str(p) for p in table.files]
        view = f"{prefix}_{i}"
        if table.format == "csv":
            # the file's own columns (a join adds the looked-up ones after them), read as text in the
            # header's order; naming the columns spares Spark a job to read the header, and
            # enforceSchema=False still checks every file's header against them
            joined = set(table.join.columns) if table.join else set()
            types = {c: t for c, t in spec.schemas[name].items() if c not in joined}
            text = StructType([StructField(c, StringType(), True) for c in types])
            raw = spark.read.options(header=True, enforceSchema=False, multiLine=True, escape='"').csv(
                files, schema=text
            )
            cols = [
                f"CAST({_q(c)} AS {spark_type(t, f'tables.{name}: column {c!r}')}) AS {_q(c)}" for c, t in types.items()
            ]
            # parsed once (as DuckDB's engine does): every query of the build reads the typed rows
            typed = raw.selectExpr(*cols).persist()
            typed.createOrReplaceTempView(view)
            cached.append(typed)
        else:
            reader = spark.read.option("mergeSchema", len(files) > 1)
            reader.parquet(*files).createOrReplaceTempView(view)
        sources[name] = ident(view)
    return sources


def duckdb_output_types(spec, bounds, sources_types: dict[str, dict[str, str]]) -> dict[str, str]:
    """Column -> DuckDB type of the snapshot table, from the same SQL run by DuckDB over empty tables
    with the raw tables' types (no data read)."""
    from ml.data.snapshots import snapshot_sql
    from ml.data.sql import connect, ident

    con = connect()
    try:
        empty = {}
        for name, columns in sources_types.items():
            joined = spec.tables[name].join
            columns = {c: t for c, t in columns.items() if not (joined and c in joined.columns)}  # the file's own
            table = ident(f"__spark_types_{name}")
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} ({', '.join(f'{ident(c)} {t}' for c, t in columns.items())})"
            )
            empty[name] = table
        rows = con.execute(f"DESCRIBE {snapshot_sql(spec, bounds, sources=empty)}").fetchall()
    finally:
        con.close()
    return {r[0]: r[1] for r in rows}


def build_snapshots(
    spec, out: str | os.PathLike | None = None, *, spark: SparkSession | None = None, master: str | None = None
):
    """``healthscore snapshots --engine spark``: the snapshot table of ``spec`` built by Spark SQL from
    the SQL the DuckDB engine runs (:func:`ml.data.snapshots.snapshot_sql` rendered for Spark by
    sqlglot), with the same rows, order and column types. With ``out``, written as a Parquet directory
    (any path Spark can write); else ``result.frame`` holds it as pandas. The same key checks,
    summary and warnings as the DuckDB engine, from the same queries run through :class:`SparkSQL`.

    The session's ``spark.sql.timestampType`` and ``spark.sql.session.timeZone`` are set to
    TIMESTAMP_NTZ and UTC while it runs (DuckDB's timestamps have no time zone), then restored."""
    import dataclasses
    import time
    import uuid

    from ml.data.snapshots import (
        SnapshotResult,
        bounds_sql,
        check_unique,
        resolve_bounds,
        snapshot_sql,
        summarize,
        warn_about,
    )
    from ml.data.spec import SnapshotSpec, check_columns, load_spec

    if out is not None and str(out).lower().endswith((".csv", ".txt", ".csv.gz")):
        raise DataError(f"{out}: the Spark engine writes Parquet; give --out a .parquet path (written as a directory).")
    spec = spec if isinstance(spec, SnapshotSpec) else load_spec(spec)
    if not spec.schemas:
        spec = check_columns(spec)  # DuckDB reads the headers and types only
    started = time.perf_counter()
    spark = spark or session(master)
    saved = {k: spark.conf.get(k, None) for k in SNAPSHOT_CONF}
    prefix = f"healthscore_{uuid.uuid4().hex[:8]}"
    views: list[str] = []
    cached: list = []
    try:
        with spark_failures():
            for k, v in SNAPSHOT_CONF.items():
                spark.conf.set(k, v)
            sources = register_tables(spark, spec, prefix, cached)
            views = [s.strip('"') for s in sources.values()]
            con = SparkSQL(spark)
            check_unique(con, spec, sources)
            latest = con.execute(bounds_sql(spec, sources=sources)).fetchone()
            events = [d for d in latest[:-1] if d is not None]
            bounds = resolve_bounds(spec, max(events) if events else None, latest[-1])
            sql = snapshot_sql(spec, bounds, dialect="spark", sources=sources)
            types = duckdb_output_types(spec, bounds, spec.schemas)
            built = spark.sql(sql)
            built = built.selectExpr(
                *[f"CAST({_q(c)} AS {spark_type(types[c], f'output column {c!r}')}) AS {_q(c)}" for c in built.columns]
            )
            if out is not None:
                written = write_parquet(built, out)
                built = spark.read.parquet(written)
            table = f"{prefix}_snapshots"
            built.createOrReplaceTempView(table)
            views.append(table)
            summary = summarize(con, spec, bounds, time.perf_counter() - started, table=table)
            warn_about(con, spec, summary, sources, table=table)
            if out is not None and _is_local(written):
                summary = dataclasses.replace(summary, path=Path(written))
            summary = dataclasses.replace(summary, seconds=time.perf_counter() - started)
            return SnapshotResult(built.toPandas() if out is None else None, summary, sql)
    finally:
        for k, v in saved.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)
        for v in views:
            spark.catalog.dropTempView(v)
        for frame in cached:
            frame.unpersist()


__all__ = [
    "EngineError",
    "SparkSQL",
    "band_summary",
    "build_snapshots",
    "check_java",
    "java_problem",
    "java_version",
    "model_directory",
    "predict",
    "predict_files",
    "read_parquet",
    "register_tables",
    "session",
    "spark_type",
    "write_parquet",
]
