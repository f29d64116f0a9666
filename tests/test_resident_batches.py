"""Tests for retina_lib.training.resident_batches: batches stored and augmented on the device (run here on the CPU)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from retina_lib.data import SegmentationDataset, synthetic_dataset
from retina_lib.data.sample import Sample
from retina_lib.data.transforms import Augment
from retina_lib.training.resident_batches import ResidentBatches
from retina_lib.recipes import recipe
from retina_lib.training.trainer import fit
from retina_lib.training.batch_sources import use_resident_data

#: Only the geometric changes (crop, flips, quarter turns, small rotations), always applied.
GEOMETRY_ONLY = Augment(flip_probability=0.5, rotate90_probability=0.5, rotate_probability=1.0,
                        max_rotation_degrees=15.0, brightness=0.0, contrast=0.0, gamma=0.0)


def coded_sample(height: int, width: int, seed: int, name: str = "coded") -> Sample:
    """A picture whose first channel IS its label and whose second channel IS its FOV (as 0/1 values).

    Any geometric change that moved the label or FOV differently from the
    image would break these equalities, so they test alignment exactly.
    The third channel encodes the position, so crops can be located.
    """
    rng = np.random.default_rng(seed)
    label = rng.random((height, width)) < 0.3
    fov = rng.random((height, width)) < 0.7
    rows, cols = np.mgrid[:height, :width]
    position = ((rows * width + cols) / (height * width)).astype(np.float32)
    image = np.stack([label.astype(np.float32), fov.astype(np.float32), position], axis=2)
    return Sample(image=image, label=label, fov=fov, name=name)


def all_batches(batches: ResidentBatches, epoch: int) -> list[tuple[torch.Tensor, ...]]:
    batches.set_epoch(epoch)
    return list(batches)


def test_batches_have_the_dataloader_shapes_and_binary_masks() -> None:
    samples = list(synthetic_dataset("train", n=3, size=80))
    batches = ResidentBatches(samples, batch_size=2, mode="crop", size=64, samples_per_epoch=5)
    assert len(batches) == 3
    sizes = []
    for image, label, fov in batches:
        sizes.append(image.shape[0])
        assert image.shape[1:] == (3, 64, 64) and label.shape[1:] == (1, 64, 64) and fov.shape[1:] == (1, 64, 64)
        assert image.dtype == label.dtype == fov.dtype == torch.float32
        assert 0.0 <= image.min() and image.max() <= 1.0
        assert set(label.unique().tolist()) <= {0.0, 1.0} and set(fov.unique().tolist()) <= {0.0, 1.0}
    assert sizes == [2, 2, 1]


@pytest.mark.parametrize("mode", ["crop", "resize"])
def test_label_and_fov_move_exactly_with_the_image(mode: str) -> None:
    # Resizing would blur the 0/1 first channel, so "resize" pictures come at the training size.
    height, width = (96, 80) if mode == "crop" else (64, 64)
    samples = [coded_sample(height, width, seed=seed) for seed in range(3)]
    batches = ResidentBatches(samples, batch_size=4, mode=mode, size=64, augment=GEOMETRY_ONLY, samples_per_epoch=12)
    for epoch in (1, 2):
        for image, label, fov in all_batches(batches, epoch):
            assert torch.equal(image[:, 0:1] >= 0.5, label >= 0.5)
            assert torch.equal(image[:, 1:2] >= 0.5, fov >= 0.5)


def test_crops_are_windows_of_one_picture_at_native_resolution() -> None:
    height, width = 90, 70
    samples = [coded_sample(height, width, seed=seed) for seed in range(2)]
    batches = ResidentBatches(samples, batch_size=3, mode="crop", size=32, augment=False, samples_per_epoch=6)
    pictures = torch.from_numpy(np.stack([sample.image[..., 2] for sample in samples]))
    for image, _, _ in all_batches(batches, epoch=1):
        for crop in image[:, 2]:
            flat_start = int(round(float(crop[0, 0]) * height * width))
            top, left = divmod(flat_start, width)
            assert top + 32 <= height and left + 32 <= width
            assert any(torch.equal(crop, picture[top:top + 32, left:left + 32]) for picture in pictures)


def test_small_pictures_are_padded_to_the_crop_size_outside_the_fov() -> None:
    samples = [coded_sample(40, 50, seed=0)]
    image, label, fov = next(iter(ResidentBatches(samples, batch_size=1, mode="crop", size=64, augment=False)))
    assert image.shape == (1, 3, 64, 64)
    padded = image[0, 2] == 0  # position 0 is only the top-left pixel; padding is zeros too
    assert padded.sum() >= 64 * 64 - 40 * 50
    assert not fov[0, 0][padded].any() or fov[0, 0][padded].sum() <= 1


def test_same_seed_and_epoch_give_the_same_batches_and_others_differ() -> None:
    samples = list(synthetic_dataset("train", n=2, size=72))
    first = ResidentBatches(samples, batch_size=2, mode="crop", size=64, seed=3, samples_per_epoch=4)
    again = ResidentBatches(samples, batch_size=2, mode="crop", size=64, seed=3, samples_per_epoch=4)
    other_seed = ResidentBatches(samples, batch_size=2, mode="crop", size=64, seed=4, samples_per_epoch=4)

    def images(batches: ResidentBatches, epoch: int) -> torch.Tensor:
        return torch.cat([image for image, _, _ in all_batches(batches, epoch)])

    assert torch.equal(images(first, 1), images(again, 1))
    assert torch.equal(images(first, 1), images(first, 1))  # iterating again repeats the epoch
    assert not torch.equal(images(first, 1), images(first, 2))
    assert not torch.equal(images(first, 1), images(other_seed, 1))


def test_photometric_changes_touch_the_image_only() -> None:
    samples = [coded_sample(64, 64, seed=0)]
    colour_only = Augment(flip_probability=0.0, rotate90_probability=0.0, rotate_probability=0.0)
    plain = next(iter(ResidentBatches(samples, batch_size=1, mode="resize", size=64, augment=False)))
    changed = next(iter(ResidentBatches(samples, batch_size=1, mode="resize", size=64, augment=colour_only)))
    assert torch.equal(plain[1], changed[1]) and torch.equal(plain[2], changed[2])
    assert not torch.allclose(plain[0], changed[0])


def test_no_augmentation_gives_the_stored_pictures_in_order() -> None:
    samples = [coded_sample(64, 64, seed=seed, name=str(seed)) for seed in range(3)]
    batches = ResidentBatches(samples, batch_size=3, mode="resize", size=64, augment=False, shuffle=False)
    image, label, _ = next(iter(batches))
    for index, sample in enumerate(samples):
        assert torch.equal(image[index], torch.from_numpy(sample.image.transpose(2, 0, 1)))
        assert torch.equal(label[index, 0].bool(), torch.from_numpy(sample.label))


def test_processes_share_out_the_epoch_between_them() -> None:
    samples = list(synthetic_dataset("train", n=3, size=64))
    options = dict(batch_size=2, mode="resize", size=64, samples_per_epoch=6)
    whole = torch.cat([image for image, _, _ in all_batches(ResidentBatches(samples, **options), 1)])
    shares = [torch.cat([image for image, _, _ in all_batches(
        ResidentBatches(samples, **options, rank=rank, world_size=2), 1)]) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 3
    assert torch.allclose(shares[0], whole[0::2]) and torch.allclose(shares[1], whole[1::2])


def test_from_dataset_takes_the_dataset_settings() -> None:
    samples = list(synthetic_dataset("train", n=2, size=96))
    dataset = SegmentationDataset(samples, mode="resize", size=64, augment=False, samples_per_epoch=5, seed=7)
    batches = ResidentBatches.from_dataset(dataset, batch_size=2, device="cpu", shuffle=False)
    assert (batches.mode, batches.size, batches.seed, batches.samples_per_epoch) == ("resize", 64, 7, 5)
    assert batches.augmentation is None
    image, label, fov = next(iter(batches))
    expected = dataset[0]
    assert torch.allclose(image[0], expected[0]) and torch.equal(label[0], expected[1])


def test_bad_settings_are_refused_by_name() -> None:
    samples = list(synthetic_dataset("train", n=1, size=64))
    with pytest.raises(ValueError, match="mode"):
        ResidentBatches(samples, batch_size=1, mode="full")
    with pytest.raises(ValueError, match="batch_size"):
        ResidentBatches(samples, batch_size=0, size=64)
    with pytest.raises(ValueError, match="size"):
        ResidentBatches(samples, batch_size=1, size=16)
    with pytest.raises(ValueError, match="empty"):
        ResidentBatches([], batch_size=1, size=64)
    with pytest.raises(ValueError, match="rank"):
        ResidentBatches(samples, batch_size=1, size=64, rank=2, world_size=2)
    with pytest.raises(TypeError, match="SegmentationDataset"):
        ResidentBatches.from_dataset(samples, batch_size=1, device="cpu")


# --- fit with data resident on the device ---------------------------------------


def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 1, 1))


#: Two quick epochs with the original's loss and a constant rate, on the CPU in float32.
FIT = dict(config=replace(recipe("original"), epochs=2, batch_size=2, lr=1e-2), device="cpu", amp="off",
           progress=False)


def test_fit_trains_from_device_batches_and_from_resident_datasets() -> None:
    samples = list(synthetic_dataset("train", n=3, size=48))
    train_set = SegmentationDataset(samples[:2], mode="resize", size=32, samples_per_epoch=4)
    val_set = SegmentationDataset(samples[2:], mode="resize", size=32, augment=False)
    resident = fit(tiny_net(), train_set, val_set, resident=True, **FIT)
    given = fit(tiny_net(), ResidentBatches.from_dataset(train_set, 2, "cpu"), val_set, resident=False, **FIT)
    assert len(resident["train_loss"]) == len(resident["val_dice"]) == 2
    assert resident["train_loss"] == given["train_loss"]  # the same batches either way
    loader = fit(tiny_net(), train_set, val_set, resident=False, **FIT)
    assert loader["train_loss"] != resident["train_loss"]  # the DataLoader draws differently


def test_resident_auto_means_cuda_only_and_true_refuses_what_cannot_be_stacked() -> None:
    samples = list(synthetic_dataset("train", n=2, size=48))
    crops = SegmentationDataset(samples, mode="crop", size=32)
    assert use_resident_data("auto", crops, torch.device("cuda"))
    assert not use_resident_data("auto", crops, torch.device("cpu"))
    whole = SegmentationDataset(samples, mode="full")
    assert not use_resident_data("auto", whole, torch.device("cuda"))
    with pytest.raises(ValueError, match="'full'"):
        fit(tiny_net(), whole, resident=True, **FIT)
    with pytest.raises(ValueError, match="resident"):
        use_resident_data("yes", crops, torch.device("cpu"))
    with pytest.raises(ValueError, match="batch_size=3"):
        fit(tiny_net(), ResidentBatches(samples, batch_size=3, size=32), **FIT)
