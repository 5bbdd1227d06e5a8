"""Explaining with the additive model (compiled step tables) vs LightGBM's pred_contrib on the same model."""

from __future__ import annotations

import time

from _data import snapshots_file
from _harness import Bench, Call, Context, case

BASELINE_ROWS = 100_000  # pred_contrib runs on this many of the rows and is scaled up (it is linear in rows)


def _frame(data: str, rows: int | None = None):
    import pandas as pd
    from case_model import _frame as with_15th_feature

    frame = with_15th_feature(data) if data.endswith(".parquet") else pd.read_csv(data)
    if "csat_survey_count" not in frame:
        frame["csat_survey_count"] = (frame["interactions_30d"] * 0.4).round()
    return frame if rows is None else frame.iloc[:rows]


def train_additive(data: str, model_dir: str) -> dict:
    """HealthModel.fit with model.kind: additive on the 15-feature card, saved as a model directory."""
    import warnings

    from case_model import _card15

    from ml.card import card_with_model_kind
    from ml.model.booster import HealthModel
    from ml.serving.bundle import save_model

    warnings.simplefilter("ignore")
    frame = _frame(data)
    model = HealthModel(card_with_model_kind(_card15(), "additive")).fit(frame)
    save_model(model, model_dir)
    return {"seconds": 0.0}


def explain_additive(data: str, model_dir: str) -> dict:
    """Contributions in health points + top-3 driver text for every row, from the compiled tables."""
    from ml.model.explain import contributions, driver_text
    from ml.serving.bundle import load_model

    model = load_model(model_dir)
    assert model.kind_ == "additive"
    X = model.schema_.matrix(_frame(data))
    start = time.perf_counter()
    contrib = contributions(model, X, log_odds=False)  # as `predict --drivers 3` does
    texts = driver_text(model, X, contrib, k=3)
    seconds = time.perf_counter() - start
    assert len(texts[0]) == len(X) and (texts[0] != "").any()
    return {"seconds": seconds}


def pred_contrib(data: str, model_dir: str, rows: int) -> dict:
    """LightGBM's pred_contrib on the first ``rows`` rows, scaled to all rows."""
    from ml._lgb import predict_kw
    from ml.serving.bundle import load_model

    model = load_model(model_dir)
    frame = _frame(data)
    X = model.schema_.matrix(frame.iloc[:rows])
    start = time.perf_counter()
    model.booster_.predict(X, pred_contrib=True, **predict_kw())
    return {"seconds": (time.perf_counter() - start) * len(frame) / len(X)}


@case(
    "explain_additive_1m",
    "additive model: contributions in health points + top-3 driver text for 1,000,000 rows vs pred_contrib "
    "(TreeSHAP) on the same model (timed on 100,000 rows, x10)",
)
def explain_additive_1m(ctx: Context) -> Bench:
    rows = 100_000 if ctx.quick else 1_000_000
    train_data = snapshots_file(ctx, 20_000 if ctx.quick else 100_000, ".parquet")
    data = snapshots_file(ctx, rows)  # the scoring benchmark's CSV: generated once per run

    def make() -> str:
        out = ctx.tmp / "additive_model"
        train_additive(str(train_data), str(out))
        return str(out)

    model_dir = ctx.cached(f"additive-model:{train_data}", make)
    base_rows = min(rows, BASELINE_ROWS // (10 if ctx.quick else 1))
    return Bench(
        measured=Call(
            "case_additive:explain_additive",
            {"data": str(data), "model_dir": model_dir},
            label="contributions(model, X) + driver_text(k=3), model.kind: additive",
        ),
        baseline=Call(
            "case_additive:pred_contrib",
            {"data": str(data), "model_dir": model_dir, "rows": base_rows},
            label=f"booster.predict(X[:{base_rows:,}], pred_contrib=True) x {rows // base_rows}",
        ),
        max_ratio=1 / 50,
        info={"rows": rows, "baseline_rows": base_rows, "features": 15},
    )
