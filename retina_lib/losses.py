"""Overlap losses for binary segmentation: soft Dice, soft IoU, BCE + Dice, and centreline Dice (clDice).

Vessels cover only about a tenth of a fundus image, so a loss that counts every
pixel equally (plain cross-entropy) is dominated by the background. Dice and IoU
measure overlap with the vessels directly. Their "soft" versions replace the
hard 0/1 prediction by the predicted probability so that they have gradients.

Every loss here is called the way the original course material called it::

    score, loss = DiceLoss()(output, target)

``score`` is the coefficient (1 = perfect overlap) and ``loss`` is what to
minimise. ``output`` holds logits by default; pass ``from_logits=False`` if you
already have probabilities. The arithmetic always runs in float32, even inside
an autocast region, because sums over a million pixels lose too much precision
in bfloat16 or float16.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Keeps 0/0 finite for an empty mask and an all-zero prediction (which is a
#: perfect match, score 1). Small, so that scores stay exact on small examples;
#: a large smoothing term (such as 1) would flatter predictions of thin vessels.
DEFAULT_EPS = 1e-6


def _prepare(output: Tensor, target: Tensor, mask: Optional[Tensor], from_logits: bool) -> tuple[Tensor, Tensor]:
    """Check shapes and return (probabilities, target) as float32 (N, pixels) tensors.

    Pixels outside ``mask`` (e.g. outside the field of view) are set to zero in
    both, so that they count neither as vessel nor as error.
    """
    if output.shape != target.shape:
        if output.numel() != target.numel() or output.shape[0] != target.shape[0]:
            raise ValueError(
                f"output and target shapes differ: output {tuple(output.shape)}, target {tuple(target.shape)}"
            )
    batch = output.shape[0]
    prob = output.float().reshape(batch, -1)
    if from_logits:
        prob = torch.sigmoid(prob)
    truth = target.float().reshape(batch, -1)
    if mask is not None:
        if mask.numel() != output.numel():
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match output shape {tuple(output.shape)}")
        keep = mask.float().reshape(batch, -1)
        prob = prob * keep
        truth = truth * keep
    return prob, truth


class _OverlapLoss(nn.Module):
    """Shared plumbing of DiceLoss and IoU: shapes, float32, per-image mean."""

    def __init__(self, from_logits: bool = True, eps: float = DEFAULT_EPS) -> None:
        super().__init__()
        self.from_logits = from_logits
        self.eps = eps

    def coefficient(self, intersection: Tensor, total: Tensor) -> Tensor:
        """The overlap score per image from sum(p*t) and sum(p) + sum(t)."""
        raise NotImplementedError

    def forward(self, output: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        """Return ``(score, loss)``: the coefficient averaged over the batch, and ``1 - score``.

        Each image gets its own coefficient before averaging, so an image with
        few vessels weighs as much as one with many.
        """
        with torch.autocast(device_type=output.device.type, enabled=False):
            prob, truth = _prepare(output, target, mask, self.from_logits)
            intersection = (prob * truth).sum(dim=1)
            total = prob.sum(dim=1) + truth.sum(dim=1)
            score = self.coefficient(intersection, total).mean()
        return score, 1.0 - score


class DiceLoss(_OverlapLoss):
    """Soft Dice: 2 |P * T| / (|P| + |T|), identical to F1 for hard masks.

    Taught in notebook 02, section 1 (first used in notebook 01, section 9).
    """

    def coefficient(self, intersection: Tensor, total: Tensor) -> Tensor:
        return (2.0 * intersection + self.eps) / (total + self.eps)


class IoU(_OverlapLoss):
    """Soft Jaccard index: |P * T| / (|P| + |T| - |P * T|).

    For hard masks Dice = 2 IoU / (1 + IoU): the two rank predictions the same
    way, but IoU punishes partial overlaps harder.

    Taught in notebook 02, section 1.
    """

    def coefficient(self, intersection: Tensor, total: Tensor) -> Tensor:
        return (intersection + self.eps) / (total - intersection + self.eps)


class BCEDiceLoss(nn.Module):
    """Binary cross-entropy plus soft Dice loss: ``loss = bce_weight * BCE + dice_weight * (1 - Dice)``.

    Dice alone gives weak, noisy gradients early in training and ignores how
    confident the background is; BCE alone is swamped by the background. The
    sum gets stable per-pixel gradients from BCE and the focus on vessels from
    Dice. Returns ``(dice_score, loss)`` like the other losses. Needs logits.

    Taught in notebook 02, section 5.
    """

    def __init__(self, bce_weight: float = 1.0, dice_weight: float = 1.0, eps: float = DEFAULT_EPS) -> None:
        super().__init__()
        self.bce_weight = bce_weight
        self.dice_weight = dice_weight
        self.dice = DiceLoss(from_logits=True, eps=eps)

    def forward(self, output: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        dice_score, dice_loss = self.dice(output, target, mask)
        with torch.autocast(device_type=output.device.type, enabled=False):
            logits = output.float().reshape(output.shape[0], -1)
            truth = target.float().reshape(output.shape[0], -1)
            weight = None if mask is None else mask.float().reshape(output.shape[0], -1)
            bce = F.binary_cross_entropy_with_logits(logits, truth, weight=weight, reduction="sum")
            bce = bce / (logits.numel() if weight is None else weight.sum().clamp_min(1.0))
        return dice_score, self.bce_weight * bce + self.dice_weight * dice_loss


# --------------------------------------------------------------------------
# clDice: overlap of centrelines, for thin vessels and connectivity
# --------------------------------------------------------------------------

#: Erosion steps of :func:`soft_skeleton`. Each step thins a vessel by one
#: pixel on either side, so 5 steps reach the centre of vessels up to about 11
#: pixels wide: all but CHASE_DB1's widest trunks, which the Dice term already
#: handles well. Each step costs about as much as a tenth of a LinkNet training
#: step on the CPU, so the count is kept to what thin vessels need.
SKELETON_ITERATIONS = 5


def soft_erode(prob: Tensor) -> Tensor:
    """Grey-level erosion with a 3x3 cross: each pixel becomes the minimum of itself and its 4 neighbours.

    A min-pool is a max-pool of the negated map. The cross (rather than a full
    3x3 square) removes one pixel per side without cutting diagonal vessels.
    """
    vertical = -F.max_pool2d(-prob, kernel_size=(3, 1), stride=1, padding=(1, 0))
    horizontal = -F.max_pool2d(-prob, kernel_size=(1, 3), stride=1, padding=(0, 1))
    return torch.minimum(vertical, horizontal)


def soft_dilate(prob: Tensor) -> Tensor:
    """Grey-level dilation with a 3x3 square (a max-pool)."""
    return F.max_pool2d(prob, kernel_size=3, stride=1, padding=1)


def soft_skeleton(prob: Tensor, iterations: int = SKELETON_ITERATIONS) -> Tensor:
    """A differentiable centreline of a (N, 1, H, W) probability map, values in [0, 1].

    Morphological skeleton built from min- and max-pools: at every erosion
    step, what an opening (erode, then dilate) would remove is a ridge of the
    shape at that depth; the skeleton collects these ridges. For a hard mask
    this keeps about the central pixel line of each vessel; for probabilities
    it is a soft version of it, so gradients flow.

    Taught in notebook 02, section 8.
    """
    skeleton = F.relu(prob - soft_dilate(soft_erode(prob)))
    for _ in range(iterations):
        prob = soft_erode(prob)
        ridge = F.relu(prob - soft_dilate(soft_erode(prob)))
        skeleton = skeleton + F.relu(ridge - skeleton * ridge)  # add what is not there yet
    return skeleton


class ClDiceLoss(nn.Module):
    """Centreline Dice: ``score, loss = ClDiceLoss()(output, target)``.

    clDice is from Shit et al., CVPR 2021 (arXiv:2003.07311); the code here is our own.

    Plain Dice counts pixels, so a thick vessel outweighs many thin ones, and
    a gap that cuts a vessel in two costs only a few pixels. clDice compares
    centrelines with shapes instead:

    * topology precision: the share of the PREDICTION's centreline lying
      inside the labelled vessels (penalises spurious branches);
    * topology sensitivity: the share of the LABEL's centreline covered by
      the prediction (penalises missed and broken thin vessels);

    and takes their harmonic mean. Every vessel's centreline has a length
    that does not depend on its width, so thin vessels count as much as thick ones.

    Taught in notebook 02, section 8.
    """

    def __init__(self, from_logits: bool = True, iterations: int = SKELETON_ITERATIONS,
                 eps: float = DEFAULT_EPS) -> None:
        super().__init__()
        self.from_logits = from_logits
        self.iterations = iterations
        self.eps = eps

    def forward(self, output: Tensor, target: Tensor, mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        if output.dim() != 4 or output.shape[1] != 1:
            raise ValueError(f"clDice needs (N, 1, H, W) maps, got output of shape {tuple(output.shape)}")
        with torch.autocast(device_type=output.device.type, enabled=False):
            prob, truth = _prepare(output, target, mask, self.from_logits)
            prob, truth = prob.reshape(output.shape), truth.reshape(output.shape)
            with torch.no_grad():  # the label's centreline is a constant
                truth_skeleton = soft_skeleton(truth, self.iterations)
            prob_skeleton = soft_skeleton(prob, self.iterations)
            precision = ((prob_skeleton * truth).sum(dim=(1, 2, 3)) + self.eps) / (
                prob_skeleton.sum(dim=(1, 2, 3)) + self.eps)
            sensitivity = ((truth_skeleton * prob).sum(dim=(1, 2, 3)) + self.eps) / (
                truth_skeleton.sum(dim=(1, 2, 3)) + self.eps)
            score = (2.0 * precision * sensitivity / (precision + sensitivity)).mean()
        return score, 1.0 - score
