"""Which model to keep: ``train --kind full|additive|both``.

``additive`` and ``both`` fit the full and the additive model on the same splits, so the cost of
additivity is measured on held-out rows, not assumed. ``both`` keeps the additive model unless the
full one's held-out ROC-AUC is higher by more than ``ADDITIVE_AUC_TOLERANCE`` (0.005): an additive
model is a card a CS lead can read and run, and its explanations are exact table lookups, which is
worth that much ranking. (Choosing between two models on the held-out rows biases their reported
AUC upwards by a hair; the difference that decides is what is reported.)
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import pandas as pd

from ml.card import Card, card_with_model_kind
from ml.errors import CardError, quiet
from ml.model.booster import HealthModel
from ml.model.evaluate import heldout_auc

TRAIN_KINDS = ("full", "additive", "both")
ADDITIVE_AUC_TOLERANCE = 0.005  # `train --kind both` keeps the additive model unless the full one beats it by more


def _noop(*_) -> None:
    pass


def choose_kind(aucs: dict[str, float | None], tolerance: float = ADDITIVE_AUC_TOLERANCE) -> tuple[str, str]:
    """(kept kind, why) for ``train --kind both``: the additive model unless the full one's held-out
    AUC is higher by more than ``tolerance`` (an additive model is a card and explains itself exactly,
    which is worth a little ranking)."""
    full, add = aucs.get("full"), aucs.get("additive")
    if full is None or add is None:
        return "full", "no held-out AUC to compare on; kept the full model"
    if add >= full - tolerance:
        return "additive", (
            f"held-out AUC additive {add:.4f} vs full {full:.4f}: within {tolerance} (or better), so the additive "
            "model (a learned card, exact explanations) is kept"
        )
    return (
        "full",
        f"held-out AUC full {full:.4f} beats additive {add:.4f} by more than {tolerance}; kept the full model",
    )


def fit_kind(
    card: Card, frame: pd.DataFrame, kind: str | None = None, progress: Callable[..., None] = _noop
) -> tuple[HealthModel, pd.DataFrame, Any, dict[str, Any] | None]:
    """Fit the model of ``kind`` (default: the card's ``model.kind``). ``additive`` and ``both`` also
    fit the other kind on the same splits, so the cost of additivity is measured: ``both`` keeps the
    better by held-out AUC unless the additive one is within ``ADDITIVE_AUC_TOLERANCE`` (then it keeps
    the additive one), ``additive`` keeps the additive one. Returns (model, X, y, comparison), where
    comparison holds the other model and the choice (None for ``full``)."""
    kind = kind or card.model.kind
    if kind not in TRAIN_KINDS:
        raise CardError(f"--kind: got {kind!r}; use one of: {', '.join(TRAIN_KINDS)}.")
    if kind == "full":
        progress("fitting the churn model")
        model = HealthModel(card_with_model_kind(card, "full") if card.model.kind != "full" else card)
        X, y = model.fit_arrays(frame)
        return model, X, y, None
    models: dict[str, HealthModel] = {}
    arrays: dict[str, tuple] = {}
    for k in ("additive", "full"):
        progress(f"fitting the churn model ({k})")
        models[k] = HealthModel(card_with_model_kind(card, k))
        with quiet() if k == "full" else nullcontext():  # the data warnings once, not twice
            arrays[k] = models[k].fit_arrays(frame)
    with quiet():
        aucs = {k: heldout_auc(m, frame, arrays[k][1]) for k, m in models.items()}
    if kind == "both":
        kept, why = choose_kind(aucs)
    else:
        kept, why = "additive", "additive requested; the full model is trained beside it for comparison"
    other = "full" if kept == "additive" else "additive"
    comparison = {
        "requested": kind,
        "kept": kept,
        "reason": why,
        "tolerance": ADDITIVE_AUC_TOLERANCE,
        "heldout_auc": aucs,
        "other": models[other],
    }
    X, y = arrays[kept]
    return models[kept], X, y, comparison
