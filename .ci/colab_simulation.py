"""Run every notebook the way Colab does, alone, and fail on any error or missing-data report.

    python .ci/colab_simulation.py --colab-python ENV/bin/python [--notebooks notebooks] [--keep OUT]

On Colab each notebook opens in a runtime of its own: an empty ``/content``,
no repository around it, Colab's own packages (ipywidgets 7.7.1 among them)
and a ``google.colab`` module already imported. The notebook's install cell
(the code cell after the one choosing ``SMOKE``) then installs retina_lib with
``pip install --no-deps "git+<address>"``.
This script rebuilds that situation for each notebook in turn:

* the kernel runs the Python of ``--colab-python``: a virtual environment
  with Colab's packages (``.ci/colab_runtime.txt``) and **no** retina_lib;
* a stand-in ``google.colab`` package is imported when the kernel starts
  (an IPython startup file), as Colab's kernel does, so the install cell's
  ``"google.colab" in sys.modules`` test is true;
* the notebook runs in an empty temporary folder, in smoke mode
  (``RETINA_SMOKE=1``), with an empty data root;
* its install cell runs unchanged except for the repository address
  (:data:`retina_lib.course.REPOSITORY`), which points at a local ``git
  clone`` of this checkout's HEAD: the real ``pip install --no-deps git+...``
  path, into the Colab environment;
* afterwards retina_lib must have been installed from that clone, and it is
  uninstalled again so that the next notebook starts without it.

A notebook fails when a cell raises (cells tagged ``raises-exception``
excepted, as under nbval) or when an output reports missing data
(:data:`MISSING_DATA_PHRASES`): on Colab such a section shows nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from retina_lib.course import REPOSITORY

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KERNEL_NAME = "colab-simulation"
CELL_TIMEOUT_SECONDS = 1800  # a guard against a hung cell, not a speed limit

#: What the notebooks and retina_lib print when something a section needs is
#: missing (stored results, weights, history, the dataset). On Colab such a
#: section shows nothing useful, so the simulation treats each as a failure.
MISSING_DATA_PHRASES = (
    r"is not there",
    r"not found",
    r"has not been stored",
    r"No trained weights",
    r"There is no history",
    r"Could not load the real dataset",
    r"Falling back to the SYNTHETIC",
    r"No such file or directory",
)

#: What a notebook must print when it runs alone on Colab: notebook 04 has no run of its own
#: there, so it must use the network that ships inside the package (retina_lib.pretrained), not
#: a network trained for a few seconds.
REQUIRED_PHRASES = {
    "04_results.ipynb": (r"using the course's shipped LinkNet",),
}

#: Run in the Colab environment after a notebook: the shipped weights arrived with the package
#: and match their model card (sha256, size), so the notebook used the real file.
SHIPPED_WEIGHTS_CHECK = ("from retina_lib import pretrained; model, card = pretrained.load(); "
                         "print(card['sha256'], pretrained.weights_path())")

#: The stand-in for Colab's ``google.colab``: importable, and loud if a notebook
#: tries to use Google Drive, which a CI machine cannot mount.
GOOGLE_COLAB_STAND_IN = '''"""Stand-in for Colab's google.colab module, made by .ci/colab_simulation.py."""
SIMULATION = True
'''
GOOGLE_COLAB_DRIVE_STAND_IN = '''"""Stand-in for google.colab.drive: Google Drive cannot be mounted in the CI simulation."""


def mount(mountpoint, *args, **kwargs):
    raise RuntimeError(f"google.colab.drive.mount({mountpoint!r}): Google Drive cannot be mounted in the "
                       "Colab simulation; a notebook must not mount it unless the learner asks for it")
'''
GOOGLE_COLAB_OUTPUT_STAND_IN = '''"""Stand-in for google.colab.output: the widget manager switch exists and does nothing here."""


def enable_custom_widget_manager():
    pass


def disable_custom_widget_manager():
    pass
'''


def say(message: str) -> None:
    print(f"[colab simulation] {message}", flush=True)


def run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command, raising with its output when it fails."""
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise SystemExit(f"command failed ({result.returncode}): {' '.join(command)}\n{result.stdout}\n{result.stderr}")
    return result


def clone_checkout(target: Path) -> Path:
    """A git clone of this checkout's HEAD: what ``pip install git+...`` will install from."""
    run(["git", "clone", "--quiet", "--no-hardlinks", str(PROJECT_ROOT), str(target)])
    head = run(["git", "-C", str(target), "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = run(["git", "-C", str(PROJECT_ROOT), "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    say(f"installing from a clone of HEAD {head} at {target}"
        + (" (uncommitted changes in the checkout are NOT in it)" if dirty else ""))
    return target


def make_colab_stand_in(folder: Path) -> tuple[Path, Path]:
    """The ``google.colab`` package (on PYTHONPATH) and an IPython profile whose startup imports it."""
    package = folder / "site" / "google" / "colab"  # "google" stays a namespace package, as on Colab
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(GOOGLE_COLAB_STAND_IN)
    (package / "drive.py").write_text(GOOGLE_COLAB_DRIVE_STAND_IN)
    (package / "output.py").write_text(GOOGLE_COLAB_OUTPUT_STAND_IN)
    startup = folder / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-google-colab.py").write_text("import google.colab  # Colab's kernel imports it at start-up\n")
    return folder / "site", folder / "ipython"


def make_kernel(folder: Path, colab_python: Path, site: Path, ipython_dir: Path, cache: Path) -> Path:
    """A kernelspec that starts the Colab environment's Python with Colab's surroundings."""
    spec = folder / "kernels" / KERNEL_NAME
    spec.mkdir(parents=True)
    environment = {
        "PATH": f"{colab_python.parent}{os.pathsep}{os.environ.get('PATH', '')}",  # `!pip` is this env's pip
        "PYTHONPATH": str(site),  # only the stand-in: never the checkout
        "IPYTHONDIR": str(ipython_dir),
        "RETINA_SMOKE": "1",
        "OMP_NUM_THREADS": "1",
        "XDG_CACHE_HOME": str(cache),  # an empty data root (~/.cache/retina_lib), like a new runtime
        "PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip")),
    }
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(colab_python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab simulation",
        "language": "python",
        "env": environment,
    }, indent=1))
    return folder


def point_install_cell_at(notebook: nbformat.NotebookNode, clone: Path, name: str) -> None:
    """Replace the repository address in the install cell by the clone's, and nothing else."""
    address, local = f"git+{REPOSITORY}", f"git+file://{clone}"
    replaced = 0
    for cell in notebook.cells:
        if cell.cell_type == "code" and address in cell.source:
            cell.source = cell.source.replace(address, local)
            replaced += 1
    if replaced != 1:
        raise SystemExit(f"{name}: expected one install cell with {address!r}, found {replaced}")


def retina_lib_location(colab_python: Path, cwd: Path) -> str | None:
    """Where the Colab environment imports retina_lib from, or None when it cannot."""
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "RETINA_DATA_DIR")}
    result = subprocess.run([str(colab_python), "-c", "import retina_lib; print(retina_lib.__file__)"],
                            capture_output=True, text=True, cwd=cwd, env=environment)
    return result.stdout.strip() if result.returncode == 0 else None


def output_texts(notebook: nbformat.NotebookNode):
    """(cell number, text) for every text a cell printed or displayed."""
    for number, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                yield number, output.get("text", "")
            elif output.get("output_type") == "error":
                yield number, "\n".join(output.get("traceback", []))
            else:
                for kind in ("text/plain", "text/html", "text/markdown"):
                    if kind in output.get("data", {}):
                        yield number, output["data"][kind]


def missing_data_reports(notebook: nbformat.NotebookNode) -> list[str]:
    pattern = re.compile("|".join(MISSING_DATA_PHRASES), re.IGNORECASE)
    reports = []
    for number, text in output_texts(notebook):
        for line in text.splitlines():
            if pattern.search(line):
                reports.append(f"cell {number}: {line.strip()[:300]}")
    return reports


def required_phrases_missing(notebook: nbformat.NotebookNode, name: str) -> list[str]:
    """The phrases of :data:`REQUIRED_PHRASES` that no output of ``notebook`` shows."""
    texts = "\n".join(text for _, text in output_texts(notebook))
    return [f"no output says {phrase!r}" for phrase in REQUIRED_PHRASES.get(name, ())
            if not re.search(phrase, texts, re.IGNORECASE)]


def shipped_weights_problems(colab_python: Path, cwd: Path) -> list[str]:
    """Empty when the Colab environment's retina_lib loads its shipped weights (sha256 checked)."""
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "RETINA_DATA_DIR")}
    result = subprocess.run([str(colab_python), "-c", SHIPPED_WEIGHTS_CHECK], capture_output=True, text=True,
                            cwd=cwd, env=environment)
    if result.returncode != 0:
        return [f"the shipped weights did not load in the Colab environment: {result.stderr.strip()[-500:]}"]
    return []


def simulate(path: Path, colab_python: Path, clone: Path, keep: Path | None) -> list[str]:
    """Run one notebook alone; return its problems (empty when it passed)."""
    with tempfile.TemporaryDirectory(prefix="colab_content_") as content:
        workdir = Path(content)
        if retina_lib_location(colab_python, workdir) is not None:
            raise SystemExit(f"the Colab environment already has retina_lib ({retina_lib_location(colab_python, workdir)}); "
                             "the simulation needs one without it")
        notebook = nbformat.read(path, as_version=4)
        point_install_cell_at(notebook, clone, path.name)
        started = time.perf_counter()
        problems = []
        client = NotebookClient(notebook, kernel_name=KERNEL_NAME, timeout=CELL_TIMEOUT_SECONDS,
                                resources={"metadata": {"path": str(workdir)}})
        # No stand-in for the front end's Output widget: nbclient's sends each new state
        # back to the kernel on the shell channel while it waits there for the cell's
        # reply, and that wait sometimes never ends (nbclient issue #312; it hung here on
        # notebook 04's browser). Without it the explorers' figures land in the cell's
        # own outputs, which is all this check reads.
        client.widget_registry = {}
        try:
            client.execute()
        except CellExecutionError as error:
            problems.append(f"a cell raised:\n{error}")
        problems += [f"missing data: {report}" for report in missing_data_reports(notebook)]
        problems += required_phrases_missing(notebook, path.name)
        problems += shipped_weights_problems(colab_python, workdir)
        installed = retina_lib_location(colab_python, workdir)
        if installed is None:
            problems.append("retina_lib was not installed by the notebook's install cell")
        elif not Path(installed).is_relative_to(colab_python.parent.parent) or Path(installed).is_relative_to(clone):
            problems.append(f"retina_lib was imported from {installed}, not installed by pip into the Colab environment")
        leftovers = sorted(entry.name for entry in workdir.iterdir())
        say(f"{path.name}: {time.perf_counter() - started:.0f} s; retina_lib from {installed}; "
            f"the notebook left {leftovers or 'nothing'} in its folder")
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            nbformat.write(notebook, keep / path.name)
    subprocess.run([str(colab_python), "-m", "pip", "uninstall", "--quiet", "--yes", "retina-linknet"],
                   capture_output=True, text=True)
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--colab-python", type=Path, required=True,
                        help="the Python of a virtual environment with Colab's packages and no retina_lib")
    parser.add_argument("--notebooks", type=Path, default=PROJECT_ROOT / "notebooks")
    parser.add_argument("--keep", type=Path, help="write the executed notebooks into this folder")
    arguments = parser.parse_args(argv)
    colab_python = arguments.colab_python.absolute()  # not resolved: a venv's python is a symlink
    notebooks = sorted(arguments.notebooks.glob("*.ipynb"))
    if not notebooks:
        raise SystemExit(f"no notebooks in {arguments.notebooks}")
    failed = {}
    with tempfile.TemporaryDirectory(prefix="colab_simulation_") as scratch:
        scratch = Path(scratch)
        clone = clone_checkout(scratch / "repository")
        site, ipython_dir = make_colab_stand_in(scratch / "stand_in")
        jupyter_path = make_kernel(scratch / "jupyter", colab_python, site, ipython_dir, scratch / "cache")
        os.environ["JUPYTER_PATH"] = f"{jupyter_path}{os.pathsep}{os.environ.get('JUPYTER_PATH', '')}"
        for key in ("PYTHONPATH", "RETINA_DATA_DIR", "RETINA_DATASET", "VIRTUAL_ENV"):
            os.environ.pop(key, None)  # nothing of this machine's set-up reaches the kernel
        for path in notebooks:
            say(f"{path.name}: running alone in an empty folder, as on Colab")
            problems = simulate(path, colab_python, clone, arguments.keep)
            if problems:
                failed[path.name] = problems
    for name, problems in failed.items():
        say(f"FAILED {name}:")
        for problem in problems:
            print("    " + problem.replace("\n", "\n    "), flush=True)
    passed = len(notebooks) - len(failed)
    say(f"{passed} of {len(notebooks)} notebooks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
