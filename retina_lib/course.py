"""What every notebook of the course needs first: smoke mode, seeding, a device, data.

Keeping these few decisions here means the notebooks stay short and all behave
the same way: on a laptop, on Colab, and under nbval in CI.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from retina_lib import data
from retina_lib.system.hardware import pick_device, seed_everything

#: Where the course lives. The "Open in Colab" badges and the Colab install cell
#: of every notebook use this address; after changing it, run
#: ``python tools/sync_notebook_links.py`` to rewrite the notebooks to match.
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


#: PyTorch's own thread count when this module was imported (one per core, or OMP_NUM_THREADS).
DEFAULT_THREADS = torch.get_num_threads()


@dataclass
class CourseSetup:
    """What the setup cell of a notebook decided."""

    device: torch.device
    smoke: bool
    seed: int
    threads: int


def course_threads(smoke: bool) -> int:
    """How many CPU threads PyTorch should use for the notebook's work: 1 in smoke mode, else its default.

    Why: every PyTorch operation on the CPU is split over the threads, and
    each split ends at a barrier where the threads wait for each other. Smoke
    mode trains on 64 x 64 pictures in batches of 1 or 2, where one operation
    takes microseconds, so the split saves little; and when another program
    (JupyterLab, a browser, a second notebook) holds one of the cores, the
    waiting costs more than the work, because the operation cannot finish
    until the descheduled thread gets that core back. On 2 busy cores,
    notebook 03 in smoke mode took 72 s with 2 threads against 38 s with 1
    (issue 19).
    ``benchmarks/threads.py`` measures the trainer's step both ways
    (``benchmarks/threads_cpu.json``, table in ``benchmarks/README.md``):
    with one core kept busy, the second thread made the step slower at both
    sizes; on a quiet machine it made both faster. Smoke mode, where a step
    takes milliseconds either way, uses one thread so that it never meets the
    bad case. Full mode keeps PyTorch's default (one per core), which wins
    the quiet case by far at 512 x 512.

    An explicit ``OMP_NUM_THREADS`` is the learner's choice and always wins.
    """
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return DEFAULT_THREADS
    return 1 if smoke else DEFAULT_THREADS


def setup(seed: int = 0, device: str = "auto", smoke: Optional[bool] = None) -> CourseSetup:
    """Seed everything, pick the device, the mode and the CPU thread count (:func:`course_threads`), and say them out loud.

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
    threads = course_threads(smoke)
    torch.set_num_threads(threads)
    mode = "SMOKE mode: small and fast, numbers are not meaningful" if smoke else "full mode"
    print(f"device: {chosen} | {mode} | seed: {seed} | CPU threads: {threads} | torch {torch.__version__}")
    return CourseSetup(device=chosen, smoke=smoke, seed=seed, threads=threads)


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

    Loads the photographs of notebooks 02 (section 4), 03 and 04 (their setup cells).
    """
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
    return data.load_dataset("synthetic", split, n=n, size=size, seed=seed)
