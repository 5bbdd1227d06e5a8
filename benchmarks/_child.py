"""Runs one :class:`_harness.Call` step in a fresh interpreter and writes its time as JSON.

Usage: ``python benchmarks/_child.py module:function '<kwargs json>' result.json``
"""

from __future__ import annotations

import gc
import importlib
import json
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH_DIR), str(BENCH_DIR.parent)]


def main(target: str, kwargs_json: str, result_path: str) -> None:
    module_name, _, func_name = target.partition(":")
    func = getattr(importlib.import_module(module_name), func_name)
    kwargs = json.loads(kwargs_json)
    gc.collect()
    start = time.perf_counter()
    returned = func(**kwargs)
    seconds = time.perf_counter() - start
    if isinstance(returned, dict) and "seconds" in returned:
        seconds = float(returned["seconds"])
    Path(result_path).write_text(json.dumps({"seconds": seconds}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
