"""The results the course's authors measured, shipped with the package so that every notebook can show them.

Training the course's recipes on a GPU, evaluating them on the test split and
sweeping the candidate recipes took real hardware and time; the numbers that
came out are kept here as JSON files, next to this module, and installed with
``retina_lib`` (also by ``pip install git+...``, which brings no other folder
of the repository). ``results/README.md`` in the repository gives the command
that produced each file.

Each result has a name: its path below this folder without ``.json``::

    from retina_lib.course_results import available_results, load_result
    available_results()                    # ['ablation', 'chase_db1/course_cpu_history', ...]
    ablation = load_result("ablation")    # {recipe: {score or setting: value}}
    hrf = load_result("hrf/test_course_cpu_chase_threshold")
"""
from __future__ import annotations

import json
from importlib import resources
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for the type hints; its module moved between Python 3.10 and 3.11
    from importlib.resources.abc import Traversable

__all__ = ["available_results", "load_result"]

SUFFIX = ".json"


def _folder() -> Traversable:
    """This package's folder, wherever and however ``retina_lib`` was installed."""
    return resources.files(__name__)


def available_results() -> list[str]:
    """The names of every stored result, sorted, e.g. ``"chase_db1/test_course_cpu"``."""
    names: list[str] = []
    folders: list[tuple[str, Traversable]] = [("", _folder())]
    while folders:
        prefix, folder = folders.pop()
        for entry in folder.iterdir():
            if entry.is_dir():
                folders.append((f"{prefix}{entry.name}/", entry))
            elif entry.name.endswith(SUFFIX):
                names.append(prefix + entry.name[: -len(SUFFIX)])
    return sorted(names)


def load_result(name: str) -> dict[str, Any]:
    """Read the stored result ``name`` (a name from :func:`available_results`) as a dict.

    Raises:
        ValueError: no result has that name; the message lists the names there are.

    Taught in notebook 04, section 1.
    """
    available = available_results()
    if name not in available:
        hint = " (give the name without .json)" if name.endswith(SUFFIX) else ""
        raise ValueError(f"no measured result is called {name!r}{hint}; the stored ones are: {', '.join(available)}")
    *folders, file_stem = name.split("/")
    entry = _folder()
    for folder in folders:
        entry = entry / folder
    return json.loads((entry / (file_stem + SUFFIX)).read_text(encoding="utf-8"))
