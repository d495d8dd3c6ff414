"""The notebooks are percent-format .py files paired (jupytext) with the .ipynb that `make test`
executes with nbmake; the two must hold the same cells, and the .ipynb no outputs."""

from pathlib import Path

import jupytext
import nbformat
import pytest

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"
PAIRED = sorted(NOTEBOOKS.glob("*.py"))


def test_every_notebook_is_paired():
    assert len(PAIRED) == 7
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == [p.stem for p in PAIRED]


@pytest.mark.parametrize("py", PAIRED, ids=lambda p: p.stem)
def test_ipynb_holds_the_cells_of_its_py(py):
    text = jupytext.read(py)
    notebook = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    assert [(c.cell_type, c.source) for c in notebook.cells] == [
        (c.cell_type, c.source) for c in text.cells
    ], f"run `jupytext --sync notebooks/{py.name}`"
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code")
