"""The declared dependencies: one list, every import declared, lower bounds pinned for CI.

pyproject.toml is the one place that declares what the course needs;
requirements.txt only installs it, and constraints/minimum.txt pins every
lower bound so that CI (``.ci/run``) can run the suite at the bottom of each
declared range. These tests keep the three files in step, and fail when code
imports a package that nobody declared (it would only arrive by luck, through
another package's dependencies).
"""
from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import nbformat
import pytest

try:
    import tomllib
except ImportError:  # Python 3.10: tomllib arrived in 3.11, tomli is the same parser
    import tomli as tomllib

PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Import names that differ from the name of the package that provides them.
DISTRIBUTION_OF_IMPORT = {"PIL": "pillow", "skimage": "scikit-image", "tomli": "tomli", "IPython": "ipython"}

#: Imports that are not third-party packages of ours: the project's own modules,
#: and Colab's ``google.colab`` (present on Colab only, never installed by us).
#: ``tomllib`` is the standard library's from Python 3.11 on (tomli before).
NOT_DEPENDENCIES = {"retina_lib", "google", "tomllib"}
#: ... nor are the test and benchmark modules that import one another,
LOCAL_MODULES = {path.stem for folder in ("tests", "benchmarks") for path in (PROJECT_ROOT / folder).glob("*.py")}
#: ... nor the optional peer library that benchmarks/bench.py compares with when
#: it happens to be installed (never a dependency of the course).
OPTIONAL_PEERS = {"segmentation_models_pytorch"}

REQUIREMENT = re.compile(r"^([A-Za-z0-9_.\-]+)\s*>=\s*([0-9][0-9.]*)\s*(;.*)?$")
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([0-9][0-9.]*)\s*(;.*)?$")


def canonical(name: str) -> str:
    """Package names compare case-insensitively, with -, _ and . alike (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> tuple[int, ...]:
    """'2.4' and '2.4.0' are the same release."""
    parts = [int(part) for part in version.split(".")]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def declared() -> dict[str, str]:
    """Every dependency of pyproject.toml (runtime and dev) and its lower bound."""
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    lines = project["dependencies"] + project["optional-dependencies"]["dev"]
    bounds = {}
    for line in lines:
        match = REQUIREMENT.match(line)
        assert match, f"pyproject.toml: {line!r} should read 'name>=version' (a lower bound CI can test)"
        bounds[canonical(match[1])] = match[2]
    return bounds


def pinned_minimums() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "constraints" / "minimum.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            match = PIN.match(line)
            assert match, f"constraints/minimum.txt: {line!r} should read 'name==version'"
            pins[canonical(match[1])] = match[2]
    return pins


def test_minimum_constraints_pin_exactly_the_declared_lower_bounds() -> None:
    bounds, pins = declared(), pinned_minimums()
    assert pins.keys() == bounds.keys(), (
        f"declared but not pinned: {sorted(bounds.keys() - pins.keys())}; "
        f"pinned but not declared: {sorted(pins.keys() - bounds.keys())}")
    for name, bound in bounds.items():
        assert release(pins[name]) == release(bound), f"{name}: pyproject says >={bound}, minimum.txt pins {pins[name]}"


def test_requirements_txt_installs_pyproject_and_declares_nothing_else() -> None:
    lines = [line.strip() for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == ["-e .[dev]"]


def top_level_imports(source: str, where: str) -> set[str]:
    """The top-level package of every absolute import in ``source``."""
    try:
        tree = ast.parse(source)
    except SyntaxError as error:
        pytest.fail(f"{where}: cannot parse: {error}")
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def notebook_code(path: Path) -> str:
    """A notebook's code cells as Python, without IPython's ``!shell`` and ``%magic`` lines."""
    cells = [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
    lines = "\n".join(cells).splitlines()
    return "\n".join(line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("!", "%")) else line
                     for line in lines)


def every_import() -> dict[str, set[str]]:
    """Each imported top-level package and the files that import it."""
    found: dict[str, set[str]] = {}
    sources = [(path, path.read_text()) for folder in ("retina_lib", "tests", "benchmarks")
               for path in sorted((PROJECT_ROOT / folder).rglob("*.py"))]
    sources += [(path, notebook_code(path)) for path in sorted((PROJECT_ROOT / "notebooks").glob("*.ipynb"))]
    for path, source in sources:
        for name in top_level_imports(source, str(path)):
            found.setdefault(name, set()).add(str(path.relative_to(PROJECT_ROOT)))
    return found


def test_every_imported_package_is_declared() -> None:
    bounds = declared()
    undeclared = {}
    for name, files in every_import().items():
        if (name in sys.stdlib_module_names or name in NOT_DEPENDENCIES | LOCAL_MODULES | OPTIONAL_PEERS
                    or name == "__future__"):
            continue
        if canonical(DISTRIBUTION_OF_IMPORT.get(name, name)) not in bounds:
            undeclared[name] = sorted(files)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"
