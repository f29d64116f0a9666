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
2. **Whole files only.** :func:`write_atomically` writes each file under a
   unique temporary name in the same folder, forces it to the disk, then
   renames it over the old one. Readers (and a run resumed after a crash) see
   either the old file or the new one, never half of one.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt

from retina_lib import plotter
from retina_lib.errors import UserInputError

try:  # Linux, macOS and other Unix systems
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # everything but Windows
    msvcrt = None

BEST_WEIGHTS_FILE = "linknet.pth"
CHECKPOINT_FILE = "checkpoint.pth"
HISTORY_FILE = "history.json"
CURVES_FILE = "curves.png"
#: The files a run writes: a folder holding any of them holds a run.
RUN_FILES = (BEST_WEIGHTS_FILE, CHECKPOINT_FILE, HISTORY_FILE, CURVES_FILE)
#: Held (locked) by the process that trains into the folder; deleted when it finishes.
LOCK_FILE = ".lock"
#: The ending of the temporary files that :func:`write_atomically` renames into place.
PARTIAL_SUFFIX = ".partial"


class ResumeError(UserInputError):
    """A run cannot be resumed: no checkpoint, a damaged one, or one made with different settings."""


class RunFolderInUseError(OSError):
    """Another process is training into the same folder right now."""


# --------------------------------------------------------------------------
# Writing whole files only
# --------------------------------------------------------------------------

def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(temporary_path)``, then rename the result to ``path`` in one step.

    The temporary file has a unique name in the same folder, so ``os.replace``
    is a rename on the same file system, and two writers never share a
    temporary file. Before the rename the file's data is forced to the disk,
    and after it the folder's entry (where the operating system allows opening
    a folder, as on Linux and macOS): without both, a power cut soon after
    could leave an empty file under the final name.
    """
    path = Path(path)
    descriptor, temporary_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
    os.close(descriptor)
    temporary = Path(temporary_name)
    try:
        write(temporary)
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Force a folder's entries (a rename into it) to the disk, where the system can open a folder."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open a folder; its file system commits renames itself
        return
    try:
        os.fsync(descriptor)
    except OSError:  # some file systems (and Windows) refuse fsync on a folder
        pass
    finally:
        os.close(descriptor)


def save_history(history: Mapping[str, list[float]], run_dir: Path) -> None:
    """Write the history as ``history.json``."""
    write_atomically(run_dir / HISTORY_FILE, lambda path: path.write_text(json.dumps(history, indent=1)))


def save_curves(history: Mapping[str, list[float]], run_dir: Path) -> None:
    """Draw the history into ``curves.png`` with :func:`retina_lib.plotter.plot_history`."""

    def draw(path: Path) -> None:
        # Closed at once: else a notebook would show one figure per epoch at the end of the cell.
        plt.close(plotter.plot_history(history, save_to=path))

    write_atomically(run_dir / CURVES_FILE, draw)


# --------------------------------------------------------------------------
# One run at a time
# --------------------------------------------------------------------------

def _try_lock(descriptor: int) -> bool:
    """Lock an open file exclusively without waiting: True if locked, False if another process holds it."""
    if fcntl is not None:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    os.lseek(descriptor, 0, os.SEEK_SET)
    try:
        msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
    except OSError:  # Windows reports a held lock as a permission or deadlock error
        return False
    return True


class RunFolderLock:
    """An exclusive lock on a run folder, held from :meth:`acquire` to :meth:`release`.

    The lock belongs to an open file, ``FOLDER/.lock``, so the operating
    system releases it when the process ends in any way. The file holds the
    process id of its holder, for the error message of a refused second run.
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._descriptor: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunFolderInUseError` naming the process that holds it."""
        if fcntl is None and msvcrt is None:
            raise OSError(f"cannot lock the run folder {self.path.parent}: this system offers neither fcntl nor "
                          f"msvcrt file locks, so the folder cannot be protected from a second run; train with "
                          f"out_dir=None (save nothing)")
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                locked = _try_lock(descriptor)
            except OSError as error:
                os.close(descriptor)
                raise OSError(f"cannot lock the run folder {self.path.parent} ({error}); its file system may not "
                              f"support locks (a network drive?): train into a local folder") from error
            if not locked:
                os.close(descriptor)
                raise RunFolderInUseError(
                    f"{self.path.parent} is in use by another training run ({self._holder()}): two runs in one "
                    f"folder would mix their files; wait for it to end, or choose another out_dir (--out)"
                )
            if self._still_named(descriptor):
                break
            # The previous holder deleted the file between our open and our lock: lock the new one.
            os.close(descriptor)
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"{os.getpid()}\n".encode())
        self._descriptor = descriptor

    def _still_named(self, descriptor: int) -> bool:
        """Whether the locked file is still the one called ``.lock`` (not deleted by its last holder)."""
        try:
            return os.path.samestat(os.fstat(descriptor), os.stat(self.path))
        except FileNotFoundError:
            return False

    def _holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:  # Windows does not let others read a locked byte
            pid = ""
        return f"process {pid}, see {self.path}" if pid.isdigit() else f"see {self.path}"

    def release(self) -> None:
        """Delete the lock file and let go of the lock (a second call does nothing)."""
        if self._descriptor is None:
            return
        try:  # deleted while still held, so nobody can lock the file just before it disappears
            self.path.unlink()
            deleted = True
        except OSError:  # Windows cannot delete an open file
            deleted = False
        os.close(self._descriptor)  # closing the file releases the lock
        self._descriptor = None
        if not deleted:  # on Windows this fails if another process has opened it meanwhile: it stays, harmless
            with contextlib.suppress(OSError):
                self.path.unlink()

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
        yield folder
