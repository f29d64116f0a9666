"""Data augmentation for vessel segmentation, on plain numpy arrays.

Twenty training photographs are far too few to train a network on as they are,
so every time the network sees one it sees a slightly different version:
cropped elsewhere, mirrored, turned, brighter or darker. Geometric changes
(crop, resize, flips, rotations) must move the label and the field-of-view
(FOV) mask exactly like the image, or the network learns from misplaced
answers; so those functions take and return all three arrays together.
Photometric changes (brightness, contrast, gamma) touch the image only.

Arrays follow :class:`~retina_lib.data.sample.Sample`: image H x W x 3 float32
in [0, 1], label and fov H x W bool.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.transform import resize as skimage_resize
from skimage.transform import rotate as skimage_rotate

# (image, label, fov): the three arrays a geometric transform moves together.
Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


def as_height_width(size: int | tuple[int, int]) -> tuple[int, int]:
    """Read a size given as ``512`` (square) or ``(height, width)``."""
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    if isinstance(size, tuple) and len(size) == 2:
        return int(size[0]), int(size[1])
    raise ValueError(f"size must be an int or a (height, width) tuple, got {size!r}")


# --- geometric: image, label and fov together ------------------------------


def pad_to_at_least(image: np.ndarray, label: np.ndarray, fov: np.ndarray, size: int | tuple[int, int]) -> Arrays:
    """Pad with black / background on both sides until the arrays are at least ``size``.

    Padding is outside the FOV, so it never counts as "no vessel here" in
    metrics that look inside the FOV only.
    """
    height, width = as_height_width(size)
    extra_rows = max(height - image.shape[0], 0)
    extra_cols = max(width - image.shape[1], 0)
    if extra_rows == 0 and extra_cols == 0:
        return image, label, fov
    padding = ((extra_rows // 2, extra_rows - extra_rows // 2), (extra_cols // 2, extra_cols - extra_cols // 2))
    return (
        np.pad(image, (*padding, (0, 0))),
        np.pad(label, padding),
        np.pad(fov, padding),
    )


def random_crop(
    image: np.ndarray,
    label: np.ndarray,
    fov: np.ndarray,
    size: int | tuple[int, int],
    rng: np.random.Generator,
) -> Arrays:
    """Cut a ``size`` window at a random place, at native resolution (padding if needed).

    Crops keep every thin vessel as the annotator drew it, which resizing a
    whole photograph down to 512 x 512 does not.
    """
    height, width = as_height_width(size)
    image, label, fov = pad_to_at_least(image, label, fov, (height, width))
    top = rng.integers(0, image.shape[0] - height + 1)
    left = rng.integers(0, image.shape[1] - width + 1)
    window = (slice(top, top + height), slice(left, left + width))
    return image[window], label[window], fov[window]


def resize(image: np.ndarray, label: np.ndarray, fov: np.ndarray, size: int | tuple[int, int]) -> Arrays:
    """Scale the whole picture to ``size``: bilinear for the image, area + threshold for masks.

    Masks are averaged over the area each new pixel covers and kept where at
    least half of it was set, so a mask does not shift or grow. Vessels
    thinner than the new pixel size may vanish or break up: that loss is the
    price of the resize recipe, and why evaluation happens at native size.
    """
    shape = as_height_width(size)
    if shape == image.shape[:2]:
        return image, label, fov
    shrinking = shape[0] < image.shape[0] or shape[1] < image.shape[1]
    new_image = skimage_resize(image, (*shape, image.shape[2]), order=1, anti_aliasing=shrinking)
    return (
        np.clip(new_image, 0.0, 1.0).astype(np.float32),
        _resize_mask(label, shape, shrinking),
        _resize_mask(fov, shape, shrinking),
    )


def _resize_mask(mask: np.ndarray, shape: tuple[int, int], shrinking: bool) -> np.ndarray:
    coverage = skimage_resize(mask.astype(np.float32), shape, order=1, anti_aliasing=shrinking)
    return coverage >= 0.5


def flip_horizontal(image: np.ndarray, label: np.ndarray, fov: np.ndarray) -> Arrays:
    """Mirror left-right (a left eye becomes a right eye)."""
    return image[:, ::-1], label[:, ::-1], fov[:, ::-1]


def flip_vertical(image: np.ndarray, label: np.ndarray, fov: np.ndarray) -> Arrays:
    """Mirror top-bottom."""
    return image[::-1], label[::-1], fov[::-1]


def rotate90(image: np.ndarray, label: np.ndarray, fov: np.ndarray, quarter_turns: int) -> Arrays:
    """Turn by a multiple of 90 degrees (anticlockwise): exact, no interpolation."""
    return (
        np.rot90(image, quarter_turns, axes=(0, 1)),
        np.rot90(label, quarter_turns),
        np.rot90(fov, quarter_turns),
    )


def rotate(image: np.ndarray, label: np.ndarray, fov: np.ndarray, degrees: float) -> Arrays:
    """Turn by any angle (anticlockwise) about the centre, keeping the size.

    All three arrays are turned in one call, so they cannot drift apart. The
    masks are interpolated like the image and then thresholded at one half,
    which keeps them binary without thickening or thinning them. Corners that
    come from outside the picture are black and outside the FOV.
    """
    stacked = np.concatenate([image, label[..., None], fov[..., None]], axis=2).astype(np.float32)
    turned = skimage_rotate(stacked, degrees, order=1, mode="constant", cval=0.0, preserve_range=True)
    return (
        np.clip(turned[..., :3], 0.0, 1.0).astype(np.float32),
        turned[..., 3] >= 0.5,
        turned[..., 4] >= 0.5,
    )


# --- photometric: image only -----------------------------------------------


def adjust_brightness(image: np.ndarray, factor: float) -> np.ndarray:
    """Multiply by ``factor``: a brighter or dimmer flash; black stays black."""
    return np.clip(image * np.float32(factor), 0.0, 1.0)


def adjust_contrast(image: np.ndarray, factor: float) -> np.ndarray:
    """Stretch (``factor`` > 1) or squeeze values about the image's mean."""
    mean = image.mean(dtype=np.float64)
    return np.clip((image - mean) * factor + mean, 0.0, 1.0).astype(np.float32)


def adjust_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """Raise to the power ``gamma``: > 1 darkens mid-tones, < 1 lifts them; 0 and 1 stay put."""
    return np.power(image, np.float32(gamma))


# --- the recipe ------------------------------------------------------------


@dataclass(frozen=True)
class Augment:
    """Which random changes to make, how often and how strongly.

    Call it with the three arrays and a random generator; it returns changed
    copies (or views). Each geometric change happens with its own
    probability; the photometric factors are drawn uniformly from
    [1 - strength, 1 + strength] (gamma as a power of 2, so darker and lighter
    are equally likely). Set a probability or strength to 0 to switch it off.
    """

    flip_probability: float = 0.5  # each of horizontal and vertical
    rotate90_probability: float = 0.5  # 1, 2 or 3 quarter turns (only 2 if not square)
    rotate_probability: float = 0.3
    max_rotation_degrees: float = 15.0
    brightness: float = 0.15
    contrast: float = 0.15
    gamma: float = 0.3

    def __call__(
        self, image: np.ndarray, label: np.ndarray, fov: np.ndarray, rng: np.random.Generator
    ) -> Arrays:
        if rng.random() < self.flip_probability:
            image, label, fov = flip_horizontal(image, label, fov)
        if rng.random() < self.flip_probability:
            image, label, fov = flip_vertical(image, label, fov)
        if rng.random() < self.rotate90_probability:
            # Quarter turns would swap height and width of a non-square picture.
            square = image.shape[0] == image.shape[1]
            quarter_turns = int(rng.integers(1, 4)) if square else 2
            image, label, fov = rotate90(image, label, fov, quarter_turns)
        if rng.random() < self.rotate_probability:
            degrees = rng.uniform(-self.max_rotation_degrees, self.max_rotation_degrees)
            image, label, fov = rotate(image, label, fov, degrees)
        if self.brightness:
            image = adjust_brightness(image, rng.uniform(1 - self.brightness, 1 + self.brightness))
        if self.contrast:
            image = adjust_contrast(image, rng.uniform(1 - self.contrast, 1 + self.contrast))
        if self.gamma:
            image = adjust_gamma(image, 2.0 ** rng.uniform(-self.gamma, self.gamma))
        return image, label, fov


def as_float_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """``image`` as an H x W x 3 float32 array in [0, 1], or a ValueError saying what is wrong.

    uint8 images (0..255, as decoded from JPEG/PNG) are divided by 255. Float
    images must already lie in [0, 1]: a float image with values up to 255 is
    refused rather than guessed at, because dividing it silently would hide a
    bug in whatever produced it.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be H x W x 3 (RGB), got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name} must be uint8 (0..255) or float in [0, 1], got dtype {image.dtype}")
    image = image.astype(np.float32, copy=False)
    low, high = float(image.min()), float(image.max())
    if not (low >= 0.0 and high <= 1.0):  # NaN fails too
        raise ValueError(f"{name} is float, so its values must lie in [0, 1]; "
                         f"found {low} to {high} (divide 0..255 images by 255 first)")
    return image
