"""SegmentationDataset: shapes per mode, aligned binary masks, reproducible randomness, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from retina_lib.data.sample import Sample
from retina_lib.data.synthetic import make_fundus
from retina_lib.data.training_set import SegmentationDataset
from retina_lib.data.transforms import Augment


def tell_tale_sample(height: int, width: int, seed: int) -> Sample:
    """A sample whose label is exactly "green > 0.5" and whose FOV is "red > 0.5".

    Built of 8 x 8 blocks, so a crop, flip or rotation that moved the image
    and the masks differently would show up as disagreement.
    """
    rng = np.random.default_rng(seed)
    blocks = rng.random((height // 8 + 1, width // 8 + 1, 3)) < 0.5
    image = np.kron(blocks, np.ones((8, 8, 1)))[:height, :width].astype(np.float32)
    return Sample(image=image, label=image[..., 1] > 0.5, fov=image[..., 0] > 0.5, name=f"tell_tale_{seed}")


@pytest.fixture(scope="module")
def tell_tale_samples() -> list[Sample]:
    return [tell_tale_sample(120, 100, seed) for seed in range(3)]


def assert_binary(tensor: torch.Tensor) -> None:
    assert torch.all((tensor == 0) | (tensor == 1))


@pytest.mark.parametrize("mode, expected_hw", [("crop", (64, 64)), ("resize", (64, 64)), ("full", (120, 100))])
def test_shapes_and_dtypes_per_mode(tell_tale_samples: list[Sample], mode: str, expected_hw: tuple[int, int]) -> None:
    dataset = SegmentationDataset(tell_tale_samples, mode=mode, size=64)
    assert len(dataset) == 3
    image, label, fov = dataset[1]
    assert image.shape == (3, *expected_hw) and label.shape == fov.shape == (1, *expected_hw)
    assert image.dtype == label.dtype == fov.dtype == torch.float32
    assert_binary(label)
    assert_binary(fov)


def test_masks_stay_binary_and_aligned_through_crops_and_augmentation(tell_tale_samples: list[Sample]) -> None:
    dataset = SegmentationDataset(
        tell_tale_samples, mode="crop", size=64, augment=Augment(rotate_probability=0.5), samples_per_epoch=12
    )
    for epoch in range(2):
        dataset.set_epoch(epoch)
        for index in range(len(dataset)):
            image, label, fov = dataset[index]
            assert_binary(label)
            assert_binary(fov)
            # Photometric jitter moves 0/1 values a little, never across one half.
            assert (label[0] == (image[1] > 0.5)).float().mean() > 0.97
            assert (fov[0] == (image[0] > 0.5)).float().mean() > 0.97


def test_resize_mode_keeps_alignment(tell_tale_samples: list[Sample]) -> None:
    dataset = SegmentationDataset(tell_tale_samples, mode="resize", size=48, augment=False)
    image, label, fov = dataset[0]
    assert (label[0] == (image[1] > 0.5)).float().mean() > 0.85  # block edges blur when shrinking


def test_full_mode_returns_the_pictures_unchanged(tell_tale_samples: list[Sample]) -> None:
    dataset = SegmentationDataset(tell_tale_samples, mode="full")
    assert dataset.augmentation is None
    for index, sample in enumerate(tell_tale_samples):
        image, label, fov = dataset[index]
        assert np.array_equal(image.permute(1, 2, 0).numpy(), sample.image)
        assert np.array_equal(label[0].numpy().astype(bool), sample.label)
        assert np.array_equal(fov[0].numpy().astype(bool), sample.fov)
    assert dataset.names == [sample.name for sample in tell_tale_samples]


def test_same_seed_and_epoch_give_the_same_items(tell_tale_samples: list[Sample]) -> None:
    first = SegmentationDataset(tell_tale_samples, size=48, seed=7)
    second = SegmentationDataset(tell_tale_samples, size=48, seed=7)
    for index in range(3):
        assert all(torch.equal(a, b) for a, b in zip(first[index], second[index]))
        assert torch.equal(first[index][0], first[index][0])  # asking twice changes nothing


def test_epochs_and_seeds_give_different_crops(tell_tale_samples: list[Sample]) -> None:
    dataset = SegmentationDataset(tell_tale_samples, size=48, augment=False, seed=0)
    epoch_0 = [dataset[i][0] for i in range(3)]
    dataset.set_epoch(1)
    epoch_1 = [dataset[i][0] for i in range(3)]
    assert any(not torch.equal(a, b) for a, b in zip(epoch_0, epoch_1))
    other_seed = SegmentationDataset(tell_tale_samples, size=48, augment=False, seed=1)
    assert any(not torch.equal(other_seed[i][0], epoch_0[i]) for i in range(3))


def test_samples_per_epoch_cycles_through_the_pictures(tell_tale_samples: list[Sample]) -> None:
    dataset = SegmentationDataset(tell_tale_samples, mode="resize", size=32, augment=False, samples_per_epoch=7)
    assert len(dataset) == 7
    assert torch.equal(dataset[4][0], dataset[1][0])  # 4 % 3 == 1, and nothing random happens
    with pytest.raises(IndexError):
        dataset[7]


def test_dataloader_batches_items(tell_tale_samples: list[Sample]) -> None:
    dataset = SegmentationDataset(tell_tale_samples, size=64, samples_per_epoch=4)
    images, labels, fovs = next(iter(DataLoader(dataset, batch_size=2, shuffle=True)))
    assert images.shape == (2, 3, 64, 64)
    assert labels.shape == fovs.shape == (2, 1, 64, 64)


def test_dataloader_workers_see_the_same_items() -> None:
    samples = [make_fundus(96, seed) for seed in range(2)]
    dataset = SegmentationDataset(samples, size=64, samples_per_epoch=4, seed=3)
    in_process = torch.cat([images for images, _, _ in DataLoader(dataset, batch_size=2)])
    with_workers = torch.cat([images for images, _, _ in DataLoader(dataset, batch_size=2, num_workers=2)])
    assert torch.equal(in_process, with_workers)


def test_tensors_are_copies_of_the_stored_pictures(tell_tale_samples: list[Sample]) -> None:
    dataset = SegmentationDataset(tell_tale_samples, mode="full")
    dataset[0][0].zero_()
    assert dataset[0][0].sum() > 0


def test_bad_arguments_are_refused_by_name(tell_tale_samples: list[Sample]) -> None:
    with pytest.raises(ValueError, match="'tiles'"):
        SegmentationDataset(tell_tale_samples, mode="tiles")
    with pytest.raises(ValueError, match="16"):
        SegmentationDataset(tell_tale_samples, size=16)
    with pytest.raises(ValueError, match="empty"):
        SegmentationDataset([])
    with pytest.raises(ValueError, match="samples_per_epoch"):
        SegmentationDataset(tell_tale_samples, samples_per_epoch=0)
    broken = Sample(image=np.zeros((10, 10, 3), np.float32), label=np.zeros((9, 10), bool),
                    fov=np.zeros((10, 10), bool), name="broken_01")
    with pytest.raises(ValueError, match="broken_01"):
        SegmentationDataset([broken], mode="full")
