"""Benchmark inputs: exactly ``rows`` synthetic snapshot rows, generated once per run."""

from __future__ import annotations

import math
from pathlib import Path

from _harness import Context

ROWS_PER_CUSTOMER_GUESS = 8.0  # 12 monthly snapshots thinned by churn and late starts: ~8.5 observed
SEED = 0


def snapshots_frame(rows: int, months: int = 12, seed: int = SEED):
    """The first ``rows`` rows of ``generate_snapshots`` with enough customers to reach ``rows``."""
    from ml.data.generate import generate_snapshots

    customers = math.ceil(rows / ROWS_PER_CUSTOMER_GUESS)
    while True:
        frame = generate_snapshots(customers, months, seed=seed).frame
        if len(frame) >= rows:
            return frame.iloc[:rows].reset_index(drop=True)
        customers = math.ceil(customers * 1.25 * rows / max(len(frame), 1))


def snapshots_file(ctx: Context, rows: int, suffix: str = ".csv") -> Path:
    """Path of a file with exactly ``rows`` snapshot rows (written like ``healthscore generate``)."""

    def make() -> Path:
        from ml.data.io import write_table

        path = ctx.tmp / f"snapshots_{rows}{suffix}"
        write_table(snapshots_frame(rows), path)
        return path

    return ctx.cached(f"snapshots:{rows}:{suffix}", make)


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
    return n
