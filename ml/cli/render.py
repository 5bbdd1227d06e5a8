"""What the command line prints: rich tables for band summaries, weights, metrics and explanations,
and the progress line. The commands in :mod:`ml.cli.app` call these; nothing here computes results."""

from __future__ import annotations

import sys
from pathlib import Path


def esc(value) -> str:
    """User text (band names, indicator labels, ids, values) for rich: markup such as ``[/]`` or
    ``[bold]`` in a name is shown as written, never interpreted."""
    from rich.markup import escape

    return escape(str(value))


def console():
    from rich.console import Console

    # wide enough for the weight and metric tables when the output is not a terminal
    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def band_summary(table, card):
    import pandas as pd

    counts = table["band"].value_counts().reindex([b.name for b in card.bands], fill_value=0)
    mean = table.groupby("band", observed=False)["health_score"].mean().reindex(counts.index)
    return pd.DataFrame({"customers": counts, "share": counts / max(len(table), 1), "mean_score": mean})


def print_band_summary(table, card, title: str = "Band summary (manual card)") -> None:
    print_summary_table(band_summary(table, card), card, title=title)


def print_summary_table(summary, card, title: str = "Band summary (manual card)") -> None:
    """Print a ``band_summary``-shaped frame (rows, share and mean score per band)."""
    from rich.table import Table

    colors = {b.name: b.color for b in card.bands}
    t = Table(title=esc(title))
    for col in ("band", "rows", "share", "mean score"):
        t.add_column(col, justify="left" if col == "band" else "right")
    for band, row in summary.iterrows():
        t.add_row(
            f"[{colors[band]}]{esc(band)}[/]",
            f"{int(row.customers):,}",
            f"{row.share:.1%}",
            "-" if row.customers == 0 else f"{row.mean_score:.1f}",
        )
    console().print(t)


class Progress:
    """A progress line with the current step: a bar where the step counts (the refits), a pulse
    otherwise, and the elapsed time. Silent when the output is not a terminal."""

    def __enter__(self):
        from rich import progress as rp

        con = console()
        self._p = rp.Progress(
            rp.SpinnerColumn(),
            rp.TextColumn("{task.description}"),
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            rp.TimeElapsedColumn(),
            console=con,
            transient=True,
            disable=not con.is_terminal,
        )
        self._p.__enter__()
        self._task = self._p.add_task("starting", total=None)

        def step(text: str, done: int | None = None, total: int | None = None) -> None:
            self._p.update(self._task, description=text, completed=done or 0, total=total)

        return step

    def __exit__(self, *exc):
        return self._p.__exit__(*exc)


def print_weights(weights) -> None:
    from rich.table import Table

    t = Table(title="Indicator weights: manual vs proposed (points out of 100; 90 % refit interval)")
    for col in ("indicator", "manual", "shap", "interval", "gain", "linear", "interval ", "flag"):
        t.add_column(col, justify="left" if col in ("indicator", "flag") else "right")
    for _, r in weights.iterrows():
        name = esc(r["indicator"] if r["in_scorecard"] else f"{r['indicator']} (extra)")
        lin = "-" if not r["in_scorecard"] else str(int(r["linear"]))
        lin_iv = "-" if not r["in_scorecard"] else interval(r["linear_low"], r["linear_high"])
        flag = r["flag"] if isinstance(r["flag"], str) else ""
        t.add_row(
            name,
            f"{r['manual']:g}",
            str(int(r["shap"])),
            interval(r["shap_low"], r["shap_high"]),
            str(int(r["gain"])),
            lin,
            lin_iv,
            f"[bold red]{esc(flag)}[/]" if flag else "",
        )
    console().print(t)


def interval(lo, hi) -> str:
    import math

    if lo in (None, "") or hi in (None, ""):  # `compare` reads weights.csv without NA parsing: no refits -> ""
        return "-"
    lo, hi = float(lo), float(hi)
    return "-" if math.isnan(lo) or math.isnan(hi) else f"{lo:.0f}-{hi:.0f}"


def fmt(v, pct=False):
    if v is None:
        return "-"
    return f"{v:.1%}" if pct else f"{v:.3f}"


def print_metrics(metrics, card) -> None:
    from rich.table import Table

    h = metrics["holdout"]
    bands = [b.name for b in card.bands]
    ev = metrics.get("evaluation", {})
    when = f" dated {h['period'][0]} to {h['period'][1]}" if h.get("period") else ""
    lead = capture_sentence(metrics, bands[-1])
    if lead:
        console().print(lead)
    t = Table(
        title=f"Held-out evaluation ({ev.get('kind', 'backtest')}): {h['rows']:,} rows{when}, "
        f"{h['churners']:,} churners ({h['churn_rate']:.1%})"
    )
    for col in (
        "scorer",
        f"churners caught at the card's list size ({h.get('card_list_size', '?'):,})"
        if h.get("card_list_size") is not None
        else "churners caught at the card's list size",
        "ROC-AUC",
        "PR-AUC",
        "top-10% lift",
        *[f"churn {b}" for b in bands],
        f"churners in {bands[-1]}",
    ):
        t.add_column(esc(col), justify="left" if col == "scorer" else "right")
    names = {
        "manual": "manual card",
        "card_shap": "card, shap weights",
        "card_gain": "card, gain weights",
        "card_linear": "card, linear weights",
        "model": "model",
        "model_full": "model (full)",
        "model_additive": "model (additive)",
    }
    kept = (metrics.get("model_kind") or {}).get("kept")
    if kept and f"model_{kept}" in metrics["ranking"]:
        names["model"] = f"model (kept: {kept})"
    for key, m in metrics["ranking"].items():
        if kept and key == f"model_{kept}":
            continue  # the same numbers as the `model` row
        t.add_row(
            esc(names.get(key, key)),
            fmt(m.get("capture_at_card_share"), pct=True),
            fmt(m["roc_auc"]),
            fmt(m["pr_auc"]),
            "-" if m["top_decile_lift"] is None else f"{m['top_decile_lift']:.2f}x",
            *[fmt(m["churn_rate_by_band"][b], pct=True) for b in bands],
            fmt(m["at_risk_capture"], pct=True),
        )
    console().print(t)
    notes = []
    if metrics.get("rows_censored"):
        notes.append(
            f"{metrics['rows_censored']:,} rows with an empty label (not known yet) were left out of fitting and "
            "evaluation; predict scores them."
        )
    if ev.get("label_cutoff"):
        notes.append(
            f"fitted and calibrated on snapshots up to {ev['label_cutoff']} (their {ev['horizon_days']}-day label "
            f"windows end before the held-out period starts on {ev['heldout_start']})."
        )
    unseen = (metrics.get("subsets") or {}).get("never_seen") or {}
    if unseen.get("rows"):
        um, uc = unseen["ranking"]["model"], unseen["ranking"]["manual"]
        notes.append(
            f"never-seen customers alone ({unseen['rows']:,} held-out rows of {unseen['customers']:,} customers never "
            f"fitted or calibrated on): model ROC-AUC {fmt(um['roc_auc'])}, manual card {fmt(uc['roc_auc'])}; at the "
            f"card's list size the model catches {fmt(um['capture_at_card_share'], True)} of churners, the card "
            f"{fmt(uc['capture_at_card_share'], True)}."
        )
    saved = metrics.get("saved_model") or {}
    if saved.get("refit"):
        notes.append(
            f"the saved model was then refitted on every matured row ({saved['rows']:,} rows, {saved['trees']} trees); "
            "the numbers above are the backtest's."
        )
    for n in notes:
        console().print(f"[dim]{n}[/]")
    cal = metrics.get("calibration")
    if cal:
        c = Table(title=esc(f"Calibration on held-out rows ({cal['method']}, {cal['scale']} scale)"))
        for col in ("scorer", "ECE", "Brier", "slope", "intercept", *[f"{b}: pred / obs" for b in bands]):
            c.add_column(esc(col), justify="left" if col == "scorer" else "right")
        rows = [("model", names["model"]), ("model_full", "model (full)"), ("model_additive", "model (additive)")]
        for key, label in [*rows, ("manual", "manual card")]:
            if key not in cal or (kept and key == f"model_{kept}"):
                continue
            m = cal[key]
            per = [
                f"{fmt(m['by_band'][b]['predicted'], True)} / {fmt(m['by_band'][b]['observed'], True)}" for b in bands
            ]
            c.add_row(
                label,
                f"{m['ece']:.4f}",
                f"{m['brier']:.4f}",
                fmt(m["calibration_slope"]),
                fmt(m["calibration_intercept"]),
                *per,
            )
        console().print(c)
        if cal.get("in_time"):
            console().print(
                f"[dim]model ECE out of time {cal['model']['ece']:.4f} vs in time {cal['in_time']['model']['ece']:.4f} "
                "(never-seen customers' rows of the training period); an out-of-time ECE well above the in-time one "
                "means the churn rate drifted since the model was calibrated.[/]"
            )


def capture_sentence(metrics, lowest: str) -> str | None:
    """'Flag as many customers as your card does today (1,850 in At risk) and catch 65 % of churners
    instead of 49 %.'"""
    r = metrics.get("ranking", {})
    model, manual = r.get("model", {}), r.get("manual", {})
    k = metrics.get("holdout", {}).get("card_list_size")
    if model.get("capture_at_card_share") is None or manual.get("capture_at_card_share") is None or not k:
        return None
    return (
        f"Flag as many customers as your card does today ({k:,} held-out rows in {esc(lowest)}) and the model catches "
        f"[bold]{model['capture_at_card_share']:.0%}[/] of churners instead of {manual['capture_at_card_share']:.0%}."
    )


def print_book(table, active, card, *, include_inactive: bool = False) -> None:
    """predict's summary: bands of the current book (customers whose latest snapshot is on the latest
    snapshot date), and value at risk per band when the card has a value column."""
    import numpy as np
    import typer

    from ml.model.book import money, value_by_band, value_sentence

    current = table.loc[np.asarray(active)]
    left = int(len(table) - len(current))
    if include_inactive:
        typer.echo(f"summary of all {len(table):,} rows (--include-inactive)")
    else:
        typer.echo(
            f"summary of the current book, {len(current):,} customers (their latest snapshot is on the latest date)"
        )
    print_band_summary(current, card, title="Band summary (model)")
    if left and not include_inactive:
        typer.echo(
            f"left out {left:,} rows that are not a customer's latest snapshot on the latest date "
            "(earlier snapshots, or customers who left); --include-inactive counts them."
        )
    if card.value_column and "value" in current:
        from rich.table import Table

        bands = [b.name for b in card.bands]
        summary = value_by_band(current, bands)
        t = Table(title=esc(f"{card.value_column} at risk by band"))
        for col in ("band", "customers", card.value_column, "value at risk", "top-10 accounts' share"):
            t.add_column(esc(col), justify="left" if col == "band" else "right")
        for band, row in summary.iterrows():
            t.add_row(
                esc(band),
                f"{int(row.customers):,}",
                money(row.value),
                money(row.value_at_risk),
                "-" if row.top_share != row.top_share else f"{row.top_share:.0%}",
            )
        console().print(t)
        console().print(esc(value_sentence(summary, bands[-1], card.value_column)))


def print_learned_card(metrics, model_dir) -> None:
    """One line each: which model kind was kept and why, and whether a learned card was written."""
    kind = metrics.get("model_kind")
    if kind and kind.get("requested") != "full":
        console().print(esc(f"model kind: kept {kind['kept']} ({kind['reason']})"))
    learned = metrics.get("learned_card")
    if learned:
        if learned["written"]:
            console().print(esc(f"learned card: {Path(model_dir) / learned['path']} (run it with healthscore score)"))
        else:
            console().print(esc(f"learned card: not written; {learned['reason']}"))


def print_explanation(r, card) -> None:
    from rich.table import Table

    colors = {b.name: b.color for b in card.bands}
    con = console()
    con.print(
        f"[bold]{esc(r['customer_id'])}[/]"
        + (f"  (snapshot {esc(r['snapshot_date'])})" if r.get("snapshot_date") else "")
    )
    con.print(
        f"model: health [bold]{r['health_score']:.1f}[/] [{colors.get(r['band'], 'white')}]{esc(r['band'])}[/], "
        f"churn probability {r['churn_probability']:.1%}, base score {r['base_score']:.1f}"
    )
    mm = r["manual"]
    if mm["score"] is not None:
        con.print(
            f"manual card: score [bold]{mm['score']:.1f}[/] [{colors.get(mm['band'], 'white')}]{esc(mm['band'])}[/]"
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
            t.add_row(esc(it["label"]), esc(vtxt), f"[{color}]{it['points']:+.1f}[/]")
        if total is not None:
            t.add_row("[bold]= score[/]", "", f"[bold]{total:.1f}[/]")
        con.print(t)


def print_demo(r, tracked: bool) -> None:
    """The demo's summary: what was generated, the manual card's bands, weights, metrics, the model's
    bands on the latest snapshot and where everything was written."""
    import typer

    card, p = r.card, r.paths
    typer.echo(
        f"generated {len(r.snapshots):,} snapshots of {r.snapshots[card.id_column].nunique():,} customers "
        f"from the raw tables in {p['raw']} -> {p['snapshots']}"
    )
    if r.build is not None:
        typer.echo(f"  {_label_text(r.build)}")
    print_band_summary(r.manual_scores, card)
    print_weights(r.train.weights)
    print_metrics(r.train.metrics, card)
    print_band_summary(r.predictions, card, title="The current book: band summary (model)")
    if r.alerts is not None:
        typer.echo("")
        print_alerts(r.alerts, p.get("alerts"), show=True)
    if r.monitor is not None:
        typer.echo("")
        print_monitor(r.monitor, p.get("monitor"))
    typer.echo("")
    typer.echo(f"report:      {p['report']}")
    typer.echo(f"model:       {p['model']}")
    typer.echo(f"predictions: {p['predictions']}")
    if p.get("history"):
        typer.echo(f"history:     {p['history']} (healthscore history --history {p['history']} --customer <id>)")
    if tracked:
        from ml.serving.tracking import tracking_uri

        typer.echo(f"MLflow run {r.train.run_id}: registered {card.name} version {r.train.version} as @challenger")
        typer.echo(f"browse runs: mlflow ui --backend-store-uri {tracking_uri()}")


def print_appended(added, history) -> None:
    """One line per history append: rows, dates and what was replaced."""
    import typer

    dates = added.dates
    when = (
        ""
        if not dates
        else (f" on {dates[0]}" if len(dates) == 1 else f" on {len(dates)} dates ({dates[0]}..{dates[-1]})")
    )
    replaced = f", replacing {added.replaced:,} earlier rows of this model" if added.replaced else ""
    typer.echo(f"history: {added.rows:,} rows{when} -> {history}{replaced}")


def print_timeline(customer, timeline) -> None:
    import pandas as pd
    from rich.table import Table

    t = Table(title=f"{esc(customer)}: health over time")
    for col in (
        "date",
        "health",
        "band",
        "churn prob.",
        "manual",
        "manual band",
        "model",
        "moved most since the previous scoring",
    ):
        t.add_column(col, justify="right" if col in ("health", "churn prob.", "manual") else "left")
    for r in timeline.to_dict(orient="records"):
        t.add_row(
            str(pd.Timestamp(r["scoring_date"]).date()),
            f"{r['health_score']:.1f}",
            esc(r["band"]),
            f"{r['churn_probability']:.1%}",
            "-" if pd.isna(r["manual_score"]) else f"{r['manual_score']:.1f}",
            "" if pd.isna(r["manual_band"]) else esc(r["manual_band"]),
            esc(f"{r['model_id']}" + (f" v{r['model_version']}" if r["model_version"] else "")),
            esc(r["moved"]),
        )
    console().print(t)


def print_alerts(table, out=None, limit: int = 10, show: bool | None = None) -> None:
    """How many alerts fired per rule and, on a terminal (or with ``show``), the first ``limit`` of
    them; piped output gets the summary line only (the file has every alert)."""
    import typer

    if table.empty:
        typer.echo("no alerts fired" + (f" (empty table -> {out})" if out else ""))
        return
    counts = table["alert"].value_counts()
    per = ", ".join(f"{k} {v:,}" for k, v in counts.items())  # plain text (typer), not rich markup
    typer.echo(f"{len(table):,} alerts on {table['as_of'].iloc[0]} ({per})" + (f" -> {out}" if out else ""))
    if not (sys.stdout.isatty() if show is None else show):
        return
    from rich.table import Table

    t = Table(title=f"Alerts (first {min(limit, len(table))})")
    for col in ("customer", "alert", "detail", "band", "driver 1", "owner", "playbook"):
        t.add_column(col)
    for r in table.head(limit).to_dict(orient="records"):
        t.add_row(
            esc(r["customer_id"]),
            esc(r["alert"]),
            esc(r["detail"]),
            esc(r["band"] or ""),
            esc(r["driver_1"]),
            esc(r["owner"]),
            esc(r["playbook"]),
        )
    console().print(t)


def print_monitor(result, out=None) -> None:
    """The verdict and its reasons, the PSI table and realised churn per matured date."""
    import typer
    from rich.table import Table

    colors = {"ok": "green", "watch": "yellow", "retrain": "red"}
    con = console()
    con.print(
        f"monitor {result['as_of']}: verdict [bold {colors[result['verdict']]}]{result['verdict']}[/] "
        f"(reference: {esc(result['reference'])}, {result['reference_rows']:,} rows)"
    )
    for r in result["reasons"]:
        con.print(f"  - {esc(r)}")
    d = result["drift"]
    t = Table(title="Population stability (PSI: < 0.1 stable, 0.1-0.25 watch, >= 0.25 shifted)")
    for col in ("", "PSI", "status", "customers", "missing", "missing (ref.)", "new categories"):
        t.add_column(col, justify="left" if col in ("", "status", "new categories") else "right")
    for name, r in [("health score", d["health_score"]), ("manual score", d["manual_score"]), *d["indicators"].items()]:
        new = ", ".join(f"{k} {v:.1%}" for k, v in list(r["new_categories"].items())[:3])
        t.add_row(
            esc(name),
            fmt(r["psi"]),
            r["status"],
            f"{r['rows']:,}",
            fmt(r["missing_share"], pct=True),
            fmt(r["reference_missing_share"], pct=True),
            esc(new),
        )
    con.print(t)
    real = result.get("realised")
    if real and real["by_date"]:
        t = Table(title=f"Realised churn within {real['horizon_days']} days (labels until {real['labels_until']})")
        for col in ("scored on", "customers", "observed", "predicted", "ECE", "slope", "worst score bin"):
            t.add_column(col, justify="left" if col in ("scored on", "worst score bin") else "right")
        for r in real["by_date"]:
            t.add_row(
                r["date"],
                f"{r['rows']:,}",
                fmt(r["observed_rate"], pct=True),
                fmt(r["mean_predicted"], pct=True),
                fmt(r["ece"]),
                fmt(r["calibration_slope"]),
                r["sentence"],
            )
        con.print(t)
    if result.get("mlflow"):
        m = result["mlflow"]
        linked = f", linked to training run {m['training_run_id']}" if m["training_run_id"] else ""
        typer.echo(f"MLflow monitor run {m['run_id']}{linked}")
    if out:
        typer.echo(f"monitor report -> {out}")


def _label_text(s) -> str:
    rate = "-" if s.churn_rate is None else f"{s.churn_rate:.1%}"
    text = f"{s.labelled:,} rows labelled (churned: {rate})"
    if s.censored:
        text += (
            f", {s.censored:,} without a label yet (their horizon passes the label end "
            f"{s.label_end or '(no churn dates)'}; train leaves them out)"
        )
    return text


def print_snapshot_summary(s) -> None:
    """One build of ``healthscore snapshots``: rows, customers, dates, labels and time."""
    import typer

    dates = f"{s.dates:,} dates" + (f" ({s.first_date} to {s.last_date})" if s.first_date else "")
    typer.echo(f"built {s.rows:,} snapshots of {s.customers:,} customers at {dates} -> {s.path} in {s.seconds:.1f}s")
    typer.echo(f"  {_label_text(s)}")


def print_raw_tables(data, folder, spec) -> None:
    """What ``healthscore generate --raw`` wrote, and the command that builds the snapshots."""
    import typer

    sizes = ", ".join(f"{name} {len(frame):,}" for name, frame in data.tables.items())
    typer.echo(f"wrote raw tables to {folder} (rows: {sizes}) and their snapshot spec {spec}")
    typer.echo(f"next: healthscore snapshots --spec {spec} --out snapshots.parquet")
