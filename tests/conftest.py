"""Shared fixtures: a fresh minimal card, a small seeded dataset and the repo's configs directory."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from ml.data.generate import SyntheticData, generate_snapshots

# Tests must never write into the repository: by default hypothesis keeps its example database and
# a cache of constants in `.hypothesis/` under the working directory. No database at all, and the
# cache goes to the system temp dir. No deadline: the first call pays pandas' warm-up.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "healthscore-hypothesis")
settings.register_profile("healthscore", database=None, deadline=None, max_examples=60)
settings.load_profile("healthscore")

REPO = Path(__file__).resolve().parents[1]

# The worked example of the README/STYLE: five identity-scored indicators.
WORKED_NAMES = ("interactions", "response", "resolution", "csat", "activity")
WORKED_WEIGHTS = (25, 20, 25, 20, 10)
WORKED_SUBSCORES = (90, 80, 70, 85, 60)

_MINIMAL_CARD: dict[str, Any] = {
    "version": 1,
    "id_column": "customer_id",
    "indicators": [
        {
            "name": name,
            "column": name,
            "weight": weight,
            "direction": "higher_is_better",
            "scoring": {"method": "identity"},
        }
        for name, weight in zip(WORKED_NAMES, WORKED_WEIGHTS, strict=True)
    ],
    "missing": "renormalize",
    "bands": [
        {"name": "Healthy", "min": 80},
        {"name": "Stable", "min": 60},
        {"name": "At risk", "min": 0},
    ],
}


def make_card_dict(**overrides: Any) -> dict[str, Any]:
    """A fresh (deep-copied) minimal valid card mapping; keyword arguments replace top-level keys."""
    d = copy.deepcopy(_MINIMAL_CARD)
    d.update(copy.deepcopy(overrides))
    return d


def single_indicator_card(
    scoring: dict[str, Any], direction: str = "higher_is_better", **overrides: Any
) -> dict[str, Any]:
    """A card with one indicator `x` (weight 100), so the health score equals its sub-score."""
    ind = {"name": "x", "column": "x", "weight": 100, "direction": direction, "scoring": scoring}
    return make_card_dict(indicators=[ind], **overrides)


@pytest.fixture(scope="session")
def card_dict() -> Callable[..., dict[str, Any]]:
    """Factory: ``card_dict(**overrides)`` returns a fresh minimal valid card mapping (safe to
    mutate; each call is a new deep copy, so the session scope shares no state)."""
    return make_card_dict


@pytest.fixture(scope="session")
def one_indicator() -> Callable[..., dict[str, Any]]:
    """Factory: ``one_indicator(scoring, direction, **overrides)`` -> card mapping with indicator `x`."""
    return single_indicator_card


@pytest.fixture
def worked_frame() -> pd.DataFrame:
    """One customer whose identity sub-scores are 90, 80, 70, 85, 60."""
    row = {"customer_id": "C1", **dict(zip(WORKED_NAMES, WORKED_SUBSCORES, strict=True))}
    return pd.DataFrame([row])


@pytest.fixture(scope="session")
def generated() -> SyntheticData:
    """A small seeded dataset (300 customers x 6 months). Treat as read-only: copy before mutating."""
    return generate_snapshots(300, 6, seed=1)


@pytest.fixture(scope="session")
def configs_dir() -> Path:
    return REPO / "configs"


@pytest.fixture(scope="session")
def default_card_raw(configs_dir) -> Callable[..., dict[str, Any]]:
    """Factory: ``default_card_raw()`` returns a fresh (deep-copied) mapping of configs/default.yaml,
    safe to edit before ``parse_card``."""
    import yaml

    raw = yaml.safe_load((configs_dir / "default.yaml").read_text(encoding="utf-8"))
    return lambda: copy.deepcopy(raw)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: small public datasets copied unchanged, each with its SOURCE.md."""
    return REPO / "tests" / "data"


# Spark settings for tests: a small JVM on two local cores, bound to the loopback interface, no UI
SPARK_TEST_CONF = {
    "spark.driver.memory": "1g",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.sql.session.timeZone": "UTC",
}


@pytest.fixture(scope="session")
def spark():
    """One local Spark session (``local[2]``) for the whole run; skipped with the reason when PySpark
    or Java 17 is missing (failed instead under ``HEALTHSCORE_REQUIRE_SPARK=1``, as in CI). Its Python
    workers run this interpreter (PYSPARK_PYTHON)."""
    import os
    import sys

    required = bool(os.environ.get("HEALTHSCORE_REQUIRE_SPARK"))  # set by .ci/run: no silent skip in CI
    try:
        import pyspark  # noqa: F401
    except ImportError:
        (pytest.fail if required else pytest.skip)("PySpark is not installed: pip install 'healthscore[spark]'")
    from ml.spark import java_problem, session

    problem = java_problem()
    if problem:
        (pytest.fail if required else pytest.skip)(problem)
    os.environ["PYSPARK_PYTHON"] = sys.executable
    spark = session("local[2]", app_name="healthscore-tests", conf=SPARK_TEST_CONF)
    yield spark
    spark.stop()
