"""The synthetic fundus generator: determinism, shapes and realism figures (its speed: benchmarks/synthetic_speed.py)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.morphology import skeletonize

from retina_lib.data.sample import Sample
from retina_lib.data.synthetic import make_fundus, synthetic_dataset


@pytest.fixture(scope="module")
def samples_512() -> list[Sample]:
    """A few 512 x 512 pictures shared by the figure tests (drawing them is the slow part)."""
    return [make_fundus(512, seed) for seed in range(4)]


def vessel_fraction(sample: Sample) -> float:
    return float(sample.label[sample.fov].mean())


def test_same_seed_gives_identical_sample() -> None:
    first, second = make_fundus(128, seed=5), make_fundus(128, seed=5)
    assert np.array_equal(first.image, second.image)
    assert np.array_equal(first.label, second.label)
    assert np.array_equal(first.fov, second.fov)


def test_different_seeds_give_different_samples() -> None:
    first, second = make_fundus(128, seed=5), make_fundus(128, seed=6)
    assert not np.array_equal(first.label, second.label)
    assert np.abs(first.image - second.image).mean() > 0.01


@pytest.mark.parametrize("size, shape", [(96, (96, 96)), ((80, 144), (80, 144)), ((150, 100), (150, 100))])
def test_dtypes_shapes_and_ranges(size: int | tuple[int, int], shape: tuple[int, int]) -> None:
    sample = make_fundus(size, seed=1)
    assert sample.image.shape == (*shape, 3) and sample.image.dtype == np.float32
    assert sample.label.shape == shape and sample.label.dtype == bool
    assert sample.fov.shape == shape and sample.fov.dtype == bool
    assert 0.0 <= sample.image.min() and sample.image.max() <= 1.0
    assert sample.second_label is None
    # The FOV is a circle that fits the shorter side, so it covers a sensible share.
    assert 0.3 < sample.fov.mean() < 0.8


def test_label_lies_inside_fov_and_outside_is_dark(samples_512: list[Sample]) -> None:
    for sample in samples_512:
        assert not np.any(sample.label & ~sample.fov)
        outside = sample.image[~ndimage.binary_dilation(sample.fov, iterations=3)]
        inside = sample.image[sample.fov]
        assert outside.mean() < 0.05 < inside.mean()


def test_vessel_fraction_close_to_real_fundus_images(samples_512: list[Sample]) -> None:
    fractions = [vessel_fraction(sample) for sample in samples_512]
    assert 0.10 <= np.mean(fractions) <= 0.15, fractions
    for fraction in fractions:
        assert 0.08 <= fraction <= 0.17, fractions


def test_vessel_fraction_holds_for_other_sizes() -> None:
    for size in (256, (384, 640)):
        assert 0.08 <= vessel_fraction(make_fundus(size, seed=3)) <= 0.17, size


def test_vessels_are_darker_than_background_in_green(samples_512: list[Sample]) -> None:
    for sample in samples_512:
        green = sample.image[..., 1]
        background = sample.fov & ~sample.label
        assert green[sample.label].mean() < green[background].mean()
        # And locally, against the background just beside each vessel.
        beside = ndimage.binary_dilation(sample.label, iterations=3) & background
        assert green[sample.label].mean() < 0.95 * green[beside].mean()


def test_vessels_taper_from_wide_to_one_or_two_pixels(samples_512: list[Sample]) -> None:
    for sample in samples_512:
        half_width = ndimage.distance_transform_edt(sample.label)
        assert half_width.max() > 3.0  # the main vessels are more than 6 px wide
        centre_half_widths = half_width[skeletonize(sample.label)]
        thin_share = np.mean(centre_half_widths <= 1.5)  # 1-2 px wide vessels
        wide_share = np.mean(centre_half_widths >= 2.5)  # 4 px wide or more
        assert thin_share > 0.2 and wide_share > 0.05, (thin_share, wide_share)


def test_synthetic_dataset_is_lazy_deterministic_and_named() -> None:
    train = synthetic_dataset("train", n=3, size=64)
    assert len(train) == 3
    assert train[1].name == "synthetic_train_001"
    assert np.array_equal(train[1].image, synthetic_dataset("train", n=3, size=64)[1].image)
    assert np.array_equal(train[-1].label, train[2].label)
    assert [s.name for s in train[0:2]] == ["synthetic_train_000", "synthetic_train_001"]
    assert [s.name for s in train] == [f"synthetic_train_{i:03d}" for i in range(3)]
    with pytest.raises(IndexError):
        train[3]


def test_train_and_test_splits_do_not_share_pictures() -> None:
    train = synthetic_dataset("train", size=64)
    test = synthetic_dataset("test", size=64)
    assert (len(train), len(test)) == (20, 8)
    train_labels = [sample.label for sample in train]
    for sample in test:
        assert not any(np.array_equal(sample.label, label) for label in train_labels)
    assert not np.array_equal(
        synthetic_dataset("train", n=1, size=64, seed=1)[0].label, train[0].label
    )


def test_bad_arguments_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="validation"):
        synthetic_dataset("validation")
    with pytest.raises(ValueError, match="16"):
        make_fundus(16)
    with pytest.raises(ValueError, match="-1"):
        synthetic_dataset("train", n=-1)
