"""Augmentations: masks stay binary and aligned with the image; photometric changes touch the image only."""
from __future__ import annotations

import numpy as np
import pytest

from retina_lib.data.transforms import (
    Augment,
    adjust_brightness,
    adjust_contrast,
    adjust_gamma,
    flip_horizontal,
    flip_vertical,
    pad_to_at_least,
    random_crop,
    resize,
    rotate,
    rotate90,
)


def tell_tale_arrays(height: int = 96, width: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An image whose green channel *is* the label and whose red channel *is* the FOV.

    8 x 8 blocks of 0 or 1, so any misalignment between image and masks shows
    up as disagreement between them.
    """
    rng = np.random.default_rng(seed)
    blocks = rng.random((height // 8 + 1, width // 8 + 1, 3)) < 0.5
    image = np.kron(blocks, np.ones((8, 8, 1)))[:height, :width].astype(np.float32)
    return image, image[..., 1] > 0.5, image[..., 0] > 0.5


def assert_aligned(image: np.ndarray, label: np.ndarray, fov: np.ndarray, agreement: float = 1.0) -> None:
    assert label.dtype == bool and fov.dtype == bool
    assert label.shape == fov.shape == image.shape[:2]
    assert np.mean(label == (image[..., 1] > 0.5)) >= agreement
    assert np.mean(fov == (image[..., 0] > 0.5)) >= agreement


@pytest.mark.parametrize(
    "transform",
    [flip_horizontal, flip_vertical, lambda *a: rotate90(*a, 1), lambda *a: rotate90(*a, 3)],
    ids=["flip_horizontal", "flip_vertical", "rotate90_1", "rotate90_3"],
)
def test_exact_geometric_transforms_keep_alignment(transform) -> None:
    arrays = tell_tale_arrays()
    moved = transform(*arrays)
    assert_aligned(*moved)
    assert not np.array_equal(moved[1], arrays[1])  # it did move something


def test_flips_and_quarter_turns_undo_themselves() -> None:
    image, label, fov = tell_tale_arrays()
    twice = flip_horizontal(*flip_horizontal(image, label, fov))
    assert all(np.array_equal(a, b) for a, b in zip(twice, (image, label, fov)))
    full_turn = rotate90(*rotate90(image, label, fov, 1), 3)
    assert all(np.array_equal(a, b) for a, b in zip(full_turn, (image, label, fov)))


def test_small_rotation_keeps_masks_binary_and_aligned() -> None:
    arrays = tell_tale_arrays()
    turned = rotate(*arrays, degrees=12.0)
    assert_aligned(*turned, agreement=0.97)  # only block edges may disagree
    assert not np.array_equal(turned[1], arrays[1])
    # Corners come from outside the picture: black, outside the FOV.
    assert turned[0][0, 0].max() == 0.0 and not turned[2][0, 0]


def test_random_crop_cuts_the_same_window_from_all_three() -> None:
    image, label, fov = tell_tale_arrays(96, 80)
    crop = random_crop(image, label, fov, 48, np.random.default_rng(3))
    assert crop[0].shape == (48, 48, 3)
    assert_aligned(*crop)
    # The window is a real part of the image, found at the same place in the label.
    matches = [
        (top, left)
        for top in range(96 - 48 + 1)
        for left in range(80 - 48 + 1)
        if np.array_equal(image[top : top + 48, left : left + 48], crop[0])
    ]
    assert any(np.array_equal(label[t : t + 48, l : l + 48], crop[1]) for t, l in matches)


def test_random_crop_pads_small_pictures_outside_the_fov() -> None:
    image, label, fov = tell_tale_arrays(40, 60)
    crop = random_crop(image, label, fov, 64, np.random.default_rng(0))
    assert crop[0].shape == (64, 64, 3) and crop[1].shape == crop[2].shape == (64, 64)
    padded = pad_to_at_least(image, label, fov, 64)
    assert padded[0].shape == (64, 64, 3)
    assert padded[2].sum() == fov.sum() and padded[1].sum() == label.sum()
    assert padded[0][:12].max() == 0.0  # (64 - 40) // 2 rows of black on top


def test_random_crop_is_reproducible_and_varies_with_the_generator() -> None:
    arrays = tell_tale_arrays(96, 96)
    first = random_crop(*arrays, 32, np.random.default_rng(1))[0]
    again = random_crop(*arrays, 32, np.random.default_rng(1))[0]
    others = [random_crop(*arrays, 32, np.random.default_rng(seed))[0] for seed in range(2, 8)]
    assert np.array_equal(first, again)
    assert any(not np.array_equal(first, other) for other in others)


def test_resize_is_bilinear_for_image_and_binary_for_masks() -> None:
    image, label, fov = tell_tale_arrays(96, 80)
    small = resize(image, label, fov, 48)
    assert small[0].shape == (48, 48, 3) and small[0].dtype == np.float32
    assert_aligned(*small, agreement=0.9)
    # Area + threshold keeps the share of set pixels about the same.
    assert abs(small[1].mean() - label.mean()) < 0.05
    # Bilinear: the image takes in-between values at block edges.
    assert np.any((small[0] > 0.05) & (small[0] < 0.95))
    same = resize(image, label, fov, (96, 80))
    assert all(np.array_equal(a, b) for a, b in zip(same, (image, label, fov)))


def test_photometric_changes_keep_range_dtype_and_black() -> None:
    image = np.linspace(0, 1, 300, dtype=np.float32).reshape(10, 10, 3)
    for changed in (
        adjust_brightness(image, 1.3),
        adjust_contrast(image, 1.5),
        adjust_gamma(image, 0.5),
    ):
        assert changed.dtype == np.float32 and changed.shape == image.shape
        assert 0.0 <= changed.min() and changed.max() <= 1.0
        assert not np.allclose(changed, image)
    assert adjust_brightness(image, 1.3)[0, 0, 0] == 0.0
    assert adjust_gamma(image, 2.0)[0, 0, 0] == 0.0
    assert adjust_brightness(image, 0.5).mean() < image.mean() < adjust_brightness(image, 1.5).mean()
    assert adjust_gamma(image, 2.0).mean() < image.mean() < adjust_gamma(image, 0.5).mean()
    assert adjust_contrast(image, 1.5).std() > image.std() > adjust_contrast(image, 0.5).std()


def test_augment_keeps_alignment_and_is_reproducible() -> None:
    arrays = tell_tale_arrays(64, 64)
    augment = Augment(rotate_probability=0.5)
    results = [augment(*arrays, np.random.default_rng(seed)) for seed in range(12)]
    for result in results:
        assert_aligned(*result, agreement=0.97)
    again = augment(*arrays, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(results[0], again))
    assert len({result[1].tobytes() for result in results}) > 3


def test_augment_never_changes_the_shape_of_a_non_square_picture() -> None:
    arrays = tell_tale_arrays(48, 80)
    augment = Augment(rotate90_probability=1.0)
    for seed in range(10):
        assert augment(*arrays, np.random.default_rng(seed))[0].shape == (48, 80, 3)


def test_switched_off_augment_changes_nothing() -> None:
    arrays = tell_tale_arrays()
    nothing = Augment(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    result = nothing(*arrays, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(result, arrays))
