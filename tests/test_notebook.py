"""Runs notebooks/explore.ipynb top to bottom on a tiny checkpoint of real MNIST, so it never rots."""

import nbformat
import pytest
from nbclient import NotebookClient

from mnist_adder import PROJECT_ROOT

pytestmark = pytest.mark.mnist


def test_the_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_ADDER_TINY", "1")
    notebook = nbformat.read(PROJECT_ROOT / "notebooks" / "explore.ipynb", as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells), "commit the notebook without outputs"
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    assert sum("image/png" in output.get("data", {}) for output in outputs) >= 3
