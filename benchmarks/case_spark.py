"""The Spark engine on ``local[2]`` next to the one-machine engine, in the same run.

``spark_predict_1m``: ``healthscore predict`` on 1,000,000 snapshot rows (Parquet in, Parquet out, a
model trained on 100,000 rows), the Spark engine (``ml.spark.predict_files``, 2 local cores, one
LightGBM thread per task) vs the pandas engine (``read_table`` + ``HealthModel.predict`` +
``write_table``, one LightGBM thread, the default). The Spark session is started, and its Python
workers warmed by a 1,000-row job, before the clock (a cluster's session is already up); both are
printed in the step's log (``--keep``).
"""

from __future__ import annotations

import time

from _data import snapshots_file
from _harness import REPO, Bench, Call, Context, case

MASTER = "local[2]"
SPARK_CONF = {
    "spark.driver.memory": "2g",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
}


def _trained_model(ctx: Context):
    def make():
        import warnings

        import pandas as pd
        import yaml

        from ml.card import parse_card
        from ml.pipeline import train

        raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
        raw["model"]["n_refits"] = 0
        frame = pd.read_parquet(snapshots_file(ctx, 10_000 if ctx.quick else 100_000, ".parquet"))
        warnings.simplefilter("ignore")
        return train(parse_card(raw), frame, ctx.tmp / "spark_model", plots=False, mlflow_files=False).model_dir

    return ctx.cached("spark_model", make)


def predict_spark(model: str, data: str, out: str) -> dict:
    """``healthscore predict --engine spark --master local[2]`` minus the session start-up."""
    from ml.spark import predict, predict_files, session

    started = time.perf_counter()
    spark = session(MASTER, conf=SPARK_CONF)
    print(f"spark session started in {time.perf_counter() - started:.1f}s", flush=True)
    # a warm-up job on a few rows starts the Python workers (and loads the model into them), as in a
    # session that has run jobs before; printed, not timed
    started = time.perf_counter()
    predict(spark.read.parquet(data).limit(1000), model).write.format("noop").mode("overwrite").save()
    print(f"warm-up job (1,000 rows) took {time.perf_counter() - started:.1f}s", flush=True)
    start = time.perf_counter()
    _, summary, _ = predict_files(model, data, out, spark=spark)
    seconds = time.perf_counter() - start
    spark.stop()
    return {"seconds": seconds, "rows": int(summary["customers"].sum())}


def predict_pandas(model: str, data: str, out: str) -> dict:
    """``healthscore predict`` (the pandas engine): read, predict with drivers, write."""
    from ml.data.io import read_table, write_table
    from ml.serving.bundle import load_model

    start = time.perf_counter()
    m = load_model(model)
    write_table(m.predict(read_table(data)), out)
    return {"seconds": time.perf_counter() - start}


@case("spark_predict_1m", "predict on 1,000,000 rows, Parquet in and out: Spark local[2] vs the pandas engine")
def spark_predict_1m(ctx: Context) -> Bench:
    rows = 100_000 if ctx.quick else 1_000_000
    data = snapshots_file(ctx, rows, ".parquet")
    model = _trained_model(ctx)
    out_spark, out_pandas = ctx.tmp / "spark_pred.parquet", ctx.tmp / "pandas_pred.parquet"

    def check() -> None:
        import pandas as pd

        got = pd.read_parquet(out_spark, columns=["customer_id", "health_score"])
        if len(got) != rows:
            raise AssertionError(f"Spark scored {len(got):,} rows, expected {rows:,}")

    return Bench(
        measured=Call(
            "case_spark:predict_spark",
            {"model": str(model), "data": str(data), "out": str(out_spark)},
            label="ml.spark.predict_files on local[2] (session already started)",
        ),
        baseline=Call(
            "case_spark:predict_pandas",
            {"model": str(model), "data": str(data), "out": str(out_pandas)},
            label="pandas engine: read_table + HealthModel.predict + write_table",
        ),
        outputs=(out_pandas,),  # the Spark output is a directory, replaced by each run
        check=check,
        info={"rows": rows, "master": MASTER},
    )


def snapshots_spark(spec: str, out: str) -> dict:
    """``healthscore snapshots --engine spark --master local[2]`` minus the session start-up (and a
    warm-up query that starts the executors' reading of the files)."""
    import warnings

    from ml.data.spec import load_spec
    from ml.spark import build_snapshots, session

    warnings.simplefilter("ignore")
    started = time.perf_counter()
    spark = session(MASTER, conf=SPARK_CONF)
    spark.range(1000).selectExpr("sum(id)").collect()
    print(f"spark session started in {time.perf_counter() - started:.1f}s", flush=True)
    start = time.perf_counter()
    result = build_snapshots(load_spec(spec), out, spark=spark)
    seconds = time.perf_counter() - start
    spark.stop()
    assert result.summary.rows > 0
    return {"seconds": seconds}


@case(
    "spark_snapshots_20m",
    "healthscore snapshots, 20M Parquet events x 100,000 customers x 24 dates: Spark local[2] vs DuckDB",
)
def spark_snapshots_20m(ctx: Context) -> Bench:
    # the same raw tables as `snapshots_20m` (generated once per run, whichever case runs first)
    import case_snapshots

    customers, events = (10_000, 2_000_000) if ctx.quick else (100_000, 20_000_000)
    spec = ctx.cached(
        f"raw-events:{events}", lambda: case_snapshots._events(ctx.tmp / f"raw_{events}", customers, events)
    )
    out_spark, out_duckdb = ctx.tmp / "spark_snapshots.parquet", ctx.tmp / "duckdb_snapshots.parquet"

    def check() -> None:
        import numpy as np
        import pyarrow.parquet as pq

        case_snapshots.build(str(spec), str(out_duckdb))
        got, want = pq.read_table(out_spark), pq.read_table(out_duckdb)
        if got.num_rows != want.num_rows or [f.type for f in got.schema] != [f.type for f in want.schema]:
            raise AssertionError(f"Spark built {got.num_rows:,} rows, DuckDB {want.num_rows:,} (or other types)")
        for name in want.column_names:  # sums of floats may differ in the last bits (order of addition)
            a, b = got[name].to_numpy(zero_copy_only=False), want[name].to_numpy(zero_copy_only=False)
            same = np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True) if b.dtype.kind == "f" else (a == b).all()
            if not same:
                raise AssertionError(f"column {name!r}: Spark's rows differ from DuckDB's")

    return Bench(
        measured=Call(
            "case_spark:snapshots_spark",
            {"spec": str(spec), "out": str(out_spark)},
            label="ml.spark.build_snapshots on local[2] (session already started)",
        ),
        baseline=Call(
            "case_snapshots:build",
            {"spec": str(spec), "out": str(out_duckdb)},
            label="the DuckDB engine: build_snapshots(spec, out.parquet)",
        ),
        outputs=(out_duckdb,),  # the Spark output is a directory, replaced by each run
        check=check,
        info={"rows": events, "customers": customers, "dates": 24, "master": MASTER},
    )
