"""The GPU-resident batches augment as the CPU dataset does: same transforms, same draws' distribution.

``retina_lib/training/resident_batches.py`` claims that its augmentation follows the
CPU recipe (:class:`~retina_lib.data.transforms.Augment`, used by
:class:`~retina_lib.data.SegmentationDataset`). The claim has two halves, tested
separately: given the same choices, every transform gives the same pixels as the
CPU's functions; and the choices are drawn with the probabilities and ranges of the
same ``Augment`` settings. (The draws themselves come from another random stream,
so a batch is not the one a DataLoader would give: the module's docstring says so.)
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from retina_lib.data.sample import Sample
from retina_lib.data.transforms import (Augment, adjust_brightness, adjust_contrast, adjust_gamma, flip_horizontal,
                                        flip_vertical, rotate, rotate90)
from retina_lib.training.epoch_plan import EpochPlan
from retina_lib.training.resident_batches import ResidentBatches

PICTURE, CROP = 64, 48


def smooth_sample() -> Sample:
    """A picture with smooth colours and blob-shaped label and FOV, so interpolation has something to do."""
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.random((PICTURE, PICTURE, 3)), (3, 3, 0))
    image = ((image - image.min()) / (image.max() - image.min())).astype(np.float32)
    label = ndimage.gaussian_filter(rng.random((PICTURE, PICTURE)), 3) > 0.5
    fov = ndimage.gaussian_filter(rng.random((PICTURE, PICTURE)), 5) > 0.45
    return Sample(image=image, label=label, fov=fov, name="smooth")


def one_item_plan(top: int, left: int, flip_h: bool, flip_v: bool, turns: int, degrees: float,
                  brightness: float, contrast: float, gamma: float) -> EpochPlan:
    def tensor(value, dtype):
        return torch.tensor([value], dtype=dtype)
    return EpochPlan(tensor(0, torch.int64), tensor(top, torch.int64), tensor(left, torch.int64),
                     tensor(flip_h, torch.bool), tensor(flip_v, torch.bool), tensor(turns, torch.int64),
                     tensor(degrees, torch.float32), tensor(brightness, torch.float32),
                     tensor(contrast, torch.float32), tensor(gamma, torch.float32))


def cpu_recipe(sample: Sample, top: int, left: int, flip_h: bool, flip_v: bool, turns: int, degrees: float,
               brightness: float, contrast: float, gamma: float):
    """The same choices made with the CPU dataset's functions, in Augment's order."""
    window = (slice(top, top + CROP), slice(left, left + CROP))
    image, label, fov = sample.image[window], sample.label[window], sample.fov[window]
    if flip_h:
        image, label, fov = flip_horizontal(image, label, fov)
    if flip_v:
        image, label, fov = flip_vertical(image, label, fov)
    if turns:
        image, label, fov = rotate90(image, label, fov, turns)
    if degrees:
        image, label, fov = rotate(image, label, fov, degrees)
    image = adjust_gamma(adjust_contrast(adjust_brightness(image, brightness), contrast), gamma)
    return image, label, fov


@pytest.mark.parametrize("choices", [
    (0, 0, False, False, 0, 0.0, 1.0, 1.0, 1.0),            # the crop alone
    (16, 5, True, False, 1, 0.0, 1.1, 0.9, 2 ** 0.2),       # mirror, quarter turn, recolour
    (3, 12, False, True, 3, 10.0, 0.9, 1.12, 2 ** -0.3),    # and a small rotation
    (9, 0, True, True, 2, -7.5, 1.15, 0.85, 1.0),
])
def test_the_same_choices_give_the_same_pixels_as_the_cpu_recipe(choices: tuple) -> None:
    sample = smooth_sample()
    batches = ResidentBatches([sample], batch_size=1, mode="crop", size=CROP, augment=True)
    image, label, fov = batches.make_batch(one_item_plan(*choices))
    expected_image, expected_label, expected_fov = cpu_recipe(sample, *choices)
    # float32 sums in another order (the contrast's mean, the rotation's weights): a few units in the 6th decimal
    np.testing.assert_allclose(image[0].permute(1, 2, 0).numpy(), expected_image, atol=2e-5)
    assert np.array_equal(label[0, 0].numpy().astype(bool), expected_label)
    assert np.array_equal(fov[0, 0].numpy().astype(bool), expected_fov)


def test_the_choices_are_drawn_with_the_augment_settings() -> None:
    """Frequencies and ranges of one long epoch's draws match Augment's probabilities and strengths."""
    settings = Augment()
    batches = ResidentBatches([smooth_sample()], batch_size=1, mode="crop", size=CROP, augment=settings,
                            samples_per_epoch=20_000)
    plan = batches.plan(epoch=1)
    turned = plan.quarter_turns > 0
    rotated = plan.degrees != 0
    tolerance = 0.015  # about 4 standard deviations of a frequency over 20,000 draws
    assert abs(plan.flip_horizontal.float().mean().item() - settings.flip_probability) < tolerance
    assert abs(plan.flip_vertical.float().mean().item() - settings.flip_probability) < tolerance
    assert abs(turned.float().mean().item() - settings.rotate90_probability) < tolerance
    assert set(plan.quarter_turns[turned].tolist()) == {1, 2, 3}
    assert abs(rotated.float().mean().item() - settings.rotate_probability) < tolerance
    assert plan.degrees.abs().max().item() <= settings.max_rotation_degrees
    assert plan.degrees[rotated].abs().max().item() > 0.95 * settings.max_rotation_degrees
    for factors, strength in ((plan.brightness, settings.brightness), (plan.contrast, settings.contrast)):
        assert (factors - 1).abs().max().item() <= strength + 1e-6
        assert abs(factors.mean().item() - 1) < 0.01  # uniform about 1
    exponents = torch.log2(plan.gamma)
    assert exponents.abs().max().item() <= settings.gamma + 1e-6 and abs(exponents.mean().item()) < 0.01
    crops = PICTURE - CROP + 1
    assert set(plan.top.tolist()) == set(range(crops)) and set(plan.left.tolist()) == set(range(crops))
