"""Training (with the refits for the weight intervals) and explaining, on 100,000 snapshot rows."""

from __future__ import annotations

import time

from _data import snapshots_file
from _harness import REPO, Bench, Call, Context, case

# the default card's 5 indicators + 10 extra features = 15 model features
EXTRA = [
    "login_trend",
    "late_invoices_90d",
    "tickets_30d",
    "tenure_months",
    "onboarding_completed",
    "nps",
    "plan",
    "segment",
    "logins_prev_30d",
]


def _card():
    import yaml

    from ml.card import parse_card

    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    raw["model"]["extra_features"] = EXTRA
    return parse_card(raw)


def _frame(data: str):
    import pandas as pd

    frame = pd.read_parquet(data)
    frame["csat_survey_count"] = (frame["interactions_30d"] * 0.4).round()  # a 15th feature
    return frame


def _card15():
    import dataclasses

    card = _card()
    return dataclasses.replace(
        card, model=dataclasses.replace(card.model, extra_features=(*EXTRA, "csat_survey_count"))
    )


def train_full(data: str, model_dir: str) -> dict:
    """`healthscore train` minus MLflow tracking: fit, 10 refits, evaluation, plots, model directory."""
    import warnings

    from ml.pipeline import train

    frame, card = _frame(data), _card15()
    warnings.simplefilter("ignore")
    start = time.perf_counter()
    result = train(card, frame, model_dir, n_refits=10)
    seconds = time.perf_counter() - start
    assert len(result.model.schema_.features) == 15
    return {"seconds": seconds}


def plain_lightgbm(data: str) -> dict:
    """One LGBMClassifier fit with default settings on the same 100,000 rows and 15 features."""
    import lightgbm as lgb

    from ml.model.features import FeatureSchema, label_array

    frame, card = _frame(data), _card15()
    X = FeatureSchema.learn(card, frame).matrix(frame)
    y = label_array(frame, card.label_column)
    start = time.perf_counter()
    from ml._lgb import lgb_threads

    lgb.LGBMClassifier(verbose=-1, n_jobs=lgb_threads()).fit(X, y)
    return {"seconds": time.perf_counter() - start}


def explain_all(data: str, model_dir: str) -> dict:
    """All contributions in health points plus the top-3 driver texts for every row."""
    from ml.model.explain import contributions, driver_text
    from ml.serving.bundle import load_model

    model = load_model(model_dir)
    frame = _frame(data)
    X = model.schema_.matrix(frame)
    start = time.perf_counter()
    contrib = contributions(model, X)
    texts = driver_text(model, X, contrib, k=3)
    seconds = time.perf_counter() - start
    assert len(texts[0]) == len(frame)
    return {"seconds": seconds}


def pred_contrib(data: str, model_dir: str) -> dict:
    """LightGBM's pred_contrib alone on the same rows and model."""
    from ml.serving.bundle import load_model

    model = load_model(model_dir)
    frame = _frame(data)
    X = model.schema_.matrix(frame)
    start = time.perf_counter()
    from ml._lgb import predict_kw

    model.booster_.predict(X, pred_contrib=True, **predict_kw())
    return {"seconds": time.perf_counter() - start}


def _trained_model(ctx: Context, data) -> str:
    def make() -> str:
        out = ctx.tmp / "model_for_explain"
        train_full(str(data), str(out))
        return str(out)

    return ctx.cached(f"model:{data}", make)


@case("train_100k", "healthscore train (10 refits, no MLflow) on 100,000 rows x 15 features vs one plain LightGBM fit")
def train_100k(ctx: Context) -> Bench:
    rows = 20_000 if ctx.quick else 100_000
    data = snapshots_file(ctx, rows, ".parquet")
    out = ctx.tmp / "train_100k.model"
    return Bench(
        measured=Call(
            "case_model:train_full",
            {"data": str(data), "model_dir": str(out)},
            label="ml.pipeline.train(card, frame, model_dir, n_refits=10)",
        ),
        baseline=Call("case_model:plain_lightgbm", {"data": str(data)}, label="LGBMClassifier().fit(X, y)"),
        max_seconds=None if ctx.quick else 60.0,
        max_peak_mb=2048.0,
        info={"rows": rows, "features": 15, "refits": 10},
    )


@case(
    "explain_100k", "contributions in health points + top-3 driver text for 100,000 rows vs LightGBM pred_contrib alone"
)
def explain_100k(ctx: Context) -> Bench:
    rows = 20_000 if ctx.quick else 100_000
    data = snapshots_file(ctx, rows, ".parquet")
    model_dir = _trained_model(ctx, data)
    return Bench(
        measured=Call(
            "case_model:explain_all",
            {"data": str(data), "model_dir": model_dir},
            label="contributions(model, X) + driver_text(k=3)",
        ),
        baseline=Call(
            "case_model:pred_contrib",
            {"data": str(data), "model_dir": model_dir},
            label="booster.predict(X, pred_contrib=True)",
        ),
        max_ratio=1.5,
        info={"rows": rows},
    )
