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
"""
from __future__ import annotations

import hashlib
import http.client
import tarfile
import urllib.request
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm.auto import tqdm

from .datasets import DATASETS, DatasetError, data_root, load_dataset

USER_AGENT = "retina_lib (Python urllib; course material)"
TIMEOUT_SECONDS = 60
CHUNK_BYTES = 1 << 20


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
    """

    filename: str
    urls: tuple[str, ...]
    sha256: str
    extract_to: str


# The only place that lists download addresses and checksums.
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
        ),
    ),
    "hrf": (
        Archive(
            filename="all.zip",
            urls=("https://www5.cs.fau.de/fileadmin/research/datasets/fundus-images/all.zip",),
            sha256="a914d02cda161b7f33f25d0397c276d50e9a6cbc705e9b364a54f0adafed57e4",
            extract_to="HRF",  # the zip holds images/, manual1/ and mask/
        ),
    ),
    "stare": tuple(
        Archive(
            filename=f"{part}.tar",
            urls=(f"https://cecas.clemson.edu/~ahoover/stare/probing/{part}.tar",),
            sha256=checksum,
            extract_to=f"STARE/{part}",  # each tar holds its files without a folder
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
        raise ValueError(f"cannot download {name!r}; downloadable datasets are: {', '.join(DOWNLOADABLE)}")
    archives = SOURCES[name]
    mirrors = _mirrors(archives, urls)

    root = data_root(root)
    folder = root / DATASETS[name].folder
    if _layout_problem(name, root) is None:
        return folder
    for archive in archives:
        path = _fetch_verified(archive, mirrors[archive.filename], root / "downloads", progress)
        extract_safely(path, root / archive.extract_to)
    problem = _layout_problem(name, root)
    if problem is not None:
        raise DownloadError(f"{name}: the archives were downloaded and extracted, but the result is "
                            f"not the expected layout:\n{problem}")
    return folder


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
        destination.unlink()
        warnings.warn(f"{destination}: sha256 mismatch (expected {archive.sha256}, got {actual}); "
                      "deleted it and downloading it again", stacklevel=3)
    folder.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        try:
            _download_to(url, destination, archive.sha256, progress)
            return destination
        except (OSError, http.client.HTTPException, ValueError) as error:  # OSError covers DownloadError
            failures.append(f"{url}: {error}")
    raise DownloadError(
        f"could not download {archive.filename} from any of {len(urls)} mirror(s):\n  " + "\n  ".join(failures)
        + f"\nYou can download it with a web browser and save it as {destination}: "
        "it will be verified and used from there."
    )


def _download_to(url: str, destination: Path, sha256: str, progress: bool) -> None:
    """Stream ``url`` into ``destination.part``, check its checksum, then rename it to ``destination``.

    Writing to a ``.part`` file first means an interrupted download never
    leaves a file that looks complete.
    """
    partial = destination.with_name(destination.name + ".part")
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response, open(partial, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=size, unit="B", unit_scale=True, desc=destination.name, disable=not progress) as bar:
                while chunk := response.read(CHUNK_BYTES):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if actual != sha256:
        partial.unlink()
        raise DownloadError(
            f"sha256 mismatch: expected {sha256}, got {actual}; deleted the downloaded file "
            "(a changed or truncated archive, or a web page served instead of it)"
        )
    partial.replace(destination)


# --- safe extraction ----------------------------------------------------------------------


def extract_safely(archive: Path, target: Path) -> None:
    """Extract a zip or tar archive into ``target``, refusing members that would land outside it.

    Archives from the internet can contain names such as ``../../.bashrc``,
    absolute paths or symbolic links that point elsewhere ("path traversal").
    Every member is checked before anything is written; the first offending
    member raises a :class:`DownloadError` naming it.
    """
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            for member in bundle.infolist():
                _check_inside(member.filename, target, archive)
            bundle.extractall(target)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as bundle:
            for member in bundle.getmembers():
                _check_tar_member(member, target, archive)
            # Python's own "data" filter (3.12, back-ported to 3.11.4 and 3.10.12) repeats these checks.
            safety = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            bundle.extractall(target, **safety)
    else:
        raise DownloadError(f"{archive}: neither a zip nor a tar archive")


def _check_inside(member: str, target: Path, archive: Path) -> Path:
    """Return where ``member`` would be written, or raise if that is outside ``target``."""
    posix = PurePosixPath(member.replace("\\", "/"))
    inside = target.resolve()
    destination = (inside / posix).resolve()
    if posix.is_absolute() or PureWindowsPath(member).drive or ".." in posix.parts \
            or not destination.is_relative_to(inside):
        raise DownloadError(f"{archive}: refusing to extract member {member!r}, it would land outside {target}")
    return destination


def _check_tar_member(member: tarfile.TarInfo, target: Path, archive: Path) -> None:
    """Refuse tar members outside ``target``, links pointing outside it, and device files."""
    destination = _check_inside(member.name, target, archive)
    if member.issym():
        link_target = (destination.parent / member.linkname).resolve()
    elif member.islnk():
        link_target = (target.resolve() / member.linkname).resolve()
    elif member.isfile() or member.isdir():
        return
    else:
        raise DownloadError(f"{archive}: refusing to extract member {member.name!r}, a device or pipe")
    if PurePosixPath(member.linkname).is_absolute() or not link_target.is_relative_to(target.resolve()):
        raise DownloadError(f"{archive}: refusing to extract member {member.name!r}, a link to "
                            f"{member.linkname!r} outside {target}")
