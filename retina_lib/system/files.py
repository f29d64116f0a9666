"""How the library writes files: whole files only, never over a file it must not replace.

Every file the library writes (predicted maps, evaluation JSON, a run's
weights, checkpoint, history and curves, downloaded archives, extraction
markers, measured course results) goes through :func:`write_atomically` or
:func:`write_files_atomically`, and every target a user names is first
checked by :func:`check_target`. The rule, decided here once:

1. **Whole files only.** A file is written under a unique temporary name in
   the target's folder (``.NAME.XXXXXXXX.partial``), forced to the disk, then
   renamed over the target in one step. A full disk, Ctrl+C or ``kill -9``
   leaves the old file as it was, never half a file. A full disk is reported
   as :class:`DiskFullError`, saying how much space is left.
2. **Never onto what the user owns.** A target that is one of the command's
   inputs (an image, the weights) is always refused. A file that exists and
   was not written by the library is refused unless the user asks for it
   (``--overwrite``). A target that is a symbolic link is refused: the
   library never writes through, or over, a link it did not make.
3. **Modes follow the umask**, like ordinary tools: with umask 022 a file is
   ``rw-r--r--`` and a folder ``rwxr-xr-x``, so others sharing a data root or
   weights can read them.

:class:`FileLock` is the one lock the library takes on a file (a run folder,
a download): it never follows a link and never truncates or deletes a file it
did not create.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Optional

try:  # Linux, macOS and other Unix systems
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # everything but Windows
    msvcrt = None

#: The ending of the temporary files that :func:`write_files_atomically` renames into place.
PARTIAL_SUFFIX = ".partial"
#: What torch says when it cannot write a file (``RuntimeError [enforce fail at inline_container.cc...]``).
TORCH_WRITE_FAILED = "file write failed"
#: How long a waiting :class:`FileLock` sleeps between tries where the system cannot wait by itself (Windows).
LOCK_POLL_SECONDS = 0.1
#: The first words of a lock file the library wrote; followed by the holder's process id.
LOCK_TEXT = "retina_lib lock, process "


class DiskFullError(OSError):
    """A file could not be written because its disk (or the user's quota) is full; nothing was replaced."""


class RefusedTargetError(FileExistsError):
    """A file would be written where the library must not write: an input, a link, another program's file."""


# --------------------------------------------------------------------------
# Modes that follow the umask
# --------------------------------------------------------------------------

def current_umask() -> int:
    """The process's umask (Python can only read it by setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open()`` would give a new file: ``rw-rw-rw-`` less the umask."""
    return 0o666 & ~current_umask()


def folder_mode() -> int:
    """The mode ``mkdir`` would give a new folder: ``rwxrwxrwx`` less the umask."""
    return 0o777 & ~current_umask()


# --------------------------------------------------------------------------
# Forcing data to the disk
# --------------------------------------------------------------------------

def sync_file(path: Path) -> None:
    """Force a written file's data to the disk (a rename alone may reach the disk before the data)."""
    with open(path, "rb+") as written:
        os.fsync(written.fileno())


def sync_folder(folder: Path) -> None:
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


def sync_tree(folder: Path) -> None:
    """Force every regular file and folder below ``folder`` to the disk (links are not followed)."""
    for directory, _, names in os.walk(folder):
        for name in names:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                sync_file(path)
        sync_folder(Path(directory))


# --------------------------------------------------------------------------
# Whole files only
# --------------------------------------------------------------------------

def temporary_beside(path: Path) -> Path:
    """A new empty file with a unique name in ``path``'s folder, ``.NAME.XXXXXXXX.partial``, mode per umask."""
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
    os.close(descriptor)
    os.chmod(name, file_mode())  # mkstemp makes it private (0600) whatever the umask
    return Path(name)


def disk_full_error(path: Path, error: BaseException) -> Optional[DiskFullError]:
    """A :class:`DiskFullError` for ``path`` if ``error`` means the disk is full, else None.

    Python reports a full disk as ``OSError`` ENOSPC (or EDQUOT for a quota);
    torch's writer reports it as a ``RuntimeError`` saying "file write failed".
    """
    full = (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)) \
        or (isinstance(error, RuntimeError) and TORCH_WRITE_FAILED in str(error))
    if not full:
        return None
    try:
        free = f"{shutil.disk_usage(path.parent).free / 1e6:.0f} MB free"
    except OSError:
        free = "free space unknown"
    return DiskFullError(errno.ENOSPC, f"no space left on the disk to write {path} ({free} in {path.parent}); "
                                       f"the previous file, if any, was kept: free some space and try again")


def write_files_atomically(writers: Mapping[Path, Callable[[Path], Any]]) -> None:
    """Write several files as whole files: each ``write(temporary_path)`` first, then every rename.

    All files are written under temporary names and forced to the disk before
    the first rename, so a failure (a full disk, an exception in a writer)
    replaces none of them: a prediction's probability map and mask stay a
    pair. Targets that are symbolic links are refused before anything is
    written.
    """
    targets = [Path(path) for path in writers]
    for path in targets:
        if path.is_symlink():
            raise RefusedTargetError(f"{path} is a symbolic link; the library never writes through a link it did "
                                     f"not make: remove the link or write elsewhere")
    temporaries: dict[Path, Path] = {}
    try:
        for path, write in zip(targets, writers.values()):
            try:
                temporaries[path] = temporary_beside(path)
                write(temporaries[path])
                sync_file(temporaries[path])
            except (OSError, RuntimeError) as error:
                full = disk_full_error(path, error)
                if full is not None:
                    raise full from error
                raise
        for path in targets:
            os.replace(temporaries[path], path)
            del temporaries[path]
    finally:
        for temporary in temporaries.values():
            temporary.unlink(missing_ok=True)
    for folder in dict.fromkeys(path.parent for path in targets):
        sync_folder(folder)


def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(temporary_path)``, then rename the result to ``path`` (see :func:`write_files_atomically`)."""
    write_files_atomically({Path(path): write})


def is_partial_of(name: str, target_name: str) -> bool:
    """Whether ``name`` is one of the temporary names :func:`temporary_beside` gives for ``target_name``."""
    return name.startswith(f".{target_name}.") and name.endswith(PARTIAL_SUFFIX)


def remove_stale_partials(folder: Path, target_names: Iterable[str]) -> list[Path]:
    """Delete the temporary files left in ``folder`` for ``target_names`` by a writer that was killed.

    Only call this while holding the lock that keeps other writers of those
    files out (a run folder's, a download's); else a file being written now
    would be deleted. Returns what was deleted.
    """
    names = list(target_names)
    removed = []
    for entry in folder.iterdir():
        if any(is_partial_of(entry.name, name) for name in names) and entry.is_file() and not entry.is_symlink():
            entry.unlink()
            removed.append(entry)
    return removed


# --------------------------------------------------------------------------
# Never onto what the user owns
# --------------------------------------------------------------------------

def same_file_key(path: Path) -> str:
    """A key equal for two spellings of one path (relative or absolute, through links, case on Windows).

    ``os.path.realpath`` does not raise on a link loop, unlike ``Path.resolve``.
    """
    return os.path.normcase(os.path.realpath(path))


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same spelling once resolved, or the same file on disk (a hard link)."""
    if same_file_key(first) == same_file_key(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:  # one of them does not exist (or cannot be reached): not the same existing file
        return False


def check_target(path: Path, *, option: str, protected: Mapping[Path, str] = {}, overwrite: bool = False,
                 ours: Callable[[Path], bool] = lambda path: False) -> None:
    """Refuse, before any work, to write ``path`` where the library must not (see the module docstring).

    Args:
        path: the file to be written.
        option: how the user named it, e.g. ``"--json"``, for the message.
        protected: files that are never replaced, even with ``overwrite``, and
            what each is (``{weights: "the weights"}``, said as "would overwrite the weights PATH").
        overwrite: the user asked to replace an existing file the library did not write.
        ours: whether an existing file was written by the library (replaced without ``overwrite``).

    Raises:
        RefusedTargetError: ``path`` is protected, a link, or someone else's file.
        IsADirectoryError, NotADirectoryError, PermissionError: it cannot be written.
    """
    path = Path(path)
    for other, what in protected.items():
        if _same_file(path, Path(other)):
            raise RefusedTargetError(f"{option} {path}: that would overwrite {what} {other}; refused even with "
                                     f"--overwrite: choose another name")
    if path.is_symlink():
        raise RefusedTargetError(f"{option} {path} is a symbolic link; the library never writes through a link it "
                                 f"did not make: remove the link or choose another name")
    if path.is_dir():
        raise IsADirectoryError(f"{option} {path} is a folder; give a file name, e.g. {path / 'results.json'}")
    if path.exists():
        if not overwrite and not ours(path):
            raise RefusedTargetError(f"{option} {path} already exists and was not written by retina_lib; "
                                     f"choose another name, or pass --overwrite to replace it")
        if not os.access(path, os.W_OK):
            raise PermissionError(f"{option} {path} is read-only; make it writable or choose another name")
    for folder in path.parents:
        if folder.exists():
            if not folder.is_dir():
                raise NotADirectoryError(f"{option} {path}: {folder} is a file, so nothing can be written below it")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise PermissionError(f"{option} {path}: the folder {folder} is not writable")
            break


# --------------------------------------------------------------------------
# A lock that never follows a link
# --------------------------------------------------------------------------

def _try_lock(descriptor: int, wait: bool) -> bool:
    """Lock an open file exclusively: True once locked, False if another holds it and ``wait`` is False."""
    if fcntl is not None:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True
    while True:
        os.lseek(descriptor, 0, os.SEEK_SET)
        try:
            msvcrt.locking(descriptor, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:  # Windows reports a held lock as a permission or deadlock error
            if not wait:
                return False
        time.sleep(LOCK_POLL_SECONDS)


def _read_all(descriptor: int) -> str:
    os.lseek(descriptor, 0, os.SEEK_SET)
    return os.read(descriptor, 4096).decode("utf-8", errors="replace")


def _written_by_a_lock(text: str) -> bool:
    """Whether a lock file's text is what :class:`FileLock` writes (or wrote before: a bare process id).

    An empty file counts too: the holder was killed between creating and writing it.
    """
    text = text.strip()
    return text == "" or text.isdigit() or text.startswith(LOCK_TEXT)


class FileLock:
    """An exclusive lock held on the file ``path`` from :meth:`acquire` to :meth:`release`.

    The operating system drops the lock when its process ends in any way
    (even ``kill -9``), so a stale lock file never blocks anyone. The file
    holds the holder's process id, for the messages of those who wait or are
    refused. It is opened without following links, and a file at ``path``
    that this class did not write is refused, never truncated or deleted.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._descriptor: Optional[int] = None

    def acquire(self, wait: bool) -> bool:
        """Take the lock; without ``wait``, return False at once when another process holds it."""
        if fcntl is None and msvcrt is None:
            raise OSError(f"cannot lock {self.path}: this system offers neither fcntl nor msvcrt file locks")
        while True:
            descriptor = self._open()
            try:
                locked = _try_lock(descriptor, wait)
            except OSError as error:
                os.close(descriptor)
                raise OSError(f"cannot lock {self.path} ({error}); its file system may not support locks "
                              f"(a network drive?): use a local folder") from error
            if not locked:
                os.close(descriptor)
                return False
            if self._still_named(descriptor):
                break
            # The previous holder deleted the file between our open and our lock: lock the new one.
            os.close(descriptor)
        text = _read_all(descriptor)
        if not _written_by_a_lock(text):
            os.close(descriptor)
            raise RefusedTargetError(f"{self.path} exists and was not written by retina_lib (it holds "
                                     f"{text[:40]!r}); it was left as it is: move it away, then try again")
        os.ftruncate(descriptor, 0)
        os.lseek(descriptor, 0, os.SEEK_SET)
        os.write(descriptor, f"{LOCK_TEXT}{os.getpid()}\n".encode())
        self._descriptor = descriptor
        return True

    def _open(self) -> int:
        """Open (or create) the lock file without following a link, refusing anything but a plain file."""
        if self.path.is_symlink():
            raise RefusedTargetError(f"{self.path} is a symbolic link; a lock is never taken through a link "
                                     f"(it could point at any file): remove it, then try again")
        if self.path.exists() and not self.path.is_file():
            raise RefusedTargetError(f"{self.path} is not a plain file; move it away, then try again")
        try:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), file_mode())
        except OSError as error:
            if error.errno == errno.ELOOP:  # made a link between the check above and the open
                raise RefusedTargetError(f"{self.path} is a symbolic link; a lock is never taken through a "
                                         f"link: remove it, then try again") from error
            raise
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            os.close(descriptor)
            raise RefusedTargetError(f"{self.path} is not a plain file; move it away, then try again")
        return descriptor

    def _still_named(self, descriptor: int) -> bool:
        """Whether the locked file is still the one called ``path`` (not deleted by its last holder)."""
        try:
            return os.path.samestat(os.fstat(descriptor), os.stat(self.path, follow_symlinks=False))
        except FileNotFoundError:
            return False

    def holder(self) -> str:
        """Who holds the lock, for a message: "process 1234, see PATH" where the file can be read."""
        try:
            text = self.path.read_text().strip()
        except OSError:  # Windows does not let others read a locked byte
            text = ""
        pid = text[len(LOCK_TEXT):] if text.startswith(LOCK_TEXT) else text
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

    @contextlib.contextmanager
    def held(self) -> Iterator[FileLock]:
        """Hold the lock for a ``with`` block, waiting for another holder to finish first."""
        self.acquire(wait=True)
        try:
            yield self
        finally:
            self.release()
