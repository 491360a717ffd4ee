"""docs/tour.ipynb runs top to bottom (its cells assert what the text claims).

Needs the ``notebook`` extra (nbclient, nbformat, ipykernel); skipped without it. The kernel is
"python3", which ipykernel resolves to the Python running the tests (the venv's, with the npvae
under test on its path), so no kernel has to be registered and nothing is fetched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TOUR = Path(__file__).resolve().parent.parent / "docs" / "tour.ipynb"
TIMEOUT_SECONDS = 600  # per cell; the whole tour takes well under a minute on an idle machine


def test_tour_notebook_runs_top_to_bottom(tmp_path):
    notebook = nbformat.read(TOUR, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT_SECONDS, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    # the tour's matrices are tiny: one BLAS thread each is fastest, and on a busy machine threads
    # only wait for each other (measured 10x slower with the default on 2 loaded cores)
    client.execute(env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})  # raises CellExecutionError, with the cell and its traceback, if any cell fails
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(images) == 6  # four figures of the VAE, then VAE and AE samples
    text = "".join(output.get("text", "") for output in outputs)
    assert "gradcheck (central differences" in text and "AE: code std per dimension" in text
