"""Dice, IoU and BCE + Dice on tensors small enough to check by hand."""
from __future__ import annotations

import pytest
import torch

from retina_lib import BCEDiceLoss, DiceLoss, IoU
from retina_lib.losses import ClDiceLoss, soft_skeleton

# A 4x4 label with a 2x2 vessel block in the top-left corner (4 vessel pixels).
TARGET = torch.tensor(
    [[1, 1, 0, 0],
     [1, 1, 0, 0],
     [0, 0, 0, 0],
     [0, 0, 0, 0]], dtype=torch.float32).reshape(1, 1, 4, 4)
# A hard prediction with 4 vessel pixels, 3 of them correct.
PREDICTION = torch.tensor(
    [[1, 1, 1, 0],
     [1, 0, 0, 0],
     [0, 0, 0, 0],
     [0, 0, 0, 0]], dtype=torch.float32).reshape(1, 1, 4, 4)


def test_dice_and_iou_by_hand():
    # Intersection 3, |P| = 4, |T| = 4: Dice = 2*3 / 8 = 0.75, IoU = 3 / (4 + 4 - 3) = 0.6.
    dice, dice_loss = DiceLoss(from_logits=False)(PREDICTION, TARGET)
    iou, iou_loss = IoU(from_logits=False)(PREDICTION, TARGET)
    assert dice.item() == pytest.approx(0.75, abs=1e-6)
    assert dice_loss.item() == pytest.approx(0.25, abs=1e-6)
    assert iou.item() == pytest.approx(0.6, abs=1e-6)
    assert iou_loss.item() == pytest.approx(0.4, abs=1e-6)


def test_soft_scores_by_hand():
    # p = 0.5 everywhere: sum(p*t) = 2, sum(p) = 8, sum(t) = 4 -> Dice = 4/12, IoU = 2/10.
    half = torch.full_like(TARGET, 0.5)
    assert DiceLoss(from_logits=False)(half, TARGET)[0].item() == pytest.approx(1 / 3, abs=1e-6)
    assert IoU(from_logits=False)(half, TARGET)[0].item() == pytest.approx(0.2, abs=1e-6)
    # The same through logits: logit 0 is probability 0.5.
    assert DiceLoss()(torch.zeros_like(TARGET), TARGET)[0].item() == pytest.approx(1 / 3, abs=1e-6)


def test_dice_equals_two_iou_over_one_plus_iou_for_hard_masks():
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        prediction = (torch.rand(1, 1, 16, 16, generator=generator) > 0.6).float()
        target = (torch.rand(1, 1, 16, 16, generator=generator) > 0.7).float()
        dice = DiceLoss(from_logits=False)(prediction, target)[0].item()
        iou = IoU(from_logits=False)(prediction, target)[0].item()
        assert dice == pytest.approx(2 * iou / (1 + iou), abs=1e-5)


def test_perfect_prediction_has_zero_loss():
    logits = (TARGET * 2 - 1) * 30  # saturated sigmoid
    for loss_fn in (DiceLoss(), IoU()):
        score, loss = loss_fn(logits, TARGET)
        assert score.item() == pytest.approx(1.0, abs=1e-6)
        assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_empty_mask_and_empty_prediction_are_finite_and_perfect():
    empty = torch.zeros(2, 1, 8, 8)
    for loss_fn in (DiceLoss(from_logits=False), IoU(from_logits=False)):
        score, loss = loss_fn(empty, empty)
        assert torch.isfinite(loss) and score.item() == pytest.approx(1.0)
    # A prediction on an empty label is simply wrong (score near 0), never NaN.
    score, loss = DiceLoss(from_logits=False)(torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    assert torch.isfinite(loss) and score.item() < 1e-6


def test_scores_are_averaged_per_image():
    # Image 1 perfect (Dice 1), image 2 the hand example (Dice 0.75): mean 0.875.
    outputs = torch.cat([TARGET, PREDICTION])
    targets = torch.cat([TARGET, TARGET])
    assert DiceLoss(from_logits=False)(outputs, targets)[0].item() == pytest.approx(0.875, abs=1e-6)


def test_mask_excludes_pixels():
    # Masking out the one false positive (row 0, column 2) leaves intersection 3,
    # |P| = 3, |T| = 4 -> Dice = 6/7.
    mask = torch.ones_like(TARGET)
    mask[0, 0, 0, 2] = 0
    dice = DiceLoss(from_logits=False)(PREDICTION, TARGET, mask=mask)[0].item()
    assert dice == pytest.approx(6 / 7, abs=1e-6)


@pytest.mark.parametrize("loss_fn", [DiceLoss(), IoU(), BCEDiceLoss(), ClDiceLoss()])
def test_losses_are_differentiable(loss_fn):
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = (torch.rand(2, 1, 8, 8) > 0.5).float()
    _, loss = loss_fn(logits, target)
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("loss_fn", [DiceLoss(), IoU(), BCEDiceLoss(), ClDiceLoss()])
def test_float32_even_under_autocast(loss_fn):
    logits = torch.randn(1, 1, 8, 8)
    target = (torch.rand(1, 1, 8, 8) > 0.5).float()
    expected = loss_fn(logits, target)[1]
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        score, loss = loss_fn(logits.bfloat16(), target)
    assert loss.dtype == torch.float32 and score.dtype == torch.float32
    assert loss.item() == pytest.approx(expected.item(), abs=2e-2)


def test_bce_dice_is_bce_plus_dice_loss():
    logits = torch.randn(2, 1, 8, 8)
    target = (torch.rand(2, 1, 8, 8) > 0.7).float()
    dice_score, loss = BCEDiceLoss()(logits, target)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    dice_loss = DiceLoss()(logits, target)[1]
    assert loss.item() == pytest.approx(bce.item() + dice_loss.item(), abs=1e-5)
    assert dice_score.item() == pytest.approx(1 - dice_loss.item(), abs=1e-6)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shapes differ"):
        DiceLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5))


# --------------------------------------------------------------------------
# clDice
# --------------------------------------------------------------------------

def horizontal_bar(width: int, size: int = 32) -> torch.Tensor:
    """A (1, 1, size, size) mask with one horizontal vessel ``width`` pixels wide."""
    mask = torch.zeros(1, 1, size, size)
    top = size // 2 - width // 2
    mask[0, 0, top:top + width, 2:size - 2] = 1
    return mask


@pytest.mark.parametrize("width", [1, 3, 5, 9])
def test_skeleton_of_a_bar_is_one_pixel_line_inside_it(width):
    bar = horizontal_bar(width)
    skeleton = soft_skeleton(bar)
    assert torch.all((skeleton > 0) <= (bar > 0))  # never outside the shape
    # Away from the ends, every column of the bar holds exactly one skeleton pixel, in the middle row.
    middle = skeleton[0, 0, :, 8:24]
    assert torch.all(middle.sum(dim=0) == 1)
    assert torch.all(middle.argmax(dim=0) == 16 - width // 2 + (width - 1) // 2)


def test_cldice_counts_a_thin_vessel_about_as_much_as_a_thick_one():
    # Label: a thick (9 px) and a thin (1 px) vessel of the same length.
    thin = torch.zeros(1, 1, 64, 64)
    thin[0, 0, 50, 2:62] = 1
    thick = horizontal_bar(9, size=64)
    label = thick + thin
    dice = {name: DiceLoss(from_logits=False)(found, label)[0].item() for name, found in
            (("thick", thick), ("thin", thin))}
    cldice = {name: ClDiceLoss(from_logits=False)(found, label)[0].item() for name, found in
              (("thick", thick), ("thin", thin))}
    # Pixel Dice: finding only the thick vessel is nearly perfect, finding only the thin one nearly worthless.
    assert dice["thick"] > 0.94 and dice["thin"] < 0.2
    # clDice: each is worth about the same (each covers about half the label's centreline).
    assert 0.5 < cldice["thick"] < 0.75 and 0.5 < cldice["thin"] < 0.75
    assert cldice["thick"] == pytest.approx(cldice["thin"], abs=0.1)


def test_cldice_perfect_and_differentiable():
    label = horizontal_bar(5)
    score, loss = ClDiceLoss(from_logits=False)(label, label)
    assert score.item() == pytest.approx(1.0, abs=1e-5) and loss.item() == pytest.approx(0.0, abs=1e-5)
    logits = torch.randn(2, 1, 32, 32, requires_grad=True)
    _, loss = ClDiceLoss()(logits, torch.cat([label, label]))
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_cldice_refuses_maps_that_are_not_single_channel_images():
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        ClDiceLoss()(torch.zeros(2, 64), torch.zeros(2, 64))
