"""A classical, "before deep learning" vessel detector to compare the network with.

The Frangi vesselness filter (Frangi et al., MICCAI 1998) needs no training: at
each pixel it looks at the second derivatives (the Hessian) of the smoothed
image. Across a vessel the intensity curves strongly; along it hardly at all.
Frangi turns that pair of curvatures into a score that is high on tubes and low
on blobs and flat background, and takes the best score over several scales
(Gaussian sigmas), so that thin and thick vessels both respond.

In fundus photographs the vessels show best in the **green** channel, where
they absorb most light and look dark; inverting it makes them bright ridges.

It is the reference below which a trained network has learned nothing useful:
with its threshold tuned on the training images, Frangi reaches F1 0.603 and
AUC-ROC 0.861 on DRIVE (the second human observer: F1 0.789; U-Nets: about
0.82).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage
from skimage.filters import frangi

from retina_lib.data.transforms import as_float_rgb

#: Image width for which :data:`FRANGI_SIGMAS` are meant (DRIVE is 565 x 584).
REFERENCE_WIDTH = 565

#: Gaussian scales in pixels at DRIVE's width, scaled with the image width.
#: DRIVE's vessels are about 1 to 8 pixels wide, and a tube of width w responds
#: most at sigma of about w / 2. Measured on training images (pooled best F1):
#: starting at 1.0 instead of 1.5 costs CHASE_DB1 0.12 F1 (its JPEG noise
#: looks like thin vessels), starting at 2.0 costs HRF 0.04 F1 (its thin
#: vessels are missed); this set is the compromise.
FRANGI_SIGMAS = (1.5, 2.0, 3.0, 4.0)

#: The response is divided by this percentile of the responses inside the FOV
#: (then clipped to 1), so every image spans [0, 1] in a comparable way and one
#: threshold suits all images. A percentile, not the maximum, so that a single
#: bright artefact cannot squash the whole map. Vessels cover 7-13 % of the
#: FOV, so the top 5 % that saturate at 1 are nearly all vessel pixels.
NORMALISING_PERCENTILE = 95.0

#: The FOV is eroded by this many times the largest sigma before use: the
#: filter answers strongly to the dark frame's edge, which is no vessel.
FOV_EROSION_PER_SIGMA = 2.0


def frangi_sigmas(width: int) -> tuple[float, ...]:
    """:data:`FRANGI_SIGMAS` scaled to an image ``width`` pixels wide (never below 1 pixel)."""
    scale = width / REFERENCE_WIDTH
    return tuple(max(1.0, sigma * scale) for sigma in FRANGI_SIGMAS)


def frangi_vesselness(image: np.ndarray, fov: Optional[np.ndarray] = None) -> np.ndarray:
    """Frangi vesselness of a fundus photograph: H x W float32 in [0, 1], 0 outside the FOV.

    Args:
        image: H x W x 3 RGB, float in [0, 1] or uint8.
        fov: H x W bool field of view, or None to use the whole image.

    Steps: take the inverted green channel (vessels become bright); run
    :func:`skimage.filters.frangi` at :func:`frangi_sigmas` for the image
    width; erode the FOV by :data:`FOV_EROSION_PER_SIGMA` x the largest sigma
    to drop the response to the frame's edge (on CHASE_DB1's training images
    this erosion raises the best F1 from 0.54 to 0.60); scale by the
    :data:`NORMALISING_PERCENTILE` inside that FOV and clip to [0, 1]; set
    everything outside it to 0.

    Taught in notebook 04, section 4.
    """
    image = as_float_rgb(image)
    height, width = image.shape[:2]
    if fov is None:
        fov = np.ones((height, width), dtype=bool)
    fov = np.asarray(fov)
    if fov.shape != (height, width) or fov.dtype != bool:
        raise ValueError(f"fov must be an H x W bool mask matching the image {height} x {width}, "
                         f"got shape {fov.shape} and dtype {fov.dtype}")
    if not fov.any():
        raise ValueError("fov selects no pixel: there is nothing to filter")

    inverted_green = 1.0 - image[..., 1]
    sigmas = frangi_sigmas(width)
    response = frangi(inverted_green, sigmas=sigmas, black_ridges=False).astype(np.float32)

    # Pixels near the rim see the frame within the filter's reach, and a FOV
    # mask often reaches a little beyond the photographed disc: the dark
    # frame's edge then looks like a vessel. The image border needs no margin:
    # the filter mirrors the image there (and a FOV covering the whole image
    # has no rim at all).
    if not fov.all():
        margin = int(round(FOV_EROSION_PER_SIGMA * max(sigmas)))
        fov = ndimage.distance_transform_edt(fov) > margin  # distance to the nearest non-FOV pixel
        if not fov.any():
            raise ValueError(f"the FOV vanishes after erosion by {margin} pixels: it is too small "
                             f"for Frangi scales up to {max(sigmas):.1f} pixels")
    scale = float(np.percentile(response[fov], NORMALISING_PERCENTILE))
    vesselness = np.clip(response / scale, 0.0, 1.0) if scale > 0 else np.zeros_like(response)
    vesselness[~fov] = 0.0
    return vesselness.astype(np.float32, copy=False)
