"""Download the datasets that have public direct links, verify and extract them.

CHASE_DB1, HRF and STARE can be fetched without an account. Each archive is
checked against its published SHA-256 checksum before it is used, because a
truncated file, a changed upstream archive or an HTML "please verify you are
human" page would otherwise turn into baffling errors much later. DRIVE and
the Kaggle set need an account: :func:`download` explains how to get them.

The archives are kept in ``DATA_ROOT/downloads`` (delete them to save space),
and extracted into the layout :func:`retina_lib.data.load_dataset` reads. A
second call finds the extracted dataset (or a verified archive) and does not
touch the network.

What comes from the internet is not trusted:

* **Sizes are capped.** A download stops as soon as it exceeds the archive's
  recorded size (:data:`MAX_DOWNLOAD_BYTES` where the size is unknown), and an
  archive whose members would expand beyond :data:`MAX_EXPANSION` times its
  own size (at most :data:`MAX_EXTRACTED_BYTES`) is refused before extraction.
* **Extraction is checked, then done out of sight.** Every member is checked
  first (no path outside the target, no link leading outside it, even through
  other links or to an absolute path, no device files, at most
  :data:`MAX_MEMBERS` members); the archive is extracted into a temporary
  folder beside the target, forced to the disk, and swapped into place only
  when complete, so a failure never leaves half a dataset.
* **Files are written as the library writes every file** (see
  :mod:`retina_lib.system.files`): a download goes to a unique temporary name,
  its checksum is verified on the disk, and only then is it renamed into
  place. One download of a dataset runs at a time (a lock in the data root),
  so two notebooks opened at once wait for each other instead of failing. A
  user's archive with a wrong checksum is moved aside, never deleted.
* **A marker proves completeness.** Only after a complete extraction is the
  file ``.retina_lib_extracted.json`` written into the target, listing every
  extracted file with its size. A later call checks those sizes, so a
  truncated or deleted file is noticed and extracted again from the verified
  archive. A folder without a marker was put there by hand and is used as it is.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import uuid
import warnings
import zipfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Optional

from tqdm.auto import tqdm

from retina_lib.data.datasets import DATASETS, data_root, load_dataset
from retina_lib.errors import UserInputError
from retina_lib.data.readers import DatasetError
from retina_lib.system.files import (FileLock, current_umask, folder_mode, remove_stale_partials, sync_folder,
                                     sync_tree, write_atomically)

USER_AGENT = "retina_lib (Python urllib; course material)"
TIMEOUT_SECONDS = 60
CHUNK_BYTES = 1 << 20

#: The most bytes downloaded for an archive whose size is not recorded (``Archive.size`` None).
MAX_DOWNLOAD_BYTES = 2 << 30
#: An archive may expand to at most this many times its own size: the datasets' archives hold
#: already-compressed JPEG, PNG, TIFF and gzip files and expand by less than 2 times, while a
#: "zip bomb" of a megabyte can expand to gigabytes.
MAX_EXPANSION = 20
#: And to at most this many bytes in all, whatever its size.
MAX_EXTRACTED_BYTES = 8 << 30
#: An archive may hold at most this many members: the datasets' archives hold fewer than 500, while a
#: tiny archive of 20,000 empty files would fill a folder (and the inode table) for nothing.
MAX_MEMBERS = 10_000
#: Written into an extraction's target folder once it is complete (see the module docstring).
MARKER_FILE = ".retina_lib_extracted.json"
#: The lock file in the data root held while a dataset is downloaded (``.NAME.download.lock``).
DOWNLOAD_LOCK = ".{name}.download.lock"
#: The lock file beside an extraction's target held while it is extracted into (``.TARGET.extract.lock``).
EXTRACT_LOCK = ".{name}.extract.lock"


class DownloadError(OSError):
    """A dataset could not be downloaded, verified or extracted; the message says why and what to do.

    It is an ``OSError`` like the network errors behind it, so one ``except OSError`` covers both.
    """


@dataclass(frozen=True)
class Archive:
    """One file to download.

    Attributes:
        filename: the name it is saved under in ``DATA_ROOT/downloads``.
        urls: mirrors, tried in this order.
        sha256: the published checksum of the file.
        extract_to: the folder, relative to the data root, that receives its contents.
        size: the file's size in bytes where it is published (None: unknown); a
            download that grows beyond it is stopped.
    """

    filename: str
    urls: tuple[str, ...]
    sha256: str
    extract_to: str
    size: Optional[int] = None


# The only place that lists download addresses, checksums and sizes.
SOURCES: dict[str, tuple[Archive, ...]] = {
    "chase_db1": (
        Archive(
            filename="CHASEDB1.zip",
            urls=(
                "https://researchinnovation.kingston.ac.uk/files/40659508/CHASEDB1.zip",
                "https://researchdata.kingston.ac.uk/96/1/CHASEDB1.zip",
                "https://staffnet.kingston.ac.uk/~ku15565/CHASE_DB1/assets/CHASEDB1.zip",
            ),
            sha256="bb750b73633492d700e56d91578ee3cdb7e4dbd08279e7465583e9efd26790b6",
            extract_to="CHASEDB1",  # the zip has no top folder
            size=2_513_926,
        ),
    ),
    "hrf": (
        Archive(
            filename="all.zip",
            urls=("https://www5.cs.fau.de/fileadmin/research/datasets/fundus-images/all.zip",),
            sha256="a914d02cda161b7f33f25d0397c276d50e9a6cbc705e9b364a54f0adafed57e4",
            extract_to="HRF",  # the zip holds images/, manual1/ and mask/
            size=None,  # not published: MAX_DOWNLOAD_BYTES applies
        ),
    ),
    "stare": tuple(
        Archive(
            filename=f"{part}.tar",
            urls=(f"https://cecas.clemson.edu/~ahoover/stare/probing/{part}.tar",),
            sha256=checksum,
            extract_to=f"STARE/{part}",  # each tar holds its files without a folder
            size=None,  # not published: MAX_DOWNLOAD_BYTES applies
        )
        for part, checksum in (
            ("stare-images", "5f7b509b6067cad4f1be84933145d783de9ec087b3eaaf4db0103dd0144dd433"),
            ("labels-ah", "ebf2f1e17ca955f24579d9edd990e2dae79a5c82def69f0985d8e24f826ddd2f"),
            ("labels-vk", "47474a701536b0cfdb369fdce012be36141e9f44d80387f0179446b5cb0f5576"),
        )
    ),
}

DOWNLOADABLE = tuple(SOURCES)


def download(name: str, root: str | Path | None = None, *, urls: Mapping[str, Sequence[str]] | None = None,
             progress: bool = True) -> Path:
    """Download, verify and extract dataset ``name`` into the data root; return its folder.

    Args:
        name: ``chase_db1``, ``hrf`` or ``stare``. ``drive`` and
            ``retina_blood_vessel`` raise a :class:`DownloadError` explaining
            how to get them by hand.
        root: the data root (see :func:`retina_lib.data.data_root`).
        urls: other mirrors to use instead of the built-in ones, per archive
            file name, e.g. ``{"CHASEDB1.zip": ["https://my.mirror/CHASEDB1.zip"]}``.
            The checksums stay the published ones.
        progress: show a progress bar while downloading.

    Nothing is downloaded when the dataset is already complete in the data
    root, or when a downloaded archive with the right checksum is present.
    """
    name = name.lower()
    if name in DATASETS and name not in SOURCES:
        info = DATASETS[name]
        raise DownloadError(
            f"{info.how_to_get} "
            f"The result must be {data_root(root) / info.folder} holding {info.layout}."
        )
    if name not in SOURCES:
        raise UserInputError(f"cannot download {name!r}; downloadable datasets are: {', '.join(DOWNLOADABLE)}")
    archives = SOURCES[name]
    mirrors = _mirrors(archives, urls)

    root = data_root(root)
    folder = root / DATASETS[name].folder
    problems = {archive.filename: extraction_problem(archive, root) for archive in archives}
    by_hand = not any((root / archive.extract_to / MARKER_FILE).exists() for archive in archives)
    if all(problem is None for problem in problems.values()) or (by_hand and _layout_problem(name, root) is None):
        return folder  # extracted and verified before, or put there by hand (no marker)
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(root / DOWNLOAD_LOCK.format(name=name)).held():  # a second download waits for the first
        _download_and_extract(name, archives, mirrors, root, progress)
    return folder


def _download_and_extract(name: str, archives: Sequence[Archive], mirrors: Mapping[str, Sequence[str]],
                          root: Path, progress: bool) -> None:
    """The work of :func:`download`, under its lock: what another download finished meanwhile is not redone."""
    problems = {archive.filename: extraction_problem(archive, root) for archive in archives}
    for archive in archives:
        problem = problems[archive.filename]
        if problem is None:
            continue
        target = root / archive.extract_to
        if target.exists():
            warnings.warn(f"{target}: {problem}; extracting {archive.filename} again", stacklevel=2)
        path = _fetch_verified(archive, mirrors[archive.filename], root / "downloads", progress)
        if target.exists():  # an extraction over it that stops half-way must not look complete
            _write_marker(target, archive, files=None)
        files = extract_safely(path, target)
        _write_marker(target, archive, files)
    problem = _layout_problem(name, root)
    if problem is not None:
        raise DownloadError(f"{name}: the archives were downloaded and extracted, but the result is "
                            f"not the expected layout:\n{problem}")


def _mirrors(archives: Sequence[Archive], urls: Mapping[str, Sequence[str]] | None) -> dict[str, list[str]]:
    """The URLs to try for each archive: the override where given, else the built-in mirrors."""
    filenames = [archive.filename for archive in archives]
    if urls is None:
        urls = {}
    if not isinstance(urls, Mapping):
        raise TypeError(f"urls must map an archive file name ({', '.join(filenames)}) to a list of URLs")
    unknown = set(urls) - set(filenames)
    if unknown:
        raise ValueError(f"urls names unknown archives {sorted(unknown)}; this dataset has: {', '.join(filenames)}")
    return {archive.filename: list(urls.get(archive.filename, archive.urls)) for archive in archives}


def _layout_problem(name: str, root: Path) -> str | None:
    """What the loader finds missing in the dataset's folder, or None when it is complete.

    Only file names are checked, nothing is decoded, so this is quick.
    """
    try:
        load_dataset(name, "all", root)
    except DatasetError as error:
        return str(error)
    return None


def _write_marker(target: Path, archive: Archive, files: Optional[Mapping[str, int]]) -> None:
    """Record in ``target`` which archive was extracted there and every file's size (None: under way)."""
    content = {"archive": archive.filename, "sha256": archive.sha256, "complete": files is not None,
               "files": dict(files or {})}
    write_atomically(target / MARKER_FILE, lambda path: path.write_text(json.dumps(content, indent=1)))


def extraction_problem(archive: Archive, root: Path) -> Optional[str]:
    """Why ``archive``'s extraction in ``root`` cannot be trusted, or None when its marker vouches for it.

    Checks that the marker is there, complete and made from this archive, and
    that every file it lists exists with the recorded size (sizes only: quick,
    and what a truncated copy or an interrupted extraction changes).
    """
    target = root / archive.extract_to
    marker = target / MARKER_FILE
    try:
        content = json.loads(marker.read_text())
    except FileNotFoundError:
        return f"not extracted by download() (no {MARKER_FILE})"
    except (OSError, ValueError):
        return f"{MARKER_FILE} is unreadable"
    if not isinstance(content, dict) or not content.get("complete") or content.get("sha256") != archive.sha256 \
            or not isinstance(content.get("files"), dict):
        return "an earlier extraction did not complete, or came from another archive"
    for name, size in content["files"].items():
        path = target / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes instead of {size}"
    return None


def sha256_of(path: Path) -> str:
    """The SHA-256 checksum of a file, as 64 hexadecimal digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_verified(archive: Archive, urls: Sequence[str], folder: Path, progress: bool) -> Path:
    """Return ``folder/archive.filename`` with the right checksum, downloading it if needed."""
    destination = folder / archive.filename
    if destination.exists():
        actual = sha256_of(destination)
        if actual == archive.sha256:
            return destination
        kept = _move_aside(destination, actual)
        warnings.warn(f"{destination}: sha256 mismatch (expected {archive.sha256}, got {actual}); "
                      f"moved it to {kept} (kept, not deleted) and downloading it again", stacklevel=3)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(folder, [archive.filename])  # left by a killed download; the download lock is held
    limit = archive.size if archive.size is not None else MAX_DOWNLOAD_BYTES
    failures = []
    for url in urls:
        try:
            _download_to(url, destination, archive.sha256, limit, progress)
            return destination
        except (OSError, http.client.HTTPException, ValueError) as error:  # OSError covers DownloadError
            failures.append(f"{url}: {error}")
    raise DownloadError(
        f"could not download {archive.filename} from any of {len(urls)} mirror(s):\n  " + "\n  ".join(failures)
        + f"\nYou can download it with a web browser and save it as {destination}: "
        "it will be verified and used from there."
    )


def _move_aside(path: Path, sha256: str) -> Path:
    """Rename ``path`` to an unused ``NAME.sha256-XXXXXXXXXXXX[-N]`` beside it and return the new name."""
    number = 0
    while True:
        aside = path.with_name(f"{path.name}.sha256-{sha256[:12]}" + (f"-{number}" if number else ""))
        if not aside.exists() and not aside.is_symlink():
            path.rename(aside)
            return aside
        number += 1


def _download_to(url: str, destination: Path, sha256: str, limit: int, progress: bool) -> None:
    """Stream ``url`` into a temporary file, check its size and the file's checksum, then rename it.

    The temporary file (see :func:`retina_lib.system.files.write_atomically`)
    means an interrupted download never leaves a file that looks complete.
    The checksum is computed by reading the written file back, not from the
    received stream, so what is verified is what will be extracted. More than ``limit``
    bytes (announced or received) stop the download at once: an endless or
    oversized answer cannot fill the disk before the checksum would refuse it.
    """

    def receive(partial: Path) -> None:
        _receive(url, partial, destination.name, limit, progress)
        actual = sha256_of(partial)  # the file as written, which is what will be extracted
        if actual != sha256:
            raise DownloadError(
                f"sha256 mismatch: expected {sha256}, got {actual}; deleted the downloaded file "
                "(a changed or truncated archive, or a web page served instead of it)"
            )

    write_atomically(destination, receive)


def _receive(url: str, partial: Path, label: str, limit: int, progress: bool) -> None:
    """Stream ``url`` into the file ``partial``, stopping beyond ``limit`` bytes or short of the announced size."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    received = 0
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response, open(partial, "wb") as out:
        size = int(response.headers.get("Content-Length") or 0) or None
        if size is not None and size > limit:
            raise DownloadError(f"the server announces {size} bytes, more than the expected {limit}")
        with tqdm(total=size, unit="B", unit_scale=True, desc=label, disable=not progress) as bar:
            while chunk := response.read(CHUNK_BYTES):
                received += len(chunk)
                if received > limit:
                    raise DownloadError(f"stopped after {received} bytes: more than the expected {limit}")
                out.write(chunk)
                bar.update(len(chunk))
        if size is not None and received < size:
            raise DownloadError(f"the transfer stopped after {received} of the {size} bytes announced")


# --- safe extraction ----------------------------------------------------------------------


def extract_safely(archive: Path, target: Path, *, max_bytes: Optional[int] = None,
                   max_members: int = MAX_MEMBERS) -> dict[str, int]:
    """Extract a zip or tar archive into ``target``, refusing anything unsafe; return {file: size}.

    Archives from the internet can contain names such as ``../../.bashrc``,
    absolute paths, symbolic or hard links that point elsewhere, directly or
    through other links of the archive ("path traversal"), device files, or
    members that expand to far more than the archive's size ("bombs"). Every
    member is checked before anything is written, and the first offending
    member raises a :class:`DownloadError` naming it. ``max_bytes`` caps the
    total size of the members (default: :data:`MAX_EXPANSION` times the
    archive's size, at most :data:`MAX_EXTRACTED_BYTES`), ``max_members``
    their number.

    All or nothing: the members are extracted into a temporary folder beside
    ``target`` and forced to the disk; files already in ``target`` that the
    archive does not hold are linked (or copied) in beside them; only then
    does the temporary folder take ``target``'s place. An error at any point
    leaves ``target`` as it was. So files already in ``target`` with the same
    names as members are replaced; others stay. The temporary folders of an
    extraction that was killed are cleaned up by the next one (extractions
    into one target take turns, under a lock beside it). Files and folders
    get the modes the umask gives. The result maps each extracted regular
    file's path (relative to ``target``, with ``/``) to its size.
    """
    archive, target = Path(archive), Path(target)
    if target.is_symlink():
        raise DownloadError(f"{target} is a symbolic link; an extraction replaces that folder, so it would not "
                            f"land where the link points: extract into {os.path.realpath(target)} instead, "
                            f"or remove the link")
    if max_bytes is None:
        max_bytes = min(MAX_EXTRACTED_BYTES, MAX_EXPANSION * archive.stat().st_size)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(target.parent / EXTRACT_LOCK.format(name=target.name)).held():
        _clean_up_after_killed_extractions(target)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}{STAGING_INFIX}"))
        try:
            try:
                if zipfile.is_zipfile(archive):
                    _extract_zip(archive, staging, max_bytes, max_members)
                elif tarfile.is_tarfile(archive):
                    _extract_tar(archive, staging, max_bytes, max_members)
                else:
                    raise DownloadError(f"{archive}: neither a zip nor a tar archive")
                files = _regular_files(staging)
                os.chmod(staging, folder_mode())  # mkdtemp makes it private (0700) whatever the umask
                _swap_into_place(staging, target)
            except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError, zlib.error, ValueError) as error:
                if isinstance(error, DownloadError):
                    raise
                raise DownloadError(f"{archive}: cannot extract it into {target} "
                                    f"({type(error).__name__}: {error})") from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return files


#: The temporary folders beside an extraction's target: ``.TARGET.extracting-*`` holds the new
#: tree, ``.TARGET.replaced-*`` the old one during the swap.
STAGING_INFIX = ".extracting-"
REPLACED_INFIX = ".replaced-"


def _clean_up_after_killed_extractions(target: Path) -> None:
    """Remove what a killed extraction into ``target`` left beside it; put back a target it had moved away.

    Called under the extraction lock, so no other extraction is using them.
    """
    for entry in target.parent.iterdir():
        if entry.is_symlink() or not entry.is_dir():
            continue
        if entry.name.startswith(f".{target.name}{REPLACED_INFIX}") and not target.exists():
            os.replace(entry, target)  # killed between the two renames of the swap: the old tree goes back
        elif entry.name.startswith((f".{target.name}{STAGING_INFIX}", f".{target.name}{REPLACED_INFIX}")):
            shutil.rmtree(entry, ignore_errors=True)


def _check_member_count(archive: Path, count: int, max_members: int) -> None:
    if count > max_members:
        raise DownloadError(f"{archive}: refusing to extract it: it has {count} members, more than the "
                            f"{max_members} allowed (the datasets' archives hold fewer than 500)")


def _extract_zip(archive: Path, staging: Path, max_bytes: int, max_members: int) -> None:
    with zipfile.ZipFile(archive) as bundle:
        members = bundle.infolist()
        _check_member_count(archive, len(members), max_members)
        for member in members:
            _check_inside(member.filename, archive)
            if stat.S_ISLNK(member.external_attr >> 16):
                raise DownloadError(f"{archive}: refusing to extract member {member.filename!r}, a symbolic link "
                                    f"(zip archives of the datasets hold only files and folders)")
        _check_total_size(archive, sum(member.file_size for member in members), max_bytes)
        bundle.extractall(staging)


def _extract_tar(archive: Path, staging: Path, max_bytes: int, max_members: int) -> None:
    with tarfile.open(archive) as bundle:
        members = []
        for member in bundle:  # counted while reading, so a huge member table is not read in full
            members.append(member)
            _check_member_count(archive, len(members), max_members)
        links = {_parts(member.name): member.linkname for member in members if member.issym()}
        umask = current_umask()
        link_names: set[tuple[str, ...]] = set()
        seen: set[tuple[str, ...]] = set()
        for member in members:
            _check_tar_member(member, links, archive)
            parts = _parts(member.name)
            if parts in seen and (parts in link_names or member.issym() or member.islnk()):
                raise DownloadError(f"{archive}: refusing to extract member {member.name!r}: the archive holds "
                                    f"that name twice and one is a link (writing the second through the first)")
            seen.add(parts)
            if member.issym() or member.islnk():
                link_names.add(parts)
            # No setuid, no world-writing; readable by the owner; then the umask, as for any new file.
            member.mode = (member.mode & 0o755 | (0o700 if member.isdir() else 0o600)) & ~umask
        _check_total_size(archive, sum(member.size for member in members if member.isfile()), max_bytes)
        # Python's own "data" filter (3.12, back-ported to 3.11.4 and 3.10.12) repeats these checks.
        safety = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        bundle.extractall(staging, members=members, **safety)


def _check_total_size(archive: Path, total: int, max_bytes: int) -> None:
    if total > max_bytes:
        raise DownloadError(f"{archive}: refusing to extract it: its members add up to {total} bytes, more than "
                            f"the {max_bytes} allowed for an archive of {archive.stat().st_size} bytes "
                            f"(a decompression bomb?)")


def _parts(member: str) -> tuple[str, ...]:
    """A member name as path components (``..`` kept), ``\\`` read as a separator (as Windows would), ``.`` dropped."""
    return tuple(part for part in member.replace("\\", "/").split("/") if part not in ("", "."))


def _check_inside(member: str, archive: Path) -> None:
    """Refuse a member name that is absolute, has a drive, or climbs out with ``..``."""
    if PurePosixPath(member.replace("\\", "/")).is_absolute() or PureWindowsPath(member).drive \
            or ".." in _parts(member):
        raise DownloadError(f"{archive}: refusing to extract member {member!r}, it would land outside the target")


def _resolve(parts: tuple[str, ...], links: Mapping[tuple[str, ...], str], depth: int = 0) -> Optional[tuple[str, ...]]:
    """Where ``parts`` lead inside the target once the archive's own links are followed; None if outside.

    This is what the file system will do after extraction, worked out before
    it: ``sub/x -> ..`` followed by ``sub/x/y -> ../..`` climbs out although
    each link looks harmless on its own. A chain of more than 40 links counts
    as outside (the limit of most systems).
    """
    resolved: list[str] = []
    for part in parts:
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            continue
        resolved.append(part)
        link = links.get(tuple(resolved))
        if link is not None:
            if depth >= 40 or PurePosixPath(link.replace("\\", "/")).is_absolute() or PureWindowsPath(link).drive:
                return None
            followed = _resolve(tuple(resolved[:-1]) + _parts(link), links, depth + 1)
            if followed is None:
                return None
            resolved = list(followed)
    return tuple(resolved)


def _check_tar_member(member: tarfile.TarInfo, links: Mapping[tuple[str, ...], str], archive: Path) -> None:
    """Refuse tar members outside the target, written through a link, links leading outside, devices."""
    _check_inside(member.name, archive)
    parts = _parts(member.name)
    if any(parts[:end] in links for end in range(1, len(parts))):
        raise DownloadError(f"{archive}: refusing to extract member {member.name!r}, it would be written "
                            f"through a symbolic link of the archive")
    if (member.issym() or member.islnk()) and (PurePosixPath(member.linkname.replace("\\", "/")).is_absolute()
                                               or PureWindowsPath(member.linkname).drive):
        raise DownloadError(f"{archive}: refusing to extract member {member.name!r}, a link to the absolute "
                            f"path {member.linkname!r}")
    if member.issym():
        destination = _resolve(parts[:-1] + _parts(member.linkname), links)
    elif member.islnk():
        destination = _resolve(_parts(member.linkname), links)
    elif member.isfile() or member.isdir():
        return
    else:
        raise DownloadError(f"{archive}: refusing to extract member {member.name!r}, a device or pipe")
    if destination is None:
        raise DownloadError(f"{archive}: refusing to extract member {member.name!r}, a link to "
                            f"{member.linkname!r} outside the target")


def _regular_files(folder: Path) -> dict[str, int]:
    """Every regular file below ``folder`` (links not followed), relative with ``/``, and its size."""
    files = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            path = Path(directory) / name
            if path.is_file() and not path.is_symlink():
                files[path.relative_to(folder).as_posix()] = path.stat().st_size
    return files


def _swap_into_place(staging: Path, target: Path) -> None:
    """Make the complete tree in ``staging`` the new ``target`` in one rename, keeping target's other files.

    Everything is forced to the disk first. A new target is one rename. An
    existing one first gets its files that the archive does not hold linked
    (or copied) into ``staging``; then it is renamed aside, ``staging``
    renamed into its place, and the old tree deleted. If the second rename
    fails the old tree is renamed back.
    """
    if target.exists():
        _carry_over(target, staging)
    sync_tree(staging)
    if not target.exists():
        os.replace(staging, target)
        sync_folder(target.parent)
        return
    aside = target.with_name(f".{target.name}{REPLACED_INFIX}{uuid.uuid4().hex[:8]}")
    os.replace(target, aside)
    try:
        os.replace(staging, target)
    except BaseException:
        os.replace(aside, target)
        raise
    sync_folder(target.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _carry_over(old: Path, new: Path) -> None:
    """Put into ``new`` every file, link and folder of ``old`` that ``new`` lacks (hard links where possible)."""
    for directory, folders, names in os.walk(old):
        relative = Path(directory).relative_to(old)
        destination = new / relative
        if destination.is_symlink() or not destination.is_dir():
            folders[:] = []  # the archive has a file or link where old had this folder: the archive wins
            continue
        for name in names + [folder for folder in folders if (Path(directory) / folder).is_symlink()]:
            source, copy = Path(directory) / name, destination / name
            if copy.exists() or copy.is_symlink():
                continue  # the archive's member replaces it
            if source.is_symlink():
                os.symlink(os.readlink(source), copy)
            else:
                try:
                    os.link(source, copy)
                except OSError:  # a file system without hard links
                    shutil.copy2(source, copy)
        for folder in folders:
            if not (Path(directory) / folder).is_symlink() and not (destination / folder).exists() \
                    and not (destination / folder).is_symlink():
                (destination / folder).mkdir()
                shutil.copystat(Path(directory) / folder, destination / folder)
