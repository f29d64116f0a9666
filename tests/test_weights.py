"""Weights files that load without error but would give a silent wrong answer are refused (issue 18, case 13, 15)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from retina_lib.model import LinkNet
from retina_lib.training.weights import CHECKPOINT_FORMAT_VERSION, WeightsError, load_weights


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
