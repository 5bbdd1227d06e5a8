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


ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The card (YAML).", dir_okay=False)]
DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Snapshots: a .csv or .parquet file.", dir_okay=False)]


def _console():
    from rich.console import Console

    # wide enough for the weight and metric tables when the output is not a terminal
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


@app.command()
@boundary
def generate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the snapshots (.csv or .parquet).")],
    customers: Annotated[int, typer.Option("--customers", "-n", min=1, help="Number of customers.")] = 2000,
    months: Annotated[int, typer.Option("--months", "-m", min=1, help="Monthly snapshots per customer.")] = 12,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed: same seed, same data.")] = 0,
    horizon_days: Annotated[int, typer.Option("--horizon-days", min=1, help="Churn horizon of the label.")] = 90,
    truth: Annotated[Path | None, typer.Option("--truth", help="Also write the true importances (CSV).")] = None,
) -> None:
    """Generate seeded synthetic snapshots with a known ground-truth churn model."""
    from ml.generate import generate_snapshots
    from ml.io import write_table

    data = generate_snapshots(customers, months, seed=seed, horizon_days=horizon_days)
    write_table(data.frame, out)
    if truth is not None:
        write_table(data.truth.rename_axis("column").reset_index(), truth)
    f = data.frame
    typer.echo(
        f"wrote {len(f):,} snapshots of {f['customer_id'].nunique():,} customers to {out} "
        f"(churn within {horizon_days} days: {f['churned'].mean():.1%})"
    )


@app.command()
@boundary
def score(
    config: ConfigOpt,
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the scores (.csv or .parquet).")],
    subscores: Annotated[bool, typer.Option("--subscores", help="Also write subscore__<indicator> columns.")] = False,
) -> None:
    """Score customers with the manual card: health_score, band, coverage and points per indicator."""
    from ml.card import load_card
    from ml.io import read_table, table_columns, write_table
    from ml.scorecard import score_table

    card = load_card(config)
    card.check_columns(table_columns(data))  # against the whole header, so the error lists it all
    needed = [card.id_column, *([card.date_column] if card.date_column else []), *card.columns]
    frame = _nonempty(read_table(data, columns=needed), data)
    table = score_table(card, frame, subscores=subscores)
    write_table(table, out)
    typer.echo(f"scored {len(table):,} rows -> {out}")
    _print_band_summary(table, card)


def _band_summary(table, card):
    import pandas as pd

    counts = table["band"].value_counts().reindex([b.name for b in card.bands], fill_value=0)
    mean = table.groupby("band", observed=False)["health_score"].mean().reindex(counts.index)
    return pd.DataFrame({"customers": counts, "share": counts / max(len(table), 1), "mean_score": mean})


def _print_band_summary(table, card, title: str = "Band summary (manual card)") -> None:
    from rich.table import Table

    summary = _band_summary(table, card)
    colors = {b.name: b.color for b in card.bands}
    t = Table(title=title)
    for col in ("band", "rows", "share", "mean score"):
        t.add_column(col, justify="left" if col == "band" else "right")
    for band, row in summary.iterrows():
        t.add_row(
            f"[{colors[band]}]{band}[/]",
            f"{int(row.customers):,}",
            f"{row.share:.1%}",
            "-" if row.customers == 0 else f"{row.mean_score:.1f}",
        )
    _console().print(t)


@app.command()
@boundary
def demo(
    customers: Annotated[int, typer.Option("--customers", "-n", min=200, help="Customers to generate.")] = 2000,
    months: Annotated[int, typer.Option("--months", min=3, help="Months of snapshots.")] = 12,
    seed: Annotated[int, typer.Option("--seed", "-s", help="Random seed.")] = 0,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Card (default: the built-in default card).")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where the demo writes its files.")] = Path("models"),
    track: Annotated[bool, typer.Option("--track/--no-track", help="Log the training to MLflow.")] = True,
) -> None:
    """The whole job on built-in synthetic data: generate, score with the manual card, train (an MLflow
    run), calibrate, explain and write the report."""
    from ml.card import load_card
    from ml.generate import generate_snapshots
    from ml.io import write_table
    from ml.scorecard import score_table

    card = load_card(config or default_card_path())
    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = out_dir / "demo"
    with _progress() as step:
        step("generating synthetic snapshots")
        data = generate_snapshots(customers, months, seed=seed, horizon_days=card.horizon_days)
        write_table(data.frame, out_dir / "demo-snapshots.csv")
        step("scoring with the manual card")
        manual = score_table(card, data.frame)
        write_table(manual, out_dir / "demo-manual-scores.csv")
    typer.echo(
        f"generated {len(data.frame):,} snapshots of {customers:,} customers -> {out_dir / 'demo-snapshots.csv'}"
    )
    _print_band_summary(manual, card)
    with _progress() as step:
        if track:
            from ml.tracking import tracked_training, tracking_uri

            result = tracked_training(
                card, data.frame, model_dir, data_path=out_dir / "demo-snapshots.csv", progress=step
            )
        else:
            from ml.pipeline import train as train_model

            result = train_model(card, data.frame, model_dir, progress=step)
        step("scoring and explaining the latest snapshot")
        latest = _latest_snapshots(data.frame, card)
        preds = result.model.predict(latest)
        write_table(preds, out_dir / "demo-predictions.csv")
        step("writing the report")
        from ml.bundle import load_model
        from ml.report import write_report

        report_path = out_dir / "demo-report.html"
        write_report(load_model(model_dir), latest, report_path)
    _print_weights(result.weights)
    _print_metrics(result.metrics, card)
    _print_band_summary(preds, card, title="Latest snapshot: band summary (model)")
    typer.echo("")
    typer.echo(f"report:      {report_path}")
    typer.echo(f"model:       {model_dir}")
    typer.echo(f"predictions: {out_dir / 'demo-predictions.csv'}")
    if track:
        typer.echo(f"MLflow run {result.run_id}: registered {card.name} version {result.version} as @challenger")
        typer.echo(f"browse runs: mlflow ui --backend-store-uri {tracking_uri()}")


def _latest_snapshots(frame, card):
    """Each customer's latest snapshot (all rows when the card has no date column)."""
    if not card.date_column:
        return frame
    import pandas as pd

    d = pd.to_datetime(frame[card.date_column])
    return frame.loc[d.eq(d.groupby(frame[card.id_column]).transform("max"))].reset_index(drop=True)


@app.command()
@boundary
def report(
    model: Annotated[str, typer.Option("--model", "-m", help="Model directory, or models:/<name>@<alias>.")],
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the HTML report.")] = Path("report.html"),
    latest: Annotated[
        bool, typer.Option("--latest/--all-rows", help="Report each customer's latest snapshot only.")
    ] = True,
) -> None:
    """A self-contained HTML report for CS leads: bands, weights, what scores mean, why customers are at risk."""
    from ml.io import read_table
    from ml.report import write_report

    m = _load_model(model)
    frame = read_table(data)
    if latest:
        frame = _latest_snapshots(frame, m.card)
    write_report(m, frame, out)
    typer.echo(f"report written to {out}")


ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model directory, or models:/<name>@<alias>.")]


def _load_model(model: str):
    from ml.bundle import load_model

    if model.startswith("models:/"):
        from ml.tracking import download_model

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
) -> None:
    """Train the churn model, propose weights, evaluate against the manual card, write the model directory."""
    from ml.card import load_card
    from ml.io import read_table
    from ml.pipeline import train as train_model

    card = load_card(config)
    frame = _nonempty(read_table(data), data)
    with _progress() as step:
        if track:
            from ml.tracking import tracked_training

            result = tracked_training(
                card,
                frame,
                model_dir,
                config_path=config,
                data_path=data,
                experiment=experiment,
                n_refits=refits,
                progress=step,
            )
        else:
            result = train_model(card, frame, model_dir, n_refits=refits, progress=step)
    typer.echo(f"model written to {model_dir}")
    _print_weights(result.weights)
    _print_metrics(result.metrics, card)
    if getattr(result, "run_id", None):
        typer.echo(f"MLflow run {result.run_id}; registered {card.name} version {result.version} as @challenger")


class _progress:
    """A progress line with the current step: a bar where the step counts (the refits), a pulse
    otherwise, and the elapsed time. Silent when the output is not a terminal."""

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        console = _console()
        self._p = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._p.__enter__()
        self._task = self._p.add_task("starting", total=None)

        def step(text: str, done: int | None = None, total: int | None = None) -> None:
            self._p.update(self._task, description=text, completed=done or 0, total=total)

        return step

    def __exit__(self, *exc):
        return self._p.__exit__(*exc)


def _print_weights(weights) -> None:
    from rich.table import Table

    t = Table(title="Indicator weights: manual vs proposed (points out of 100; 90 % refit interval)")
    for col in ("indicator", "manual", "shap", "interval", "gain", "linear", "interval ", "flag"):
        t.add_column(col, justify="left" if col in ("indicator", "flag") else "right")
    for _, r in weights.iterrows():
        name = r["indicator"] if r["in_scorecard"] else f"{r['indicator']} (extra)"
        lin = "-" if not r["in_scorecard"] else str(int(r["linear"]))
        lin_iv = "-" if not r["in_scorecard"] else _interval(r["linear_low"], r["linear_high"])
        flag = r["flag"] if isinstance(r["flag"], str) else ""
        t.add_row(
            name,
            f"{r['manual']:g}",
            str(int(r["shap"])),
            _interval(r["shap_low"], r["shap_high"]),
            str(int(r["gain"])),
            lin,
            lin_iv,
            f"[bold red]{flag}[/]" if flag else "",
        )
    _console().print(t)


def _interval(lo, hi) -> str:
    import math

    return "-" if lo is None or hi is None or math.isnan(lo) or math.isnan(hi) else f"{lo:.0f}-{hi:.0f}"


def _fmt(v, pct=False):
    if v is None:
        return "-"
    return f"{v:.1%}" if pct else f"{v:.3f}"


def _print_metrics(metrics, card) -> None:
    from rich.table import Table

    h = metrics["holdout"]
    bands = [b.name for b in card.bands]
    t = Table(title=f"Held-out evaluation: {h['rows']:,} rows, {h['churners']:,} churners ({h['churn_rate']:.1%})")
    for col in (
        "scorer",
        "ROC-AUC",
        "PR-AUC",
        "top-10% lift",
        *[f"churn {b}" for b in bands],
        f"churners in {bands[-1]}",
    ):
        t.add_column(col, justify="left" if col == "scorer" else "right")
    names = {
        "manual": "manual card",
        "card_shap": "card, shap weights",
        "card_gain": "card, gain weights",
        "card_linear": "card, linear weights",
        "model": "model",
    }
    for key, m in metrics["ranking"].items():
        t.add_row(
            names.get(key, key),
            _fmt(m["roc_auc"]),
            _fmt(m["pr_auc"]),
            "-" if m["top_decile_lift"] is None else f"{m['top_decile_lift']:.2f}x",
            *[_fmt(m["churn_rate_by_band"][b], pct=True) for b in bands],
            _fmt(m["at_risk_capture"], pct=True),
        )
    _console().print(t)
    cal = metrics.get("calibration")
    if cal:
        c = Table(title=f"Calibration on held-out rows ({cal['method']}, {cal['scale']} scale)")
        for col in ("scorer", "ECE", "Brier", "slope", "intercept", *[f"{b}: pred / obs" for b in bands]):
            c.add_column(col, justify="left" if col == "scorer" else "right")
        for key, label in (("model", "model"), ("manual", "manual card")):
            m = cal[key]
            per = [
                f"{_fmt(m['by_band'][b]['predicted'], True)} / {_fmt(m['by_band'][b]['observed'], True)}" for b in bands
            ]
            c.add_row(
                label,
                f"{m['ece']:.4f}",
                f"{m['brier']:.4f}",
                _fmt(m["calibration_slope"]),
                _fmt(m["calibration_intercept"]),
                *per,
            )
        _console().print(c)


@app.command()
@boundary
def compare(model: ModelOpt) -> None:
    """Print the manual vs proposed weights and the held-out metrics of a trained model."""
    import json

    import pandas as pd

    m = _load_model(model)
    d = m.model_dir_
    _print_weights(pd.read_csv(d / "weights.csv", keep_default_na=False, dtype={"flag": str, "direction_check": str}))
    _print_metrics(json.loads((d / "metrics.json").read_text()), m.card)
    contradicted = [c for c in m.audit_ if c.verdict == "contradicted"]
    for c in contradicted:
        typer.echo(f"direction check: {c.indicator}: {c.evidence}")


@app.command()
@boundary
def predict(
    model: ModelOpt,
    data: DataOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the predictions (.csv or .parquet).")],
    drivers: Annotated[int, typer.Option("--drivers", min=0, max=10, help="Top drivers as text per customer.")] = 3,
) -> None:
    """Score new snapshots: health score, band and churn probability, for the model and the manual card."""
    from ml.io import read_table, write_table

    m = _load_model(model)
    frame = _nonempty(read_table(data), data)
    table = m.predict(frame, drivers=drivers)
    write_table(table, out)
    typer.echo(f"predicted {len(table):,} rows -> {out}")
    _print_band_summary(table, m.card, title="Band summary (model)")


@app.command()
@boundary
def explain(
    model: ModelOpt,
    data: DataOpt,
    customer: Annotated[str, typer.Option("--customer", help="The customer id to explain (its latest snapshot).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Why a customer has their score: every indicator's contribution in health points, model and card."""
    import json

    from ml.explain import explain_customer
    from ml.io import read_table

    m = _load_model(model)
    frame = read_table(data)
    result = explain_customer(m, frame, customer)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str, allow_nan=False))
        return
    _print_explanation(result, m.card)


def _print_explanation(r, card) -> None:
    from rich.table import Table

    colors = {b.name: b.color for b in card.bands}
    con = _console()
    con.print(f"[bold]{r['customer_id']}[/]" + (f"  (snapshot {r['snapshot_date']})" if r.get("snapshot_date") else ""))
    con.print(
        f"model: health [bold]{r['health_score']:.1f}[/] [{colors.get(r['band'], 'white')}]{r['band']}[/], "
        f"churn probability {r['churn_probability']:.1%}, base score {r['base_score']:.1f}"
    )
    mm = r["manual"]
    if mm["score"] is not None:
        con.print(
            f"manual card: score [bold]{mm['score']:.1f}[/] [{colors.get(mm['band'], 'white')}]{mm['band']}[/]"
            + (f", churn probability {mm['churn_probability']:.1%}" if mm["churn_probability"] is not None else "")
            + f", base score {mm['base_score']:.1f}"
        )
    for title, items, base, total in (
        ("Model", r["contributions"], r["base_score"], r["health_score"]),
        ("Manual card", mm["contributions"], mm["base_score"], mm["score"]),
    ):
        t = Table(title=f"{title}: contributions in health points (most negative first)")
        t.add_column("indicator")
        t.add_column("value", justify="right")
        t.add_column("points", justify="right")
        t.add_row("[dim]base score[/]", "", f"{base:.1f}")
        for it in items:
            v = it["value"]
            vtxt = "missing" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
            color = "red" if it["points"] < 0 else "green"
            t.add_row(it["label"], vtxt, f"[{color}]{it['points']:+.1f}[/]")
        if total is not None:
            t.add_row("[bold]= score[/]", "", f"[bold]{total:.1f}[/]")
        con.print(t)


@app.command()
@boundary
def promote(
    version: Annotated[int, typer.Option("--version", min=1, help="Registered model version to promote.")],
    name: Annotated[str, typer.Option("--name", help="Registered model name (the card's `name`).")] = "health-score",
    alias: Annotated[str, typer.Option("--alias", help="Alias to move.")] = "champion",
) -> None:
    """Move the `champion` alias (or --alias) to a registered model version."""
    from ml.tracking import promote as promote_version
    from ml.tracking import tracking_uri

    promote_version(name, version, alias)
    typer.echo(f"{name}@{alias} -> version {version} ({tracking_uri()})")


def default_card_path() -> Path:
    """The default card shipped in the package (``ml/data/default.yaml``, a link to ``configs/default.yaml``)."""
    from importlib.resources import files

    return Path(str(files("ml") / "data" / "default.yaml"))


def main() -> None:  # console-script entry point
    app(prog_name="healthscore")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
