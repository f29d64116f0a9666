"""Every random choice of one epoch of :class:`~retina_lib.training.resident_batches.ResidentBatches`, drawn at once.

Why draw them all at the start: the batches are made on the device (often a
GPU), and reading a GPU value from Python makes the CPU wait for the GPU. So
the choices for a whole epoch (which picture, where to crop, flip or not, how
far to turn, how much to recolour) are drawn on the CPU with
``np.random.default_rng([seed, epoch])`` and copied to the device in one go.
The same seed and epoch give the same plan on every device.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from retina_lib.data.transforms import Augment

#: Every probability and strength 0: the plan of ``augment=False``.
NO_AUGMENTATION = Augment(flip_probability=0.0, rotate90_probability=0.0, rotate_probability=0.0,
                          brightness=0.0, contrast=0.0, gamma=0.0)


@dataclass(frozen=True)
class EpochPlan:
    """Every random choice of one epoch, one entry per item, as tensors on the device.

    ``picture`` is which stored picture each item comes from; ``top``/``left``
    place its crop; the rest follow :class:`Augment` (``quarter_turns`` 0 means
    no turn, ``degrees`` 0 no rotation, factors of 1 no photometric change).
    """

    picture: Tensor
    top: Tensor
    left: Tensor
    flip_horizontal: Tensor
    flip_vertical: Tensor
    quarter_turns: Tensor
    degrees: Tensor
    brightness: Tensor
    contrast: Tensor
    gamma: Tensor

    def batch(self, start: int, stop: int) -> "EpochPlan":
        """The choices of items ``start`` to ``stop - 1`` (views, no copy)."""
        return EpochPlan(*(getattr(self, name)[start:stop] for name in self.__dataclass_fields__))

    def take(self, items: Tensor) -> "EpochPlan":
        """The choices of the given items, in that order."""
        return EpochPlan(*(getattr(self, name)[items] for name in self.__dataclass_fields__))


def draw_epoch_plan(seed: int, epoch: int, count: int, picture_shapes: Sequence[tuple[int, int]], mode: str,
                    size: int, augmentation: Augment | None, shuffle: bool, device: torch.device) -> EpochPlan:
    """Draw the choices of ``count`` items for ``epoch`` (they depend only on seed and epoch) onto ``device``.

    Item ``i`` comes from picture ``order[i] % len(picture_shapes)``; in "crop"
    mode its window is uniform over every ``size`` x ``size`` window inside
    that picture. The draws are made in a fixed order, so a plan never changes
    for a given seed and epoch.
    """
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(count) if shuffle else np.arange(count)
    picture = order % len(picture_shapes)
    heights = np.array([shape[0] for shape in picture_shapes])[picture]
    widths = np.array([shape[1] for shape in picture_shapes])[picture]
    if mode == "crop":
        top = np.floor(rng.random(count) * (heights - size + 1)).astype(np.int64)
        left = np.floor(rng.random(count) * (widths - size + 1)).astype(np.int64)
    else:
        top = left = np.zeros(count, dtype=np.int64)

    augment = augmentation or NO_AUGMENTATION
    flip_horizontal = rng.random(count) < augment.flip_probability
    flip_vertical = rng.random(count) < augment.flip_probability
    turned = rng.random(count) < augment.rotate90_probability
    quarter_turns = np.where(turned, rng.integers(1, 4, count), 0)
    rotated = rng.random(count) < augment.rotate_probability
    degrees = np.where(rotated, rng.uniform(-1, 1, count) * augment.max_rotation_degrees, 0.0)
    brightness = 1 + rng.uniform(-1, 1, count) * augment.brightness
    contrast = 1 + rng.uniform(-1, 1, count) * augment.contrast
    gamma = 2.0 ** (rng.uniform(-1, 1, count) * augment.gamma)

    def on_device(values: np.ndarray) -> Tensor:
        dtype = torch.float32 if values.dtype.kind == "f" else None
        return torch.as_tensor(values, dtype=dtype).to(device)

    return EpochPlan(*(on_device(values) for values in (
        picture, top, left, flip_horizontal, flip_vertical, quarter_turns, degrees,
        brightness, contrast, gamma)))
