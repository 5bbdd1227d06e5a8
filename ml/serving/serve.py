"""``healthscore serve``: MLflow's scoring server for a model, started with the environment it needs.

``mlflow models serve --env-manager local`` starts ``uvicorn`` by name, so the virtualenv's ``bin``
must be on ``PATH`` (else it dies with exit 127, "uvicorn: not found"); usage telemetry is turned off
and the server binds to loopback unless told otherwise. :func:`serve_command` builds the command and
its environment (a pure function, tested alone); the CLI prints the URL and an example ``curl`` and
runs it.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from pathlib import Path

from ml.serving.tracking import tracking_uri

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001


def venv_bin() -> Path:
    """The ``bin`` directory of the Python running this package (where ``mlflow`` and ``uvicorn`` are)."""
    return Path(sys.executable).parent


def serve_command(model: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow models serve`` command line and environment for ``model`` (a model directory or a
    ``models:/`` URI, resolved against :func:`~ml.serving.tracking.tracking_uri`)."""
    bindir = venv_bin()
    env = dict(os.environ)
    path = env.get("PATH", "")
    if str(bindir) not in path.split(os.pathsep):
        env["PATH"] = str(bindir) + (os.pathsep + path if path else "")
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    env["MLFLOW_TRACKING_URI"] = tracking_uri()
    target = model if model.startswith("models:/") else str(Path(model).resolve())
    mlflow = bindir / "mlflow"
    argv = [str(mlflow) if mlflow.exists() else "mlflow"]
    argv += ["models", "serve", "-m", target, "--env-manager", "local", "--host", host, "--port", str(int(port))]
    return argv, env


def url_of(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
    return f"http://{shown}:{int(port)}"


def example_payload(model_dir: str | os.PathLike | None) -> str | None:
    """A one-row ``dataframe_split`` request from the model directory's ``input_example.json`` (NaN as
    null, so it is valid JSON), or None when there is none."""
    if model_dir is None:
        return None
    path = Path(model_dir) / "input_example.json"
    if not path.exists():
        return None
    try:
        example = json.loads(path.read_text(encoding="utf-8"))
        columns, row = example["columns"], example["data"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    row = [None if isinstance(v, float) and not math.isfinite(v) else v for v in row]
    return json.dumps({"dataframe_split": {"columns": columns, "data": [row]}}, allow_nan=False)


def example_curl(url: str, payload: str | None) -> str:
    body = payload or '{"dataframe_split": {"columns": [...], "data": [[...]]}}'
    return f"curl -s {url}/invocations -H 'Content-Type: application/json' -d {shlex.quote(body)}"
