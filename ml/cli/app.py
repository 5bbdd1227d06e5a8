"""The ``healthscore`` command line: thin Typer commands over the library.

Each command parses its options, loads, calls one library function and prints. Errors from bad
input become one line on stderr and exit code 1, never a traceback (set HEALTHSCORE_DEBUG=1 to see
one); warnings print as one ``warning:`` line each.
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from ml.cli import render
from ml.errors import HealthScoreError, HealthScoreWarning

app = typer.Typer(
    name="healthscore",
    help="Churn-calibrated customer health scores: manual card, learned weights, calibration, explanations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _err(message: str) -> None:
    typer.echo(message, err=True)


def boundary(func):
    """Turn library errors into one stderr line and a non-zero exit; print warnings as one line each."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        seen: set[str] = set()

        def show(message, category, filename, lineno, file=None, line=None):
            text = str(message).replace("\n", " ")
            if text not in seen and issubclass(category, HealthScoreWarning):
                seen.add(text)
                _err(f"warning: {text}")

        old_show = warnings.showwarning
        warnings.showwarning = show
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", HealthScoreWarning)
                return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except HealthScoreError as exc:
            _err(f"error: {' '.join(str(exc).split())}")
            raise typer.Exit(1) from None
        except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
            _err(f"error: {exc.strerror or exc}: {exc.filename}")
            raise typer.Exit(1) from None
        except Exception as exc:
            if os.environ.get("HEALTHSCORE_DEBUG"):
                raise
            _err(
                f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())} "
                "(set HEALTHSCORE_DEBUG=1 for the traceback and report it)"
            )
            raise typer.Exit(2) from None
        finally:
            warnings.showwarning = old_show

    return wrapper


def _nonempty(frame, path):
    from ml.errors import DataError

    if len(frame) == 0:
        raise DataError(f"{path}: the table has no rows (only a header?); pass a file with data.")
    return frame


RawCsvOpt = Annotated[
    bool,
    typer.Option(
        "--raw-csv",
        help="Write CSV text cells as they are. By default a cell starting with = + - @ or a tab gets a "
        "leading ' so a spreadsheet shows it instead of running it as a formula (Parquet is never altered).",
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Refuse categories unseen in training (default: score them as missing for that indicator, "
        "with a warning naming the values and rows).",
    ),
]
ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The card (YAML).", dir_okay=False)]
DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Snapshots: a .csv or .parquet file.")]
MasterOpt = Annotated[
    str | None,
    typer.Option("--master", help="--engine spark: the Spark master URL (default: the running session, or local[*])."),
]
FullPrecisionOpt = Annotated[
    bool,
    typer.Option(
        "--full-precision",
        help="CSV: keep every digit (default: health and points to 2 decimals, probabilities to 4; Parquet "
        "always keeps every digit).",
    ),
]
IncludeInactiveOpt = Annotated[
    bool,
    typer.Option(
        "--include-inactive",
        help="Also count customers whose latest snapshot is older than the latest snapshot date (they left).",
    ),
]
SORT_KEYS = ("value_at_risk", "churn_probability")


@app.command()
@boundary
def generate(
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write snapshots here (.csv or .parquet).", dir_okay=False)
    ] = None,
    raw: Annotated[
        Path | None,
        typer.Option("--raw", help="Instead, write raw tables (and their snapshot spec, spec.yaml) into this folder."),
    ] = None,
    customers: Annotated[int, typer.Option("--customers", "-n", min=1, help="Number of customers.")] = 2000,
    months: Annotated[
        int,
        typer.Option("--months", "-m", min=1, help="Monthly snapshots (with --raw: months of dates 90 days apart)."),
    ] = 12,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed: same seed, same data.")] = 0,
    horizon_days: Annotated[
        int, typer.Option("--horizon-days", min=1, help="Churn horizon of the label (--out; raw tables: 90).")
    ] = 90,
    truth: Annotated[Path | None, typer.Option("--truth", help="Also write the true importances (CSV).")] = None,
) -> None:
    """Generate seeded synthetic data with a known ground-truth churn model: snapshots (--out), or the
    raw tables they come from (--raw DIR: accounts, subscriptions, usage events, tickets, CS interactions,
    invoices, churn events) for `healthscore snapshots`."""
    from ml.data.io import write_table

    if (out is None) == (raw is None):
        raise HealthScoreError("generate: give exactly one of --out FILE (snapshots) or --raw DIR (raw tables).")
    if raw is not None:
        from ml.data.raw import dates_for_months, generate_raw, write_raw

        data = generate_raw(customers, dates_for_months(months), seed=seed)
        spec = write_raw(data, raw)
        if truth is not None:
            write_table(data.truth.rename_axis("column").reset_index(), truth)
        render.print_raw_tables(data, raw, spec)
        return
    from ml.data.generate import generate_snapshots

    snaps = generate_snapshots(customers, months, seed=seed, horizon_days=horizon_days)
    write_table(snaps.frame, out)
    if truth is not None:
        write_table(snaps.truth.rename_axis("column").reset_index(), truth)
    f = snaps.frame
    typer.echo(
        f"wrote {len(f):,} snapshots of {f['customer_id'].nunique():,} customers to {out} "
        f"(churn within {horizon_days} days: {f['churned'].mean():.1%})"
    )


@app.command()
@boundary
def snapshots(
    spec: Annotated[Path, typer.Option("--spec", help="The snapshot spec (YAML).", dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the snapshots (.csv or .parquet).")],
    engine: Annotated[
        str, typer.Option("--engine", help="SQL engine: duckdb (embedded) or spark (the same SQL on Spark).")
    ] = "duckdb",
    master: MasterOpt = None,
) -> None:
    """Build the snapshot table (one row per customer per observation date: point-in-time indicators and
    the churn label) from raw CSV/Parquet tables, as the spec says."""
    from ml.data.snapshots import build_snapshots
    from ml.data.spec import load_spec

    if engine not in ("duckdb", "spark"):
        from ml.errors import DataError

        raise DataError(f"--engine must be duckdb or spark; got {engine!r}.")
    if engine == "spark":  # the DuckDB engine's SQL, rendered for Spark SQL (ml.spark)
        from ml.spark import build_snapshots as build_on_spark

        render.print_snapshot_summary(build_on_spark(load_spec(spec), out, master=master).summary)
        return
    if master is not None:
        from ml.errors import DataError

        raise DataError("--master applies to --engine spark; drop it or add --engine spark.")
    result = build_snapshots(load_spec(spec), out, engine=engine)
    render.print_snapshot_summary(result.summary)


@app.command()
@boundary
def score(
    config: ConfigOpt,
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the scores (.csv or .parquet).")],
    subscores: Annotated[bool, typer.Option("--subscores", help="Also write subscore__<indicator> columns.")] = False,
    raw_csv: RawCsvOpt = False,
    full_precision: FullPrecisionOpt = False,
) -> None:
    """Score customers with the manual card: health_score, band, coverage and points per indicator."""
    from ml.card import load_card
    from ml.data.checks import check_rows
    from ml.data.io import read_table, table_columns, write_output_table
    from ml.scorecard import score_table

    card = load_card(config)
    card.check_columns(table_columns(data))  # against the whole header, so the error lists it all
    needed = [card.id_column, *([card.date_column] if card.date_column else []), *card.columns]
    frame = _nonempty(read_table(data, columns=needed, text=[card.id_column]), data)
    check_rows(frame, card)
    table = score_table(card, frame, subscores=subscores)
    write_output_table(table, out, full_precision=full_precision, raw_csv=raw_csv)
    typer.echo(f"scored {len(table):,} rows -> {out}")
    render.print_band_summary(table, card)


@app.command()
@boundary
def demo(
    customers: Annotated[int, typer.Option("--customers", "-n", min=200, help="Customers to generate.")] = 2000,
    months: Annotated[
        int, typer.Option("--months", min=3, help="Months of snapshots (observation dates 90 days apart).")
    ] = 24,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed.")] = 0,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Card (default: the built-in default card).")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where the demo writes its files.")] = Path("models"),
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the training to MLflow.")] = True,
) -> None:
    """The whole job on built-in synthetic data: generate raw tables, build the snapshots, score with the
    manual card, train (an MLflow run), calibrate, explain and write the report."""
    from ml.card import load_card
    from ml.pipeline import demo as run_demo

    card = load_card(config or default_card_path())
    with render.Progress() as step:
        r = run_demo(card, out_dir, customers=customers, months=months, seed=seed, track=track, progress=step)
    render.print_demo(r, track)


@app.command()
@boundary
def report(
    model: Annotated[str, typer.Option("--model", "-m", help="Model directory, or models:/<name>@<alias>.")],
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the HTML report.")] = Path("report.html"),
    latest: Annotated[
        bool, typer.Option("--latest/--all-rows", help="Report each customer's latest snapshot only.")
    ] = True,
    history: Annotated[
        Path | None,
        typer.Option(
            "--history", "-H", help="A score history: adds trends (band shares, score lines, changes).", file_okay=False
        ),
    ] = None,
    include_inactive: IncludeInactiveOpt = False,
) -> None:
    """A self-contained HTML report for CS leads: bands, weights, what scores mean, why customers are at risk."""
    from ml.data.checks import check_rows
    from ml.data.io import latest_snapshots, read_table
    from ml.report.report import write_report

    m = _load_model(model)
    frame = _nonempty(read_table(data, text=[m.card.id_column]), data)
    check_rows(frame, m.card)
    if latest:
        frame = latest_snapshots(frame, m.card)
    if history is not None:
        from ml.monitor.history import History

        History(history).require()  # one clear error before the report's work
    rep = write_report(m, frame, out, history=history, include_inactive=include_inactive)
    typer.echo(f"report written to {out}")
    if rep.left_out:
        typer.echo(
            f"left out {rep.left_out:,} customers whose latest snapshot is older than the latest date "
            "(--include-inactive keeps them)"
        )


ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model directory, or models:/<name>@<alias>.")]


def _load_model(model: str):
    from ml.serving.bundle import load_model

    if model.startswith("models:/"):
        from ml.serving.tracking import download_model

        return load_model(download_model(model))
    return load_model(model)


@app.command()
@boundary
def train(
    config: ConfigOpt,
    data: DataOpt,
    model_dir: Annotated[Path, typer.Option("--model-dir", "-M", help="Where to write the model directory.")],
    experiment: Annotated[
        str | None, typer.Option("--experiment", help="MLflow experiment (default: the card's, else health-score).")
    ] = None,
    refits: Annotated[
        int | None,
        typer.Option("--refits", min=0, help="Refits for the weight intervals (default: model.n_refits, 10)."),
    ] = None,
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="Log the run to MLflow and register the model.")
    ] = True,
    kind: Annotated[
        str | None,
        typer.Option(
            "--kind",
            help="full, additive (one indicator per tree: a learned card) or both (keep the better by held-out "
            "AUC, the additive one when within 0.005). Default: the card's model.kind (full).",
        ),
    ] = None,
) -> None:
    """Train the churn model, propose weights, evaluate against the manual card, write the model directory."""
    from ml.card import load_card
    from ml.data.io import read_table
    from ml.pipeline import train as train_model

    card = load_card(config)
    frame = _nonempty(read_table(data, text=[card.id_column]), data)
    with render.Progress() as step:
        if track:
            from ml.pipeline import tracked_training

            result = tracked_training(
                card,
                frame,
                model_dir,
                config_path=config,
                data_path=data,
                experiment=experiment,
                kind=kind,
                n_refits=refits,
                progress=step,
            )
        else:
            result = train_model(card, frame, model_dir, kind=kind, n_refits=refits, progress=step)
    typer.echo(f"model written to {model_dir}")
    render.print_weights(result.weights)
    render.print_metrics(result.metrics, card)
    render.print_learned_card(result.metrics, model_dir)
    if result.run_id:
        typer.echo(f"MLflow run {result.run_id}; registered {card.name} version {result.version} as @challenger")


@app.command()
@boundary
def compare(model: ModelOpt) -> None:
    """Print the manual vs proposed weights and the held-out metrics of a trained model."""
    import json

    import pandas as pd

    m = _load_model(model)
    d = m.model_dir_
    render.print_weights(
        pd.read_csv(d / "weights.csv", keep_default_na=False, dtype={"flag": str, "direction_check": str})
    )
    metrics = json.loads((d / "metrics.json").read_text())
    render.print_metrics(metrics, m.card)
    render.print_learned_card(metrics, d)
    contradicted = [c for c in m.audit_ if c.verdict == "contradicted"]
    for c in contradicted:
        typer.echo(f"direction check: {c.indicator}: {c.evidence}")


ENGINES = ("pandas", "spark")


@app.command()
@boundary
def predict(
    model: ModelOpt,
    data: Annotated[
        Path,
        typer.Option(
            "--data", "-d", help="Snapshots: a .csv or .parquet file (--engine spark: Parquet, a file or a directory)."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Where to write the predictions (.csv or .parquet; --engine spark: a Parquet directory).",
        ),
    ],
    drivers: Annotated[int, typer.Option("--drivers", min=0, max=10, help="Top drivers as text per customer.")] = 3,
    strict: StrictOpt = False,
    raw_csv: RawCsvOpt = False,
    history: Annotated[
        Path | None,
        typer.Option(
            "--history",
            help="Also append the scores (with every indicator's points) to this history directory; "
            "re-scoring a date with the same model replaces its rows.",
            file_okay=False,
        ),
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="pandas (one machine, default) or spark (Parquet in and out).")
    ] = "pandas",
    master: MasterOpt = None,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            help="Order the rows, largest first: value_at_risk (needs the card's value_column) or churn_probability.",
        ),
    ] = None,
    include_inactive: IncludeInactiveOpt = False,
    full_precision: FullPrecisionOpt = False,
) -> None:
    """Score new snapshots: health score, band and churn probability, for the model and the manual card
    (and value at risk when the card has a value_column). The summary covers the current book."""
    import numpy as np

    from ml.data.checks import check_rows
    from ml.errors import DataError

    if engine not in ENGINES:
        raise DataError(f"--engine must be pandas or spark; got {engine!r}.")
    if engine == "spark":
        from ml.spark import predict_files

        if raw_csv:
            raise DataError("--raw-csv applies to CSV output; --engine spark writes Parquet. Drop --raw-csv.")
        if history is not None:
            raise DataError(
                "--history appends to a local history directory, which the pandas engine writes; "
                "drop --history with --engine spark (or score that date with the pandas engine)."
            )
        unseen = "error" if strict else "missing"
        written, summary, card = predict_files(model, data, out, master=master, drivers=drivers, unseen=unseen)
        typer.echo(f"predicted {int(summary['customers'].sum()):,} rows -> {written}")
        render.print_summary_table(summary, card, title="Band summary (model)")
        return
    if master is not None:
        raise DataError("--master applies to --engine spark; drop it or add --engine spark.")
    from ml.data.io import active_mask, read_table, write_output_table
    from ml.errors import CardError

    m = _load_model(model)
    if sort is not None and sort not in SORT_KEYS:
        raise CardError(f"--sort: got {sort!r}; use one of: {', '.join(SORT_KEYS)}.")
    if sort == "value_at_risk" and not m.card.value_column:
        raise CardError(
            "--sort value_at_risk: the model's card has no value_column; add `value_column: <column>` (ARR, MRR, "
            "seats ...) to the card and retrain, or sort by churn_probability."
        )
    frame = _nonempty(read_table(data, text=[m.card.id_column]), data)
    check_rows(frame, m.card)
    unseen = "error" if strict else "missing"
    if history is None:
        table = m.predict(frame, drivers=drivers, unseen=unseen)
    else:
        from ml.monitor.history import append_scores, model_identity, score_with_points

        run = score_with_points(m, frame, drivers=drivers, unseen=unseen)
        table = run.table
    written = table
    if sort is not None:
        written = table.sort_values(sort, ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    write_output_table(written, out, full_precision=full_precision, raw_csv=raw_csv)
    typer.echo(f"predicted {len(table):,} rows -> {out}")
    if history is not None:
        added = append_scores(history, run, m.card, model_identity(m, model, _registered_version(model)), frame=frame)
        render.print_appended(added, history)
    active = np.ones(len(table), dtype=bool) if include_inactive else active_mask(table, m.card)
    render.print_book(table, active, m.card, include_inactive=include_inactive)


@app.command()
@boundary
def explain(
    model: ModelOpt,
    data: DataOpt,
    customer: Annotated[str, typer.Option("--customer", help="The customer id to explain (its latest snapshot).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    strict: StrictOpt = False,
) -> None:
    """Why a customer has their score: every indicator's contribution in health points, model and card."""
    import json

    from ml.data.io import read_table
    from ml.model.explain import explain_customer

    m = _load_model(model)
    frame = read_table(data, text=[m.card.id_column])
    result = explain_customer(m, frame, customer, unseen="error" if strict else "missing")
    if as_json:
        from ml.data.io import rounded_explanation

        typer.echo(json.dumps(rounded_explanation(result), indent=2, default=str, allow_nan=False))
        return
    render.print_explanation(result, m.card)


@app.command()
@boundary
def promote(
    version: Annotated[int, typer.Option("--version", min=1, help="Registered model version to promote.")],
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Registered model name (default: the --config card's `name`, else the one registered model "
            "that has this version).",
        ),
    ] = None,
    alias: Annotated[str, typer.Option("--alias", help="Alias to move.")] = "champion",
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="The card whose `name` is the model.", dir_okay=False)
    ] = None,
) -> None:
    """Move the `champion` alias (or --alias) to a registered model version."""
    from ml.serving.tracking import promote as promote_version
    from ml.serving.tracking import registered_name, tracking_uri

    if name is None:
        from ml.card import load_card

        name = registered_name(version, load_card(config).name if config is not None else None)
    promote_version(name, version, alias)
    typer.echo(f"{name}@{alias} -> version {version} ({tracking_uri()})")


@app.command()
@boundary
def serve(
    model: ModelOpt,
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind (loopback by default; 0.0.0.0 exposes the server).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 5001,
) -> None:
    """Serve the model over HTTP (MLflow's scoring server, POST /invocations), with this install's
    environment: its bin on PATH, telemetry off, loopback unless --host says otherwise."""
    from ml.serving.serve import example_curl, example_payload, serve_command, url_of

    model_dir = None
    if not model.startswith("models:/"):
        model_dir = _load_model(model).model_dir_  # verified now: a damaged model is one clear error
    argv, env = serve_command(model, host, port)
    url = url_of(host, port)
    typer.echo(f"serving {model} at {url} (POST {url}/invocations; Ctrl+C stops)")
    typer.echo(f"try: {example_curl(url, example_payload(model_dir))}")
    sys.stdout.flush()
    sys.stderr.flush()
    # the server replaces this process: Ctrl+C and SIGTERM reach it directly, nothing is left behind
    os.execve(argv[0], argv, env) if os.path.isabs(argv[0]) else os.execvpe(argv[0], argv, env)


def _registered_version(model: str) -> str | None:
    """The registry version behind ``models:/name/N`` or ``models:/name@alias`` (None for a directory)."""
    if not model.startswith("models:/"):
        return None
    from ml.serving.tracking import registered_version

    return registered_version(model)


HistoryOpt = Annotated[Path, typer.Option("--history", "-H", help="The history directory (see predict --history).")]


@app.command()
@boundary
def history(
    history: HistoryOpt,
    customer: Annotated[str, typer.Option("--customer", help="The customer id to show.")],
    top: Annotated[int, typer.Option("--top", min=1, max=10, help="Indicators that moved most, per scoring.")] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records instead of a table.")] = False,
) -> None:
    """One customer's scores over time, with the indicators whose points moved most at each scoring."""
    from ml.monitor.history import customer_timeline

    timeline = customer_timeline(history, customer, top=top)
    if as_json:
        typer.echo(timeline.to_json(orient="records", date_format="iso", indent=2))
        return
    render.print_timeline(customer, timeline)


@app.command()
@boundary
def alerts(
    history: HistoryOpt,
    config: ConfigOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the alerts (.csv or .parquet).")],
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Evaluate the latest scoring on or before this date (YYYY-MM-DD).")
    ] = None,
    webhook: Annotated[str | None, typer.Option("--webhook", help="Also POST the alerts as JSON to this URL.")] = None,
    webhook_timeout: Annotated[float, typer.Option("--webhook-timeout", min=0.1, help="Seconds per attempt.")] = 10.0,
    webhook_retries: Annotated[
        int, typer.Option("--webhook-retries", min=0, max=10, help="Retries after a 5xx or connection error.")
    ] = 3,
) -> None:
    """Alerts from the card's rules on the score history: one row per customer and rule that fired, with
    the drivers of the change, the owner and the playbook."""
    from ml.card import load_card
    from ml.data.io import write_table
    from ml.monitor.alerts import evaluate_alerts, post_alerts

    card = load_card(config)
    table = evaluate_alerts(history, card, as_of=as_of)
    write_table(table, out)
    render.print_alerts(table, out)
    if webhook:
        if post_alerts(webhook, table, timeout=webhook_timeout, retries=webhook_retries):
            typer.echo(f"posted {len(table):,} alerts to {webhook}")


@app.command()
@boundary
def monitor(
    model: ModelOpt,
    history: HistoryOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the monitoring report (JSON).")] = Path(
        "monitor.json"
    ),
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", "-d", help="Labelled snapshots, for realised churn once labels matured.", dir_okay=False
        ),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Monitor the latest scoring on or before this date (YYYY-MM-DD).")
    ] = None,
    track: Annotated[
        bool, typer.Option("--track/--no-track", help="Log the metrics to an MLflow run linked to the model's run.")
    ] = True,
) -> None:
    """Drift (PSI per indicator and score), missing values, new categories, realised churn and calibration
    per past scoring date, and a verdict: ok, watch or retrain."""
    import json

    from ml.data.io import read_table, write_text
    from ml.monitor.drift import log_monitor_run
    from ml.monitor.drift import monitor as run_monitor

    m = _load_model(model)
    labelled = None if data is None else _nonempty(read_table(data, text=[m.card.id_column]), data)
    result = run_monitor(m, history, labelled=labelled, as_of=as_of)
    if track:
        run_id, parent = log_monitor_run(result, m, model)
        result["mlflow"] = {"run_id": run_id, "training_run_id": parent}
    write_text(json.dumps(result, indent=2, allow_nan=False) + "\n", out)
    render.print_monitor(result, out)


def default_card_path() -> Path:
    """The default card shipped in the package (``ml/data/default.yaml``, a link to ``configs/default.yaml``)."""
    from importlib.resources import files

    return Path(str(files("ml") / "data" / "default.yaml"))


def main() -> None:  # console-script entry point
    app(prog_name="healthscore")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
