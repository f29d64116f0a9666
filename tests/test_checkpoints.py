"""The full training checkpoint: what fit refuses to resume from, and how settings are compared."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from retina_lib.training.checkpoints import settings_differences
from retina_lib.training.run_folder import CHECKPOINT_FILE, ResumeError
from retina_lib.training.trainer import fit
from retina_lib.training.weights import CHECKPOINT_FORMAT_VERSION
from test_training import FAST, blob_images, tiny, tiny_net


def damage(checkpoint: dict, how: str) -> object:
    if how == "not a dict":
        return [checkpoint]
    if how == "no config":
        del checkpoint["config"]
    elif how == "no rng":
        del checkpoint["rng"]
    elif how == "rng without python":
        del checkpoint["rng"]["python"]
    elif how == "epoch as text":
        checkpoint["epoch"] = "1"
    elif how == "another architecture":
        checkpoint["model"] = nn.Linear(3, 2).state_dict()
    elif how == "another optimizer":
        other = torch.optim.Adam(nn.Linear(3, 2).parameters())
        checkpoint["optimizer"] = other.state_dict()
    elif how == "short history":
        checkpoint["history"]["train_loss"] = []
    elif how == "nan weights":
        next(iter(checkpoint["model"].values()))[0] = float("nan")
    elif how == "bad rng state":
        checkpoint["rng"]["torch"] = torch.zeros(3, dtype=torch.uint8)
    return checkpoint


@pytest.mark.parametrize("how, message", [
    ("not a dict", "not a full training checkpoint"),
    ("no config", "no 'config'"),
    ("no rng", "no 'rng'"),
    ("rng without python", "no rng 'python'"),
    ("epoch as text", "'epoch' is a str"),
    ("another architecture", "'model' is for another architecture"),
    ("another optimizer", "optimizer, schedule or random states do not fit"),
    ("short history", "one value per epoch"),
    ("nan weights", "NaN or infinite"),
    ("bad rng state", "optimizer, schedule or random states do not fit"),
])
def test_hand_made_checkpoints_raise_the_resume_error(tmp_path: Path, how: str, message: str) -> None:
    fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)
    checkpoint = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    torch.save(damage(checkpoint, how), tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ResumeError, match=message):
        fit(tiny_net(), blob_images(2), config=tiny(2), out_dir=tmp_path, resume=True, **FAST)


def test_settings_differences() -> None:
    saved = {"epochs": 10, "lr": 0.1, "schedule": None}
    assert settings_differences(saved, {**saved, "epochs": 20}) == []
    assert settings_differences(saved, {**saved, "epochs": 5}) == ["epochs: 10 in the checkpoint, 5 now"]
    cosine = {**saved, "schedule": "cosine"}
    assert "not with schedule='cosine'" in settings_differences(cosine, {**cosine, "epochs": 20})[0]
    assert settings_differences(saved, {**saved, "seed": 1}) == ["seed: '(not set)' in the checkpoint, 1 now"]


# --------------------------------------------------------------------------
# Random states, snapshots and the shape of a checkpoint
# --------------------------------------------------------------------------

def test_restoring_the_random_states_repeats_the_next_draws() -> None:
    import random

    import numpy as np

    from retina_lib.training.checkpoints import restore_rng_states, rng_states

    def draws() -> tuple:
        return random.random(), random.gauss(0, 1), float(np.random.rand()), torch.rand(1).item()

    states = rng_states()
    first = draws()
    assert draws() != first
    restore_rng_states(states)
    assert draws() == first


def test_rng_states_load_with_weights_only(tmp_path: Path) -> None:
    from retina_lib.training.checkpoints import rng_states

    torch.save(rng_states(), tmp_path / "rng.pth")
    loaded = torch.load(tmp_path / "rng.pth", weights_only=True)
    assert torch.equal(loaded["torch"], torch.get_rng_state())


def test_cpu_copy_is_a_snapshot_later_steps_cannot_change() -> None:
    from retina_lib.training.checkpoints import cpu_copy

    layer = nn.Linear(2, 1)
    snapshot = cpu_copy(layer.state_dict())
    with torch.no_grad():
        layer.weight.add_(1.0)
    assert not torch.equal(snapshot["weight"], layer.weight)
    assert not snapshot["weight"].requires_grad


def test_checkpoint_problems_names_what_is_missing_or_mistyped(tmp_path: Path) -> None:
    from retina_lib.training.checkpoints import checkpoint_problems

    assert checkpoint_problems([1, 2]) == ["it holds a list, not a dict"]
    fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)
    written = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint_problems(written) == [], "what fit writes is well formed"
    assert "'epoch' is a bool" in checkpoint_problems({**written, "epoch": True})
    assert "no 'history'" in checkpoint_problems({key: value for key, value in written.items() if key != "history"})


# --- issue 18: checkpoint format version, weights cast to integers (were a separate file) ---
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A run folder after one epoch of the tiny network: its checkpoint.pth is genuine."""
    run_dir = tmp_path_factory.mktemp("run") / "run"
    fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=run_dir, **FAST)
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
    return fit(model or tiny_net(), blob_images(2), config=tiny(2), out_dir=run_dir, resume=True, **FAST)


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
