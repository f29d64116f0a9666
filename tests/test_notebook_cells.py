"""The notebooks' exercise check cells are strict under nbval and quiet in JupyterLab.

nbval runs each cell with ``store_history=False``, and IPython then ignores a
trailing ``;``: a check cell ending in ``check_...(...);`` shows its True/False
under nbval but not in JupyterLab, so its output could never be checked. The
cells assign the result to ``_`` instead, which hides it everywhere, and carry
``NBVAL_CHECK_OUTPUT`` so that a changed verdict fails CI, except the checks in
``VERDICT_VARIES``, whose verdict names something that differs between smoke and
full mode or between machines.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CHECK_CALL = re.compile(r"^(_ = )?check_\w+\(", re.MULTILINE)
VERDICT_VARIES = {
    "check_weakest_width_class": "names the network in use: the learner's run or the shipped one",
    "check_dice_against_fov": "names the validation image: a real one in full mode, a synthetic one in smoke mode",
}


def check_cells(path: Path) -> list[str]:
    """The source of every code cell that imports an exercise check."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    sources = ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]
    return [source for source in sources if "retina_lib.exercises import" in source]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_every_check_call_is_assigned_to_underscore(path):
    for source in check_cells(path):
        calls = CHECK_CALL.findall(source)
        assert calls, f"{path.name}: a check cell without a check call:\n{source}"
        assert all(prefix == "_ = " for prefix in calls), f"{path.name}: write `_ = check_...(...)`:\n{source}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_check_cells_have_their_output_checked(path):
    for source in check_cells(path):
        varies = any(f"{name}(" in source for name in VERDICT_VARIES)
        marked = source.startswith("# NBVAL_CHECK_OUTPUT\n")
        assert marked != varies, (f"{path.name}: mark every check cell with NBVAL_CHECK_OUTPUT except those of "
                                  f"{sorted(VERDICT_VARIES)}:\n{source}")


def test_every_notebook_has_exercise_checks():
    assert all(check_cells(path) for path in NOTEBOOKS)
