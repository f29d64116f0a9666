"""Overlap losses for binary segmentation: soft Dice, soft IoU, and BCE + Dice.

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
    """Soft Dice: 2 |P * T| / (|P| + |T|), identical to F1 for hard masks."""

    def coefficient(self, intersection: Tensor, total: Tensor) -> Tensor:
        return (2.0 * intersection + self.eps) / (total + self.eps)


class IoU(_OverlapLoss):
    """Soft Jaccard index: |P * T| / (|P| + |T| - |P * T|).

    For hard masks Dice = 2 IoU / (1 + IoU): the two rank predictions the same
    way, but IoU punishes partial overlaps harder.
    """

    def coefficient(self, intersection: Tensor, total: Tensor) -> Tensor:
        return (intersection + self.eps) / (total - intersection + self.eps)


class BCEDiceLoss(nn.Module):
    """Binary cross-entropy plus soft Dice loss: ``loss = bce_weight * BCE + dice_weight * (1 - Dice)``.

    Dice alone gives weak, noisy gradients early in training and ignores how
    confident the background is; BCE alone is swamped by the background. The
    sum gets stable per-pixel gradients from BCE and the focus on vessels from
    Dice. Returns ``(dice_score, loss)`` like the other losses. Needs logits.
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
