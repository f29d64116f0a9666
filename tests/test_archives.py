"""Hostile archives and downloads: link chains, bombs, endless or cut transfers, damaged extractions.

Everything is built here and served from 127.0.0.1; no test touches the network.
"""
from __future__ import annotations

import http.server
import io
import json
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from retina_lib.data import DownloadError, download, load_dataset
from retina_lib.data.download import MARKER_FILE, SOURCES, Archive, extract_safely, sha256_of
from conftest import Server
from test_download import chase_zip, serve_chase

download_module = sys.modules["retina_lib.data.download"]  # the name `download` is also the function


def tar_of(path: Path, *members: tuple[str, str, bytes]) -> Path:
    """A tar of (name, kind, content) members; kind "file", "dir", "symlink" (content: the target) or "hardlink"."""
    with tarfile.open(path, "w") as bundle:
        for name, kind, content in members:
            member = tarfile.TarInfo(name)
            if kind == "file":
                member.size = len(content)
                bundle.addfile(member, io.BytesIO(content))
                continue
            member.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}[kind]
            member.linkname = content.decode()
            bundle.addfile(member)
    return path


def nothing_escaped(tmp_path: Path) -> bool:
    return not any(path.name == "evil.txt" for path in tmp_path.rglob("*"))


# --------------------------------------------------------------------------
# Links that escape through other links
# --------------------------------------------------------------------------

CHAINS = {
    "through a link": [("sub/x", "symlink", b".."), ("sub/x/y", "symlink", b"../.."),
                       ("sub/x/y/evil.txt", "file", b"gotcha")],
    "link via a link": [("sub/x", "symlink", b".."), ("y", "symlink", b"sub/x/.."), ("y/evil.txt", "file", b"x")],
    "hard link via a link": [("sub/x", "symlink", b".."), ("z", "hardlink", b"sub/x/../outside.txt")],
}


@pytest.mark.parametrize("python_filter", [True, False], ids=["with tarfile.data_filter", "without (3.10.0-3.10.11)"])
@pytest.mark.parametrize("chain", list(CHAINS))
def test_link_chains_are_refused_with_nothing_extracted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        chain: str, python_filter: bool) -> None:
    if not python_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tar_of(tmp_path / "chain.tar", ("fine.txt", "file", b"ok"), *CHAINS[chain])
    target = tmp_path / "deep" / "er" / "target"
    with pytest.raises(DownloadError, match="refusing to extract member"):
        extract_safely(archive, target)
    assert not target.exists(), "no partial extraction"
    assert sorted(path.name for path in target.parent.iterdir()) == [], "no temporary folder left"
    assert nothing_escaped(tmp_path)


def test_nothing_is_written_through_a_link_even_one_inside(tmp_path: Path) -> None:
    archive = tar_of(tmp_path / "through.tar", ("data", "dir", b""), ("alias", "symlink", b"data"),
                     ("alias/new.txt", "file", b"x"))
    with pytest.raises(DownloadError, match="'alias/new.txt', it would be written through a symbolic link"):
        extract_safely(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_links_inside_the_target_still_work_without_the_python_filter(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tar_of(tmp_path / "ok.tar", ("data/file.txt", "file", b"ok"), ("data/alias.txt", "symlink", b"file.txt"),
                     ("data/sub", "dir", b""), ("data/sub/up.txt", "symlink", b"../file.txt"))
    files = extract_safely(archive, tmp_path / "out")
    assert (tmp_path / "out" / "data" / "sub" / "up.txt").read_text() == "ok"
    assert files == {"data/file.txt": 2}


def test_a_zip_with_a_symlink_entry_is_refused_with_nothing_extracted(tmp_path: Path) -> None:
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("fine.txt", "ok")
        link = zipfile.ZipInfo("link")
        link.external_attr = (0o120777 << 16)  # a symbolic link, as `zip --symlinks` stores it
        bundle.writestr(link, "..")
        bundle.writestr("link/evil.txt", "gotcha")
    with pytest.raises(DownloadError, match="'link', a symbolic link"):
        extract_safely(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists() and nothing_escaped(tmp_path)


def test_a_failure_half_way_leaves_the_target_as_it_was(tmp_path: Path) -> None:
    archive = tmp_path / "clash.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("a.txt", "first")
        bundle.writestr("b", "a file")
        bundle.writestr("b/c.txt", "cannot go below a file")
    target = tmp_path / "target"
    target.mkdir()
    (target / "a.txt").write_text("mine")
    with pytest.raises(DownloadError, match="clash.zip: cannot extract it into"):
        extract_safely(archive, target)
    assert [path.name for path in target.iterdir()] == ["a.txt"] and (target / "a.txt").read_text() == "mine"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["clash.zip", "target"]


def test_a_damaged_archive_is_the_library_error(tmp_path: Path) -> None:
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("data.txt", "x" * 10000)
    data = bytearray(archive.read_bytes())
    data[60:70] = b"\xff" * 10  # inside the compressed data
    archive.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="damaged.zip: cannot extract it"):
        extract_safely(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()


# --------------------------------------------------------------------------
# Bombs
# --------------------------------------------------------------------------

def test_a_zip_bomb_is_refused_before_extraction(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("zeros.bin", bytes(20 << 20))  # 20 MiB of zeros: a 20 KB archive
    assert archive.stat().st_size * download_module.MAX_EXPANSION < 20 << 20
    with pytest.raises(DownloadError, match=f"add up to {20 << 20} bytes, more than the .* allowed"):
        extract_safely(archive, tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_a_compressed_tar_bomb_and_the_absolute_cap(tmp_path: Path) -> None:
    archive = tmp_path / "bomb.tar.gz"
    with tarfile.open(archive, "w:gz") as bundle:
        member = tarfile.TarInfo("zeros.bin")
        member.size = 20 << 20
        bundle.addfile(member, io.BytesIO(bytes(member.size)))
    with pytest.raises(DownloadError, match="decompression bomb"):
        extract_safely(archive, tmp_path / "target")
    small = tar_of(tmp_path / "small.tar", ("a.txt", "file", b"0123456789"))
    with pytest.raises(DownloadError, match="add up to 10 bytes, more than the 9 allowed"):
        extract_safely(small, tmp_path / "target", max_bytes=9)
    assert extract_safely(small, tmp_path / "target", max_bytes=10) == {"a.txt": 10}


# --------------------------------------------------------------------------
# Transfers that never end, announce too much, or are cut short
# --------------------------------------------------------------------------

class HostileServer:
    """127.0.0.1 only. /endless sends zeros forever; /announce claims 1 TB; /cut/N sends N bytes of ``body``
    after announcing all of it; /short/N sends N bytes of ``body`` without announcing a length."""

    def __init__(self, body: bytes) -> None:
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.requests.append(self.path)
                self.send_response(200)
                parts = self.path.strip("/").split("/")
                if parts[0] == "endless":
                    self.end_headers()
                    try:
                        while True:
                            self.wfile.write(bytes(1 << 16))
                    except OSError:  # the client hung up
                        return
                if parts[0] == "announce":
                    self.send_header("Content-Length", str(10 ** 12))
                    self.end_headers()
                    self.wfile.write(bytes(1000))
                    return
                if parts[0] == "cut":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: int(parts[1])])

            def log_message(self, *args) -> None:
                pass

        self.requests: list[str] = []
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{path}"


@pytest.fixture
def hostile(tmp_path: Path) -> Iterator[HostileServer]:
    body = chase_zip(tmp_path / "CHASEDB1.zip").read_bytes()
    running = HostileServer(body)
    running.thread.start()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


def point_chase_at(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, url: str, size: int | None) -> None:
    archive = tmp_path / "CHASEDB1.zip"
    monkeypatch.setitem(SOURCES, "chase_db1", (Archive("CHASEDB1.zip", (url,), sha256_of(archive), "CHASEDB1",
                                                       size),))


def assert_nothing_kept(root: Path) -> None:
    assert not list((root / "downloads").iterdir()), "neither the archive nor a .part file is left"
    assert not (root / "CHASEDB1").exists()


@pytest.mark.parametrize("recorded, general", [(1_000_000, None), (None, 3_000_000)],
                         ids=["the archive's recorded size", "the general cap without one"])
def test_an_endless_download_stops_at_the_limit(tmp_path: Path, hostile: HostileServer,
                                                monkeypatch: pytest.MonkeyPatch, recorded: int | None,
                                                general: int | None) -> None:
    point_chase_at(monkeypatch, tmp_path, hostile.url("endless"), size=recorded)
    if general is not None:
        monkeypatch.setattr(download_module, "MAX_DOWNLOAD_BYTES", general)
    limit = recorded or general
    with pytest.raises(DownloadError, match=f"stopped after .* bytes: more than the expected {limit}"):
        download("chase_db1", tmp_path / "root", progress=False)
    assert_nothing_kept(tmp_path / "root")


def test_an_announced_oversize_is_refused_at_once(tmp_path: Path, hostile: HostileServer,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    point_chase_at(monkeypatch, tmp_path, hostile.url("announce"), size=None)
    with pytest.raises(DownloadError, match=f"announces {10 ** 12} bytes"):
        download("chase_db1", tmp_path / "root", progress=False)
    assert_nothing_kept(tmp_path / "root")


@pytest.mark.parametrize("how", ["cut", "short"])
def test_an_interrupted_transfer_is_refused_and_leaves_nothing(tmp_path: Path, hostile: HostileServer,
                                                               monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    total = (tmp_path / "CHASEDB1.zip").stat().st_size
    half = total // 2
    point_chase_at(monkeypatch, tmp_path, hostile.url(f"{how}/{half}"), size=None)
    expected = f"stopped after {half} of the {total} bytes" if how == "cut" else "sha256 mismatch"
    with pytest.raises(DownloadError, match=expected):
        download("chase_db1", tmp_path / "root", progress=False)
    assert_nothing_kept(tmp_path / "root")


def test_the_registry_records_the_published_size_and_a_larger_file_is_stopped(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    assert SOURCES["chase_db1"][0].size == 2_513_926  # CHASEDB1.zip as published (see data/README.md)
    archive = serve_chase(server, monkeypatch)
    real = SOURCES["chase_db1"][0]
    monkeypatch.setitem(SOURCES, "chase_db1", (Archive(real.filename, real.urls, real.sha256, real.extract_to,
                                                       size=archive.stat().st_size - 1),))
    with pytest.raises(DownloadError, match=f"more than the expected {archive.stat().st_size - 1}"):
        download("chase_db1", tmp_path, progress=False)


# --------------------------------------------------------------------------
# The completion marker
# --------------------------------------------------------------------------

def test_a_truncated_extracted_file_is_noticed_and_extracted_again(
        tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    serve_chase(server, monkeypatch)
    folder = download("chase_db1", tmp_path, progress=False)
    marker = json.loads((folder / MARKER_FILE).read_text())
    assert marker["complete"] and len(marker["files"]) == 84
    label = folder / "Image_03R_1stHO.png"
    whole = label.read_bytes()
    label.write_bytes(whole[: len(whole) // 2])
    with pytest.warns(UserWarning, match=f"Image_03R_1stHO.png has {len(whole) // 2} bytes instead of {len(whole)}"):
        download("chase_db1", tmp_path, progress=False)
    assert label.read_bytes() == whole
    assert len(server.requests) == 1, "extracted again from the verified archive, without network"


def test_an_unfinished_extraction_is_never_trusted(tmp_path: Path, server: Server,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    serve_chase(server, monkeypatch)
    folder = download("chase_db1", tmp_path, progress=False)
    content = json.loads((folder / MARKER_FILE).read_text())
    (folder / MARKER_FILE).write_text(json.dumps({**content, "complete": False}))  # as if stopped half-way
    with pytest.warns(UserWarning, match="did not complete"):
        download("chase_db1", tmp_path, progress=False)
    assert json.loads((folder / MARKER_FILE).read_text())["complete"]


def test_a_failed_extraction_writes_no_marker(tmp_path: Path, server: Server,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    archive = server.folder / "CHASEDB1.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("Image_01L.jpg", "x")
        bundle.writestr("Image_01L.jpg/below.txt", "cannot go below a file")
    monkeypatch.setitem(SOURCES, "chase_db1", (Archive("CHASEDB1.zip", (server.url("CHASEDB1.zip"),),
                                                       sha256_of(archive), "CHASEDB1"),))
    with pytest.raises(DownloadError, match="cannot extract it"):
        download("chase_db1", tmp_path, progress=False)
    assert not (tmp_path / "CHASEDB1").exists()


def test_a_folder_extracted_by_hand_is_used_as_it_is(tmp_path: Path, server: Server,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    archive = serve_chase(server, monkeypatch)
    with zipfile.ZipFile(archive) as bundle:
        bundle.extractall(tmp_path / "CHASEDB1")
    assert download("chase_db1", tmp_path, progress=False) == tmp_path / "CHASEDB1"
    assert server.requests == [] and not (tmp_path / "CHASEDB1" / MARKER_FILE).exists()
    assert len(load_dataset("chase_db1", "all", root=tmp_path)) == 28
