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
            _err(f"error: unexpected {type(exc).__name__}: {' '.join(str(exc).split())} "
                 "(set HEALTHSCORE_DEBUG=1 for the traceback and report it)")
            raise typer.Exit(2) from None
        finally:
            warnings.showwarning = old_show

    return wrapper


ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="The card (YAML).", dir_okay=False)]
DataOpt = Annotated[Path, typer.Option("--data", "-d", help="Snapshots: a .csv or .parquet file.", dir_okay=False)]


def _console():
    from rich.console import Console

    return Console(highlight=False)


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
    from ml.io import read_table, write_table
    from ml.scorecard import score_table

    card = load_card(config)
    needed = [card.id_column, *([card.date_column] if card.date_column else []), *card.columns]
    frame = read_table(data, columns=needed)
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
        t.add_row(f"[{colors[band]}]{band}[/]", f"{int(row.customers):,}", f"{row.share:.1%}",
                  "-" if row.customers == 0 else f"{row.mean_score:.1f}")
    _console().print(t)


@app.command()
@boundary
def demo(
    customers: Annotated[int, typer.Option("--customers", "-n", min=50, help="Customers to generate.")] = 2000,
    months: Annotated[int, typer.Option("--months", "-m", min=2, help="Months of snapshots.")] = 12,
    seed: Annotated[int, typer.Option("--seed", "-s")] = 0,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Card (default: the built-in default card).")] = None,
    out_dir: Annotated[Path, typer.Option("--out-dir", help="Where the demo writes its files.")] = Path("demo_output"),
) -> None:
    """The main job on built-in synthetic data: generate, score with the default card, summarise."""
    from ml.card import load_card
    from ml.generate import generate_snapshots
    from ml.io import write_table
    from ml.scorecard import score_table

    card = load_card(config or default_card_path())
    data = generate_snapshots(customers, months, seed=seed, horizon_days=card.horizon_days)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table(data.frame, out_dir / "snapshots.csv")
    table = score_table(card, data.frame)
    write_table(table, out_dir / "scores.csv")
    typer.echo(f"generated {len(data.frame):,} snapshots of {customers:,} customers -> {out_dir / 'snapshots.csv'}")
    _print_band_summary(table, card)


def default_card_path() -> Path:
    """The default card: ``configs/default.yaml`` in a checkout, else the copy shipped in the package."""
    from importlib.resources import files

    return Path(str(files("ml") / "data" / "default.yaml"))


def main() -> None:  # console-script entry point
    app(prog_name="healthscore")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
