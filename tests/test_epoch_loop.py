"""Tests for retina_lib.epoch_loop: one training or evaluation pass, the original API."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from retina_lib.epoch_loop import CLDICE_WEIGHT, EpochResult, Evaluate, NonFiniteLossError, Train
from retina_lib.losses import BCEDiceLoss, ClDiceLoss, DiceLoss, IoU


def tiny_net() -> nn.Module:
    """A two-layer convolutional net with batch norm: fast, but behaves like a real one."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))


class FixedLogits(nn.Module):
    """Returns the same logits whatever the input (times a parameter equal to 1, so it has a device)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.logits * self.scale


def random_batches(n: int = 4, size: int = 32, with_fov: bool = True, batch_size: int = 2) -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    image = torch.rand(n, 3, size, size, generator=generator)
    label = (image[:, 1:2] > 0.7).float()
    tensors = [image, label] + ([torch.ones_like(label)] if with_fov else [])
    return DataLoader(TensorDataset(*tensors), batch_size=batch_size)


def test_train_forward_returns_two_floats_and_updates_weights() -> None:
    model = tiny_net()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    result = Train(dice=DiceLoss(), iou=IoU(), amp="off").forward(model=model, loader=random_batches(), optimizer=optimizer)
    assert isinstance(result, tuple) and len(result) == 2
    assert all(isinstance(value, float) and 0.0 <= value <= 1.0 for value in result)
    assert any(not torch.equal(old, new) for old, new in zip(before, model.parameters()))
    assert model.training


def test_evaluate_forward_leaves_weights_alone_and_runs_in_eval_mode() -> None:
    model = tiny_net()
    model.train()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    modes = []
    model.register_forward_hook(lambda module, inputs, output: modes.append(module.training))
    result = Evaluate(dice=DiceLoss(), iou=IoU(), amp="off").forward(model=model, loader=random_batches())
    assert isinstance(result, tuple) and len(result) == 2
    assert all(isinstance(value, float) for value in result)
    assert modes == [False, False]  # two batches, both in eval mode
    assert model.training  # the previous mode is restored
    for key, value in model.state_dict().items():  # includes batch-norm running statistics
        assert torch.equal(value, before[key]), key


def test_the_target_is_the_vessel_label_not_the_fov() -> None:
    label = torch.zeros(2, 1, 32, 32)
    label[:, :, 10:20, 5:25] = 1.0
    fov = torch.ones_like(label)  # a FOV that differs from the label everywhere outside the vessels
    perfect = FixedLogits(20.0 * (2 * label - 1))
    loader = DataLoader(TensorDataset(torch.rand(2, 3, 32, 32), label, fov), batch_size=2)
    dice_loss, iou_loss = Evaluate(amp="off").forward(model=perfect, loader=loader)
    assert dice_loss == pytest.approx(0.0, abs=1e-6)
    assert iou_loss == pytest.approx(0.0, abs=1e-6)


def test_thresholded_dice_is_scored_inside_the_fov() -> None:
    label = torch.zeros(1, 1, 32, 32)
    label[:, :, :, :16] = 1.0
    everything_is_vessel = FixedLogits(torch.full((1, 1, 32, 32), 5.0))
    fov_on_vessels = label.clone()
    with_fov = DataLoader(TensorDataset(torch.rand(1, 3, 32, 32), label, fov_on_vessels), batch_size=1)
    without_fov = DataLoader(TensorDataset(torch.rand(1, 3, 32, 32), label), batch_size=1)
    evaluate = Evaluate(amp="off")
    assert evaluate.run_epoch(everything_is_vessel, with_fov).dice == pytest.approx(1.0)
    # Over the whole image half of the predicted vessel pixels are wrong: Dice = 2*0.5/(1+0.5).
    assert evaluate.run_epoch(everything_is_vessel, without_fov).dice == pytest.approx(2 / 3, abs=1e-4)


@pytest.mark.parametrize("loss", ["dice+iou", "bce+dice", "bce+dice+cldice"])
def test_the_optimised_loss_is_the_one_asked_for(loss: str) -> None:
    torch.manual_seed(3)
    logits = torch.randn(2, 1, 32, 32)
    label = (torch.rand(2, 1, 32, 32) > 0.8).float()
    loader = DataLoader(TensorDataset(torch.rand(2, 3, 32, 32), label), batch_size=2)
    result = Evaluate(loss=loss, amp="off").run_epoch(FixedLogits(logits), loader)
    assert isinstance(result, EpochResult)
    _, dice_loss = DiceLoss()(logits, label)
    _, iou_loss = IoU()(logits, label)
    expected = {
        "dice+iou": dice_loss + iou_loss,
        "bce+dice": BCEDiceLoss()(logits, label)[1],
        "bce+dice+cldice": BCEDiceLoss()(logits, label)[1] + CLDICE_WEIGHT * ClDiceLoss()(logits, label)[1],
    }[loss]
    assert result.loss == pytest.approx(expected.item(), rel=1e-5)
    assert result.dice_loss == pytest.approx(dice_loss.item(), rel=1e-5)
    assert result.iou_loss == pytest.approx(iou_loss.item(), rel=1e-5)


def test_unknown_loss_choice_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="dice\\+iou.*bce\\+dice.*'dice'"):
        Train(loss="dice")


def test_nan_loss_names_epoch_and_batch_and_skips_the_step() -> None:
    image = torch.rand(4, 3, 32, 32)
    image[3, 0, 0, 0] = float("nan")  # the second batch of two
    label = (image[:, 1:2] > 0.5).float()
    loader = DataLoader(TensorDataset(image, label), batch_size=2)
    model = tiny_net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(NonFiniteLossError, match="epoch 3, batch 2") as caught:
        Train(amp="off").run_epoch(model, loader, optimizer, epoch=3)
    assert (caught.value.epoch, caught.value.batch) == (3, 2)
    assert math.isnan(caught.value.value)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_batch_without_label_is_refused() -> None:
    loader = DataLoader(TensorDataset(torch.rand(2, 3, 32, 32)), batch_size=2)
    with pytest.raises(ValueError, match="\\(image, label\\) or \\(image, label, fov\\); got 1 items"):
        Evaluate(amp="off").forward(model=tiny_net(), loader=loader)


def test_an_empty_loader_is_an_error() -> None:
    empty = DataLoader(TensorDataset(torch.rand(0, 3, 32, 32), torch.rand(0, 1, 32, 32)), batch_size=2)
    with pytest.raises(ValueError, match="no batches"):
        Evaluate(amp="off").forward(model=tiny_net(), loader=empty)


def test_bf16_mixed_precision_on_cpu_gives_finite_losses() -> None:
    model = tiny_net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    dice_loss, iou_loss = Train(amp="bf16").forward(model=model, loader=random_batches(), optimizer=optimizer)
    assert math.isfinite(dice_loss) and math.isfinite(iou_loss)


