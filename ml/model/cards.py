"""Adoptable cards: each weight proposal written as a card that ``healthscore score`` runs as it is.

A proposal card is the manual card with that proposal's weights (card indicators only, integers
totalling 100, as ``reweighted_card`` makes them). It must score every customer exactly as the
held-out evaluation scored ``card_<proposal>``, so it carries what the evaluation used beyond the
weights:

- ``percentile`` indicators get ``scoring.reference`` (the backtest's reference population, stored as
  sorted distinct values and their counts), so they no longer rank within whatever data is scored;
- ``bands_by: quantile`` becomes fixed bands at the cut-offs the evaluation placed (on the rows the
  backtest model learnt from), when those are strictly decreasing; otherwise the card keeps quantile
  bands (its scores, and so its AUC, are unaffected; only the band cut-offs move with the data).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ml.card import Card, parse_card
from ml.errors import CardError
from ml.model.weights import PROPOSALS, reweighted_card
from ml.scorecard import WeightedScorecard

HEADER = (
    "# The manual card with the {name!r} weight proposal (see weights.csv), written by `healthscore train`.\n"
    "# `healthscore score --config` this file gives exactly the `card_{name}` scores of metrics.json\n"
    "# (percentile references are stored below; they come from the rows the backtest model learnt from).\n"
)


def proposal_card_raw(card: Card, proposed: Card, scorecard: WeightedScorecard) -> dict[str, Any]:
    """The YAML mapping of ``proposed`` (a re-weighted ``card``), carrying ``scorecard``'s percentile
    references and, for quantile bands, its band cut-offs as fixed bands."""
    raw = copy.deepcopy(dict(card.raw))
    raw.pop("normalize", None)  # the weights below total 100 exactly
    inds = []
    for raw_ind, ind in zip(raw["indicators"], proposed.indicators, strict=True):
        new = dict(raw_ind)
        w = float(ind.weight)
        new["weight"] = int(w) if w.is_integer() else w
        if ind.scoring.method == "percentile":
            ref = np.asarray(scorecard.reference_[ind.name], float)
            values, counts = np.unique(ref, return_counts=True)
            new["scoring"] = {
                **dict(raw_ind["scoring"]),
                "reference": {"values": [float(v) for v in values], "counts": [int(c) for c in counts]},
            }
        inds.append(new)
    raw["indicators"] = inds
    cuts = getattr(scorecard, "band_cuts_", None)
    if card.bands_by == "quantile" and cuts is not None:
        mins = [0.0 if not np.isfinite(c) else float(np.clip(c, 0.0, 100.0)) for c in cuts]
        if all(b < a for a, b in zip(mins, mins[1:], strict=False)) and mins[-1] == 0.0:
            raw["bands_by"] = "fixed"
            raw["bands"] = [
                {k: v for k, v in {**dict(b), "min": m}.items() if k != "max"}
                for b, m in zip(card.raw["bands"], mins, strict=True)
            ]
    return raw


def proposal_cards(
    card: Card, weights: pd.DataFrame, scorecard: WeightedScorecard, fit_frame: pd.DataFrame
) -> dict[str, str]:
    """``{"shap": yaml_text, ...}``: one valid card per proposal that gives its indicators weight.
    ``scorecard`` is the backtest model's fitted manual card, ``fit_frame`` the rows it learnt from
    (quantile band cut-offs are placed there, as the evaluation does)."""
    out: dict[str, str] = {}
    for name in PROPOSALS:
        rc = reweighted_card(card, weights, name)
        if rc is None:
            continue
        sc = WeightedScorecard.from_state(rc, scorecard.state())
        sc.place_band_cuts(fit_frame)
        raw = proposal_card_raw(card, rc, sc)
        try:
            parse_card(raw)  # written only if valid
        except CardError:  # a stored reference too large for a card: rank within the scored data instead
            for ind in raw["indicators"]:
                if isinstance(ind.get("scoring"), dict):
                    ind["scoring"].pop("reference", None)
            parse_card(raw)
        body = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)
        out[name] = HEADER.format(name=name) + body
    return out
