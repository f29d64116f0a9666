"""Rewrite the repository address in every notebook to ``retina_lib.course.REPOSITORY``.

    python tools/sync_notebook_links.py            # prints the notebooks it updated

A repository-maintenance tool, kept beside ``regenerate_notebooks.py`` and out
of the package: a learner never runs it, a maintainer runs it after forking
the course and changing ``REPOSITORY``. The address appears in each
notebook's Colab badge (``colab.research.google.com/github/OWNER/NAME/...``)
and in its install cell (``git+https://github.com/OWNER/NAME``).
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

from retina_lib.course import REPOSITORY
from retina_lib.system.files import write_atomically

#: The notebooks of this checkout: tools/ sits beside notebooks/.
NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"


def with_repository(source: str, repository: str) -> str:
    """``source`` with its Colab badge link and its pip install address pointing at ``repository``."""
    owner_and_name = repository.removeprefix("https://github.com/")
    source = re.sub(r"colab\.research\.google\.com/github/[^/\s]+/[^/\s]+/",
                    f"colab.research.google.com/github/{owner_and_name}/", source)
    return re.sub(r"git\+https://github\.com/[^/\s\"']+/[^/\s\"']+", f"git+{repository}", source)


def sync_notebook_links(notebook_dir: Path = NOTEBOOK_DIR, repository: str = REPOSITORY) -> list[str]:
    """Rewrite every notebook in ``notebook_dir`` to point at ``repository``; return the names of those changed.

    A notebook already in sync is not written at all, so running the tool
    twice changes nothing the second time.
    """
    changed = []
    for path in sorted(Path(notebook_dir).glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        edited = False
        for cell in notebook.cells:
            source = with_repository(cell.source, repository)
            if source != cell.source:
                cell.source = source
                edited = True
        if edited:
            write_atomically(path, lambda temporary, notebook=notebook: nbformat.write(notebook, temporary))
            changed.append(path.name)
    return changed


if __name__ == "__main__":
    print("updated:", sync_notebook_links() or "nothing (already in sync)")
