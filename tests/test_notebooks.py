"""The numbered notebooks: stored without outputs, and each one runs top to bottom.

The kernel is this interpreter (``sys.executable``) through a kernelspec written to a temp dir, so the
test needs no user-level ``jupyter kernelspec install`` and cannot pick up another Python's kernel.
Each notebook runs with a temp dir as its working directory.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # trains models: `make test-fast` skips this module

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
EXPECTED = ["01-explore-indicators.ipynb", "02-learned-vs-manual-weights.ipynb", "03-explain-at-risk-customers.ipynb"]
TIMEOUT = 120  # seconds, per notebook


@pytest.fixture(scope="module")
def kernel_specs(tmp_path_factory) -> KernelSpecManager:
    """Only one kernelspec, ``python3``, running this interpreter's ipykernel."""
    kernels = tmp_path_factory.mktemp("jupyter") / "kernels"
    (kernels / "python3").mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (healthscore tests)",
        "language": "python",
    }
    (kernels / "python3" / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)


def test_the_numbered_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == EXPECTED


@pytest.mark.timeout(TIMEOUT)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_clean_and_runs(path, kernel_specs, tmp_path, tmp_path_factory):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    assert all(c.outputs == [] and c.execution_count is None for c in code), f"{path.name} is stored with outputs"

    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=kernel_specs)
    client = NotebookClient(
        nb, km=km, timeout=TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    # the notebooks' tempfile.mkdtemp() lands in pytest's temp dir, which pytest cleans up
    scratch = tmp_path_factory.mktemp(f"{path.stem}-tmp")
    client.execute(env={**os.environ, "TMPDIR": str(scratch)})  # raises CellExecutionError on a failing cell
    assert km.kernel_spec.argv[0] == sys.executable
    assert all(c.execution_count is not None for c in code)
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert list(tmp_path.iterdir()) == []  # nothing written to the working directory
    assert any(scratch.iterdir()) == (path.stem != "01-explore-indicators")  # models went to the temp dir
