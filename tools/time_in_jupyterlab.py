"""Time the course notebooks the way a learner runs them: JupyterLab in a browser, Run All.

    pip install playwright        # drives the system's Chromium; no browser is downloaded
    apt-get install chromium      # or pass --chromium PATH
    RETINA_DATA_DIR=/path/to/datasets python tools/time_in_jupyterlab.py \
        --mode smoke --json benchmarks/notebook_times_smoke.json 01_architecture.ipynb 02_losses.ipynb

Why not nbclient or pytest: the test harness forces one CPU thread, and a
notebook run by nbclient has no browser on the other end. Here each notebook
runs alone, as the README tells a learner to: the tool copies it into a fresh
folder (so nothing in ``runs/`` is found and the committed notebook is never
touched), sets ``SMOKE = True`` or ``False`` in its first code cell exactly as
a learner would, starts ``jupyter lab`` there, opens the notebook in headless
Chromium, waits for the kernel, runs *Run > Run All Cells* and stops the clock
when every code cell has run and the kernel is idle again. The time includes
what a learner waits for (widgets and figures drawn in the page), and excludes
starting JupyterLab and the kernel.

A cell that raises stops the tool with the notebook's name and the error. The
JSON records, per notebook, the seconds, the mode, the machine (CPU model,
cores, whether it has native bfloat16) and the load average before and after,
so a number read from it says how it was measured.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))
from retina_lib.system.files import write_atomically  # noqa: E402
from retina_lib.system.hardware import cpu_supports_bf16  # noqa: E402

SMOKE_LINE = "SMOKE = None"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]

#: Runs in the page: how far the notebook got. JupyterLab exposes its application object
#: as ``window.jupyterapp`` when started with ``--expose-app-in-browser``.
PROGRESS_SCRIPT = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = panel.content.widgets.filter(cell => cell.model.type === 'code');
  const errors = [];
  cells.forEach((cell, index) => {
    for (let i = 0; i < cell.model.outputs.length; i++) {
      const output = cell.model.outputs.get(i).toJSON();
      if (output.output_type === 'error') errors.push(`code cell ${index + 1}: ${output.ename}: ${output.evalue}`);
    }
  });
  return {
    total: cells.length,
    done: cells.filter(cell => cell.model.executionCount !== null && cell.model.executionCount !== undefined).length,
    kernel: panel.sessionContext.session ? panel.sessionContext.session.kernel.status : 'none',
    errors: errors,
  };
}"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def prepare_copy(notebook: Path, folder: Path, smoke: bool) -> Path:
    """Copy ``notebook`` into ``folder`` with the learner's choice of mode typed into its first code cell."""
    content = nbformat.read(notebook, as_version=4)
    first_code = next(cell for cell in content.cells if cell.cell_type == "code")
    if SMOKE_LINE not in first_code.source:
        raise SystemExit(f"{notebook}: its first code cell has no line {SMOKE_LINE!r} to set")
    first_code.source = first_code.source.replace(SMOKE_LINE, f"SMOKE = {smoke}")
    for cell in content.cells:  # start clean, as a learner's Run All replaces every output anyway
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    copy = folder / notebook.name
    write_atomically(copy, lambda temporary: nbformat.write(content, temporary))
    return copy


def wait_for_server(port: int, token: str, server: subprocess.Popen, timeout: float = 120) -> None:
    import urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"jupyter lab exited with status {server.returncode} before it served")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"jupyter lab did not answer on port {port} within {timeout:.0f} s")


def run_all(browser, port: int, token: str, name: str, timeout: float) -> float:
    """Open ``name`` in JupyterLab, Run All, and return the seconds until every cell ran."""
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    try:
        page.goto(f"http://127.0.0.1:{port}/lab/tree/{name}?token={token}")
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                               " && window.jupyterapp.shell.currentWidget.sessionContext"
                               " && window.jupyterapp.shell.currentWidget.sessionContext.session"
                               " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel"
                               " && window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                               timeout=180_000)
        started = time.perf_counter()
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
        while True:
            page.wait_for_timeout(250)
            progress = page.evaluate(PROGRESS_SCRIPT)
            if progress["errors"]:
                raise SystemExit(f"{name}: a cell raised in JupyterLab: {progress['errors'][0]}")
            if progress["done"] == progress["total"] and progress["kernel"] == "idle":
                return time.perf_counter() - started
            if time.perf_counter() - started > timeout:
                raise SystemExit(f"{name}: {progress['done']} of {progress['total']} code cells ran in {timeout:.0f} s")
    finally:
        page.close()


def time_notebook(notebook: Path, smoke: bool, chromium: str, timeout: float) -> dict:
    """Time one notebook alone, in a fresh folder, a fresh JupyterLab and a fresh kernel."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="retina_jupyterlab_") as scratch:
        folder = Path(scratch) / "notebooks"
        folder.mkdir()
        copy = prepare_copy(notebook, folder, smoke)
        port, token = free_port(), secrets.token_hex(16)
        environment = {key: value for key, value in os.environ.items() if key != "RETINA_SMOKE"}
        environment["JUPYTERLAB_SETTINGS_DIR"] = str(Path(scratch) / "settings")
        environment["JUPYTER_RUNTIME_DIR"] = str(Path(scratch) / "runtime")
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
             "--expose-app-in-browser", "--allow-root"],
            cwd=folder, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_server(port, token, server)
            load_before = os.getloadavg()[0]
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
                try:
                    seconds = run_all(browser, port, token, copy.name, timeout)
                finally:
                    browser.close()
            load_after = os.getloadavg()[0]
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"seconds": round(seconds, 1), "mode": "smoke" if smoke else "full",
            "load_average_before": round(load_before, 2), "load_average_after": round(load_after, 2)}


def machine() -> dict:
    model = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    return {"cpu": model, "cores": os.cpu_count(), "native_bfloat16": cpu_supports_bf16(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__, "python": platform.python_version()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", help="notebook file names inside notebooks/")
    parser.add_argument("--mode", choices=("smoke", "full"), required=True)
    parser.add_argument("--json", type=Path, help="add the times to this JSON file (kept entries stay)")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per notebook")
    arguments = parser.parse_args()
    if not Path(arguments.chromium).is_file():
        parser.error(f"--chromium: no browser at {arguments.chromium}")
    results = json.loads(arguments.json.read_text()) if arguments.json and arguments.json.is_file() else {}
    results["machine"] = machine()
    results.setdefault("commands", {})[arguments.mode] = "python tools/time_in_jupyterlab.py " + " ".join(sys.argv[1:])
    for name in arguments.notebooks:
        notebook = REPOSITORY / "notebooks" / name
        if not notebook.is_file():
            parser.error(f"no notebook {notebook}")
        timing = time_notebook(notebook, arguments.mode == "smoke", arguments.chromium, arguments.timeout)
        results.setdefault(arguments.mode, {})[notebook.stem] = timing
        print(f"{name} ({arguments.mode}): {timing['seconds']:.0f} s in JupyterLab, "
              f"load average {timing['load_average_before']} -> {timing['load_average_after']}", flush=True)
        if arguments.json:  # after each notebook, so that an interrupted run keeps what it measured
            write_atomically(arguments.json,
                             lambda temporary: temporary.write_text(json.dumps(results, indent=2) + "\n"))


if __name__ == "__main__":
    main()
