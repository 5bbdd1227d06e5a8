"""Errors and warnings raised by the package.

Every error names the field or column, what was found and the fix, so the CLI can print it as one
line and exit non-zero.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator


class HealthScoreError(Exception):
    """Base class: a problem with the user's input (card, data, model directory)."""


class CardError(HealthScoreError, ValueError):
    """The YAML card is invalid."""


class DataError(HealthScoreError, ValueError):
    """The data does not fit the card or the model (missing column, wrong type, too few rows...)."""


class ModelError(HealthScoreError):
    """A model directory is missing, incomplete or altered."""


class HealthScoreWarning(UserWarning):
    """Legal but suspicious input: the message carries the evidence."""


def warn(message: str) -> None:
    """Emit a :class:`HealthScoreWarning` attributed to the caller's caller."""
    warnings.warn(message, HealthScoreWarning, stacklevel=3)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence data warnings while re-scoring slices of data already checked (and warned about)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", HealthScoreWarning)
        yield


def rows_text(index, mask, limit: int = 8) -> str:
    """The rows where ``mask`` holds, as evidence for a message: "data rows 3, 7 and 12 more".

    Rows are counted from 1 (the first row after a CSV header) by the frame's integer index, which the
    readers leave as the row's position in the file; other indexes are shown as they are."""
    import numpy as np
    import pandas as pd

    labels = pd.Index(index)[np.asarray(mask, dtype=bool)]
    if pd.api.types.is_integer_dtype(labels):
        labels = labels + 1
    shown = ", ".join(str(v) for v in labels[:limit])
    more = len(labels) - limit
    return f"data row{'s' if len(labels) > 1 else ''} {shown}" + (f" and {more} more" if more > 0 else "")
