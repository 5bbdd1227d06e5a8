"""The benchmark harness: a registry of named cases, each timing a measured step against a baseline
step in the same run.

Why it is built this way:

* This machine is small and noisy (2 cores), so absolute seconds mean little. Each case reports the
  ratio of its measured step to a baseline measured in the same run, and the steps alternate
  (measured, baseline, baseline, measured, ...) so that drift hits both sides alike.
* Every step runs in its own child process: the time includes nothing from the harness, and the
  peak memory is that child's maximum resident set size (``ru_maxrss`` from ``os.wait4`` for that
  one child). Unlike ``tracemalloc`` this counts numpy, Arrow and LightGBM allocations; unlike
  ``getrusage(RUSAGE_CHILDREN)`` (a running maximum over every child ever waited for) it is per
  run. The child is started by the small launcher ``_spawn.py``, not by the harness itself,
  because on Linux a child's ``ru_maxrss`` starts at its forking parent's resident size.
* One untimed warm-up of each step first (page cache, ``.pyc`` files), then ``repeats`` timed runs
  of each; a case is judged on the medians. The minimums are reported beside them.

A case is a function ``(ctx) -> Bench`` registered with :func:`case`; it prepares its inputs in
``ctx.tmp`` (``ctx.cached`` shares expensive inputs between cases) and returns the two steps and
its targets. A step is a :class:`Command` (an argv, timed wall-clock from spawn to exit, so Python
start-up and imports count, as a user would see them) or a :class:`Call` (a ``module:function``
run in a fresh interpreter by ``_child.py`` and timed around the call only).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


# ---- steps -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """Run ``argv``; the time is wall-clock from spawn to exit (interpreter start-up included)."""

    argv: tuple[str, ...]
    label: str = ""

    def __init__(self, argv: Iterable[str | os.PathLike], label: str = ""):
        object.__setattr__(self, "argv", tuple(str(a) for a in argv))
        object.__setattr__(self, "label", label)

    def describe(self) -> str:
        return self.label or " ".join(self.argv)


@dataclass(frozen=True)
class Call:
    """Run ``module:function(**kwargs)`` in a fresh interpreter (``benchmarks/`` and the repo on
    ``sys.path``). The time is that of the call alone, module imports excluded; if the function
    returns a dict with ``"seconds"``, that is used instead (so it can exclude its own loading).
    ``kwargs`` must be JSON-serialisable. Peak memory is still the whole child's."""

    target: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def describe(self) -> str:
        return self.label or self.target


Step = Command | Call


@dataclass
class Bench:
    """What a case returns: the two steps and the targets it must meet (any may be None)."""

    measured: Step
    baseline: Step | None = None
    max_ratio: float | None = None  # median(measured) / median(baseline) must not exceed this
    max_seconds: float | None = None  # absolute limit on median(measured)
    max_peak_mb: float | None = None  # absolute limit on the measured step's peak RSS
    outputs: tuple[Path, ...] = ()  # removed before every run, so each run writes a new file
    check: Callable[[], None] | None = None  # validates the measured step's output after warm-up
    info: dict[str, Any] = field(default_factory=dict)  # shown in the table/JSON (e.g. rows)


@dataclass
class Context:
    tmp: Path
    quick: bool
    repeats: int
    python: str = sys.executable
    _cache: dict[str, Any] = field(default_factory=dict)

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        """``make()`` once per run for ``key`` (e.g. a generated data file shared by cases)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def console_script(self, name: str) -> list[str]:
        """argv prefix for an installed console script (beside this interpreter), as users run it."""
        script = Path(self.python).parent / name
        if script.exists():
            return [str(script)]
        return [self.python, "-m", {"healthscore": "ml.cli.app"}.get(name, name)]


@dataclass(frozen=True)
class CaseDef:
    name: str
    description: str
    make: Callable[[Context], Bench]


CASES: dict[str, CaseDef] = {}


def case(name: str, description: str):
    """Register ``make(ctx) -> Bench`` as the benchmark ``name``."""

    def register(make: Callable[[Context], Bench]) -> Callable[[Context], Bench]:
        if name in CASES:
            raise ValueError(f"benchmark case {name!r} registered twice")
        CASES[name] = CaseDef(name, description, make)
        return make

    return register


# ---- running one step ------------------------------------------------------------------------
class StepFailed(RuntimeError):
    pass


@dataclass(frozen=True)
class Sample:
    seconds: float
    peak_mb: float
    cpu_seconds: float


def run_step(step: Step, ctx: Context, outputs: Iterable[Path] = ()) -> Sample:
    """Run ``step`` once through ``_spawn.py`` and return its time and peak memory."""
    for p in outputs:
        Path(p).unlink(missing_ok=True)
    stamp = f"{os.getpid()}-{time.monotonic_ns()}"
    spawn_file = ctx.tmp / f".spawn-{stamp}.json"
    call_file = None
    if isinstance(step, Command):
        argv = list(step.argv)
    else:
        call_file = ctx.tmp / f".call-{stamp}.json"
        argv = [
            ctx.python,
            str(BENCH_DIR / "_child.py"),
            step.target,
            json.dumps(step.kwargs),
            str(call_file),
        ]
    log = ctx.tmp / ".step.log"
    with open(log, "wb") as out:
        subprocess.run(
            [ctx.python, str(BENCH_DIR / "_spawn.py"), str(spawn_file), *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            check=True,
        )
    spawned = json.loads(spawn_file.read_text())
    spawn_file.unlink()
    if spawned["exit_code"] != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise StepFailed(f"{step.describe()} exited with {spawned['exit_code']}:\n{tail}")
    seconds = spawned["seconds"]
    if call_file is not None:
        seconds = float(json.loads(call_file.read_text())["seconds"])
        call_file.unlink()
    return Sample(seconds, spawned["peak_mb"], spawned["cpu_seconds"])


# ---- running one case ------------------------------------------------------------------------
def _limits_text(b: Bench) -> str:
    parts = []
    if b.max_ratio is not None:
        parts.append(f"ratio<={b.max_ratio:g}")
    if b.max_seconds is not None:
        parts.append(f"<={b.max_seconds:g}s")
    if b.max_peak_mb is not None:
        parts.append(f"peak<={b.max_peak_mb:g}MB")
    return ", ".join(parts) or "-"


def run_case(cd: CaseDef, ctx: Context, log: Callable[[str], None]) -> dict[str, Any]:
    res: dict[str, Any] = {"name": cd.name, "description": cd.description}
    try:
        t0 = time.perf_counter()
        b = cd.make(ctx)
        res["info"] = b.info
        res["target"] = _limits_text(b)
        res.update(max_ratio=b.max_ratio, max_seconds=b.max_seconds, max_peak_mb=b.max_peak_mb)
        res["measured_step"] = b.measured.describe()
        res["baseline_step"] = b.baseline.describe() if b.baseline else None
        log(f"[{cd.name}] inputs ready in {time.perf_counter() - t0:.1f}s; warm-up")
        run_step(b.measured, ctx, b.outputs)
        if b.check is not None:
            b.check()
        if b.baseline is not None:
            run_step(b.baseline, ctx, b.outputs)
        measured: list[Sample] = []
        baseline: list[Sample] = []
        for i in range(ctx.repeats):
            order = [("m", b.measured), ("b", b.baseline)]
            if i % 2:
                order.reverse()  # ABBA: drift over the run hits both sides alike
            for kind, step in order:
                if step is None:
                    continue
                s = run_step(step, ctx, b.outputs)
                (measured if kind == "m" else baseline).append(s)
            last_b = f", baseline {baseline[-1].seconds:.2f}s" if baseline else ""
            log(f"[{cd.name}] repeat {i + 1}/{ctx.repeats}: measured {measured[-1].seconds:.2f}s{last_b}")
        for p in b.outputs:
            Path(p).unlink(missing_ok=True)
    except Exception as exc:  # one broken case must not hide the others' results
        res.update(passed=False, error=f"{type(exc).__name__}: {exc}")
        if not isinstance(exc, StepFailed):
            res["traceback"] = traceback.format_exc()
        return res

    ms = [s.seconds for s in measured]
    res.update(
        repeats=len(ms),
        seconds=statistics.median(ms),
        seconds_min=min(ms),
        seconds_all=ms,
        cpu_seconds=statistics.median(s.cpu_seconds for s in measured),
        peak_mb=max(s.peak_mb for s in measured),
    )
    failures = []
    if baseline:
        bs = [s.seconds for s in baseline]
        res.update(
            baseline_seconds=statistics.median(bs),
            baseline_seconds_min=min(bs),
            baseline_seconds_all=bs,
            baseline_cpu_seconds=statistics.median(s.cpu_seconds for s in baseline),
            baseline_peak_mb=max(s.peak_mb for s in baseline),
        )
        res["ratio"] = res["seconds"] / res["baseline_seconds"]
        res["ratio_min"] = res["seconds_min"] / res["baseline_seconds_min"]
        # each repeat's measured/baseline pair ran back to back: the least drift-prone estimate
        res["ratio_paired"] = statistics.median(m / b for m, b in zip(ms, bs, strict=True))
        res["cpu_ratio"] = res["cpu_seconds"] / res["baseline_cpu_seconds"]  # user+sys, less load-sensitive
        res["peak_ratio"] = res["peak_mb"] / res["baseline_peak_mb"]
        if b.max_ratio is not None and res["ratio"] > b.max_ratio:
            failures.append(f"ratio {res['ratio']:.2f} > {b.max_ratio:g}")
    elif b.max_ratio is not None:
        failures.append("max_ratio set but the case has no baseline")
    if b.max_seconds is not None and res["seconds"] > b.max_seconds:
        failures.append(f"{res['seconds']:.2f}s > {b.max_seconds:g}s")
    if b.max_peak_mb is not None and res["peak_mb"] > b.max_peak_mb:
        failures.append(f"peak {res['peak_mb']:.0f}MB > {b.max_peak_mb:g}MB")
    res["failures"] = failures
    res["passed"] = not failures
    return res


# ---- reporting -------------------------------------------------------------------------------
def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(results: list[dict[str, Any]]) -> str:
    head = [
        "case",
        "measured s",
        "(min)",
        "baseline s",
        "(min)",
        "ratio",
        "(min)",
        "(paired)",
        "target",
        "peak MB",
        "base MB",
        "result",
    ]
    rows = []
    for r in results:
        if "error" in r:
            rows.append([r["name"], *["-"] * 7, r.get("target", "-"), "-", "-", "ERROR"])
            continue
        rows.append(
            [
                r["name"],
                _fmt(r["seconds"], ".2f"),
                _fmt(r["seconds_min"], ".2f"),
                _fmt(r.get("baseline_seconds"), ".2f"),
                _fmt(r.get("baseline_seconds_min"), ".2f"),
                _fmt(r.get("ratio"), ".2f"),
                _fmt(r.get("ratio_min"), ".2f"),
                _fmt(r.get("ratio_paired"), ".2f"),
                r["target"],
                _fmt(r["peak_mb"], ".0f"),
                _fmt(r.get("baseline_peak_mb"), ".0f"),
                "pass" if r["passed"] else "FAIL",
            ]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    right = {1, 2, 3, 4, 5, 6, 7, 9, 10}

    def line(cells):
        return "  ".join(
            str(c).rjust(w) if i in right else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    out = [line(head), line(["-" * w for w in widths])] + [line(r) for r in rows]
    for r in results:
        extra = ", ".join(f"{k}={v:,}" if isinstance(v, int) else f"{k}={v}" for k, v in r.get("info", {}).items())
        if extra:
            out.append(f"  {r['name']}: {extra}")
        rows_n = r.get("info", {}).get("rows")
        if isinstance(rows_n, int) and r.get("seconds"):
            rates = f"{rows_n / r['seconds']:,.0f} rows/s measured"
            if r.get("baseline_seconds"):
                rates += f", {rows_n / r['baseline_seconds']:,.0f} rows/s baseline"
            out.append(f"  {r['name']}: {rates} (medians)")
        if r.get("failures"):
            out.append(f"  {r['name']}: missed {'; '.join(r['failures'])}")
        if "error" in r:
            out.append(f"  {r['name']}: {r['error']}")
            if "traceback" in r:
                out.append(r["traceback"])
    return "\n".join(out)


def environment() -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for pkg in ("numpy", "pandas", "pyarrow", "scikit-learn", "lightgbm", "shap", "pyspark"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                cwd=REPO,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
    except (OSError, subprocess.CalledProcessError):
        commit, dirty = None, None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "git_commit": commit,
        "git_dirty": dirty,
        "packages": versions,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
