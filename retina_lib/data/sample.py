"""The one record every dataset in the course yields.

Keeping a single, plain container for "an image and what we know about it"
means that the loaders, the synthetic generator, the training dataset and the
evaluation code all speak the same language.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class Sample:
    """One fundus photograph with its annotations, at native resolution.

    Attributes:
        image: H x W x 3 float32 RGB array with values in [0, 1].
        label: H x W bool array, the first human observer's vessel map
            (the ground truth every metric is computed against).
        fov: H x W bool array, True inside the circular field of view.
        name: a short identifier such as ``"Image_01L"``.
        second_label: the second observer's vessel map, or None where the
            dataset has only one observer.
    """

    image: np.ndarray
    label: np.ndarray
    fov: np.ndarray
    name: str
    second_label: Optional[np.ndarray] = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the image."""
        return self.image.shape[0], self.image.shape[1]
