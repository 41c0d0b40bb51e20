"""The companion notebooks: committed without outputs, and each runs top to bottom in its small setting."""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_the_three_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == [
        "01_offline_training.ipynb", "02_finetune_and_propagate.ipynb", "03_convgru_gates.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


def _execute(path):
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    # every cell takes seconds in the small setting; a cell still running after 2 minutes is a hang
    client = NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    return notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom_in_the_small_setting(path, monkeypatch, tmp_path):
    from nbclient.exceptions import CellTimeoutError

    monkeypatch.setenv("SEGFLOW_NOTEBOOK_SMALL", "1")
    # the notebooks keep their workspaces in the temporary folder for the reader to open; a test run's go with
    # pytest's own
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.delenv("DISPLAY", raising=False)
    # in three fresh-clone CI runs out of many, the kernel and the client both sat idle mid-notebook (a message
    # lost between them; the same notebook ran in 11 s before and after): a hang gets two more tries, an error none
    for tries_left in (2, 1, 0):
        try:
            notebook = _execute(path)
            break
        except CellTimeoutError:
            if not tries_left:
                raise
    code = [c for c in notebook.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1))  # every cell ran, in order
    figures = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert figures, "the notebook drew no figure"
