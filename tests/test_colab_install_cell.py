"""Each notebook installs retina_lib itself on Colab, before anything imports it.

On Colab a notebook opens alone, with no repository around it, so its install
cell is the only way retina_lib arrives. CI's Colab simulation
(``.ci/colab_simulation.py``, run by ``.ci/run``) executes that cell for
real; these quick checks keep the cell's shape that both Colab and the
simulation rely on.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from retina_lib.course import REPOSITORY

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_one_install_cell_runs_on_colab_only_before_retina_lib_is_imported(path: Path) -> None:
    code = [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
    installs = [number for number, source in enumerate(code) if f"git+{REPOSITORY}" in source]
    assert len(installs) == 1, f"{path.name}: {len(installs)} cells install git+{REPOSITORY}, expected one"
    install = code[installs[0]]
    assert '"google.colab" in sys.modules' in install, f"{path.name}: the install cell must run on Colab only"
    assert "--no-deps" in install, f"{path.name}: without --no-deps pip would replace Colab's torch and ipywidgets"
    before = [source for source in code[:installs[0]] if "retina_lib" in source]
    assert not before, f"{path.name}: a cell uses retina_lib before the install cell: {before[0][:200]!r}"
