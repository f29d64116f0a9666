"""Re-execute course notebooks in place, in full mode, and store clean outputs.

    cd notebooks
    RETINA_SMOKE=0 RETINA_DATA_DIR=/path/to/datasets python ../tools/regenerate_notebooks.py 0*.ipynb

This is how the outputs committed in ``notebooks/`` are made. Notebooks 03 and
04 reuse a finished course run in ``runs/chase_db1_course`` (made with
``python -m retina_lib train --preset course ...``) instead of training inside
the notebook.

Two kinds of output are not stored, because a notebook read without a kernel
cannot show them: the explorers (ipywidgets sliders; each has a static figure
just before it) and widget views such as tqdm's progress bars. Explorer cells
are replaced by ``pass`` while the notebook runs (a live widget can keep the
executing client waiting) and committed without output.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from retina_lib.system.files import write_atomically  # noqa: E402

#: A code cell that only shows an explorer: one short line calling one of these.
EXPLORER_CALLS = ("browse_predictions(", "_explorer(")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def is_explorer_cell(cell: nbformat.NotebookNode) -> bool:
    return (cell.cell_type == "code" and len(cell.source.strip().splitlines()) == 1
            and any(call in cell.source for call in EXPLORER_CALLS))


def regenerate(path: Path) -> float:
    """Execute ``path`` in place; return the seconds it took."""
    notebook = nbformat.read(path, as_version=4)
    explorers = {cell.id: cell.source for cell in notebook.cells if is_explorer_cell(cell)}
    for cell in notebook.cells:
        if cell.id in explorers:
            cell.source = "pass"
    started = time.perf_counter()
    NotebookClient(notebook, timeout=3600, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(path.resolve().parent)}}).execute()
    seconds = time.perf_counter() - started
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        if cell.id in explorers:
            cell.source, cell.outputs, cell.execution_count = explorers[cell.id], [], None
        cell.outputs = [output for output in cell.outputs if WIDGET_VIEW not in output.get("data", {})]
        cell.metadata.pop("execution", None)  # per-cell timestamps: noise in every diff
    notebook.metadata.pop("widgets", None)
    write_atomically(path, lambda temporary: nbformat.write(notebook, temporary))
    return seconds


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for name in sys.argv[1:]:
        print(f"{name}: executed in {regenerate(Path(name)):.0f} s", flush=True)
