"""Checks on the rows a command is about to score: legal but suspicious keys get a warning with evidence.

Indicator values are checked where they are converted (:mod:`ml.scorecard`: text in a number column,
infinite values, negative counts); here the keys: empty ids and dates that do not parse.
"""

from __future__ import annotations

import pandas as pd

from ml.card import Card
from ml.errors import rows_text, warn


def empty_text(series: pd.Series) -> pd.Series:
    """True where a key is missing or only whitespace."""
    return series.isna() | series.astype("string").str.strip().eq("").fillna(True)


def check_rows(frame: pd.DataFrame, card: Card) -> None:
    """Warn about rows whose id is empty (they are scored but cannot be matched to a customer) and
    dates that do not parse (those rows never count as anyone's latest snapshot)."""
    if card.id_column in frame.columns and len(frame):
        empty = empty_text(frame[card.id_column]).to_numpy()
        if empty.all():
            warn(
                f"id column {card.id_column!r} is empty in every row ({len(frame):,}); the scores cannot be "
                "matched to customers. Check that the id column holds the customer ids."
            )
        elif empty.any():
            warn(
                f"id column {card.id_column!r} is empty in {int(empty.sum()):,} row(s) ({rows_text(frame.index, empty)}); "
                "they are scored but cannot be matched to a customer. Fill or drop those rows."
            )
    if card.date_column and card.date_column in frame.columns and len(frame):
        raw = frame[card.date_column]
        if pd.api.types.is_datetime64_any_dtype(raw):
            return
        parsed = pd.to_datetime(raw, errors="coerce")
        bad = (parsed.isna() & ~empty_text(raw)).to_numpy()
        if bad.any():
            examples = pd.unique(raw[bad].astype(str))[:3].tolist()
            warn(
                f"date column {card.date_column!r}: {int(bad.sum()):,} value(s) are not dates (e.g. {examples}) "
                f"in {rows_text(frame.index, bad)}; they are read as missing dates. Write dates as YYYY-MM-DD."
            )
