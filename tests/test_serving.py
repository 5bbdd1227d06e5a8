"""The model directory served by ``mlflow models serve`` (local environment, loopback only) answers
like the in-process model: three customers posted as ``dataframe_split`` JSON come back with the same
health scores and bands.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from ml.card import parse_card
from ml.data.generate import generate_snapshots
from ml.pipeline import train

pytestmark = pytest.mark.slow  # trains models: `make test-fast` skips this module

HOST = "127.0.0.1"
START_TIMEOUT = 90  # seconds for the server to answer /ping


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def trained(default_card_raw, tmp_path_factory):
    """(model, frame, model dir): a small model written as an MLflow pyfunc model directory."""
    raw = default_card_raw()
    raw["model"] = {**raw.get("model", {}), "n_refits": 2}
    frame = generate_snapshots(1500, 8, seed=7).frame
    root = tmp_path_factory.mktemp("serving")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        mp.chdir(root)
        result = train(parse_card(raw), frame, root / "model", plots=False)
    return result.model, frame, result.model_dir


@pytest.fixture(scope="module")
def server(trained, tmp_path_factory):
    """`mlflow models serve` on a free loopback port; terminated (its whole process group) at teardown."""
    _, _, model_dir = trained
    root = tmp_path_factory.mktemp("serve")
    bindir = os.path.dirname(sys.executable)
    env = {
        **os.environ,
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    }
    port = _free_port()
    log = root / "server.log"
    cmd = [
        os.path.join(bindir, "mlflow"),
        "models",
        "serve",
        "-m",
        str(model_dir),
        "--env-manager",
        "local",
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://{HOST}:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no answer on {url}/ping after {START_TIMEOUT}s:\n{log.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its workers: its own session
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)


def _dataframe_split(frame: pd.DataFrame, date_column: str) -> dict:
    """JSON-ready ``dataframe_split``: dates as YYYY-MM-DD text, NaN as null."""
    f = frame.copy()
    f[date_column] = pd.to_datetime(f[date_column]).dt.strftime("%Y-%m-%d")
    split = json.loads(f.to_json(orient="split", index=False))  # NaN -> null
    return {"columns": split["columns"], "data": split["data"]}


def test_served_model_scores_like_the_model(trained, server):
    model, frame, _ = trained
    rows = frame.iloc[model.splits_.holdout]
    # three customers, one of them without a CSAT answer
    rows = pd.concat([rows[rows["csat"].notna()].iloc[:2], rows[rows["csat"].isna()].iloc[:1]])
    assert len(rows) == 3
    payload = json.dumps({"dataframe_split": _dataframe_split(rows, model.card.date_column)}).encode()
    request = urllib.request.Request(
        f"{server}/invocations", data=payload, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as r:
        assert r.status == 200
        body = json.loads(r.read())
    served = pd.DataFrame(body["predictions"])
    expected = model.predict(rows)
    assert len(served) == 3
    assert served["customer_id"].tolist() == rows["customer_id"].tolist()
    np.testing.assert_allclose(
        served["health_score"].to_numpy(dtype=float), expected["health_score"].to_numpy(dtype=float), rtol=0, atol=1e-9
    )
    assert served["band"].tolist() == expected["band"].astype(str).tolist()
    np.testing.assert_allclose(
        served["churn_probability"].to_numpy(dtype=float),
        expected["churn_probability"].to_numpy(dtype=float),
        rtol=0,
        atol=1e-9,
    )
    np.testing.assert_allclose(
        served["manual_score"].to_numpy(dtype=float), expected["manual_score"].to_numpy(dtype=float), rtol=0, atol=1e-9
    )
    assert served["driver_1"].tolist() == expected["driver_1"].tolist()
    assert served["snapshot_date"].tolist() == pd.to_datetime(rows["snapshot_date"]).dt.strftime("%Y-%m-%d").tolist()


def test_served_model_rejects_bad_input(server):
    """A request without the model's columns is a client error naming the missing columns (in the
    stack trace MLflow sends back), and the server keeps serving."""
    payload = json.dumps({"dataframe_split": {"columns": ["customer_id"], "data": [["C1"]]}}).encode()
    request = urllib.request.Request(
        f"{server}/invocations", data=payload, method="POST", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=60)
    assert info.value.code == 400
    assert "missing column(s)" in info.value.read().decode()
    with urllib.request.urlopen(f"{server}/ping", timeout=5) as r:
        assert r.status == 200
