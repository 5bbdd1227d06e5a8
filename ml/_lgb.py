"""LightGBM settings shared by training, scoring and explaining (threads, predict keyword arguments)."""

from __future__ import annotations

import os
from typing import Any


def lgb_threads() -> int:
    """LightGBM threads: 1 unless HEALTHSCORE_THREADS says otherwise. On a small shared machine,
    OpenMP's spinning worker threads can slow a 2-thread fit a hundredfold whenever another process
    (or MLflow's own threads) competes for a core, while one thread costs ~30 % at worst."""
    try:
        return max(1, int(os.environ.get("HEALTHSCORE_THREADS", "1")))
    except ValueError:
        return 1


def predict_kw() -> dict[str, Any]:
    """Keyword arguments for every ``Booster.predict`` call."""
    return {"num_threads": lgb_threads()}
