"""A training run's folder: its files, one run at a time, and writes that never leave half a file.

:func:`~retina_lib.training.trainer.fit` with ``out_dir`` keeps everything about a run
in one folder:

* ``linknet.pth`` - the best weights so far (a plain ``state_dict``);
* ``checkpoint.pth`` - everything needed to continue (see :mod:`retina_lib.training.checkpoints`);
* ``history.json`` - the losses of every epoch; ``curves.png`` - their plot.

Two things protect that folder:

1. **One run at a time.** :func:`open_run_folder` holds an exclusive lock on
   the folder (the file ``.lock`` in it) for the whole run. A second run
   started into the same folder is refused at once, instead of mixing its
   files with the first one's. The operating system drops the lock when the
   process ends, however it ends (even ``kill -9`` or a power cut), so an
   interrupted run can always be resumed.
2. **Whole files only.** Every file is written with
   :func:`retina_lib.system.files.write_atomically`: under a temporary name,
   forced to the disk, renamed over the old one. Readers (and a run resumed
   after a crash) see either the old file or the new one, never half of one;
   the temporary files of a run that was killed are deleted when the folder
   is next opened.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import matplotlib.pyplot as plt

from retina_lib import plotter
from retina_lib.system.files import FileLock, remove_stale_partials, write_atomically
from retina_lib.errors import UserInputError

BEST_WEIGHTS_FILE = "linknet.pth"
CHECKPOINT_FILE = "checkpoint.pth"
HISTORY_FILE = "history.json"
CURVES_FILE = "curves.png"
#: The files a run writes: a folder holding any of them holds a run.
RUN_FILES = (BEST_WEIGHTS_FILE, CHECKPOINT_FILE, HISTORY_FILE, CURVES_FILE)
#: Held (locked) by the process that trains into the folder; deleted when it finishes.
LOCK_FILE = ".lock"


class ResumeError(UserInputError):
    """A run cannot be resumed: no checkpoint, a damaged one, or one made with different settings."""


class RunFolderInUseError(OSError):
    """Another process is training into the same folder right now."""


# --------------------------------------------------------------------------
# The run's files
# --------------------------------------------------------------------------

def save_history(history: Mapping[str, list[float]], run_dir: Path) -> None:
    """Write the history as ``history.json``."""
    write_atomically(run_dir / HISTORY_FILE, lambda path: path.write_text(json.dumps(history, indent=1)))


def save_curves(history: Mapping[str, list[float]], run_dir: Path) -> None:
    """Draw the history into ``curves.png`` with :func:`retina_lib.plotter.plot_history`."""

    # Closed at once: else a notebook would show one figure per epoch at the end of the cell.
    plt.close(plotter.plot_history(history, save_to=run_dir / CURVES_FILE))  # written whole by save_figure


# --------------------------------------------------------------------------
# One run at a time
# --------------------------------------------------------------------------

class RunFolderLock:
    """An exclusive lock on a run folder, held from :meth:`acquire` to :meth:`release`.

    The lock is a :class:`~retina_lib.system.files.FileLock` on ``FOLDER/.lock``:
    the operating system releases it when the process ends in any way, it is
    never taken through a symbolic link, and a ``.lock`` file that the library
    did not write is refused, not truncated or deleted.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._lock = FileLock(self.path)

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunFolderInUseError` naming the process that holds it."""
        if not self._lock.acquire(wait=False):
            raise RunFolderInUseError(
                f"{self.path.parent} is in use by another training run ({self._lock.holder()}): two runs in one "
                f"folder would mix their files; wait for it to end, or choose another out_dir (--out)"
            )

    def release(self) -> None:
        """Delete the lock file and let go of the lock (a second call does nothing)."""
        self._lock.release()

    def __enter__(self) -> RunFolderLock:
        self.acquire()
        return self

    def __exit__(self, *exception: object) -> None:
        self.release()


def existing_run_files(folder: Path) -> list[str]:
    """The names of the :data:`RUN_FILES` present in ``folder``."""
    return [name for name in RUN_FILES if (folder / name).exists()]


def check_run_folder(folder: Path, resume: bool) -> None:
    """Refuse to start a run over another run's files, or to resume a run that is not there.

    Any of :data:`RUN_FILES` means the folder holds a run, even without its
    ``checkpoint.pth`` (deleted to save space, say): starting afresh would
    overwrite trained weights.
    """
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"out_dir {folder} is a file, not a folder")
    if resume:
        if not (folder / CHECKPOINT_FILE).is_file():
            found = existing_run_files(folder) if folder.is_dir() else []
            what = f" (it holds {', '.join(found)})" if found else ""
            raise ResumeError(f"cannot resume: there is no {CHECKPOINT_FILE} in {folder}{what}; "
                              f"start without resume into another folder")
        return
    found = existing_run_files(folder) if folder.is_dir() else []
    if found:
        raise FileExistsError(
            f"{folder} already holds a training run ({', '.join(found)}); resume it with resume=True "
            f"(--resume) if it has a {CHECKPOINT_FILE}, or choose another out_dir, or delete that folder"
        )


@contextlib.contextmanager
def open_run_folder(folder: Path, resume: bool, lock: bool = True) -> Iterator[Path]:
    """Create ``folder`` and hold it for one run (see the module docstring); refuse another run's files.

    The checks of :func:`check_run_folder` run once before the folder is
    created (so a refused call creates nothing) and again under the lock (so
    two runs started at the same moment cannot both pass them). ``lock=False``
    is for the processes of a multi-process run other than the first, which
    write nothing.
    """
    folder = Path(folder)
    check_run_folder(folder, resume)
    if not lock:
        yield folder
        return
    folder.mkdir(parents=True, exist_ok=True)
    with RunFolderLock(folder):
        check_run_folder(folder, resume)
        remove_stale_partials(folder, RUN_FILES)  # left by a run killed while writing; the lock keeps writers out
        yield folder
