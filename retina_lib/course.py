"""What every notebook of the course needs first: smoke mode, seeding, a device, data.

Keeping these few decisions here means the notebooks stay short and all behave
the same way: on a laptop, on Colab, and under nbval in CI.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from retina_lib.system.hardware import pick_device, seed_everything

#: Where the course lives. The "Open in Colab" badges and the Colab install cell
#: of every notebook use this address; after changing it, run
#: ``python -m retina_lib.course`` to rewrite the notebooks to match.
REPOSITORY = "https://github.com/retina-linknet/retina-linknet"

#: The dataset the training and results notebooks use unless RETINA_DATASET says otherwise.
DEFAULT_DATASET = "chase_db1"

_TRUE_WORDS = {"1", "true", "yes", "on"}


def smoke_mode() -> bool:
    """True when the notebooks should shrink their work to about a minute on 2 CPU cores.

    On when ``RETINA_SMOKE`` is set to a true value, or when ``CI`` is (as it is
    on CI services); the test harness sets ``RETINA_SMOKE=1`` itself, so a plain
    ``pytest`` never starts a full training run. ``RETINA_SMOKE=0`` forces the
    full run even on CI.
    """
    smoke = os.environ.get("RETINA_SMOKE")
    if smoke is not None and smoke.strip() != "":
        return smoke.strip().lower() in _TRUE_WORDS
    return os.environ.get("CI", "").strip().lower() in _TRUE_WORDS


@dataclass
class CourseSetup:
    """What the setup cell of a notebook decided."""

    device: torch.device
    smoke: bool
    seed: int


def setup(seed: int = 0, device: str = "auto", smoke: Optional[bool] = None) -> CourseSetup:
    """Seed everything, pick the device and the mode, and say all three out loud.

    ``smoke`` is the learner's choice from the notebook's first cell: True for
    smoke mode, False for full mode, None to follow ``RETINA_SMOKE`` (see
    :func:`smoke_mode`), which is how the test harness runs every notebook in
    smoke mode without editing it. A learner never needs an environment variable.
    """
    if smoke is not None and not isinstance(smoke, bool):
        raise TypeError(f"SMOKE must be True, False or None, got {smoke!r}")
    seed_everything(seed)
    chosen = pick_device(device)
    smoke = smoke_mode() if smoke is None else smoke
    mode = "SMOKE mode: small and fast, numbers are not meaningful" if smoke else "full mode"
    print(f"device: {chosen} | {mode} | seed: {seed} | torch {torch.__version__}")
    return CourseSetup(device=chosen, smoke=smoke, seed=seed)


def course_dataset_name() -> str:
    """The dataset chosen by ``RETINA_DATASET`` (default CHASE_DB1)."""
    return os.environ.get("RETINA_DATASET", DEFAULT_DATASET).strip().lower()


def load_course_data(
    smoke: bool,
    name: Optional[str] = None,
    root: Optional[str] = None,
    synthetic_size: int = 256,
) -> tuple[str, Sequence, Sequence]:
    """Return ``(dataset_name, train_samples, test_samples)`` for a notebook.

    Full mode uses the real dataset (``RETINA_DATASET``, default CHASE_DB1) from
    the data root, downloading it on first use where a public link exists. Smoke
    mode uses the synthetic generator, and says so; so does a learner whose
    download fails, with the reason printed, never silently.
    """
    from retina_lib import data  # imported here so that notebooks 01 and 02 never touch data code

    name = name or course_dataset_name()
    if smoke:
        print("Smoke mode: using the SYNTHETIC fundus generator instead of real photographs.")
        return "synthetic", _synthetic(4, 2, synthetic_size), _synthetic(2, 1, synthetic_size, split="test")
    try:
        try:
            train = data.load_dataset(name, "train", root=root)
        except data.DatasetError as missing:
            if name not in data.DOWNLOADABLE:
                raise
            print(f"{name} is not in the data root yet ({missing}); downloading it from its official source.")
            data.download(name, root)
            train = data.load_dataset(name, "train", root=root)
        test = data.load_dataset(name, "test", root=root)
    except (data.DatasetError, OSError) as error:  # no copy and no download: say it, then fall back
        print(f"Could not load the real dataset {name!r}: {error}")
        print("Falling back to the SYNTHETIC fundus generator: results below are NOT on real images.")
        return "synthetic", _synthetic(20, 8, 512), _synthetic(8, 8, 512, split="test")
    print(f"Using the real dataset {name}: {len(train)} training and {len(test)} test images.")
    return name, train, test


def _synthetic(n: int, seed: int, size: int, split: str = "train") -> Sequence:
    from retina_lib.data import load_dataset

    return load_dataset("synthetic", split, n=n, size=size, seed=seed)


def sync_notebook_links(notebook_dir: Optional[str] = None) -> list[str]:
    """Rewrite the repository address in every notebook to :data:`REPOSITORY`.

    Returns the notebooks that changed. The address appears in the Colab badge
    (``colab.research.google.com/github/OWNER/NAME/...``) and in the install
    cell (``git+https://github.com/OWNER/NAME``).
    """
    import re
    from pathlib import Path

    import nbformat

    folder = Path(notebook_dir) if notebook_dir else Path(__file__).resolve().parents[1] / "notebooks"
    owner_and_name = REPOSITORY.removeprefix("https://github.com/")
    changed = []
    for path in sorted(folder.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        edited = False
        for cell in notebook.cells:
            source = re.sub(r"colab\.research\.google\.com/github/[^/\s]+/[^/\s]+/",
                            f"colab.research.google.com/github/{owner_and_name}/", cell.source)
            source = re.sub(r"git\+https://github\.com/[^/\s\"']+/[^/\s\"']+", f"git+{REPOSITORY}", source)
            if source != cell.source:
                cell.source = source
                edited = True
        if edited:
            nbformat.write(notebook, path)
            changed.append(path.name)
    return changed


if __name__ == "__main__":
    print("updated:", sync_notebook_links() or "nothing (already in sync)")
