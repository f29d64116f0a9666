"""training/batch_sources.py: what fit iterates over, a DataLoader on the CPU, and when it may not."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from retina_lib.data import SegmentationDataset, synthetic_dataset
from retina_lib.training.batch_sources import item_count, make_batches, use_resident_data
from retina_lib.training.resident_batches import ResidentBatches

CPU = torch.device("cpu")


def small_dataset(mode: str = "crop") -> SegmentationDataset:
    return SegmentationDataset(synthetic_dataset(n=2, size=64, seed=0), mode=mode, size=32)


def batches_for(data, training: bool, resident="auto", batch_size: int = 2):
    return make_batches(data, batch_size=batch_size, training=training, resident=resident, num_workers=0,
                        device=CPU, generator=torch.Generator().manual_seed(0), seed=0, rank=0, world_size=1)


def test_auto_keeps_the_dataloader_on_the_cpu() -> None:
    assert use_resident_data("auto", small_dataset(), CPU) is False
    assert isinstance(batches_for(small_dataset(), training=True), DataLoader)


def test_resident_on_a_plain_dataset_is_refused_naming_it() -> None:
    plain = TensorDataset(torch.zeros(2, 3, 32, 32), torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="resident=True needs a SegmentationDataset .* got a TensorDataset"):
        use_resident_data(True, plain, CPU)
    with pytest.raises(ValueError, match="resident must be 'auto', True or False, got 'yes'"):
        use_resident_data("yes", plain, CPU)


def test_resident_on_the_cpu_serves_device_batches_and_counts_the_epoch() -> None:
    data = small_dataset()
    batches = batches_for(data, training=True, resident=True)
    assert isinstance(batches, ResidentBatches)
    assert item_count(batches) == batches.samples_per_epoch and item_count(data) == len(data)


def test_validation_batches_are_not_shuffled() -> None:
    data = TensorDataset(torch.arange(6.0))
    batches = batches_for(data, training=False)
    assert [batch[0].tolist() for batch in batches] == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
