"""The score history: appending a 1,000,000-row scoring run, and `healthscore alerts` over 24 scoring
dates x 100,000 customers.

Inputs are synthetic but shaped like the real thing (the default card's 12 model features, points
that add up to the score, monthly dates, three driver texts), seeded: a model scoring a million rows
would only add minutes of set-up that neither step's time includes.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

from _harness import REPO, Bench, Call, Command, Context, case

FEATURES = (
    "interaction_frequency",
    "response_speed",
    "first_contact_resolution",
    "csat",
    "product_activity",
    "login_trend",
    "late_invoices_90d",
    "tickets_30d",
    "tenure_months",
    "onboarding_completed",
    "nps",
    "plan",
)
ALERTS_CARD_EXTRA = {
    "alerts": [
        {"name": "dropped", "type": "score_drop", "points": 10, "days": 31},
        {"name": "entered_at_risk", "type": "band_entered", "bands": ["At risk"]},
        {"name": "usage_down", "type": "indicator_change", "indicator": "product_activity", "pct": -40, "days": 31},
        {"name": "no_logins", "type": "threshold", "indicator": "product_activity", "below": 1},
    ],
    "cooldown_days": 14,
    "actions": [
        {"when": {"band": "At risk"}, "owner": "senior-cs", "playbook": "Call within 48 h; review open tickets"},
        {"when": {"alert": "usage_down"}, "owner": "csm", "playbook": "Adoption session"},
    ],
}
LAG_BASELINE = (
    'import sys, duckdb; duckdb.sql("SELECT count(*), sum(prev) FROM (SELECT health_score, '
    "lag(health_score) OVER (PARTITION BY customer_id ORDER BY scoring_date) AS prev "
    'FROM read_parquet(\'" + sys.argv[1] + "/*/*.parquet\'))").fetchall()'
)


def _card():
    import yaml

    from ml.card import parse_card

    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    raw.update(ALERTS_CARD_EXTRA)
    return parse_card(raw), raw


def synthetic_run(n: int, dates, seed: int, previous=None):
    """A ScoredRun of ``n`` customers on ``dates`` (cycled), or one that follows ``previous``'s customers
    a month later (scores move by a random walk, a few drop hard, activity sometimes collapses)."""
    import numpy as np
    import pandas as pd

    from ml.monitor.history import ScoredRun

    rng = np.random.default_rng(seed)
    k = len(FEATURES)
    ids = np.char.add("C", np.char.zfill(np.arange(n).astype(str), 7))
    if previous is None:
        base = rng.normal(0, 4, size=(n, k))
        logins = rng.poisson(20, n).astype(float)
    else:
        base = previous.points.to_numpy() + rng.normal(0, 1.0, size=(n, k))
        hit = rng.random(n) < 0.02
        base[hit] -= rng.uniform(2, 4, size=(int(hit.sum()), k))
        logins = previous.values["product_activity"].to_numpy() * np.where(rng.random(n) < 0.03, 0.4, 1.0)
        logins = np.round(np.clip(logins + rng.normal(0, 2, n), 0, None))
    health = np.clip(75 + base.sum(axis=1), 0, 100)
    points = pd.DataFrame(base, columns=list(FEATURES))
    values = pd.DataFrame({f: rng.normal(10, 3, n) for f in FEATURES})
    values["product_activity"] = logins
    values["plan"] = pd.Categorical(rng.choice(["basic", "pro", "enterprise"], n))
    bands = pd.Categorical(
        np.where(health >= 80, "Healthy", np.where(health >= 60, "Stable", "At risk")),
        categories=["Healthy", "Stable", "At risk"],
    )
    # rows by date, as the generator and a snapshot table give them (append_scores sorts otherwise)
    day = np.asarray(dates, dtype="datetime64[ns]")[np.arange(n) * len(dates) // n]
    table = pd.DataFrame(
        {
            "customer_id": ids,
            "snapshot_date": day,
            "health_score": health,
            "band": bands,
            "churn_probability": 1 - health / 100,
            "manual_score": np.clip(health + rng.normal(0, 5, n), 0, 100),
            "manual_band": bands,
            "manual_churn_probability": 1 - health / 100,
        }
    )
    worst = np.argsort(base, axis=1)[:, :3]
    for j in range(3):
        names = np.asarray(FEATURES)[worst[:, j]]
        table[f"driver_{j + 1}"] = (
            pd.Series(names).str.cat(
                pd.Series(np.round(base[np.arange(n), worst[:, j]], 1).astype(str)), sep=" 12.5 (portfolio median 20): "
            )
            + " points"
        )
    return ScoredRun(table, points, values)


# ---- append --------------------------------------------------------------------------------------
def _save_run(run, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    run.table.to_parquet(folder / "table.parquet")
    run.points.to_parquet(folder / "points.parquet")
    run.values.to_parquet(folder / "values.parquet")


def _load_run(folder: str):
    import pandas as pd

    from ml.monitor.history import ScoredRun

    f = Path(folder)
    return ScoredRun(
        pd.read_parquet(f / "table.parquet"),
        pd.read_parquet(f / "points.parquet"),
        pd.read_parquet(f / "values.parquet"),
    )


def append_run(run_dir: str, history: str) -> dict:
    """append_scores of a 1,000,000-row run (12 monthly dates) into an empty history."""
    import shutil

    from ml.monitor.history import ModelIdentity, append_scores

    card, _ = _card()
    run = _load_run(run_dir)
    shutil.rmtree(history, ignore_errors=True)
    ident = ModelIdentity("0123456789ab", "models/bench", "1", card.sha256)
    start = time.perf_counter()
    res = append_scores(history, run, card, ident)
    seconds = time.perf_counter() - start
    assert res.rows == len(run.table) and len(res.files) == 12
    return {"seconds": seconds}


def write_predictions(run_dir: str, out: str) -> dict:
    """The same run's predictions (predict's columns, drivers included) written to one Parquet file."""
    import pandas as pd

    table = pd.read_parquet(Path(run_dir) / "table.parquet")
    start = time.perf_counter()
    table.to_parquet(out)
    return {"seconds": time.perf_counter() - start}


@case("history_append_1m", "append a 1,000,000-row scoring run to the history vs writing its predictions to Parquet")
def history_append_1m(ctx: Context) -> Bench:
    rows = 100_000 if ctx.quick else 1_000_000

    def make() -> Path:
        months = [dt.date(2024, m, 1) for m in range(1, 13)]
        folder = ctx.tmp / f"history_run_{rows}"
        _save_run(synthetic_run(rows, months, seed=0), folder)
        return folder

    run_dir = ctx.cached(f"history_run:{rows}", make)
    return Bench(
        measured=Call(
            "case_history:append_run",
            {"run_dir": str(run_dir), "history": str(ctx.tmp / "append_history")},
            label="append_scores(history, run, card, identity)",
        ),
        baseline=Call(
            "case_history:write_predictions",
            {"run_dir": str(run_dir), "out": str(ctx.tmp / "append_baseline.parquet")},
            label="predictions.to_parquet(out)",
        ),
        max_ratio=1.5,
        info={"rows": rows, "dates": 12, "features": len(FEATURES)},
    )


# ---- alerts --------------------------------------------------------------------------------------
def build_history(path: Path, customers: int, dates: int) -> None:
    """``dates`` monthly scorings of ``customers`` customers (a random walk per customer)."""
    from ml.monitor.history import ModelIdentity, append_scores

    card, _ = _card()
    ident = ModelIdentity("0123456789ab", "models/bench", "1", card.sha256)
    run = None
    for i in range(dates):
        day = dt.date(2023 + i // 12, i % 12 + 1, 1)
        run = synthetic_run(customers, [day], seed=100 + i, previous=run)
        append_scores(path, run, card, ident)


@case("alerts_24x100k", "healthscore alerts over 24 scoring dates x 100,000 customers vs a duckdb lag() query process")
def alerts_24x100k(ctx: Context) -> Bench:
    import yaml

    customers = 20_000 if ctx.quick else 100_000
    history = ctx.tmp / f"alerts_history_{customers}"
    build_history(history, customers, 24)
    _, raw = _card()
    card_path = ctx.tmp / "alerts_card.yaml"
    card_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    out = ctx.tmp / "alerts.csv"

    def check() -> None:
        import pandas as pd

        table = pd.read_csv(out, keep_default_na=False)
        if list(table.columns)[:4] != ["customer_id", "as_of", "alert", "detail"] or table.empty:
            raise AssertionError(f"unexpected alerts output: {list(table.columns)}, {len(table)} rows")

    return Bench(
        measured=Command(
            [
                *ctx.console_script("healthscore"),
                "alerts",
                "--history",
                history,
                "--config",
                card_path,
                "--out",
                out,
            ],
            label="healthscore alerts --history H --config card.yaml --out alerts.csv",
        ),
        baseline=Command(
            [ctx.python, "-c", LAG_BASELINE, history],
            label="python -c 'import duckdb; lag(health_score) over (partition by customer_id ...)'",
        ),
        max_ratio=3.0,
        outputs=(out,),
        check=check,
        info={"customers": customers, "dates": 24},
    )
