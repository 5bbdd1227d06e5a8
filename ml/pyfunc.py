"""The stable MLflow entry point of a model directory (``loader_module="ml.pyfunc"`` in its ``MLmodel``).

Model directories written by every version of this package name this module, so it stays here while
the implementation lives in :mod:`ml.serving.pyfunc`.
"""

from ml.serving.pyfunc import HealthScorePyfunc
from ml.serving.pyfunc import load_pyfunc as _load_pyfunc

__all__ = ["HealthScorePyfunc", "_load_pyfunc"]
