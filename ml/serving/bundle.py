"""The model directory: LightGBM text model + JSON, a checksum manifest, no pickle.

Layout of ``M/``::

    model.txt          LightGBM booster (text format)
    model.json         card, feature schema, calibrators, scorecard reference, explanation references,
                       training summary, package versions
    card.yaml          the card as given
    weights.csv        weight proposals (manual vs shap / gain / linear, with intervals)
    metrics.json       held-out evaluation and calibration report
    split.json         how the rows were split
    audit.json         direction audit
    cards/learned.yaml the learned card (an additive model on the odds scale with sigmoid calibration)
    MANIFEST.json      sha256 and size of every file above (and of any plots)

Loading checks every file against the manifest first, so a truncated or altered file fails with one
clear :class:`ModelError` instead of a crash inside LightGBM.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.io import replace_directory
from ml.errors import CardError, ModelError

FORMAT_VERSION = 1
MANIFEST = "MANIFEST.json"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import lightgbm
    import pandas
    import sklearn

    try:
        own = version("healthscore")
    except PackageNotFoundError:  # running from a source tree that was never installed
        own = "unknown"
    return {
        "healthscore": own,
        "lightgbm": lightgbm.__version__,
        "pandas": pandas.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
    }


def _json_default(o: Any):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def dump_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n", encoding="utf-8")


def model_state(model) -> dict[str, Any]:
    """Everything but the booster, as JSON-ready data."""
    sc_state = model.scorecard_.state()
    return {
        "format_version": FORMAT_VERSION,
        "kind": getattr(model, "kind_", "full"),
        "card": dict(model.card.raw),
        "schema": model.schema_.to_dict(),
        "params": {k: v for k, v in model.params_.items()},
        "best_iteration": model.best_iteration_,
        "calibrator": model.calibrator_.to_dict(),
        "manual_calibrator": model.manual_calibrator_.to_dict(),
        "base_rate": model.base_rate_,
        "band_cuts": None
        if model.band_cuts_ is None
        else [None if not np.isfinite(c) else float(c) for c in model.band_cuts_],
        "scorecard": sc_state,
        "manual_base_subscores": list(map(float, model.manual_base_subscores_)),
        "reference_values": model.reference_values_,
        "reference_points": getattr(model, "reference_points_", {}),
        "audit": [c.to_dict() for c in model.audit_],
        "split": model.split_summary_,
        "rows": model.n_rows_,
        "versions": _versions(),
    }


def write_manifest(model_dir: Path) -> dict[str, Any]:
    files = {}
    for p in sorted(model_dir.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(model_dir).as_posix()
            files[rel] = {"sha256": _sha256(p), "bytes": p.stat().st_size}
    manifest = {"format_version": FORMAT_VERSION, "files": files}
    dump_json(manifest, model_dir / MANIFEST)
    return manifest


def verify(model_dir: str | os.PathLike) -> dict[str, Any]:
    """Check every file against the manifest; raise :class:`ModelError` naming what is wrong."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir}: no such model directory; pass the --model-dir written by `healthscore train`.")
    mpath = model_dir / MANIFEST
    if not mpath.exists():
        raise ModelError(f"{model_dir}: {MANIFEST} is missing, so the model cannot be verified; retrain it.")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
        files = manifest["files"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelError(f"{mpath}: unreadable manifest ({exc}); the model directory is damaged, retrain it.") from None
    problems = []
    for rel, meta in files.items():
        p = model_dir / rel
        if not p.exists():
            problems.append(f"{rel} is missing")
        elif p.stat().st_size != meta["bytes"]:
            problems.append(f"{rel} has {p.stat().st_size} bytes, expected {meta['bytes']} (truncated or altered)")
        elif _sha256(p) != meta["sha256"]:
            problems.append(f"{rel} does not match its checksum (altered)")
    if problems:
        raise ModelError(
            f"model directory {model_dir} failed its integrity check: {'; '.join(problems)}. "
            "Restore the directory from its source or retrain."
        )
    return manifest


def save_model(
    model,
    model_dir: str | os.PathLike,
    *,
    extra_files: dict[str, Any] | None = None,
    before_manifest=None,
    mlflow_example=None,
) -> Path:
    """Write ``model`` (and ``extra_files``: name -> str | dict | DataFrame | callable(path)) to
    ``model_dir`` atomically: built in a temporary sibling directory, then swapped in. With
    ``mlflow_example`` (a frame of training rows) the directory is also an MLflow pyfunc model."""
    import pandas as pd

    from ml.data.io import remove_stale_temporaries

    model_dir = Path(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(model_dir)  # what a killed save left (its pid is in the name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.{os.getpid()}.", dir=model_dir.parent))
    try:
        if mlflow_example is not None:  # MLflow's files first: it refuses a non-empty directory
            from ml.serving.mlmodel import write_mlflow_files

            write_mlflow_files(model, mlflow_example, tmp)
        model.booster_.save_model(str(tmp / "model.txt"), num_iteration=model.best_iteration_)
        dump_json(model_state(model), tmp / "model.json")
        (tmp / "card.yaml").write_text(model.card.to_yaml(), encoding="utf-8")
        for name, content in (extra_files or {}).items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                target.write_text(content, encoding="utf-8")
            elif isinstance(content, pd.DataFrame):
                content.to_csv(target, index=False)
            elif callable(content):
                content(target)
            else:
                dump_json(content, target)
        if before_manifest is not None:
            before_manifest(tmp)
        write_manifest(tmp)
        replace_directory(tmp, model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model_dir


def load_model(model_dir: str | os.PathLike):
    """Load a :class:`~ml.model.HealthModel` from a directory (verified against its manifest)."""
    import lightgbm as lgb

    from ml.card import parse_card
    from ml.model.audit import DirectionCheck
    from ml.model.booster import HealthModel
    from ml.model.calibration import ScoreCalibrator
    from ml.model.features import FeatureSchema
    from ml.scorecard import WeightedScorecard

    model_dir = Path(model_dir)
    verify(model_dir)
    try:
        state = json.loads((model_dir / "model.json").read_text(encoding="utf-8"))
        if state.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{model_dir}: model format {state.get('format_version')!r}, this release reads {FORMAT_VERSION}; "
                "retrain with this release."
            )
        card = parse_card(state["card"])
        model = HealthModel(card)
        model.booster_ = lgb.Booster(model_file=str(model_dir / "model.txt"))
        model.kind_ = state.get("kind", card.model.kind)  # model directories before the additive kind: full
        model.additive_tables_ = None
        model.schema_ = FeatureSchema.from_dict(state["schema"])
        model.params_ = state["params"]
        model.best_iteration_ = state["best_iteration"]
        model.calibrator_ = ScoreCalibrator.from_dict(state["calibrator"])
        model.manual_calibrator_ = ScoreCalibrator.from_dict(state["manual_calibrator"])
        model.base_rate_ = state["base_rate"]
        cuts = state["band_cuts"]
        model.band_cuts_ = None if cuts is None else np.array([-np.inf if c is None else c for c in cuts])
        model.scorecard_ = WeightedScorecard.from_state(card, state["scorecard"])
        model.manual_base_subscores_ = np.asarray(state["manual_base_subscores"], float)
        model.reference_values_ = state["reference_values"]
        model.reference_points_ = state.get("reference_points", {})
        model.audit_ = [DirectionCheck(**{k: v for k, v in c.items() if k != "evidence"}) for c in state["audit"]]
        model.split_summary_ = state["split"]
        model.n_rows_ = state["rows"]
        model.versions_ = state.get("versions", {})
        model.model_dir_ = model_dir
        if model.kind_ == "additive":  # compiled once here, like the booster is parsed once
            from ml.model.additive import additive_tables

            additive_tables(model)
    except ModelError:
        raise
    except (KeyError, TypeError, ValueError, lgb.basic.LightGBMError, CardError, OSError) as exc:
        # a file that passed the manifest check but does not hold what this release writes (a hand
        # edit, another release's layout): a data problem, not a bug. Anything else is a bug: let it show.
        what = f"missing key {exc}" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
        raise ModelError(f"{model_dir}: could not load the model ({what}); retrain it.") from None
    return model
