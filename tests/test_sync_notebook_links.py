"""tools/sync_notebook_links.py: the notebooks' Colab badges and install cells follow REPOSITORY."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from retina_lib.course import REPOSITORY

TOOL = Path(__file__).resolve().parents[1] / "tools" / "sync_notebook_links.py"


def load_tool():
    """The tool as a module: tools/ is a folder of scripts, not a package."""
    spec = importlib.util.spec_from_file_location("sync_notebook_links", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sync_notebook_links_rewrites_badge_and_install_cell(tmp_path: Path) -> None:
    notebook = {
        "cells": [
            {"cell_type": "markdown", "id": "badge", "metadata": {}, "source": [
                "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                "(https://colab.research.google.com/github/old-owner/old-name/blob/main/notebooks/x.ipynb)"]},
            {"cell_type": "code", "id": "install", "metadata": {}, "outputs": [], "execution_count": None, "source": [
                '    !pip install --quiet --no-deps "git+https://github.com/old-owner/old-name"']},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }
    (tmp_path / "x.ipynb").write_text(json.dumps(notebook))
    sync = load_tool().sync_notebook_links
    assert sync(tmp_path, "https://github.com/new-owner/new-name") == ["x.ipynb"]
    badge, install = ["".join(cell["source"]) for cell in json.loads((tmp_path / "x.ipynb").read_text())["cells"]]
    assert "github/new-owner/new-name/blob/main/notebooks/x.ipynb" in badge
    assert install.endswith('"git+https://github.com/new-owner/new-name"')
    assert sync(tmp_path, "https://github.com/new-owner/new-name") == []


def test_committed_notebooks_use_the_repository_address() -> None:
    tool = load_tool()
    out_of_sync = []
    for path in sorted(tool.NOTEBOOK_DIR.glob("*.ipynb")):
        text = "".join(cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
                       for cell in json.loads(path.read_text(encoding="utf-8"))["cells"])
        if tool.with_repository(text, REPOSITORY) != text:
            out_of_sync.append(path.name)
    assert not out_of_sync, f"run `python tools/sync_notebook_links.py` to update {out_of_sync}"
