"""Scoring with the manual card."""

from __future__ import annotations

from _data import count_lines, snapshots_file
from _harness import REPO, Bench, Command, Context, case

# The plain-pandas baseline: what any script that loads and saves the same table pays.
READ_WRITE = "import sys, pandas as pd; df = pd.read_csv(sys.argv[1]); df.to_csv(sys.argv[2], index=False)"
SCORE_HEADER = "customer_id,snapshot_date,health_score,band,coverage,points__"


@case(
    "score_1m",
    "healthscore score on 1,000,000 snapshot rows, CSV in and out, vs pandas read_csv + to_csv",
)
def score_1m(ctx: Context) -> Bench:
    rows = 100_000 if ctx.quick else 1_000_000
    data = snapshots_file(ctx, rows)
    out = ctx.tmp / "score_1m.scores.csv"
    copy = ctx.tmp / "score_1m.baseline.csv"

    def check() -> None:
        with open(out) as f:
            header = f.readline()
        if not header.startswith(SCORE_HEADER):
            raise AssertionError(f"unexpected score columns: {header.strip()}")
        if (n := count_lines(out) - 1) != rows:
            raise AssertionError(f"scored {n:,} rows, expected {rows:,}")

    return Bench(
        measured=Command(
            [
                *ctx.console_script("healthscore"),
                "score",
                "--config",
                REPO / "configs" / "default.yaml",
                "--data",
                data,
                "--out",
                out,
            ],
            label="healthscore score --config configs/default.yaml --data in.csv --out out.csv",
        ),
        baseline=Command(
            [ctx.python, "-c", READ_WRITE, data, copy],
            label="python -c 'pd.read_csv(in.csv).to_csv(out.csv, index=False)'",
        ),
        max_ratio=2.0,
        outputs=(out, copy),
        check=check,
        info={"rows": rows, "input_mb": round(data.stat().st_size / 2**20, 1)},
    )
