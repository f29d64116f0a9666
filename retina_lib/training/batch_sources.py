"""What :func:`~retina_lib.training.trainer.fit` iterates over: a DataLoader, or batches kept on the device.

A ``SegmentationDataset`` prepares its images on the CPU; a PyTorch
``DataLoader`` collects them into batches. On a CUDA GPU that leaves the GPU
waiting most of the time, so there the same pictures are handed to
:class:`~retina_lib.training.resident_batches.ResidentBatches`, which stores them on the GPU and
augments them there (:func:`use_resident_data` decides).
"""
from __future__ import annotations

from typing import Union

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from retina_lib.data import SegmentationDataset
from retina_lib.training.resident_batches import RESIDENT_MODES, ResidentBatches

#: ``resident`` values fit accepts.
RESIDENT_CHOICES = ("auto", True, False)

Batches = Union[DataLoader, ResidentBatches]


def use_resident_data(resident: bool | str, data: Dataset, device: torch.device) -> bool:
    """Whether ``data`` is served by :class:`~retina_lib.training.resident_batches.ResidentBatches`.

    That is: stored in ``device``'s memory and augmented there.

    "auto" means yes on CUDA GPUs, for a SegmentationDataset in "crop" or
    "resize" mode: there, preparing images on the CPU would leave the GPU
    waiting most of the time. On the CPU the DataLoader is as fast and is
    the path the course explains. ``data`` that is already a ResidentBatches
    is used as it is.
    """
    if resident not in RESIDENT_CHOICES:
        raise ValueError(f"resident must be 'auto', True or False, got {resident!r}")
    if isinstance(data, ResidentBatches):
        return True
    suitable = isinstance(data, SegmentationDataset) and data.mode in RESIDENT_MODES
    if resident == "auto":
        return suitable and device.type == "cuda"
    if resident and not suitable:
        described = (f"a SegmentationDataset in mode {data.mode!r}" if isinstance(data, SegmentationDataset)
                     else f"a {type(data).__name__}")
        raise ValueError(f"resident=True needs a SegmentationDataset in mode {' or '.join(map(repr, RESIDENT_MODES))} "
                         f"(or a ResidentBatches); got {described}")
    return resident


def item_count(data: Dataset) -> int:
    """Training images per epoch, for the run's settings."""
    return data.samples_per_epoch if isinstance(data, ResidentBatches) else len(data)


def make_batches(data: Dataset, batch_size: int, training: bool, resident: bool | str, num_workers: int,
                 device: torch.device, generator: torch.Generator, seed: int, rank: int,
                 world_size: int) -> Batches:
    """What fit iterates over for ``data``: a DataLoader or a ResidentBatches.

    With several processes the training data is shared out (each process its
    own items); validation data is not: every process scores all of it, so
    all of them choose the same best epoch.
    """
    if not training:
        rank, world_size = 0, 1
    if isinstance(data, ResidentBatches):
        if data.batch_size != batch_size or data.device.type != device.type:
            raise ValueError(f"the ResidentBatches has batch_size={data.batch_size} on {data.device}, but fit was "
                             f"asked for batch_size={batch_size} on {device}: make them agree")
        if (data.rank, data.world_size) != (rank, world_size):
            raise ValueError(f"the ResidentBatches is made for process {data.rank} of {data.world_size}, but this is "
                             f"process {rank} of {world_size}: pass a SegmentationDataset with resident=True instead")
        return data
    if use_resident_data(resident, data, device):
        return ResidentBatches.from_dataset(data, batch_size, device, shuffle=training, rank=rank,
                                          world_size=world_size)
    sampler = (DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
               if world_size > 1 else None)
    return DataLoader(
        data, batch_size=batch_size, shuffle=training and sampler is None, sampler=sampler,
        num_workers=num_workers, pin_memory=device.type == "cuda", generator=generator,
    )


def start_epoch(data: Dataset, batches: Batches, epoch: int) -> None:
    """Tell the dataset, the ResidentBatches or the distributed sampler which epoch begins (new random draws)."""
    if hasattr(data, "set_epoch"):
        data.set_epoch(epoch)
    if isinstance(batches, ResidentBatches):
        batches.set_epoch(epoch)
    if isinstance(batches, DataLoader) and isinstance(batches.sampler, DistributedSampler):
        batches.sampler.set_epoch(epoch)
