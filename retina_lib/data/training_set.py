"""Turn a list of samples into a PyTorch ``Dataset`` for training and evaluation.

Three ways to feed pictures to the network, chosen with ``mode``:

* ``"crop"``: random ``size`` x ``size`` windows at native resolution. Thin
  vessels stay as the annotator drew them, and ``samples_per_epoch`` lets one
  epoch draw many different windows from a handful of photographs.
* ``"resize"``: the whole photograph scaled to ``size`` x ``size`` (the recipe
  of the original course material). Simple, but a 999 x 960 CHASE_DB1 picture
  loses half its resolution and some one-pixel vessels with it.
* ``"full"``: the whole photograph at native resolution, as evaluation needs.

Every picture is decoded once, when the dataset is built, and kept in memory
as numpy arrays (for ``"resize"`` already resized). The course's datasets are
small: CHASE_DB1's 20 training pictures take about 250 MB as float32, so
reading files never slows training down. The augmentations here run in numpy
on the CPU (in DataLoader workers if asked); on a GPU, ``fit`` hands the same
pictures to :class:`retina_lib.training.resident_batches.ResidentBatches`, which keeps them on the
GPU and augments them there.

Randomness is reproducible: item ``i`` of epoch ``e`` always gets the same
crop and augmentation for a given ``seed``, whichever DataLoader worker draws
it, because its random generator is seeded with ``(seed, epoch, i)``. Call
:meth:`SegmentationDataset.set_epoch` before each epoch to get new draws
(with ``persistent_workers=True`` the workers keep their own copy of the
dataset and would not see the new epoch).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from retina_lib.data.sample import Sample
from retina_lib.data.transforms import Arrays, Augment, random_crop, resize

MODES = ("crop", "resize", "full")
MIN_SIZE = 32  # LinkNet halves the resolution five times


class SegmentationDataset(Dataset):
    """Samples as ``(image, label, fov)`` float32 tensors shaped (3,H,W), (1,H,W), (1,H,W).

    Args:
        samples: the pictures, e.g. ``load_dataset("chase_db1", "train")`` or
            ``synthetic_dataset("train")``; each is read once, here.
        mode: ``"crop"``, ``"resize"`` or ``"full"`` (see the module docstring).
        size: crop size or resized size in pixels (ignored by ``"full"``).
        augment: ``True`` for the default :class:`Augment` recipe, ``False``
            for none, or an :class:`Augment` with your own settings. By default
            on for ``"crop"`` and ``"resize"`` and off for ``"full"``, which
            is meant for evaluation.
        samples_per_epoch: items per epoch; item ``i`` comes from picture
            ``i % len(samples)``. By default one per picture.
        seed: seeds every random crop and augmentation.

    Taught in notebook 03, section 1.
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        mode: str = "crop",
        size: int = 512,
        augment: bool | Augment | None = None,
        samples_per_epoch: int | None = None,
        seed: int = 0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not isinstance(size, (int, np.integer)) or size < MIN_SIZE:
            raise ValueError(f"size must be an int of at least {MIN_SIZE} pixels, got {size!r}")
        if len(samples) == 0:
            raise ValueError("samples is empty: there is nothing to train or evaluate on")
        if samples_per_epoch is not None and samples_per_epoch < 1:
            raise ValueError(f"samples_per_epoch must be at least 1, got {samples_per_epoch!r}")

        self.mode = mode
        self.size = int(size)
        self.seed = seed
        self.epoch = 0
        self.samples_per_epoch = samples_per_epoch or len(samples)
        if augment is None:
            augment = mode != "full"
        self.augmentation: Augment | None
        if isinstance(augment, Augment):
            self.augmentation = augment
        else:
            self.augmentation = Augment() if augment else None

        #: The pictures' names, and their decoded (image, label, fov) arrays, already resized in
        #: "resize" mode; :class:`~retina_lib.training.resident_batches.ResidentBatches` copies them to the GPU.
        self.names: list[str] = []
        self.pictures: list[Arrays] = []
        for sample in samples:  # decoding (or drawing) each picture happens here, once
            arrays = checked_arrays(sample)
            if mode == "resize":
                arrays = resize(*arrays, self.size)
            self.pictures.append(arrays)
            self.names.append(sample.name)

    def set_epoch(self, epoch: int) -> None:
        """Choose which epoch's crops and augmentations the next items get."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} items")
        image, label, fov = self.pictures[index % len(self.pictures)]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        if self.mode == "crop":
            image, label, fov = random_crop(image, label, fov, self.size, rng)
        if self.augmentation is not None:
            image, label, fov = self.augmentation(image, label, fov, rng)
        return _as_tensor(image.transpose(2, 0, 1)), _as_tensor(label[None]), _as_tensor(fov[None])

    def __repr__(self) -> str:
        return (
            f"SegmentationDataset({len(self.pictures)} pictures, mode={self.mode!r}, size={self.size}, "
            f"augment={self.augmentation is not None}, samples_per_epoch={self.samples_per_epoch}, "
            f"seed={self.seed})"
        )


def checked_arrays(sample: Sample) -> Arrays:
    """The sample's arrays in the expected dtypes, refusing mismatched shapes by name.

    Shared by :class:`SegmentationDataset` and :class:`~retina_lib.training.resident_batches.ResidentBatches`,
    so that both accept and refuse the same samples.
    """
    image = np.asarray(sample.image, dtype=np.float32)
    label = np.asarray(sample.label, dtype=bool)
    fov = np.asarray(sample.fov, dtype=bool)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"sample {sample.name!r}: image must be H x W x 3, got shape {image.shape}")
    if label.shape != image.shape[:2] or fov.shape != image.shape[:2]:
        raise ValueError(
            f"sample {sample.name!r}: image {image.shape[:2]}, label {label.shape} "
            f"and fov {fov.shape} must have the same height and width"
        )
    return image, label, fov


def _as_tensor(array: np.ndarray) -> torch.Tensor:
    """A float32 copy, so that changing a tensor in place can never change the stored picture."""
    return torch.tensor(np.ascontiguousarray(array), dtype=torch.float32)
