"""The run folder: one run at a time, whole files only, and runs that survive ``kill -9``.

Runs that must be killed or raced run in a separate process (tests/gated_run.py)
that waits inside an epoch until the test lets it go, so nothing here depends
on the speed of the machine; the timeouts are only a safety net.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import gated_run
from retina_lib.cli import main
from retina_lib.training.run_folder import (
    BEST_WEIGHTS_FILE,
    CHECKPOINT_FILE,
    HISTORY_FILE,
    LOCK_FILE,
    ResumeError,
    RunFolderInUseError,
    RunFolderLock,
)
from retina_lib.system import files
from retina_lib.system.files import write_atomically
from retina_lib.training.trainer import fit
from test_training import FAST, assert_same_history, blob_images, tiny, tiny_net

TESTS = Path(__file__).resolve().parent
SAFETY_NET_SECONDS = 600  # only reached if something hangs


def polls(interval: float) -> int:
    """How many waits of ``interval`` seconds make the safety net: a bound on polling, not a speed test."""
    return int(SAFETY_NET_SECONDS / interval)


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen]]:
    """Processes a test starts; any still running when it ends (a failed test) are killed."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def start_gated_run(out_dir: Path, gate_epoch: int, started: list[subprocess.Popen]) -> subprocess.Popen:
    """Start tests/gated_run.py; return once it waits inside ``gate_epoch`` (run folder locked)."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, str(TESTS / "gated_run.py"), str(out_dir), str(gate_epoch)],
                               env=environment, stderr=subprocess.PIPE, text=True)
    started.append(process)
    waiting = out_dir.with_name(out_dir.name + ".waiting")
    for _ in range(polls(0.01)):
        if waiting.exists():
            return process
        if process.poll() is not None:
            pytest.fail(f"the gated run ended early (status {process.returncode}): {process.stderr.read()}")
        time.sleep(0.01)
    process.kill()
    pytest.fail("the gated run never reached its gate")


def let_go(out_dir: Path) -> None:
    out_dir.with_name(out_dir.name + ".go").touch()


# --------------------------------------------------------------------------
# kill -9, then resume
# --------------------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_in_the_middle_of_an_epoch_then_resume_gives_the_same_run(tmp_path: Path, started) -> None:
    run_dir = tmp_path / "killed"
    process = start_gated_run(run_dir, gate_epoch=2, started=started)
    assert torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)["epoch"] == 1
    assert (run_dir / LOCK_FILE).is_file()
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=SAFETY_NET_SECONDS) == -signal.SIGKILL
    assert (run_dir / LOCK_FILE).is_file(), "kill -9 leaves the lock file; the lock itself died with the process"

    resumed = gated_run.resume(run_dir)  # would raise RunFolderInUseError if the lock had survived
    reference = gated_run.reference_run(tmp_path / "reference")
    assert_same_history(reference, resumed)
    assert_same_history(reference, json.loads((run_dir / HISTORY_FILE).read_text()))
    resumed_best = torch.load(run_dir / BEST_WEIGHTS_FILE, weights_only=True)
    reference_best = torch.load(tmp_path / "reference" / BEST_WEIGHTS_FILE, weights_only=True)
    for key, value in reference_best.items():
        torch.testing.assert_close(resumed_best[key], value, msg=key)
    assert not (run_dir / LOCK_FILE).exists(), "a run that ends normally deletes its lock file"


@pytest.mark.slow
def test_the_lock_dies_with_a_killed_process(tmp_path: Path, started) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from retina_lib.training.run_folder import RunFolderLock; "
                               "lock = RunFolderLock(sys.argv[1]); lock.acquire(); print('held', flush=True); "
                               "sys.stdin.read()", str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(TESTS.parent)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    started.append(holder)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunFolderInUseError, match=f"in use by another training run \\(process {holder.pid}"):
        RunFolderLock(tmp_path).acquire()
    holder.kill()  # SIGKILL: no clean-up code runs
    holder.wait(timeout=SAFETY_NET_SECONDS)
    with RunFolderLock(tmp_path):
        pass


# --------------------------------------------------------------------------
# Two runs into one folder
# --------------------------------------------------------------------------

@pytest.mark.slow
def test_a_second_run_into_a_busy_folder_is_refused_and_the_first_finishes_intact(tmp_path: Path, capsys,
                                                                                   started) -> None:
    run_dir = tmp_path / "shared"
    first = start_gated_run(run_dir, gate_epoch=1, started=started)  # locked, nothing written: the old check passed
    assert not (run_dir / CHECKPOINT_FILE).exists()

    with pytest.raises(RunFolderInUseError, match=f"in use by another training run \\(process {first.pid}"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=run_dir, **FAST)
    status = main(["train", "--dataset", "synthetic", "--synthetic-n", "3", "--synthetic-size", "64", "--epochs", "1",
                   "--preset", "original", "--mode", "resize", "--size", "64", "--val-count", "1", "--device", "cpu", "--out", str(run_dir)])
    assert status == 2 and "in use by another training run" in capsys.readouterr().err

    let_go(run_dir)
    assert first.wait(timeout=SAFETY_NET_SECONDS) == 0, first.stderr.read()
    history = json.loads((run_dir / HISTORY_FILE).read_text())
    checkpoint = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["epoch"] == gated_run.EPOCHS and len(history["train_loss"]) == gated_run.EPOCHS
    assert_same_history(checkpoint["history"], history)  # both files from the same run
    assert sorted(path.name for path in run_dir.iterdir()) == ["checkpoint.pth", "curves.png", "history.json",
                                                               "linknet.pth"]


def test_the_lock_is_exclusive_within_one_process_too(tmp_path: Path) -> None:
    with RunFolderLock(tmp_path):
        with pytest.raises(RunFolderInUseError, match=str(tmp_path)):
            RunFolderLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILE).exists()
    with RunFolderLock(tmp_path):  # free again
        pass


def test_without_any_lock_mechanism_the_error_is_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(files, "fcntl", None)
    monkeypatch.setattr(files, "msvcrt", None)
    with pytest.raises(OSError, match="neither fcntl nor msvcrt"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path / "run", **FAST)


# --------------------------------------------------------------------------
# A folder that holds a run is never overwritten
# --------------------------------------------------------------------------

@pytest.mark.parametrize("left", [BEST_WEIGHTS_FILE, HISTORY_FILE])
def test_a_folder_with_trained_weights_but_no_checkpoint_is_not_overwritten(tmp_path: Path, left: str) -> None:
    fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)
    for name in {CHECKPOINT_FILE, BEST_WEIGHTS_FILE, HISTORY_FILE} - {left}:
        (tmp_path / name).unlink()  # e.g. the 185 MB checkpoint deleted to save space
    before = (tmp_path / left).read_bytes()
    with pytest.raises(FileExistsError, match=f"already holds a training run \\(.*{left}"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)
    assert (tmp_path / left).read_bytes() == before
    with pytest.raises(ResumeError, match=f"no checkpoint.pth in .*{left}"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, resume=True, **FAST)


def test_a_file_as_out_dir_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path / "file", **FAST)


# --------------------------------------------------------------------------
# Whole files only
# --------------------------------------------------------------------------

def test_write_atomically_syncs_file_and_folder_before_and_after_the_rename(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor: int) -> None:
        events.append(("fsync", "folder" if os.path.isdir(f"/proc/self/fd/{descriptor}") else "file"))
        real_fsync(descriptor)

    def replace(source, destination) -> None:
        events.append(("replace", Path(destination).name))
        real_replace(source, destination)

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to tell files from folders")
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    write_atomically(tmp_path / "data.json", lambda path: path.write_text("{}"))
    assert events == [("fsync", "file"), ("replace", "data.json"), ("fsync", "folder")]
    assert (tmp_path / "data.json").read_text() == "{}"


def test_temporary_names_are_unique_and_cleaned_up(tmp_path: Path) -> None:
    seen = []

    def write_inner(path: Path) -> None:
        seen.append(path)
        path.write_text("inner")

    def write_outer(path: Path) -> None:  # a second writer of the same file while the first is writing
        seen.append(path)
        path.write_text("outer")
        write_atomically(tmp_path / "same.txt", write_inner)

    write_atomically(tmp_path / "same.txt", write_outer)
    assert seen[0] != seen[1] and all(path.parent == tmp_path for path in seen)
    assert (tmp_path / "same.txt").read_text() == "outer"

    def fail(path: Path) -> None:
        path.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "same.txt", fail)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["same.txt"]
    assert (tmp_path / "same.txt").read_text() == "outer"



@pytest.mark.slow
def test_kill_9_of_the_command_line_then_resume_gives_the_same_history(tmp_path: Path, capsys, started) -> None:
    """The same through ``python -m retina_lib train``, killed as soon as its first checkpoint appears."""
    arguments = ["train", "--dataset", "synthetic", "--synthetic-n", "3", "--synthetic-size", "64", "--epochs", "2",
                 "--samples-per-epoch", "8", "--batch-size", "2", "--preset", "original", "--mode", "resize", "--size", "64", "--val-count", "1",
                 "--device", "cpu"]
    run_dir = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "retina_lib", *arguments, "--out", str(run_dir)],
                               env={**os.environ, "PYTHONPATH": str(TESTS.parent)}, stderr=subprocess.DEVNULL)
    started.append(process)
    for _ in range(polls(0.005)):
        if (run_dir / CHECKPOINT_FILE).exists() or process.poll() is not None:
            break
        time.sleep(0.005)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=SAFETY_NET_SECONDS)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)["epoch"] == 1, "killed during epoch 2"

    assert main([*arguments, "--out", str(run_dir), "--resume"]) == 0, capsys.readouterr().err
    assert main([*arguments, "--out", str(tmp_path / "reference")]) == 0, capsys.readouterr().err
    assert_same_history(json.loads((tmp_path / "reference" / HISTORY_FILE).read_text()),
                        json.loads((run_dir / HISTORY_FILE).read_text()))
    resumed_best = torch.load(run_dir / BEST_WEIGHTS_FILE, weights_only=True)
    for key, value in torch.load(tmp_path / "reference" / BEST_WEIGHTS_FILE, weights_only=True).items():
        torch.testing.assert_close(resumed_best[key], value, msg=key)


# --------------------------------------------------------------------------
# Issue 18: the lock never follows a link; a full disk or kill -9 never leaves a run stuck
# --------------------------------------------------------------------------

def test_case_3_the_lock_never_follows_a_symlink(tmp_path: Path) -> None:
    """``lockdir/.lock -> ../precious.txt`` once made the run write its process id into precious.txt."""
    (tmp_path / "precious.txt").write_text("mine")
    (tmp_path / "lockdir").mkdir()
    (tmp_path / "lockdir" / LOCK_FILE).symlink_to("../precious.txt")
    with pytest.raises(OSError, match="symbolic link"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path / "lockdir", **FAST)
    assert (tmp_path / "precious.txt").read_text() == "mine"
    assert (tmp_path / "lockdir" / LOCK_FILE).is_symlink(), "the link is left for its owner to look at"


def test_case_3_a_lock_file_the_library_did_not_write_is_kept(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text("notes of another program")
    with pytest.raises(OSError, match="not written by retina_lib"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)
    assert (tmp_path / LOCK_FILE).read_text() == "notes of another program"


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc:626] . file write failed")],
                         ids=["ENOSPC", "torch"])
def test_case_6_a_full_disk_at_the_first_checkpoint_says_so_and_the_run_can_start_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    real_save = torch.save

    def save(obj, path, *args, **kwargs):
        if Path(path).name.startswith(f".{CHECKPOINT_FILE}."):
            Path(path).write_bytes(b"half a checkpoint")
            raise error
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OSError, match=r"no space left on the disk to write .*checkpoint.pth \(\d+ MB free"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(path.name for path in tmp_path.iterdir()) == [], "no run file, no temporary file: not stuck"
    fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)  # space freed: it starts again
    assert (tmp_path / CHECKPOINT_FILE).is_file() and (tmp_path / BEST_WEIGHTS_FILE).is_file()


def test_case_6_a_kill_during_the_first_checkpoint_leaves_a_run_that_starts_again_and_no_partial(
        tmp_path: Path) -> None:
    """What ``kill -9`` while the first checkpoint is written leaves: its temporary file (81 MB for LinkNet)."""
    stale = tmp_path / f".{CHECKPOINT_FILE}.k9x2ab7q.partial"
    stale.write_bytes(b"half a checkpoint")
    fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)
    assert not stale.exists(), "a killed writer's temporary file is deleted when the folder is next opened"
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [BEST_WEIGHTS_FILE, CHECKPOINT_FILE, HISTORY_FILE, "curves.png"])

