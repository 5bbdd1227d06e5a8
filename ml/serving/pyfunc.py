"""The MLflow pyfunc model behind a model directory (``loader_module="ml.pyfunc"``, which re-exports
this module's loader).

MLflow imports :mod:`ml.pyfunc` and calls ``_load_pyfunc(<model directory>)``; nothing is unpickled:
the directory holds a LightGBM text model and JSON (see :mod:`ml.serving.bundle`).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ml.serving.bundle import load_model


class HealthScorePyfunc:
    """What ``mlflow.pyfunc.load_model(M)`` wraps: ``predict(df)`` returns the columns of
    ``healthscore predict`` (drivers included) as plain types."""

    def __init__(self, model_dir: str):
        self.model = load_model(model_dir)

    def get_raw_model(self):
        return self.model

    def predict(self, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        drivers = int((params or {}).get("drivers", 3))
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        out = self.model.predict(frame, drivers=drivers)
        for col in out.columns:  # categoricals and dates as plain strings for JSON responses
            if isinstance(out[col].dtype, pd.CategoricalDtype):
                out[col] = out[col].astype(object).where(out[col].notna(), None)
            elif pd.api.types.is_datetime64_any_dtype(out[col]):
                out[col] = out[col].dt.strftime("%Y-%m-%d")
        return out


def load_pyfunc(data_path: str, model_config: Any = None) -> HealthScorePyfunc:
    """MLflow's ``_load_pyfunc`` hook (see :mod:`ml.pyfunc`)."""
    return HealthScorePyfunc(data_path)
