"""download(): mirrors, checksums, safe extraction and idempotence, against a local HTTP server.

No test touches the network: the archives are built here and served from
127.0.0.1 on a free port; the URL/checksum table is patched to point at them.
"""
from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from retina_lib.data import DownloadError, download, load_dataset
from retina_lib.data.datasets import STARE_LABELLED
from retina_lib.data.download import SOURCES, Archive, extract_safely, sha256_of
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
