"""Shared fixtures: where the real datasets are, and a local HTTP server for download tests."""
from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from retina_lib.data.datasets import ENVIRONMENT_VARIABLE, data_root
from retina_lib.model import LinkNet

#: The real datasets the tests read, by the folder their official archive unpacks to
#: inside the data root, and the name ``python -m retina_lib download`` knows them by.
REAL_DATASETS = {"CHASEDB1": "chase_db1", "HRF": "hrf"}


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The data root holding real CHASE_DB1 and HRF copies, or a skip that says how to get them.

    The data root is the library's own (``$RETINA_DATA_DIR``, else the user's
    cache folder), so the tests read the same copies as the notebooks and the
    command line.
    """
    root = data_root()
    missing = {folder: name for folder, name in REAL_DATASETS.items() if not (root / folder).is_dir()}
    if missing:
        downloads = " and ".join(f"`python -m retina_lib download {name}`" for name in missing.values())
        pytest.skip(f"the real {', '.join(missing)} photographs are not in the data root {root}: set "
                    f"{ENVIRONMENT_VARIABLE} to a folder holding {', '.join(f'{f}/' for f in missing)} "
                    f"or run {downloads}")
    return root


class Server:
    """A static file server on 127.0.0.1 that records the paths it was asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:  # keep the test output clean
                pass

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(folder))
        )
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, filename: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{filename}"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    folder = tmp_path / "served"
    folder.mkdir()
    running = Server(folder)
    running.thread.start()
    yield running
    running.httpd.shutdown()
    running.httpd.server_close()


@pytest.fixture(scope="module")
def linknet_file(tmp_path_factory) -> Path:
    """An untrained LinkNet's state dict on disk (a valid ``linknet.pth``)."""
    path = tmp_path_factory.mktemp("weights") / "linknet.pth"
    torch.manual_seed(0)
    torch.save(LinkNet().state_dict(), path)
    return path
