"""Training batches that live on the GPU and are augmented there: :class:`DeviceBatches`.

Why: on a modern GPU one LinkNet training step at 512 x 512 takes a few
milliseconds, while preparing one augmented image in numpy on the CPU (what
:class:`~retina_lib.data.SegmentationDataset` does in DataLoader workers)
takes tens of milliseconds. The GPU would spend most of its time waiting for
data. The course's datasets are small (80 resized pictures of 512 x 512 are
400 MB as float32), so they fit on the GPU many times over: we copy every
picture there ONCE, and each epoch cut crops, flip, turn and recolour them
with torch operations on the GPU, a whole batch at a time.

The recipe is the same as on the CPU: the probabilities and strengths come
from the same :class:`~retina_lib.data.transforms.Augment` settings (flips,
quarter turns, small rotations, brightness, contrast, gamma), in the same
order. Given the same choices, each transform gives the CPU's pixels (to
float32 rounding: the contrast's mean and the rotation's weights are summed in
another order), and the choices are drawn with the same probabilities and
ranges; ``tests/test_resident_augmentation.py`` checks both. The random draws
themselves come from another stream than the CPU dataset's, so a batch is not
the one a DataLoader would give, only drawn the same way.

Two details keep the GPU busy:

* **All random numbers of an epoch are drawn at its start**, on the CPU with
  ``np.random.default_rng([seed, epoch])``, and moved to the device in one
  copy. Every epoch is therefore reproducible, and identical on every device.
* **No step looks at a GPU value from Python.** Per-image choices ("flip this
  one, not that one") are applied to the whole batch with ``torch.where``
  instead of ``if``, because reading a GPU value in Python waits for the GPU
  to finish all queued work.

Usage, anywhere a DataLoader would go (``fit`` accepts it as training or
validation data)::

    batches = DeviceBatches(samples, batch_size=4, mode="resize", size=512, device="cuda")
    for epoch in range(1, epochs + 1):
        batches.set_epoch(epoch)
        for image, label, fov in batches:   # already on the GPU
            ...
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from retina_lib.data.sample import Sample
from retina_lib.data.training_set import MIN_SIZE, SegmentationDataset, checked_arrays
from retina_lib.data.transforms import Arrays, Augment, pad_to_at_least, resize

#: The ways DeviceBatches can cut pictures into training images ("full"
#: pictures of different sizes cannot be stacked into one tensor).
DEVICE_MODES = ("crop", "resize")

#: Channels of the stored pictures: 3 image channels, then the label, then the FOV.
#: Keeping all five in one tensor means every geometric change moves them together.
IMAGE_CHANNELS = slice(0, 3)
LABEL_CHANNEL = 3
FOV_CHANNEL = 4

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


class DeviceBatches:
    """Augmented ``(image, label, fov)`` batches made on ``device`` from pictures stored there.

    Behaves like a DataLoader over a :class:`~retina_lib.data.SegmentationDataset`:
    iterate it for one epoch of batches shaped (B, 3, S, S), (B, 1, S, S),
    (B, 1, S, S) (float32; labels and FOVs are 0 or 1), call
    :meth:`set_epoch` before each epoch for new draws; ``len()`` is the
    number of batches.

    Args:
        samples: the pictures (any sizes); each is read once, here.
        batch_size: images per batch; the last batch may be smaller.
        mode: "crop" (random ``size`` windows at native resolution) or
            "resize" (whole pictures resized to ``size`` once, on the CPU).
        size: side of the square training images in pixels.
        device: where pictures are stored and batches are made.
        augment: True for the default :class:`Augment` recipe, False for
            none, or an :class:`Augment` with your own settings.
        seed: with the epoch, decides every random choice.
        samples_per_epoch: items per epoch, item ``i`` from picture
            ``i % len(samples)`` (default: one per picture).
        shuffle: visit the items in a new random order each epoch.
        rank, world_size: with several processes (``torchrun``, see
            :func:`~retina_lib.training.trainer.fit`), this process's number and how
            many there are. All draw the same epoch plan and each takes every
            ``world_size``-th item from position ``rank`` on, wrapping round
            to give every process the same number of items (as PyTorch's
            DistributedSampler does): processes that stepped a different
            number of times would wait for each other forever.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        batch_size: int,
        *,
        mode: str = "crop",
        size: int = 512,
        device: str | torch.device = "cpu",
        augment: bool | Augment = True,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        arrays = [checked_arrays(sample) for sample in samples]  # the same checks as SegmentationDataset
        self._setup(arrays, [sample.name for sample in samples], batch_size, mode, size, device, augment,
                    seed, samples_per_epoch, shuffle, rank, world_size)

    @classmethod
    def from_dataset(
        cls, dataset: SegmentationDataset, batch_size: int, device: str | torch.device, *, shuffle: bool = True,
        rank: int = 0, world_size: int = 1,
    ) -> "DeviceBatches":
        """The same pictures, mode, size, augmentation, seed and epoch length as ``dataset``, on ``device``.

        This is how :func:`~retina_lib.training.trainer.fit` moves a dataset to the GPU
        with ``resident=True``. Pictures a "resize" dataset already resized are
        not resized again.
        """
        if not isinstance(dataset, SegmentationDataset):
            raise TypeError(f"from_dataset needs a SegmentationDataset, got {type(dataset).__name__}")
        batches = cls.__new__(cls)
        pictures = list(dataset.pictures)  # its decoded pictures (already resized in "resize" mode)
        batches._setup(pictures, list(dataset.names), batch_size, dataset.mode, dataset.size,
                       device, dataset.augmentation or False, dataset.seed, dataset.samples_per_epoch, shuffle,
                       rank, world_size)
        return batches

    def _setup(self, arrays: list[Arrays], names: list[str], batch_size: int, mode: str, size: int,
               device: str | torch.device, augment: bool | Augment | None, seed: int,
               samples_per_epoch: int | None, shuffle: bool, rank: int, world_size: int) -> None:
        if mode not in DEVICE_MODES:
            raise ValueError(f"mode must be one of {DEVICE_MODES} (whole pictures of different sizes cannot be "
                             f"stacked), got {mode!r}")
        if not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
            raise ValueError(f"size must be an int of at least {MIN_SIZE} pixels, got {size!r}")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an int of at least 1, got {batch_size!r}")
        if not arrays:
            raise ValueError("samples is empty: there is nothing to train on")
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be at least 1, got {samples_per_epoch!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be between 0 and world_size - 1, got rank={rank}, world_size={world_size}")
        self.mode = mode
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.names = names
        self.samples_per_epoch = samples_per_epoch or len(arrays)
        self.augmentation: Augment | None = augment if isinstance(augment, Augment) else (
            Augment() if augment else None)

        if mode == "resize":
            arrays = [resize(*picture, self.size) for picture in arrays]
        else:  # a crop needs at least size x size pixels: pad smaller pictures as random_crop does
            arrays = [pad_to_at_least(*picture, self.size) for picture in arrays]
        self.picture_shapes = [picture[0].shape[:2] for picture in arrays]
        self.pictures = _stack_on_device(arrays, self.device)

    # --- the DataLoader-like interface -------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's order, crops and augmentations the next iteration uses."""
        self.epoch = epoch

    @property
    def items_per_process(self) -> int:
        """Items this process gets per epoch (all of them with one process)."""
        return math.ceil(self.samples_per_epoch / self.world_size)

    def __len__(self) -> int:
        """The number of batches per epoch (as ``len`` of a DataLoader)."""
        return math.ceil(self.items_per_process / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        plan = self.plan(self.epoch)
        if self.world_size > 1:
            mine = (self.rank + self.world_size * torch.arange(self.items_per_process)) % self.samples_per_epoch
            plan = plan.take(mine.to(self.device))
        for start in range(0, self.items_per_process, self.batch_size):
            stop = min(start + self.batch_size, self.items_per_process)
            yield self.make_batch(plan.batch(start, stop))

    def __repr__(self) -> str:
        return (f"DeviceBatches({len(self.picture_shapes)} pictures on {self.device}, mode={self.mode!r}, "
                f"size={self.size}, batch_size={self.batch_size}, augment={self.augmentation is not None}, "
                f"samples_per_epoch={self.samples_per_epoch}, seed={self.seed}"
                + (f", rank={self.rank} of {self.world_size}" if self.world_size > 1 else "") + ")")

    # --- one epoch's random choices, drawn on the CPU ------------------------

    def plan(self, epoch: int) -> EpochPlan:
        """Draw every random choice of ``epoch`` (depends only on seed and epoch) and move it to the device."""
        rng = np.random.default_rng([self.seed, epoch])
        count = self.samples_per_epoch
        order = rng.permutation(count) if self.shuffle else np.arange(count)
        picture = order % len(self.picture_shapes)
        heights = np.array([shape[0] for shape in self.picture_shapes])[picture]
        widths = np.array([shape[1] for shape in self.picture_shapes])[picture]
        if self.mode == "crop":  # uniform over every window inside the picture
            top = np.floor(rng.random(count) * (heights - self.size + 1)).astype(np.int64)
            left = np.floor(rng.random(count) * (widths - self.size + 1)).astype(np.int64)
        else:
            top = left = np.zeros(count, dtype=np.int64)

        augment = self.augmentation or NO_AUGMENTATION
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
            return torch.as_tensor(values, dtype=dtype).to(self.device)

        return EpochPlan(*(on_device(values) for values in (
            picture, top, left, flip_horizontal, flip_vertical, quarter_turns, degrees,
            brightness, contrast, gamma)))

    # --- one batch, made on the device ---------------------------------------

    def make_batch(self, plan: EpochPlan) -> tuple[Tensor, Tensor, Tensor]:
        """Cut, turn and recolour the items of ``plan``; return (image, label, fov)."""
        stack = self.cut(plan)
        if self.augmentation is not None:
            stack = flip_and_turn(stack, plan)
            stack = rotate_by_degrees(stack, plan.degrees)
            stack[:, IMAGE_CHANNELS] = recolour(stack[:, IMAGE_CHANNELS], plan)
        image = stack[:, IMAGE_CHANNELS].contiguous()
        label = stack[:, LABEL_CHANNEL:LABEL_CHANNEL + 1].contiguous()
        fov = stack[:, FOV_CHANNEL:FOV_CHANNEL + 1].contiguous()
        return image, label, fov

    def cut(self, plan: EpochPlan) -> Tensor:
        """The (B, 5, size, size) windows of the plan, gathered in one indexing operation."""
        if self.mode == "resize":
            return self.pictures[plan.picture]
        offsets = torch.arange(self.size, device=self.device)
        rows = (plan.top[:, None] + offsets)[:, None, :, None]  # (B, 1, size, 1)
        cols = (plan.left[:, None] + offsets)[:, None, None, :]  # (B, 1, 1, size)
        channels = torch.arange(self.pictures.shape[1], device=self.device)[None, :, None, None]
        return self.pictures[plan.picture[:, None, None, None], channels, rows, cols]


# --------------------------------------------------------------------------
# Augmentations of a (B, 5, S, S) stack, one choice per image, without syncs
# --------------------------------------------------------------------------

def _per_image(mask: Tensor) -> Tensor:
    """A (B,) bool tensor shaped (B, 1, 1, 1), to choose whole images in ``torch.where``."""
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


# --------------------------------------------------------------------------
# Storing the pictures
# --------------------------------------------------------------------------

def _stack_on_device(arrays: list[Arrays], device: torch.device) -> Tensor:
    """One (N, 5, H, W) float32 tensor on ``device``: image, label and FOV of every picture.

    Pictures smaller than the largest are placed in the top-left corner of a
    black canvas; crops never reach past a picture's own size.
    """
    height = max(image.shape[0] for image, _, _ in arrays)
    width = max(image.shape[1] for image, _, _ in arrays)
    stack = torch.zeros((len(arrays), 5, height, width), dtype=torch.float32, device=device)
    for index, (image, label, fov) in enumerate(arrays):
        rows, cols = image.shape[:2]
        picture = np.concatenate([image.transpose(2, 0, 1), label[None], fov[None]]).astype(np.float32)
        stack[index, :, :rows, :cols] = torch.from_numpy(picture).to(device)
    return stack
