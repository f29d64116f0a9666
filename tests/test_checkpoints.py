"""checkpoint.pth records its format version; resuming refuses what would fail or mislead later (issue 18, 13, 15, 16)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from retina_lib.training.run_folder import CHECKPOINT_FILE, ResumeError
from retina_lib.training.trainer import fit
from retina_lib.training.weights import CHECKPOINT_FORMAT_VERSION
from test_training import FAST, blob_images, tiny_net


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A run folder after one epoch of the tiny network: its checkpoint.pth is genuine."""
    run_dir = tmp_path_factory.mktemp("run") / "run"
    fit(tiny_net(), blob_images(2), epochs=1, out_dir=run_dir, **FAST)
    return run_dir


def changed_run(trained_run: Path, tmp_path: Path, change) -> Path:
    """A copy of ``trained_run`` whose checkpoint went through ``change(checkpoint)``."""
    run_dir = tmp_path / "run"
    shutil.copytree(trained_run, run_dir)
    checkpoint = torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)
    change(checkpoint)
    torch.save(checkpoint, run_dir / CHECKPOINT_FILE)
    return run_dir


def resume(run_dir: Path, model: torch.nn.Module | None = None) -> dict:
    return fit(model or tiny_net(), blob_images(2), epochs=2, out_dir=run_dir, resume=True, **FAST)


def test_a_checkpoint_records_its_format_version(trained_run: Path) -> None:
    checkpoint = torch.load(trained_run / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["format_version"] == CHECKPOINT_FORMAT_VERSION == 1


@pytest.mark.parametrize("version, message", [
    (2, "format version 2, newer than the version 1"),
    (1.5, "format_version is 1.5"),
    (None, "format_version is None"),
])
def test_resume_refuses_an_unknown_format_version(trained_run: Path, tmp_path: Path, version, message: str) -> None:
    run_dir = changed_run(trained_run, tmp_path, lambda checkpoint: checkpoint.update(format_version=version))
    with pytest.raises(ResumeError, match=f"cannot resume from .*checkpoint.pth: .*{message}"):
        resume(run_dir)


def test_a_checkpoint_from_before_versions_resumes_as_version_1(trained_run: Path, tmp_path: Path) -> None:
    run_dir = changed_run(trained_run, tmp_path, lambda checkpoint: checkpoint.pop("format_version"))
    history = resume(run_dir)
    assert len(history["train_loss"]) == 2


@pytest.mark.parametrize("key", ["model", "best_model"])
def test_resume_refuses_weights_cast_to_integers(trained_run: Path, tmp_path: Path, key: str) -> None:
    def cast(checkpoint: dict) -> None:
        checkpoint[key] = {name: value.long() for name, value in checkpoint[key].items()}

    run_dir = changed_run(trained_run, tmp_path, cast)
    with pytest.raises(ResumeError, match=f"in its '{key}', .* stored as integers or booleans"):
        resume(run_dir)


def test_resume_refuses_optimizer_state_shaped_unlike_the_parameters(trained_run: Path, tmp_path: Path) -> None:
    """Adam would fail at its first step with a bare RuntimeError; refused at load, and the model is untouched."""
    def reshape(checkpoint: dict) -> None:
        first = checkpoint["optimizer"]["state"][0]
        first["exp_avg"] = torch.zeros(first["exp_avg"].numel())

    run_dir = changed_run(trained_run, tmp_path, reshape)
    model = tiny_net(seed=1)
    before = {name: value.clone() for name, value in model.state_dict().items()}
    with pytest.raises(ResumeError, match=r"optimizer state does not fit .*parameter 0 'exp_avg' is \(108,\), "
                                          r"the parameter is \(4, 3, 3, 3\)"):
        resume(run_dir, model)
    torch.testing.assert_close(model.state_dict(), before)
