"""Turn a trained network into a vessel probability map for a whole photograph.

Training sees crops; evaluation must score every pixel of the photograph at its
**native resolution** (the convention of the field: no resizing of the labels).
:func:`predict` does that for an image of any size of at least 32 x 32:

* Small and medium images (up to :data:`MAX_WHOLE_IMAGE_PIXELS`, which covers
  DRIVE, STARE and CHASE_DB1) go through the network in one piece. LinkNet pads
  them to a multiple of 32 and crops the logits back.
* Large images (HRF is 3504 x 2336 = 8.2 million pixels) go through in
  overlapping **tiles**, so memory stays bounded whatever the image size.
  Measured on HRF-sized images: in one piece LinkNet needed 1.6 GB of CPU
  RAM (2.3 GB on a GPU), in 768-pixel tiles 0.3 GB, and tiling was no slower.

How the tiles are placed and blended, and why:

1. Every tile starts at a multiple of 32 pixels (``tile_size`` and ``overlap``
   must be multiples of 32). The network downsamples by 32, so a tile on this
   grid sees the pixels on exactly the same sampling grid as the whole image
   would; the last tile in each direction simply stops at the image border and
   is zero-padded by the network exactly as the whole image would be.
2. Near a tile edge the network lacks context (it sees zeros where the
   neighbouring pixels should be), so edge predictions are the least reliable.
   Each tile's probabilities are therefore weighted by a separable **cosine
   ramp**: the weight rises from almost 0 to 1 across the ``overlap`` pixels on
   every side that has a neighbouring tile, and stays 1 on sides at the image
   border (nobody else can predict those pixels). Neighbouring ramps are
   sin^2 and cos^2 of the same angle, so they add up to 1 and the blend has no
   visible seam. The weighted sum is divided by the sum of weights.

Tiling is not exact: LinkNet's receptive field is larger than a tile, so a
tile's prediction depends a little on where the tile ends. For a well-trained
LinkNet (F1 0.90 on synthetic images) on an HRF-sized image, compared with the
whole-image prediction, 768-pixel tiles changed the thresholded map (at 0.5) on
0.030 % of the FOV pixels with a 64-pixel overlap and 0.010 % with the default
192 (a quarter of the tile); F1 moved by less than 0.001. Single pixels near
tile borders can still differ by up to 0.2 in probability.

Optional test-time augmentation (``tta=True``) averages the predictions of the
image and its horizontal, vertical and horizontal+vertical flips (each flipped
back first). These four flips form a group, so the average is exactly
flip-equivariant: flipping the input flips the output. Averaging over only
identity, horizontal and vertical flips would not be. It costs 4 forward passes.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from retina_lib.data.sample import Sample
from retina_lib.data.transforms import as_float_rgb
from retina_lib.errors import UserInputError
from retina_lib.model import SIZE_MULTIPLE, probabilities
from retina_lib.system.hardware import model_device

#: Images with at most this many pixels are predicted in one piece when
#: ``tile_size`` is None (1024 x 1024 covers CHASE_DB1's 999 x 960, for which
#: LinkNet needs about 0.3 GB).
MAX_WHOLE_IMAGE_PIXELS = 1024 * 1024

#: The tile size chosen automatically for larger images (HRF).
DEFAULT_TILE_SIZE = 768

ImageLike = Union[np.ndarray, Tensor]


# --------------------------------------------------------------------------
# Input checking: every accepted image becomes an H x W x 3 float32 array.
# --------------------------------------------------------------------------

def _image_tensor(image: ImageLike) -> Tensor:
    """The image as a (3, H, W) float32 CPU tensor, whatever accepted form it came in."""
    if isinstance(image, Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"a tensor image must be (3, H, W), got shape {tuple(image.shape)}")
        array = image.detach().cpu().permute(1, 2, 0).numpy()
        if array.dtype != np.uint8:
            array = array.astype(np.float32, copy=False)
        image = array
    tensor = torch.from_numpy(np.ascontiguousarray(as_float_rgb(image)))
    height, width = tensor.shape[:2]
    if min(height, width) < SIZE_MULTIPLE:
        raise UserInputError(f"image must be at least {SIZE_MULTIPLE} x {SIZE_MULTIPLE} pixels, "
                         f"got {height} x {width}")
    return tensor.permute(2, 0, 1)


def _check_device(model: nn.Module, device: Optional[Union[str, torch.device]]) -> torch.device:
    """The device to compute on: the model's own; an explicit ``device`` must agree with it.

    Moving the model here would be a hidden side effect (its optimizer would
    keep pointing at the old tensors), so a mismatch is an error instead.
    """
    own = model_device(model)
    if device is None:
        return own
    wanted = torch.device(device)
    same = wanted.type == own.type and (wanted.index is None or wanted.index == own.index)
    if not same:
        raise ValueError(f"device={str(wanted)!r} was asked for, but the model is on {str(own)!r}: "
                         f"move it first with model.to({str(wanted)!r})")
    return own


# --------------------------------------------------------------------------
# One forward pass, with or without flips.
# --------------------------------------------------------------------------

#: The flips averaged by test-time augmentation, as tensor dimensions of a
#: (N, C, H, W) batch: none, horizontal, vertical, both. A group, so the
#: average is exactly flip-equivariant.
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))


def _vessel_probability(model: nn.Module, batch: Tensor) -> Tensor:
    """P(vessel) of shape (H, W) for a (1, 3, H, W) batch, checking the model has one output channel."""
    logits = model(batch)
    if logits.ndim != 4 or logits.shape[1] != 1 or logits.shape[2:] != batch.shape[2:]:
        raise ValueError(f"predict needs a model returning one logit map per pixel, (N, 1, H, W) = "
                         f"(1, 1, {batch.shape[2]}, {batch.shape[3]}); got {tuple(logits.shape)}")
    return probabilities(logits)[0, 0]


def _predict_piece(model: nn.Module, piece: Tensor, tta: bool) -> Tensor:
    """Probabilities (H, W) for one (3, H, W) image or tile already on the model's device."""
    batch = piece.unsqueeze(0)
    if not tta:
        return _vessel_probability(model, batch)
    total = torch.zeros(piece.shape[1:], device=piece.device)
    for dims in TTA_FLIPS:
        flipped = torch.flip(batch, dims) if dims else batch
        probability = _vessel_probability(model, flipped)
        # Undo the flip; the (N, C) dims of the batch are gone from probability.
        total += torch.flip(probability, [d - 2 for d in dims]) if dims else probability
    return total / len(TTA_FLIPS)


# --------------------------------------------------------------------------
# Tiling.
# --------------------------------------------------------------------------

def tile_starts(length: int, tile_size: int, overlap: int) -> list[int]:
    """Where tiles start along one axis of ``length`` pixels.

    Starts are multiples of ``tile_size - overlap``; tiles are added until one
    reaches the end of the axis. The last tile may be shorter than
    ``tile_size`` (it stops at the border) but is always longer than
    ``overlap``, because the previous tile ended before the border.

    >>> tile_starts(200, 128, 64)
    [0, 64, 128]
    >>> tile_starts(100, 128, 64)
    [0]
    """
    stride = tile_size - overlap
    starts = [0]
    while starts[-1] + tile_size < length:
        starts.append(starts[-1] + stride)
    return starts


def blend_ramp(length: int, overlap: int, rise: bool, fall: bool) -> np.ndarray:
    """1-D tile weights: a sin^2 rise over the first ``overlap`` pixels (if ``rise``),
    a cos^2 fall over the last ``overlap`` (if ``fall``), 1 elsewhere.

    Sampled at pixel centres, so no weight is exactly 0, and where one tile's
    fall meets the next tile's rise (same ``overlap`` pixels) the two weights
    add up to exactly 1 (sin^2 + cos^2).
    """
    weights = np.ones(length, dtype=np.float32)
    ramp = np.sin(0.5 * math.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
    ramp_length = min(overlap, length)
    if rise:
        weights[:ramp_length] = np.minimum(weights[:ramp_length], ramp[:ramp_length])
    if fall:
        weights[length - ramp_length:] = np.minimum(weights[length - ramp_length:],
                                                    ramp[:ramp_length][::-1])
    return weights


def default_overlap(tile_size: int) -> int:
    """A quarter of the tile, on the 32-pixel grid (at least 32): 192 for 768-pixel tiles.

    Measured (see the module docstring): going from 64 to 192 pixels of
    overlap on 768-pixel tiles cut the disagreement with the whole-image
    prediction by 3, for 20 % more tiles.
    """
    return max(SIZE_MULTIPLE, tile_size // 4 // SIZE_MULTIPLE * SIZE_MULTIPLE)


def _check_tiling(tile_size: int, overlap: int) -> None:
    for name, value in (("tile_size", tile_size), ("overlap", overlap)):
        if not isinstance(value, (int, np.integer)) or value % SIZE_MULTIPLE:
            raise ValueError(f"{name} must be a multiple of {SIZE_MULTIPLE} (the network's total stride, "
                             f"so that tiles share the whole image's pixel grid), got {value!r}")
    if not SIZE_MULTIPLE <= overlap < tile_size:
        raise ValueError(f"overlap must be at least {SIZE_MULTIPLE} and smaller than tile_size, "
                         f"got overlap={overlap}, tile_size={tile_size}")


def _predict_tiled(model: nn.Module, image: Tensor, tile_size: int, overlap: int,
                   tta: bool, device: torch.device) -> np.ndarray:
    """Blend tile predictions with cosine ramps (see the module docstring). ``image`` is (3, H, W) on the CPU."""
    height, width = image.shape[1:]
    weighted_sum = np.zeros((height, width), dtype=np.float32)
    weight_sum = np.zeros((height, width), dtype=np.float32)
    rows, columns = tile_starts(height, tile_size, overlap), tile_starts(width, tile_size, overlap)
    for top in rows:
        bottom = min(top + tile_size, height)
        row_weights = blend_ramp(bottom - top, overlap, rise=top > 0, fall=bottom < height)
        for left in columns:
            right = min(left + tile_size, width)
            column_weights = blend_ramp(right - left, overlap, rise=left > 0, fall=right < width)
            tile = image[:, top:bottom, left:right].to(device)
            probability = _predict_piece(model, tile, tta).cpu().numpy()
            weights = np.outer(row_weights, column_weights)
            weighted_sum[top:bottom, left:right] += weights * probability
            weight_sum[top:bottom, left:right] += weights
    return weighted_sum / weight_sum


# --------------------------------------------------------------------------
# The public entry points.
# --------------------------------------------------------------------------

def predict(
    model: nn.Module,
    image: ImageLike,
    *,
    tta: bool = False,
    tile_size: Optional[int] = None,
    overlap: Optional[int] = None,
    device: Optional[Union[str, torch.device]] = None,
) -> np.ndarray:
    """The vessel probability map (H x W float32 in [0, 1]) of one image, at its native size.

    Args:
        model: a network returning one logit map, (N, 1, H, W), such as
            :class:`~retina_lib.model.LinkNet`. It is put in eval mode for the
            prediction (batch norm then uses its running statistics, so the
            result does not depend on what else is in the batch) and its
            previous train/eval mode is restored afterwards.
        image: H x W x 3 numpy array, float in [0, 1] or uint8 (0..255), or a
            (3, H, W) torch tensor in the same ranges; H and W at least 32.
        tta: average over the four flips of the image (4 x slower).
        tile_size: tile side in pixels (a multiple of 32), or None to decide
            automatically: the whole image if it has at most
            :data:`MAX_WHOLE_IMAGE_PIXELS` pixels, else tiles of
            :data:`DEFAULT_TILE_SIZE`. An image no larger than one tile is
            predicted in one piece.
        overlap: pixels shared by neighbouring tiles (a multiple of 32, at
            least 32, smaller than ``tile_size``); predictions are blended
            across it. None: :func:`default_overlap` (a quarter of the tile).
        device: where to compute; None means the model's device. Giving a
            different device than the model's is an error (move the model).

    Raises ValueError if the network's output is NaN or infinite anywhere
    (a diverged network), rather than returning a map that looks empty.

    Taught in notebook 01, section 10.
    """
    compute_device = _check_device(model, device)
    tensor = _image_tensor(image)
    height, width = tensor.shape[1:]
    if tile_size is None and height * width <= MAX_WHOLE_IMAGE_PIXELS:
        tile_size = max(height, width)  # one piece
    else:
        tile_size = DEFAULT_TILE_SIZE if tile_size is None else tile_size
        overlap = default_overlap(tile_size) if overlap is None else overlap
        _check_tiling(tile_size, overlap)
    in_one_piece = height <= tile_size and width <= tile_size

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if in_one_piece:
                probability = _predict_piece(model, tensor.to(compute_device), tta).cpu().numpy()
            else:
                probability = _predict_tiled(model, tensor, tile_size, overlap, tta, compute_device)
    finally:
        model.train(was_training)
    _check_finite(probability)
    return probability.astype(np.float32, copy=False)


def _check_finite(probability: np.ndarray) -> None:
    """Refuse a map with NaN or infinite values: thresholded, it would silently say "no vessel" there."""
    broken = int(np.count_nonzero(~np.isfinite(probability)))
    if broken:
        raise UserInputError(f"the network's output is NaN or infinite for {broken} of {probability.size} pixels: its "
                         f"weights (or the image) hold NaN or infinite values, so there is no prediction to give")


def predict_samples(
    model: nn.Module,
    samples: Sequence[Sample],
    *,
    tta: bool = False,
    tile_size: Optional[int] = None,
    progress: bool = True,
) -> list[np.ndarray]:
    """:func:`predict` for every sample, in order, with a progress bar.

    Keeps all maps in memory (about 4 bytes per pixel): fine for a notebook's
    plots of DRIVE or CHASE_DB1. :func:`retina_lib.scoring.evaluation.score_network` does
    not use this; it scores each map as soon as it is made.

    Taught in notebook 03, section 4.
    """
    return [predict(model, sample.image, tta=tta, tile_size=tile_size)
            for sample in tqdm(samples, desc="predicting", disable=not progress)]
