"""Training batches cut from pictures kept in the device's memory: :class:`ResidentBatches`.

Why: on a modern GPU one LinkNet training step at 512 x 512 takes a few
milliseconds, while preparing one augmented image in numpy on the CPU (what
:class:`~retina_lib.data.SegmentationDataset` does in DataLoader workers)
takes tens of milliseconds. The GPU would spend most of its time waiting for
data. The course's datasets are small (80 resized pictures of 512 x 512 are
400 MB as float32), so they fit on the GPU many times over: we copy every
picture there ONCE, and each epoch cut crops, flip, turn and recolour them
with torch operations on the device, a whole batch at a time. The same class
works on the CPU ("resident" means: kept in the memory of whichever device
trains), which is how the tests and benchmarks compare it with the DataLoader.

The recipe is the same as on the CPU: the probabilities and strengths come
from the same :class:`~retina_lib.data.transforms.Augment` settings (flips,
quarter turns, small rotations, brightness, contrast, gamma), in the same
order. Given the same choices, each transform gives the CPU's pixels (to
float32 rounding: the contrast's mean and the rotation's weights are summed in
another order), and the choices are drawn with the same probabilities and
ranges; ``tests/test_resident_augmentation.py`` checks both. The random draws
themselves come from another stream than the CPU dataset's, so a batch is not
the one a DataLoader would give, only drawn the same way.

The pieces, each in its own module:

* :mod:`retina_lib.training.epoch_plan` - every random choice of an epoch,
  drawn at its start (reproducible, identical on every device);
* :mod:`retina_lib.training.batch_augmentation` - cutting and augmenting a
  whole batch on the device without waiting for it;
* this module - storing the pictures, and the DataLoader-like interface.

Usage, anywhere a DataLoader would go (``fit`` accepts it as training or
validation data)::

    batches = ResidentBatches(samples, batch_size=4, mode="resize", size=512, device="cuda")
    for epoch in range(1, epochs + 1):
        batches.set_epoch(epoch)
        for image, label, fov in batches:   # already on the device
            ...
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from retina_lib.data.sample import Sample
from retina_lib.data.training_set import MIN_SIZE, SegmentationDataset, checked_arrays
from retina_lib.data.transforms import Arrays, Augment, pad_to_at_least, resize
from retina_lib.training.batch_augmentation import augmented_batch, cut_windows
from retina_lib.training.epoch_plan import EpochPlan, draw_epoch_plan

#: The ways ResidentBatches can cut pictures into training images ("full"
#: pictures of different sizes cannot be stacked into one tensor).
RESIDENT_MODES = ("crop", "resize")


class ResidentBatches:
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
        self._store(arrays, [sample.name for sample in samples], batch_size=batch_size, mode=mode, size=size,
                    device=device, augment=augment, seed=seed, samples_per_epoch=samples_per_epoch,
                    shuffle=shuffle, rank=rank, world_size=world_size)

    @classmethod
    def from_dataset(
        cls, dataset: SegmentationDataset, batch_size: int, device: str | torch.device, *, shuffle: bool = True,
        rank: int = 0, world_size: int = 1,
    ) -> "ResidentBatches":
        """The same pictures, mode, size, augmentation, seed and epoch length as ``dataset``, on ``device``.

        This is how :func:`~retina_lib.training.trainer.fit` moves a dataset to the device
        with ``resident=True``. Pictures a "resize" dataset already resized are
        not resized again.
        """
        if not isinstance(dataset, SegmentationDataset):
            raise TypeError(f"from_dataset needs a SegmentationDataset, got {type(dataset).__name__}")
        batches = cls.__new__(cls)  # skips __init__: the dataset's pictures are decoded and checked already
        batches._store(list(dataset.pictures), list(dataset.names), batch_size=batch_size, mode=dataset.mode,
                       size=dataset.size, device=device, augment=dataset.augmentation or False, seed=dataset.seed,
                       samples_per_epoch=dataset.samples_per_epoch, shuffle=shuffle, rank=rank,
                       world_size=world_size)
        return batches

    def _store(self, arrays: list[Arrays], names: list[str], *, batch_size: int, mode: str, size: int,
               device: str | torch.device, augment: bool | Augment, seed: int, samples_per_epoch: int | None,
               shuffle: bool, rank: int, world_size: int) -> None:
        """Check the settings, keep them, and store the pictures on ``device`` (what both constructors share)."""
        check_settings(len(arrays), batch_size, mode, size, samples_per_epoch, rank, world_size)
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
        arrays = training_sized(arrays, mode, self.size)
        self.picture_shapes = [picture[0].shape[:2] for picture in arrays]
        self.pictures = stack_on_device(arrays, self.device)

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
        return (f"ResidentBatches({len(self.picture_shapes)} pictures on {self.device}, mode={self.mode!r}, "
                f"size={self.size}, batch_size={self.batch_size}, augment={self.augmentation is not None}, "
                f"samples_per_epoch={self.samples_per_epoch}, seed={self.seed}"
                + (f", rank={self.rank} of {self.world_size}" if self.world_size > 1 else "") + ")")

    # --- one epoch's plan, one batch ---------------------------------------

    def plan(self, epoch: int) -> EpochPlan:
        """Every random choice of ``epoch`` (see :func:`~retina_lib.training.epoch_plan.draw_epoch_plan`)."""
        return draw_epoch_plan(self.seed, epoch, self.samples_per_epoch, self.picture_shapes, self.mode,
                               self.size, self.augmentation, self.shuffle, self.device)

    def make_batch(self, plan: EpochPlan) -> tuple[Tensor, Tensor, Tensor]:
        """Cut, turn and recolour the items of ``plan``; return (image, label, fov)."""
        stack = cut_windows(self.pictures, plan, self.mode, self.size)
        return augmented_batch(stack, plan, augment=self.augmentation is not None)


# --------------------------------------------------------------------------
# Checking the settings and storing the pictures
# --------------------------------------------------------------------------

def check_settings(picture_count: int, batch_size: int, mode: str, size: int, samples_per_epoch: int | None,
                   rank: int, world_size: int) -> None:
    """Refuse settings ResidentBatches cannot serve, naming the argument."""
    if mode not in RESIDENT_MODES:
        raise ValueError(f"mode must be one of {RESIDENT_MODES} (whole pictures of different sizes cannot be "
                         f"stacked), got {mode!r}")
    if not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
        raise ValueError(f"size must be an int of at least {MIN_SIZE} pixels, got {size!r}")
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int of at least 1, got {batch_size!r}")
    if picture_count == 0:
        raise ValueError("samples is empty: there is nothing to train on")
    if samples_per_epoch is not None and samples_per_epoch < 1:
        raise ValueError(f"samples_per_epoch must be at least 1, got {samples_per_epoch!r}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be between 0 and world_size - 1, got rank={rank}, world_size={world_size}")


def training_sized(arrays: list[Arrays], mode: str, size: int) -> list[Arrays]:
    """Pictures ready to cut: resized to ``size`` ("resize"), or padded to at least ``size`` ("crop").

    A crop needs at least size x size pixels, so smaller pictures are padded as
    :func:`~retina_lib.data.transforms.random_crop` does. Pictures a "resize"
    dataset already resized keep their size (resizing to the same size changes nothing).
    """
    if mode == "resize":
        return [resize(*picture, size) for picture in arrays]
    return [pad_to_at_least(*picture, size) for picture in arrays]


def stack_on_device(arrays: list[Arrays], device: torch.device) -> Tensor:
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
