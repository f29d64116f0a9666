"""Cutting and augmenting a whole batch at once on the device, as an :class:`EpochPlan` says.

The pictures are stored as one (N, 5, H, W) tensor: 3 image channels, the
label, the FOV. Keeping all five together means every geometric change moves
them together. Each function here takes or returns a (B, 5, S, S) stack, one
choice per image, and never looks at a device value from Python: per-image
choices ("flip this one, not that one") are applied to the whole batch with
``torch.where`` instead of ``if``, because reading a GPU value in Python waits
for the GPU to finish all queued work.

The probabilities and strengths are those of
:class:`~retina_lib.data.transforms.Augment`, applied in the same order as on
the CPU (flips, quarter turns, small rotations, brightness, contrast, gamma).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from retina_lib.training.epoch_plan import EpochPlan

#: Channels of the stored pictures: 3 image channels, then the label, then the FOV.
IMAGE_CHANNELS = slice(0, 3)
LABEL_CHANNEL = 3
FOV_CHANNEL = 4


def cut_windows(pictures: Tensor, plan: EpochPlan, mode: str, size: int) -> Tensor:
    """The (B, 5, size, size) windows of the plan, gathered in one indexing operation.

    In "resize" mode the stored pictures already have the training size and
    are taken whole.
    """
    if mode == "resize":
        return pictures[plan.picture]
    offsets = torch.arange(size, device=pictures.device)
    rows = (plan.top[:, None] + offsets)[:, None, :, None]  # (B, 1, size, 1)
    cols = (plan.left[:, None] + offsets)[:, None, None, :]  # (B, 1, 1, size)
    channels = torch.arange(pictures.shape[1], device=pictures.device)[None, :, None, None]
    return pictures[plan.picture[:, None, None, None], channels, rows, cols]


def _per_image(mask: Tensor) -> Tensor:
    """A (B,) tensor shaped (B, 1, 1, 1), to choose or scale whole images."""
    return mask[:, None, None, None]


def flip_and_turn(stack: Tensor, plan: EpochPlan) -> Tensor:
    """Mirror and turn by quarter turns, each image as its plan says (all channels together)."""
    stack = torch.where(_per_image(plan.flip_horizontal), stack.flip(3), stack)
    stack = torch.where(_per_image(plan.flip_vertical), stack.flip(2), stack)
    turned = stack
    for quarter_turns in (1, 2, 3):  # every image takes exactly one of 0..3 turns
        turned = torch.where(_per_image(plan.quarter_turns == quarter_turns),
                             torch.rot90(stack, quarter_turns, dims=(2, 3)), turned)
    return turned


def rotate_by_degrees(stack: Tensor, degrees: Tensor) -> Tensor:
    """Turn each image anticlockwise about its centre by its angle (0 leaves it exactly as it was).

    Like :func:`retina_lib.data.transforms.rotate`: bilinear interpolation,
    black (and outside the FOV) where the corners come from outside the
    picture, and the label and FOV thresholded at one half afterwards.
    """
    radians = torch.deg2rad(degrees)
    cos, sin, zero = torch.cos(radians), torch.sin(radians), torch.zeros_like(radians)
    # grid_sample reads output pixel (x, y) from input theta @ (x, y, 1), in
    # coordinates from -1 to 1 with y pointing down; this theta turns the
    # picture anticlockwise as seen on screen.
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta, list(stack.shape), align_corners=False)
    turned = F.grid_sample(stack, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    turned[:, IMAGE_CHANNELS] = turned[:, IMAGE_CHANNELS].clamp(0.0, 1.0)
    turned[:, LABEL_CHANNEL:] = (turned[:, LABEL_CHANNEL:] >= 0.5).float()
    return torch.where(_per_image(degrees != 0), turned, stack)


def recolour(image: Tensor, plan: EpochPlan) -> Tensor:
    """Brightness, contrast and gamma per image, as :class:`Augment` does on the CPU (image channels only)."""
    image = (image * _per_image(plan.brightness)).clamp(0.0, 1.0)
    mean = image.mean(dim=(1, 2, 3), keepdim=True)
    image = ((image - mean) * _per_image(plan.contrast) + mean).clamp(0.0, 1.0)
    return image.pow(_per_image(plan.gamma))


def augmented_batch(stack: Tensor, plan: EpochPlan, augment: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Flip, turn and recolour a cut stack (when ``augment``); return it as (image, label, fov)."""
    if augment:
        stack = flip_and_turn(stack, plan)
        stack = rotate_by_degrees(stack, plan.degrees)
        stack[:, IMAGE_CHANNELS] = recolour(stack[:, IMAGE_CHANNELS], plan)
    image = stack[:, IMAGE_CHANNELS].contiguous()
    label = stack[:, LABEL_CHANNEL:LABEL_CHANNEL + 1].contiguous()
    fov = stack[:, FOV_CHANNEL:FOV_CHANNEL + 1].contiguous()
    return image, label, fov
