"""Speed and memory benchmarks: each case is timed against a baseline measured in the same run.

    python benchmarks/run.py [--only NAME ...] [--quick] [--repeats N] [--json out.json] [--list]

Cases live in ``benchmarks/case_*.py`` and register themselves with ``@case`` (see
``_harness.py``). Inputs are generated into a temporary directory that is deleted afterwards;
nothing is written into the repository unless ``--json`` points there. Exit status: 0 when every
target is met, 1 when a target is missed, 2 when a case could not run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import _harness  # noqa: E402


def load_cases() -> dict[str, _harness.CaseDef]:
    for path in sorted(BENCH_DIR.glob("case_*.py")):
        importlib.import_module(path.stem)
    return _harness.CASES


def _load() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only this case (repeatable, or comma-separated)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small inputs (e.g. 100,000 rows instead of 1,000,000) and 3 repeats",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="timed runs of each step after one warm-up (default 5, 3 with --quick)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    args = parser.parse_args(argv)

    cases = load_cases()
    if args.list:
        for c in cases.values():
            print(f"{c.name:20} {c.description}")
        return 0
    names = list(cases)
    if args.only:
        names = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
        unknown = [n for n in names if n not in cases]
        if unknown:
            print(f"error: unknown case(s) {unknown}; known: {list(cases)}", file=sys.stderr)
            return 2
    repeats = args.repeats or (3 if args.quick else 5)
    if repeats < 1:
        parser.error("--repeats must be at least 1")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    load_before = _load()
    tmp = Path(tempfile.mkdtemp(prefix="healthscore-bench-"))
    try:
        ctx = _harness.Context(tmp=tmp, quick=args.quick, repeats=repeats)
        results = [_harness.run_case(cases[n], ctx, log) for n in names]
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    print(_harness.format_table(results))
    load_after = _load()
    print(
        f"({'quick, ' if args.quick else ''}{repeats} repeats; ratio = median/median, judged on it; "
        f"min = min/min; paired = median of back-to-back ratios; {time.perf_counter() - started:.0f}s "
        f"in all; 1-min load {load_before} -> {load_after} on {os.cpu_count()} CPUs)"
    )
    if args.json:
        payload = {
            "load_average_before": load_before,
            "load_average_after": load_after,
            "quick": args.quick,
            "repeats": repeats,
            "environment": _harness.environment(),
            "results": results,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    if any("error" in r for r in results):
        return 2
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
