"""Where a vessel segmentation falls short: which vessels it misses, where its false alarms sit.

Pooled scores such as F1 say *how much* a segmentation is wrong, not *where*.
This module answers two questions that notebook 04 asks of every method:

* **Which vessels are missed?** Every labelled vessel pixel gets a width
  (:func:`vessel_widths`); :func:`sensitivity_by_width` then counts, per width
  class, the share of vessel pixels a method finds. Counting centre-line
  pixels per class as well gives each class's share of the vessels' *length*,
  which differs a lot from its share of the *pixels*: thin vessels are long
  and narrow.
* **Where are the false alarms?** :func:`fov_zones` marks two zones inside the
  field of view, the rim and the optic-disc zone, and
  :func:`false_positives_by_zone` compares each zone's share of a method's
  false positives with its share of the area. A ratio above 1 means the zone
  attracts false alarms.

Predictions come in already binarised (bool masks), so the same functions
score a network, a classical filter or a second human observer.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.color import rgb2gray
from skimage.morphology import skeletonize

from retina_lib.data.sample import Sample

#: Width classes in pixels at native resolution: {name: (lower bound excluded, upper bound included)}.
#: Sized for CHASE_DB1, whose labelled vessels are 1 to about 12 pixels wide.
WIDTH_CLASSES: dict[str, tuple[float, float]] = {
    "thin (1-3 px)": (0.0, 3.5),
    "medium (4-8 px)": (3.5, 8.5),
    "thick (9+ px)": (8.5, np.inf),
}

#: The rim: the outer 3 % of the FOV's diameter, where the photograph darkens.
RIM_FRACTION = 0.03
#: The optic-disc zone: within a quarter of the FOV radius of the brightest spot.
DISC_ZONE_FRACTION = 0.25
#: The zones :func:`false_positives_by_zone` reports, in order.
ZONES = ("rim", "disc zone")


def vessel_widths(label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(widths, centre_line)`` for a bool vessel label.

    ``widths`` holds each vessel pixel's local vessel width in pixels (0 on the
    background); ``centre_line`` is the vessels' one-pixel skeleton. On the
    centre line the distance to the background is half the vessel's width
    (``2 * distance - 1`` pixels, so a one-pixel vessel has width 1); every
    other vessel pixel takes the width at its nearest centre-line pixel, so
    the edge pixels of a thick vessel count as thick.
    """
    label = np.asarray(label, dtype=bool)
    if label.ndim != 2:
        raise ValueError(f"label must be an H x W mask, got shape {label.shape}")
    centre_line = skeletonize(label)
    if not centre_line.any():
        return np.zeros(label.shape), centre_line
    distance_to_background = ndimage.distance_transform_edt(label)
    # for every pixel, the coordinates of the nearest centre-line pixel
    _, (rows, columns) = ndimage.distance_transform_edt(~centre_line, return_indices=True)
    return np.where(label, 2 * distance_to_background[rows, columns] - 1, 0.0), centre_line


def width_class_counts(
    mask: np.ndarray, widths: np.ndarray, classes: Mapping[str, tuple[float, float]] = WIDTH_CLASSES
) -> np.ndarray:
    """How many pixels of ``mask`` fall in each width class (one count per class, in order)."""
    return np.array([(mask & (widths > low) & (widths <= high)).sum() for low, high in classes.values()])


@dataclass
class WidthAnalysis:
    """What :func:`sensitivity_by_width` measured, pooled over the images.

    Attributes:
        classes: the width classes' names, in order.
        pixel_share: each class's share of the labelled vessel pixels.
        length_share: each class's share of the centre-line pixels (the vessels' length).
        sensitivity: method -> share of each class's vessel pixels it found (NaN for an empty class).
    """

    classes: list[str]
    pixel_share: np.ndarray
    length_share: np.ndarray
    sensitivity: dict[str, np.ndarray]

    def format_table(self) -> str:
        """The analysis as a plain-text table, one column per width class."""
        lines = [f"{'':<28}" + "".join(f"{name:>17}" for name in self.classes)]
        for title, shares in (("share of vessel pixels", self.pixel_share),
                              ("share of vessel length", self.length_share)):
            lines.append(f"{title:<28}" + "".join(f"{share:>17.1%}" for share in shares))
        lines.append("sensitivity (share found):")
        for method, values in self.sensitivity.items():
            lines.append(f"    {method:<24}" + "".join(f"{'-':>17}" if np.isnan(value) else f"{value:>17.3f}"
                                                     for value in values))
        return "\n".join(lines)


def _check_predictions(samples: Sequence[Sample], predictions: Mapping[str, Sequence[np.ndarray]]) -> None:
    """Raise unless every method has one prediction of the right size per sample."""
    if not samples:
        raise ValueError("samples is empty: nothing to analyse")
    if not predictions:
        raise ValueError("predictions is empty: give at least one {method: [mask per sample]}")
    for method, masks in predictions.items():
        if len(masks) != len(samples):
            raise ValueError(f"predictions[{method!r}] has {len(masks)} masks but there are {len(samples)} samples")
        for mask, sample in zip(masks, samples):
            if np.shape(mask) != sample.label.shape:
                raise ValueError(f"predictions[{method!r}] for {sample.name} has shape {np.shape(mask)}, "
                                 f"its label {sample.label.shape}")


def sensitivity_by_width(
    samples: Sequence[Sample],
    predictions: Mapping[str, Sequence[np.ndarray]],
    classes: Mapping[str, tuple[float, float]] = WIDTH_CLASSES,
) -> WidthAnalysis:
    """Per width class, the share of labelled vessel pixels (inside the FOV) each method finds.

    ``predictions`` maps a method's name to one bool mask per sample (already
    binarised: a network's map cut at its threshold, or a second observer's
    tracing). Counts are pooled over all samples before dividing, like the
    pooled scores of :func:`retina_lib.scoring.evaluation.score_network`.

    Taught in notebook 04, section 9.
    """
    _check_predictions(samples, predictions)
    labelled = np.zeros(len(classes))
    length = np.zeros(len(classes))
    found = {method: np.zeros(len(classes)) for method in predictions}
    for index, sample in enumerate(samples):
        widths, centre_line = vessel_widths(sample.label)
        vessels = sample.label & sample.fov
        labelled += width_class_counts(vessels, widths, classes)
        length += width_class_counts(centre_line & sample.fov, widths, classes)
        for method, masks in predictions.items():
            found[method] += width_class_counts(np.asarray(masks[index], dtype=bool) & vessels, widths, classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        sensitivity = {method: np.where(labelled > 0, counts / labelled, np.nan) for method, counts in found.items()}
    return WidthAnalysis(
        classes=list(classes),
        pixel_share=labelled / max(labelled.sum(), 1),
        length_share=length / max(length.sum(), 1),
        sensitivity=sensitivity,
    )


def _rim(fov: np.ndarray, rim_fraction: float) -> np.ndarray:
    """The band of ``fov`` within ``rim_fraction`` of its diameter from its edge."""
    fov_radius = np.sqrt(fov.sum() / np.pi)  # of the disc with the same area as the FOV
    depth = ndimage.distance_transform_edt(fov)  # distance to the nearest pixel outside the FOV
    return fov & (depth <= rim_fraction * 2 * fov_radius)


def optic_disc_centre(image: np.ndarray, fov: np.ndarray, rim_fraction: float = RIM_FRACTION) -> tuple[int, int]:
    """``(row, column)`` of the brightest spot of the smoothed photograph inside ``fov``, away from its rim.

    In a fundus photograph that is usually the optic disc, where the largest
    vessels enter: a cheap landmark, good enough to keep a crop away from the
    disc or to mark a zone around it, but worth checking on a figure for a new
    dataset (a bright lesion or a reflection can win instead).

    Taught in notebook 02, section 6.
    """
    fov = np.asarray(fov, dtype=bool)
    if not fov.any():
        raise ValueError("fov is empty: there is no field of view to search for the optic disc")
    fov_radius = np.sqrt(fov.sum() / np.pi)
    brightness = ndimage.gaussian_filter(rgb2gray(np.asarray(image)), sigma=0.02 * fov_radius)
    brightness[~fov | _rim(fov, rim_fraction)] = -np.inf  # the disc is inside the FOV, away from the rim's glare
    row, column = np.unravel_index(np.argmax(brightness), brightness.shape)
    return int(row), int(column)


def fov_zones(
    image: np.ndarray,
    fov: np.ndarray,
    rim_fraction: float = RIM_FRACTION,
    disc_fraction: float = DISC_ZONE_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(rim, disc_zone)``: two bool masks inside ``fov``.

    The rim is the band within ``rim_fraction`` of the FOV's diameter from its
    edge. The disc zone is a circle of ``disc_fraction`` of the FOV radius
    around the brightest spot of the smoothed photograph (away from the rim),
    which in a fundus photograph is usually the optic disc: check it on a
    figure before trusting the disc-zone numbers for a new dataset.

    Taught in notebook 04, section 9.
    """
    fov = np.asarray(fov, dtype=bool)
    if not fov.any():
        raise ValueError("fov is empty: there is no field of view to divide into zones")
    fov_radius = np.sqrt(fov.sum() / np.pi)  # of the disc with the same area as the FOV
    rim = _rim(fov, rim_fraction)
    row, column = optic_disc_centre(image, fov, rim_fraction)
    rows, columns = np.indices(fov.shape)
    disc = fov & ((rows - row) ** 2 + (columns - column) ** 2 <= (disc_fraction * fov_radius) ** 2)
    return rim, disc


@dataclass
class ZoneAnalysis:
    """What :func:`false_positives_by_zone` measured, pooled over the images.

    Attributes:
        area_share: zone -> its share of the FOV's pixels.
        false_positives: method -> {zone or "FOV": number of false-positive pixels there}.
    """

    area_share: dict[str, float]
    false_positives: dict[str, dict[str, int]]

    def share(self, method: str, zone: str) -> float:
        """The share of ``method``'s false positives (inside the FOV) that lie in ``zone`` (NaN if it has none)."""
        counts = self.false_positives[method]
        return counts[zone] / counts["FOV"] if counts["FOV"] else float("nan")

    def ratio(self, method: str, zone: str) -> float:
        """``share`` divided by the zone's share of the area: above 1, the zone attracts false alarms."""
        return self.share(method, zone) / self.area_share[zone]

    def format_table(self) -> str:
        """The analysis as plain text, one block per zone."""
        lines = []
        for zone in self.area_share:
            lines.append(f"{zone}: {self.area_share[zone]:.1%} of the FOV area")
            for method, counts in self.false_positives.items():
                lines.append(f"    {method:<22} {self.share(method, zone):6.1%} of its {counts['FOV']:,} false positives"
                             f"  (x{self.ratio(method, zone):.1f} the area share)")
        return "\n".join(lines)


def false_positives_by_zone(
    samples: Sequence[Sample],
    predictions: Mapping[str, Sequence[np.ndarray]],
    rim_fraction: float = RIM_FRACTION,
    disc_fraction: float = DISC_ZONE_FRACTION,
) -> ZoneAnalysis:
    """Where inside the FOV each method's false positives lie: rim, disc zone, or elsewhere.

    ``predictions`` maps a method's name to one bool mask per sample. If false
    positives were spread evenly, each zone would hold the same share of them
    as of the FOV's area; :meth:`ZoneAnalysis.ratio` compares the two.

    Taught in notebook 04, section 9.
    """
    _check_predictions(samples, predictions)
    area = dict.fromkeys((*ZONES, "FOV"), 0)
    false_positives = {method: dict.fromkeys((*ZONES, "FOV"), 0) for method in predictions}
    for index, sample in enumerate(samples):
        zones = dict(zip(ZONES, fov_zones(sample.image, sample.fov, rim_fraction, disc_fraction)), FOV=sample.fov)
        for zone, mask in zones.items():
            area[zone] += int(mask.sum())
        for method, masks in predictions.items():
            wrong = np.asarray(masks[index], dtype=bool) & ~sample.label
            for zone, mask in zones.items():
                false_positives[method][zone] += int((wrong & mask).sum())
    return ZoneAnalysis(
        area_share={zone: area[zone] / area["FOV"] for zone in ZONES},
        false_positives=false_positives,
    )
