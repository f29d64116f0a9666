"""retina_lib.system.files: whole files only, never onto what the user owns, modes that follow the umask.

The numbers in the test names are the cases of issue 18 (see SECURITY.md).
"""
from __future__ import annotations

import ast
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from retina_lib.system.files import (
    DiskFullError,
    FileLock,
    RefusedTargetError,
    check_target,
    remove_stale_partials,
    write_atomically,
    write_files_atomically,
)


@pytest.fixture
def umask_022() -> Iterator[None]:
    """Run the test under umask 022, the usual one on shared machines."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- case 17: modes follow the umask ---------------------------------------------------------

def test_case_17_a_written_file_follows_the_umask(tmp_path: Path, umask_022: None) -> None:
    write_atomically(tmp_path / "shared.json", lambda path: path.write_text("{}"))
    assert mode(tmp_path / "shared.json") == 0o644, "others must be able to read a shared file"
    os.umask(0o077)
    write_atomically(tmp_path / "private.json", lambda path: path.write_text("{}"))
    assert mode(tmp_path / "private.json") == 0o600


# --- case 5 and 6: a full disk replaces nothing and says so ----------------------------------

def fill_the_disk(path: Path) -> None:
    path.write_bytes(b"half a fi")
    raise OSError(errno.ENOSPC, "No space left on device")


def torch_fills_the_disk(path: Path) -> None:
    path.write_bytes(b"half a fi")
    raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0 ... file write failed")


@pytest.mark.parametrize("write", [fill_the_disk, torch_fills_the_disk], ids=["OSError ENOSPC", "torch"])
def test_case_6_a_full_disk_keeps_the_old_file_and_names_the_space(tmp_path: Path, write) -> None:
    (tmp_path / "results.json").write_text("old")
    with pytest.raises(DiskFullError, match=r"no space left on the disk to write .*results.json \(\d+ MB free"):
        write_atomically(tmp_path / "results.json", write)
    assert (tmp_path / "results.json").read_text() == "old"
    assert [path.name for path in tmp_path.iterdir()] == ["results.json"], "no temporary file is left"


def test_case_5_files_written_together_replace_none_when_one_fails(tmp_path: Path) -> None:
    (tmp_path / "a_prob.png").write_text("old prob")
    (tmp_path / "a_mask.png").write_text("old mask")
    with pytest.raises(DiskFullError):
        write_files_atomically({tmp_path / "a_prob.png": lambda path: path.write_text("new prob"),
                                tmp_path / "a_mask.png": fill_the_disk})
    assert (tmp_path / "a_prob.png").read_text() == "old prob", "the pair stays a pair"
    assert (tmp_path / "a_mask.png").read_text() == "old mask"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a_mask.png", "a_prob.png"]


# --- never through a link, never onto an input ------------------------------------------------

def test_a_link_is_never_written_through_or_replaced(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("mine")
    (tmp_path / "out.json").symlink_to(tmp_path / "precious.txt")
    with pytest.raises(RefusedTargetError, match="out.json is a symbolic link"):
        write_atomically(tmp_path / "out.json", lambda path: path.write_text("{}"))
    assert (tmp_path / "precious.txt").read_text() == "mine" and (tmp_path / "out.json").is_symlink()


def test_check_target_refuses_inputs_even_as_hard_links_and_others_files_without_overwrite(tmp_path: Path) -> None:
    weights = tmp_path / "linknet.pth"
    weights.write_bytes(b"weights")
    os.link(weights, tmp_path / "alias.json")
    for spelling in (weights, tmp_path / "." / "linknet.pth", tmp_path / "alias.json"):
        with pytest.raises(RefusedTargetError, match="would overwrite the weights"):
            check_target(spelling, option="--json", protected={weights: "the weights"}, overwrite=True)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RefusedTargetError, match="already exists and was not written by retina_lib.*--overwrite"):
        check_target(tmp_path / "notes.txt", option="--json")
    check_target(tmp_path / "notes.txt", option="--json", overwrite=True)
    check_target(tmp_path / "notes.txt", option="--json", ours=lambda path: True)
    check_target(tmp_path / "new" / "results.json", option="--json")


def test_only_the_librarys_own_temporary_files_are_cleaned_up(tmp_path: Path) -> None:
    for name in (".checkpoint.pth.abcd1234.partial", ".checkpoint.pth.notes", "checkpoint.pth.partial",
                 ".other.txt.abcd1234.partial"):
        (tmp_path / name).write_text("x")
    removed = remove_stale_partials(tmp_path, ["checkpoint.pth"])
    assert [path.name for path in removed] == [".checkpoint.pth.abcd1234.partial"]
    assert len(list(tmp_path.iterdir())) == 3


# --- the lock ---------------------------------------------------------------------------------

def test_a_lock_never_follows_a_link_nor_touches_a_file_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("mine")
    (tmp_path / ".lock").symlink_to(tmp_path / "precious.txt")
    with pytest.raises(RefusedTargetError, match="symbolic link"):
        FileLock(tmp_path / ".lock").acquire(wait=False)
    assert (tmp_path / "precious.txt").read_text() == "mine"
    (tmp_path / "other.lock").write_text("a file of some other program")
    with pytest.raises(RefusedTargetError, match="was not written by retina_lib"):
        FileLock(tmp_path / "other.lock").acquire(wait=False)
    assert (tmp_path / "other.lock").read_text() == "a file of some other program"


def test_a_lock_left_by_a_killed_holder_is_taken_over_and_deleted(tmp_path: Path) -> None:
    (tmp_path / "run.lock").write_text("4242\n")  # the format of earlier versions, holder long gone
    lock = FileLock(tmp_path / "run.lock")
    assert lock.acquire(wait=False)
    assert not FileLock(tmp_path / "run.lock").acquire(wait=False), "held: a second taker is refused"
    lock.release()
    assert not (tmp_path / "run.lock").exists()


# --- one rule for every writer in the project --------------------------------------------------

REPOSITORY = Path(__file__).resolve().parents[1]
#: Where the project's own code writes files: the package, and the scripts that make what is committed.
WRITING_CODE = ("retina_lib", "benchmarks", "results", "tools")
#: Calls that write a file whole: ``path.write_text(...)``, ``figure.savefig(...)``, ``torch.save(...)``,
#: ``nbformat.write(...)``, ``Image.fromarray(...).save(...)``.
FILE_WRITERS = {"write_text", "write_bytes", "savefig"}
ATOMIC_WRITERS = {"write_atomically", "write_files_atomically"}
#: Writes that are not files of the project's making, each with its reason (file, exact source).
NOT_A_FILE_OF_OURS = {
    # the streaming half of a download: it writes the temporary file that download_file's
    # write_atomically passes it, so it is guarded by its caller, not by a lambda
    ("retina_lib/data/download.py", 'open(partial, "wb")'),
    # the kernel's interface to reset a process's peak memory, not a file
    ("benchmarks/bench.py", 'Path("/proc/self/clear_refs").write_text("5")'),
    # the GPU session's append-only log, started empty in the session's own new folder
    ("benchmarks/gpu_session.py", 'self.log_path.write_text("")'),
    # serialises the shipped weights into memory; the bytes then go through write_atomically
    ("results/ship_pretrained.py", "torch.save(half, buffer)"),
}


def writes_a_file(call: ast.Call) -> bool:
    function = call.func
    if isinstance(function, ast.Name):
        return function.id == "open" and any(
            isinstance(mode, ast.Constant) and isinstance(mode.value, str) and set(mode.value) & set("wax")
            for mode in call.args[1:2] + [keyword.value for keyword in call.keywords if keyword.arg == "mode"])
    if not isinstance(function, ast.Attribute):
        return False
    owner = function.value
    return (function.attr in FILE_WRITERS
            or (function.attr == "save" and (isinstance(owner, ast.Call)
                                             or (isinstance(owner, ast.Name) and owner.id == "torch")))
            or (function.attr == "write" and isinstance(owner, ast.Name) and owner.id == "nbformat"))


def unguarded_writes(source: str) -> list[str]:
    """The file-writing calls in ``source`` that are not inside a lambda handed to write_atomically."""
    tree = ast.parse(source)
    parent_of = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}

    def guarded(node: ast.AST) -> bool:
        in_lambda = False
        while node in parent_of:
            node = parent_of[node]
            in_lambda = in_lambda or isinstance(node, ast.Lambda)
            if in_lambda and isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                if name in ATOMIC_WRITERS:
                    return True
        return False

    return [ast.get_source_segment(source, node) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and writes_a_file(node) and not guarded(node)]


def test_the_write_checker_tells_a_guarded_write_from_a_bare_one() -> None:
    bare = "path.write_text(text)\ntorch.save(state, path)\nImage.fromarray(a).save(path)\nopen(path, 'w')\n"
    guarded = ("write_atomically(path, lambda temporary: temporary.write_text(text))\n"
               "write_files_atomically({path: lambda temporary: torch.save(state, temporary)})\n"
               "open(path).read()\nrun.save(folder)\n")
    assert len(unguarded_writes(bare)) == 4
    assert unguarded_writes(guarded) == []


def test_every_file_the_projects_code_writes_goes_through_write_atomically() -> None:
    """The rule of retina_lib.system.files holds for the package and for the scripts that write what is
    committed (benchmark JSON, model card, notebooks): an interrupted run never leaves half a file."""
    found = set()
    for folder in WRITING_CODE:
        for path in sorted((REPOSITORY / folder).rglob("*.py")):
            relative = path.relative_to(REPOSITORY).as_posix()
            found |= {(relative, write) for write in unguarded_writes(path.read_text())}
    assert found - NOT_A_FILE_OF_OURS == set(), "write these through retina_lib.system.files.write_atomically"
    assert NOT_A_FILE_OF_OURS - found == set(), "exceptions that no longer exist: remove them from the list"
