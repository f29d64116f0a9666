"""tools/time_in_jupyterlab.py: the copy it runs is the learner's notebook with the mode chosen, and nothing else.

The browser part needs Playwright and Chromium, which the course does not
install; these tests cover what decides the measurement's meaning: which mode
runs, that it starts from no outputs, and that the committed notebook is left
untouched.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

REPOSITORY = Path(__file__).resolve().parents[1]
TOOL = REPOSITORY / "tools" / "time_in_jupyterlab.py"
NOTEBOOKS = sorted((REPOSITORY / "notebooks").glob("*.ipynb"))


def load_tool():
    """The tool as a module: tools/ is a folder of scripts, not a package."""
    spec = importlib.util.spec_from_file_location("time_in_jupyterlab", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
@pytest.mark.parametrize("smoke", [True, False])
def test_the_copy_sets_the_mode_and_starts_without_outputs(path: Path, smoke: bool, tmp_path: Path) -> None:
    before = path.read_bytes()
    copy = load_tool().prepare_copy(path, tmp_path, smoke)
    assert path.read_bytes() == before
    notebook = nbformat.read(copy, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert f"\nSMOKE = {smoke}" in "\n" + code[0].source and "SMOKE = None" not in code[0].source
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    original = nbformat.read(path, as_version=4)
    first = original.cells.index(next(cell for cell in original.cells if cell.cell_type == "code"))
    assert notebook.cells[first].source == original.cells[first].source.replace("SMOKE = None", f"SMOKE = {smoke}")
    assert [cell.source for index, cell in enumerate(notebook.cells) if index != first] == \
        [cell.source for index, cell in enumerate(original.cells) if index != first]

def test_a_notebook_without_the_mode_line_is_refused(tmp_path: Path) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("SMOKE = True")]
    path = tmp_path / "mine.ipynb"
    nbformat.write(notebook, path)
    (tmp_path / "copy").mkdir()
    with pytest.raises(SystemExit, match="mine.ipynb: its first code cell has no line 'SMOKE = None'"):
        load_tool().prepare_copy(path, tmp_path / "copy", smoke=True)
