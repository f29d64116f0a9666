"""load_weights and the safe loading under it: pickles run no code, broken files are refused by name.

The malicious pickle is tried through every path that loads a ``.pth`` file:
``load_weights``, the command line's ``predict`` and ``evaluate``, and
``fit(resume=True)`` with ``train --resume``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from retina_lib.model import LinkNet
from retina_lib.training.run_folder import CHECKPOINT_FILE, ResumeError
from retina_lib.training.trainer import fit
from retina_lib.training.weights import CHECKPOINT_FORMAT_VERSION, WeightsError, load_weights
from test_cli import SYNTHETIC, assert_one_line_error, photo, run
from test_training import FAST, blob_images, tiny, tiny_net


class CreatesFile:
    """Unpickling this object calls ``open(path, "w")``: it creates ``path``. Stands for any hidden code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def malicious_weights(path: Path, marker: Path, full_checkpoint: bool = False) -> Path:
    payload = {"initial.conv.weight": torch.zeros(1), "hidden": CreatesFile(marker)}
    torch.save({"best_model": payload, "optimizer": {}} if full_checkpoint else payload, path)
    return path


def test_the_malicious_pickle_really_runs_code_when_loaded_unsafely(tmp_path: Path) -> None:
    """Checks the test's own weapon: without weights_only it does create its file."""
    marker = tmp_path / "marker"
    torch.load(malicious_weights(tmp_path / "evil.pth", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("full_checkpoint", [False, True])
def test_a_malicious_pickle_runs_no_code_through_any_loading_path(tmp_path: Path, capsys, linknet_file: Path,
                                                                  full_checkpoint: bool) -> None:
    marker = tmp_path / "marker"
    evil = malicious_weights(tmp_path / "evil.pth", marker, full_checkpoint)
    with pytest.raises(WeightsError, match="refused: it holds Python objects \\(io.open\\)") as error:
        load_weights(evil)
    assert "weights_only" not in str(error.value) and "likely succeed" not in str(error.value), \
        "never relay torch's advice to load with weights_only=False"

    image = photo(tmp_path / "photo.png")
    status, _, err = run(capsys, "predict", str(image), "--weights", str(evil), "--device", "cpu", "--threshold", "0.5")
    assert_one_line_error(status, err, "refused")
    status, _, err = run(capsys, "evaluate", *SYNTHETIC, "--weights", str(evil), "--device", "cpu")
    assert_one_line_error(status, err, "refused")

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / CHECKPOINT_FILE).write_bytes(evil.read_bytes())
    with pytest.raises(ResumeError, match="refused"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=run_dir, resume=True, **FAST)
    status, _, err = run(capsys, "train", *SYNTHETIC, "--epochs", "1", "--preset", "original", "--mode", "resize", "--size", "64", "--val-count", "1",
                         "--device", "cpu", "--out", str(run_dir), "--resume")
    assert_one_line_error(status, err, "refused")
    assert not marker.exists(), "the hidden code ran"
    assert not list(tmp_path.glob("photo_*.png"))


def broken_weights(kind: str, folder: Path, linknet_file: Path) -> Path:
    path = folder / f"{kind}.pth"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        path.write_bytes(linknet_file.read_bytes()[: linknet_file.stat().st_size // 2])
    else:
        state = torch.load(linknet_file, weights_only=True)
        state["classifier.weight"].view(-1)[0] = float("nan") if kind == "nan" else float("inf")
        torch.save(state, path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("random", "not a PyTorch weights file that loads safely"),
    ("truncated", "not a PyTorch weights file that loads safely"),
    ("nan", "hold NaN or infinite values"),
    ("inf", "hold NaN or infinite values"),
])
def test_broken_weights_are_refused_before_predicting(tmp_path: Path, capsys, linknet_file: Path, kind: str,
                                                      message: str) -> None:
    weights = broken_weights(kind, tmp_path, linknet_file)
    with pytest.raises(WeightsError, match=message):
        load_weights(weights)
    image = photo(tmp_path / "photo.png")
    status, _, err = run(capsys, "predict", str(image), "--weights", str(weights), "--device", "cpu", "--threshold", "0.5")
    assert_one_line_error(status, err, message)
    assert "weights_only" not in err and "likely succeed" not in err, "torch's advice to load unsafely"
    assert not (tmp_path / "photo_prob.png").exists() and not (tmp_path / "photo_mask.png").exists()


def test_a_folder_as_weights_is_called_a_folder(tmp_path: Path, capsys) -> None:
    image = photo(tmp_path / "photo.png")
    status, _, err = run(capsys, "predict", str(image), "--weights", str(tmp_path), "--device", "cpu", "--threshold", "0.5")
    assert_one_line_error(status, err, "is a folder")


def test_load_weights_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="weights file not found: .*nothing.pth"):
        load_weights(tmp_path / "nothing.pth")
    torch.save(nn.Linear(3, 2).state_dict(), tmp_path / "linear.pth")
    with pytest.raises(WeightsError, match="another architecture .*missing keys .*2 unexpected keys \\(weight, bias\\)"):
        load_weights(tmp_path / "linear.pth")
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(WeightsError, match="text.pth: not a PyTorch weights file"):
        load_weights(tmp_path / "text.pth")
    two_class = LinkNet(num_classes=2).state_dict()
    torch.save(two_class, tmp_path / "two.pth")
    assert load_weights(tmp_path / "two.pth").num_classes == 2
    with pytest.raises(WeightsError, match="shape mismatches \\(classifier.weight"):
        load_weights(tmp_path / "two.pth", model=LinkNet())


# --- issue 18: checkpoint format version, weights cast to integers (were a separate file) ---
@pytest.fixture(scope="module")
def linknet_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return LinkNet().state_dict()


def cast(state: dict[str, torch.Tensor], dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``state`` with every floating-point tensor cast to ``dtype``, as ``{k: v.long() ...}`` would do."""
    return {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.uint8])
def test_weights_cast_to_integers_or_booleans_are_refused(tmp_path: Path, linknet_state, dtype) -> None:
    path = tmp_path / "linknet.pth"
    torch.save(cast(linknet_state, dtype), path)
    with pytest.raises(WeightsError, match=r"linknet\.pth: \d+ weight tensor\(s\) are stored as integers or booleans"):
        load_weights(path)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_a_checkpoints_best_model_cast_to_integers_is_refused(tmp_path: Path, linknet_state, dtype) -> None:
    path = tmp_path / "checkpoint.pth"
    torch.save({"best_model": cast(linknet_state, dtype), "optimizer": {}}, path)
    with pytest.raises(WeightsError, match="integers or booleans"):
        load_weights(path)


def test_integer_buffers_the_model_keeps_are_fine(tmp_path: Path, linknet_state) -> None:
    """BatchNorm's num_batches_tracked is an int64 in every LinkNet: not a cast weight."""
    assert any(not value.is_floating_point() for value in linknet_state.values()), "precondition"
    torch.save(linknet_state, tmp_path / "linknet.pth")
    model = load_weights(tmp_path / "linknet.pth")
    torch.testing.assert_close(model.state_dict(), linknet_state)


@pytest.mark.parametrize("version, message", [
    (CHECKPOINT_FORMAT_VERSION + 1, "format version 2, newer than the version 1 this retina_lib reads"),
    ("1", "format_version is '1'"),
    (0, "format_version is 0"),
])
def test_a_checkpoint_of_an_unknown_format_version_is_refused(tmp_path: Path, linknet_state, version,
                                                              message: str) -> None:
    path = tmp_path / "checkpoint.pth"
    torch.save({"format_version": version, "best_model": linknet_state, "optimizer": {}}, path)
    with pytest.raises(WeightsError, match=f"checkpoint.pth: .*{message}"):
        load_weights(path)


@pytest.mark.parametrize("stored_version", [{}, {"format_version": CHECKPOINT_FORMAT_VERSION}],
                         ids=["from before versions", "current"])
def test_a_checkpoint_without_or_with_the_current_version_loads(tmp_path: Path, linknet_state,
                                                                stored_version) -> None:
    path = tmp_path / "checkpoint.pth"
    torch.save({**stored_version, "best_model": linknet_state, "optimizer": {}}, path)
    torch.testing.assert_close(load_weights(path).state_dict(), linknet_state)
