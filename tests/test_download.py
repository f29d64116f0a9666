"""download(): mirrors, checksums, safe extraction and idempotence, against a local HTTP server.

No test touches the network: the archives are built here and served from
127.0.0.1 on a free port; the URL/checksum table is patched to point at them.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import sys
import tarfile
import threading
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retina_lib.data import DownloadError, download, load_dataset
from retina_lib.data.datasets import STARE_LABELLED
from retina_lib.data.download import MARKER_FILE, SOURCES, Archive, extract_safely, sha256_of
from conftest import Server  # the local HTTP server behind the `server` fixture


def png_bytes(array: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=format)
    return buffer.getvalue()


def tiny_photo() -> bytes:
    picture = np.zeros((16, 16, 3), dtype=np.uint8)
    picture[3:13, 3:13] = (200, 90, 40)
    return png_bytes(picture, "JPEG")


def tiny_label() -> bytes:
    label = np.zeros((16, 16), dtype=np.uint8)
    label[8, 4:12] = 255
    return png_bytes(label)


def chase_zip(path: Path) -> Path:
    """A miniature CHASEDB1.zip: the official names, flat, 16 x 16 pixels."""
    with zipfile.ZipFile(path, "w") as bundle:
        for number in range(1, 15):
            for eye in "LR":
                name = f"Image_{number:02d}{eye}"
                bundle.writestr(f"{name}.jpg", tiny_photo())
                bundle.writestr(f"{name}_1stHO.png", tiny_label())
                bundle.writestr(f"{name}_2ndHO.png", tiny_label())
    return path


def serve_chase(server: Server, monkeypatch: pytest.MonkeyPatch, mirrors: list[str] | None = None) -> Path:
    """Put a miniature CHASEDB1.zip on the server and point the table at it."""
    archive = chase_zip(server.folder / "CHASEDB1.zip")
    urls = tuple(mirrors) if mirrors is not None else (server.url("CHASEDB1.zip"),)
    monkeypatch.setitem(SOURCES, "chase_db1", (Archive("CHASEDB1.zip", urls, sha256_of(archive), "CHASEDB1"),))
    return archive


# --- success, idempotence, mirrors ---------------------------------------------------------


def test_download_extracts_into_loader_layout_and_is_idempotent(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_chase(server, monkeypatch)
    root = tmp_path / "data"

    folder = download("chase_db1", root, progress=True)
    assert folder == root / "CHASEDB1" and (folder / "Image_01L.jpg").is_file()
    assert (root / "downloads" / "CHASEDB1.zip").is_file()
    assert not list((root / "downloads").glob("*.part"))
    assert len(load_dataset("chase_db1", "all", root=root)) == 28
    assert load_dataset("chase_db1", "test", root=root)[0].label.sum() == 8
    assert len(server.requests) == 1

    assert download("chase_db1", root, progress=False) == folder
    assert len(server.requests) == 1, "an extracted dataset is reused without network"

    (folder / "Image_05L_1stHO.png").unlink()  # a damaged copy: re-extract from the verified archive
    with pytest.warns(UserWarning, match="Image_05L_1stHO.png is missing; extracting CHASEDB1.zip again"):
        download("chase_db1", root, progress=False)
    assert (folder / "Image_05L_1stHO.png").is_file()
    assert len(server.requests) == 1, "a verified archive is reused without network"


def test_first_mirror_failing_then_second_succeeding(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_chase(server, monkeypatch, mirrors=[server.url("gone/CHASEDB1.zip"), server.url("CHASEDB1.zip")])
    download("chase_db1", tmp_path, progress=False)
    assert server.requests == ["/gone/CHASEDB1.zip", "/CHASEDB1.zip"]
    assert len(load_dataset("chase_db1", "train", root=tmp_path)) == 20


def test_all_mirrors_failing_reports_each_one(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_chase(server, monkeypatch, mirrors=[server.url("a/CHASEDB1.zip"), server.url("b/CHASEDB1.zip")])
    with pytest.raises(DownloadError) as error:
        download("chase_db1", tmp_path, progress=False)
    message = str(error.value)
    assert "a/CHASEDB1.zip" in message and "b/CHASEDB1.zip" in message and "404" in message
    assert str(tmp_path / "downloads" / "CHASEDB1.zip") in message, "says where to put a manual download"


def test_urls_override_replaces_the_mirrors(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_chase(server, monkeypatch, mirrors=["http://127.0.0.1:9/never-used.zip"])
    download("chase_db1", tmp_path, urls={"CHASEDB1.zip": [server.url("CHASEDB1.zip")]}, progress=False)
    assert server.requests == ["/CHASEDB1.zip"]
    with pytest.raises(ValueError, match="other.zip"):
        download("chase_db1", tmp_path / "elsewhere", urls={"other.zip": ["http://127.0.0.1:9/x"]})


def test_stare_tars_go_into_their_own_folders(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    archives = []
    for part, suffix, content in (("stare-images", "", tiny_photo()), ("labels-ah", ".ah", tiny_label()),
                                  ("labels-vk", ".vk", tiny_label())):
        path = server.folder / f"{part}.tar"
        with tarfile.open(path, "w") as bundle:
            for name in STARE_LABELLED:
                member = tarfile.TarInfo(f"{name}{suffix}.ppm")  # not gzipped: the loader takes both
                member.size = len(content)
                bundle.addfile(member, io.BytesIO(content))
        archives.append(Archive(path.name, (server.url(path.name),), sha256_of(path), f"STARE/{part}"))
    monkeypatch.setitem(SOURCES, "stare", tuple(archives))

    assert download("stare", tmp_path, progress=False) == tmp_path / "STARE"
    assert (tmp_path / "STARE" / "labels-vk" / "im0324.vk.ppm").is_file()
    sample = load_dataset("stare", "test", root=tmp_path)[0]
    assert sample.name == "im0162" and sample.second_label is not None
    assert len(server.requests) == 3


# --- checksums -----------------------------------------------------------------------------


def test_checksum_mismatch_deletes_the_file_and_says_expected_and_got(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = chase_zip(server.folder / "CHASEDB1.zip")
    wrong = "0" * 64
    monkeypatch.setitem(SOURCES, "chase_db1", (Archive("CHASEDB1.zip", (server.url("CHASEDB1.zip"),), wrong,
                                                       "CHASEDB1"),))
    with pytest.raises(DownloadError) as error:
        download("chase_db1", tmp_path, progress=False)
    message = str(error.value)
    assert "sha256 mismatch" in message and wrong in message and sha256_of(archive) in message
    assert "deleted" in message
    assert not list((tmp_path / "downloads").iterdir()), "neither the archive nor a .part file is left"
    assert not (tmp_path / "CHASEDB1").exists()


def test_stale_local_archive_is_replaced(tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = serve_chase(server, monkeypatch)
    (tmp_path / "downloads").mkdir()
    (tmp_path / "downloads" / "CHASEDB1.zip").write_bytes(b"half a download")
    with pytest.warns(UserWarning, match="sha256 mismatch"):
        download("chase_db1", tmp_path, progress=False)
    assert sha256_of(tmp_path / "downloads" / "CHASEDB1.zip") == sha256_of(archive)
    assert len(server.requests) == 1


# --- safe extraction -----------------------------------------------------------------------


@pytest.mark.parametrize("member", ["../evil.txt", "inside/../../evil.txt", "/tmp/evil.txt"])
def test_zip_members_outside_the_target_are_refused(tmp_path: Path, member: str) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("fine.txt", "ok")
        bundle.writestr(member, "gotcha")
    target = tmp_path / "a" / "b"
    with pytest.raises(DownloadError, match=f"refusing to extract member '{member}'"):
        extract_safely(archive, target)
    assert not (target / "fine.txt").exists(), "nothing is extracted from a bad archive"
    assert not (tmp_path / "a" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def tar_with(path: Path, member: tarfile.TarInfo, content: bytes = b"") -> Path:
    with tarfile.open(path, "w") as bundle:
        bundle.addfile(member, io.BytesIO(content) if content else None)
    return path


def test_tar_traversal_and_outside_links_are_refused(tmp_path: Path) -> None:
    traversal = tarfile.TarInfo("../evil.txt")
    traversal.size = 6
    with pytest.raises(DownloadError, match="'../evil.txt'"):
        extract_safely(tar_with(tmp_path / "a.tar", traversal, b"gotcha"), tmp_path / "t1")

    link = tarfile.TarInfo("innocent")
    link.type, link.linkname = tarfile.SYMTYPE, "../../etc"
    with pytest.raises(DownloadError, match="'innocent', a link to '../../etc'"):
        extract_safely(tar_with(tmp_path / "b.tar", link), tmp_path / "t2")
    assert not (tmp_path / "t2" / "innocent").exists()

    absolute_link = tarfile.TarInfo("also_innocent")
    absolute_link.type, absolute_link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(DownloadError, match="also_innocent"):
        extract_safely(tar_with(tmp_path / "c.tar", absolute_link), tmp_path / "t3")


def test_link_inside_the_target_is_allowed(tmp_path: Path) -> None:
    archive = tmp_path / "ok.tar"
    with tarfile.open(archive, "w") as bundle:
        data = tarfile.TarInfo("data/file.txt")
        data.size = 2
        bundle.addfile(data, io.BytesIO(b"ok"))
        link = tarfile.TarInfo("data/alias.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "file.txt"
        bundle.addfile(link)
    extract_safely(archive, tmp_path / "out")
    assert (tmp_path / "out" / "data" / "alias.txt").read_text() == "ok"


def test_download_refuses_a_malicious_archive(tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = server.folder / "CHASEDB1.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../outside.txt", "gotcha")
    monkeypatch.setitem(SOURCES, "chase_db1", (Archive("CHASEDB1.zip", (server.url("CHASEDB1.zip"),),
                                                       sha256_of(archive), "CHASEDB1"),))
    with pytest.raises(DownloadError, match="'../../outside.txt'"):
        download("chase_db1", tmp_path / "root", progress=False)
    assert not (tmp_path / "outside.txt").exists()


# --- datasets that cannot be downloaded ----------------------------------------------------


@pytest.mark.parametrize("name, words", [("drive", "grand-challenge.org"), ("retina_blood_vessel", "Kaggle account")])
def test_account_datasets_explain_how_to_get_them(tmp_path: Path, name: str, words: str) -> None:
    with pytest.raises(DownloadError, match=words) as error:
        download(name, tmp_path)
    assert str(tmp_path) in str(error.value), "says where to put the files"


def test_unknown_dataset_lists_the_downloadable_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chase_db1, hrf, stare"):
        download("synthetic", tmp_path)


# --------------------------------------------------------------------------
# Issue 18: nothing the user owns is lost, concurrent downloads, all-or-nothing extraction
# (cases 4, 7, 8, 9, 17, 18, 20)
# --------------------------------------------------------------------------

download_module = sys.modules["retina_lib.data.download"]  # the name `download` is also the function


def test_case_7_a_users_archive_with_another_checksum_is_moved_aside_not_deleted(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = serve_chase(server, monkeypatch)
    (tmp_path / "downloads").mkdir()
    mine = tmp_path / "downloads" / "CHASEDB1.zip"
    mine.write_bytes(b"what my browser saved")
    with pytest.warns(UserWarning, match=r"sha256 mismatch .* moved it to (\S+) \(kept, not deleted\)") as caught:
        download("chase_db1", tmp_path, progress=False)
    kept = Path(str(caught[0].message).split("moved it to ")[1].split(" (kept")[0])
    assert kept.parent == tmp_path / "downloads" and kept.read_bytes() == b"what my browser saved"
    assert sha256_of(mine) == sha256_of(archive)


def test_case_8_two_downloads_at_once_both_succeed_and_download_once(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two notebooks opened at once on first use: the second waits for the first, then finds the dataset."""
    serve_chase(server, monkeypatch)
    monkeypatch.setattr(download_module, "CHUNK_BYTES", 2048)
    real_urlopen = urllib.request.urlopen

    class Slow:  # a slow network, so that the two downloads overlap
        def __init__(self, response) -> None:
            self.response, self.headers = response, response.headers

        def read(self, size: int) -> bytes:
            time.sleep(0.01)
            return self.response.read(size)

        def __enter__(self) -> Slow:
            return self

        def __exit__(self, *exception) -> None:
            self.response.close()

    monkeypatch.setattr(urllib.request, "urlopen", lambda *args, **kwargs: Slow(real_urlopen(*args, **kwargs)))
    start, results = threading.Barrier(2), {}

    def notebook(number: int) -> None:
        start.wait()
        try:
            results[number] = download("chase_db1", tmp_path, progress=False)
        except Exception as error:  # reported by the assertion below
            results[number] = error

    threads = [threading.Thread(target=notebook, args=(number,)) for number in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert results == {1: tmp_path / "CHASEDB1", 2: tmp_path / "CHASEDB1"}
    assert len(server.requests) == 1, "the second download found the first one's result"
    assert len(load_dataset("chase_db1", "all", root=tmp_path)) == 28
    assert sorted(path.name for path in (tmp_path / "downloads").iterdir()) == ["CHASEDB1.zip"]


def test_case_18_the_download_the_extracted_files_and_the_marker_are_forced_to_disk(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the file behind a descriptor")
    serve_chase(server, monkeypatch)
    synced: list[str] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    download("chase_db1", tmp_path, progress=False)
    names = [Path(path).name for path in synced]
    assert any(name.startswith(".CHASEDB1.zip.") for name in names), "the download before its rename"
    assert "Image_01L.jpg" in names and "Image_14R_2ndHO.png" in names, "every extracted file"
    assert any(name.startswith(f".{MARKER_FILE}.") for name in names), "the marker before its rename"


def test_case_17_an_extracted_dataset_follows_the_umask(tmp_path: Path) -> None:
    archive = chase_zip(tmp_path / "CHASEDB1.zip")
    previous = os.umask(0o022)
    try:
        extract_safely(archive, tmp_path / "CHASEDB1")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "CHASEDB1").stat().st_mode) == 0o755, "others can open a shared data root"
    assert stat.S_IMODE((tmp_path / "CHASEDB1" / "Image_01L.jpg").stat().st_mode) == 0o644


def test_case_17_tar_members_follow_the_umask(tmp_path: Path) -> None:
    archive = tmp_path / "part.tar"
    with tarfile.open(archive, "w") as bundle:
        for name, kind, mode in (("images", tarfile.DIRTYPE, 0o777), ("images/a.txt", tarfile.REGTYPE, 0o666)):
            member = tarfile.TarInfo(name)
            member.type, member.mode = kind, mode
            bundle.addfile(member, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    previous = os.umask(0o027)
    try:
        extract_safely(archive, tmp_path / "part")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "part").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "part" / "images").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "part" / "images" / "a.txt").stat().st_mode) == 0o640


@pytest.fixture
def without_python_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.10.0-3.10.11 and 3.11.0-3.11.3 have no ``tarfile.data_filter``: the library's checks stand alone."""
    monkeypatch.delattr(tarfile, "data_filter", raising=False)


def test_case_4_a_hard_link_to_an_absolute_path_is_refused(tmp_path: Path, without_python_filter: None) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as bundle:
        link = tarfile.TarInfo("x")
        link.type, link.linkname = tarfile.LNKTYPE, str(outside)
        bundle.addfile(link)
        overwrite = tarfile.TarInfo("x")
        overwrite.size = len(b"gotcha")
        bundle.addfile(overwrite, io.BytesIO(b"gotcha"))
    with pytest.raises(DownloadError, match="'x', a link to the absolute path"):
        extract_safely(archive, tmp_path / "target")
    assert outside.read_text() == "precious" and not (tmp_path / "target").exists()


def test_case_4_a_symlink_to_an_absolute_path_is_refused(tmp_path: Path, without_python_filter: None) -> None:
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as bundle:
        link = tarfile.TarInfo("system")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc"
        bundle.addfile(link)
    with pytest.raises(DownloadError, match="'system', a link to the absolute path '/etc'"):
        extract_safely(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_case_4_a_name_given_twice_with_a_link_is_refused(tmp_path: Path, without_python_filter: None) -> None:
    archive = tmp_path / "twice.tar"
    with tarfile.open(archive, "w") as bundle:
        for name, kind, content in (("a.txt", tarfile.REGTYPE, b"first"), ("b.txt", tarfile.LNKTYPE, b"a.txt"),
                                    ("b.txt", tarfile.REGTYPE, b"through the link")):
            member = tarfile.TarInfo(name)
            member.type = kind
            if kind == tarfile.LNKTYPE:
                member.linkname = content.decode()
                bundle.addfile(member)
            else:
                member.size = len(content)
                bundle.addfile(member, io.BytesIO(content))
    with pytest.raises(DownloadError, match="'b.txt': the archive holds that name twice and one is a link"):
        extract_safely(archive, tmp_path / "target")


def old_and_new(tmp_path: Path) -> tuple[Path, Path]:
    """A target holding old a.txt, b.txt and the user's own notes.txt, and a zip with new a.txt and b.txt."""
    target = tmp_path / "target"
    target.mkdir()
    for name in ("a.txt", "b.txt"):
        (target / name).write_text("old")
    (target / "notes.txt").write_text("mine")
    archive = tmp_path / "new.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("a.txt", "new")
        bundle.writestr("b.txt", "new")
    return archive, target


@pytest.mark.parametrize("failing_call", [1, 2, 3, 4])
def test_case_9_an_extraction_over_a_target_is_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              failing_call: int) -> None:
    """The n-th rename fails (a full disk, a crash): the target is all old or all new, never a mix."""
    archive, target = old_and_new(tmp_path)
    real_replace, calls = os.replace, []

    def replace(source, destination) -> None:
        calls.append(source)
        if len(calls) == failing_call:
            raise OSError(errno.EIO, "Input/output error")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    try:
        extract_safely(archive, target)
    except DownloadError:
        pass
    contents = {(target / name).read_text() for name in ("a.txt", "b.txt")}
    assert contents in ({"old"}, {"new"}), f"a mix after a failure at rename {failing_call}"
    assert (target / "notes.txt").read_text() == "mine"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new.zip", "target"], "nothing left beside it"


def test_case_9_what_a_killed_extraction_left_is_cleaned_up(tmp_path: Path) -> None:
    archive, target = old_and_new(tmp_path)
    killed = tmp_path / ".target.extracting-k9x2ab7q"
    (killed / "half").mkdir(parents=True)
    extract_safely(archive, target)
    assert not killed.exists()
    assert (target / "a.txt").read_text() == "new" and (target / "notes.txt").read_text() == "mine"


def test_case_9_a_target_moved_aside_by_a_killed_swap_is_put_back(tmp_path: Path) -> None:
    archive, target = old_and_new(tmp_path)
    target.rename(tmp_path / ".target.replaced-k9x2ab7q")  # killed between the two renames of the swap
    extract_safely(archive, target)
    assert (target / "notes.txt").read_text() == "mine", "the user's file in the old tree is not lost"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["new.zip", "target"]


def test_case_20_an_archive_with_too_many_members_is_refused_before_extraction(tmp_path: Path) -> None:
    archive = tmp_path / "many.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        for number in range(download_module.MAX_MEMBERS + 1):
            bundle.addfile(tarfile.TarInfo(f"f{number}"), io.BytesIO(b""))
    with pytest.raises(DownloadError, match=f"it has {download_module.MAX_MEMBERS + 1} members, more than the"):
        extract_safely(archive, tmp_path / "target")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["many.tar.gz"]


def test_case_20_a_zip_with_too_many_members_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for number in range(download_module.MAX_MEMBERS + 1):
            bundle.writestr(f"f{number}", b"")
    with pytest.raises(DownloadError, match="members, more than the"):
        extract_safely(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_an_extraction_target_that_is_a_link_is_refused(tmp_path: Path) -> None:
    archive, target = old_and_new(tmp_path)
    target.rename(tmp_path / "elsewhere")
    target.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DownloadError, match="is a symbolic link; an extraction replaces that folder"):
        extract_safely(archive, target)
    assert (tmp_path / "elsewhere" / "a.txt").read_text() == "old" and target.is_symlink()
