"""The MLflow pyfunc model behind a model directory (``loader_module="ml.pyfunc"``, which re-exports
this module's loader).

MLflow imports :mod:`ml.pyfunc` and calls ``_load_pyfunc(<model directory>)``; nothing is unpickled:
the directory holds a LightGBM text model and JSON (see :mod:`ml.serving.bundle`).
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from ml.errors import HealthScoreError
from ml.serving.bundle import load_model

_log = logging.getLogger(__name__)


def serving_error(message: str, status: str = "BAD_REQUEST", base: type[Exception] = Exception) -> Exception:
    """An MLflow exception (and a ``base``, e.g. the original :class:`DataError` class, so callers of
    the pyfunc model can still catch that) whose JSON body is exactly ``message``: the scoring server answers an
    ``MlflowException`` raised by ``predict`` with its ``error_code`` (BAD_REQUEST -> HTTP 400) and
    ``message``, after prefixing the message with the whole input frame (``Failed to predict data
    '...'``). This message ignores that rewrite, so a client reads the project's one-line error and
    nothing else: no input echoed back, no stack trace, no server paths."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    class ServingError(MlflowException, base):
        @property
        def message(self) -> str:
            return self._message

        @message.setter
        def message(self, value: str) -> None:
            if not hasattr(self, "_message"):  # set once, by MlflowException.__init__
                self._message = value

    return ServingError(message, error_code=getattr(databricks_pb2, status))


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
        try:
            out = self.model.predict(frame, drivers=drivers, unseen="missing")
        except HealthScoreError as exc:
            raise serving_error(f"error: {' '.join(str(exc).split())}", base=type(exc)) from None
        except Exception as exc:  # a bug: the traceback stays in the server's log, not in the response
            _log.exception("healthscore predict failed")
            raise serving_error(
                f"error: unexpected {type(exc).__name__} in healthscore predict; see the server log.", "INTERNAL_ERROR"
            ) from None
        for col in out.columns:  # categoricals and dates as plain strings for JSON responses
            if isinstance(out[col].dtype, pd.CategoricalDtype):
                out[col] = out[col].astype(object).where(out[col].notna(), None)
            elif pd.api.types.is_datetime64_any_dtype(out[col]):
                out[col] = out[col].dt.strftime("%Y-%m-%d")
        return out


def load_pyfunc(data_path: str, model_config: Any = None) -> HealthScorePyfunc:
    """MLflow's ``_load_pyfunc`` hook (see :mod:`ml.pyfunc`)."""
    return HealthScorePyfunc(data_path)
