"""Synthetic fundus photographs with exact vessel labels: the offline default.

Real datasets must be downloaded (and DRIVE needs an account), so the course,
its tests and CI train on pictures drawn here instead. Each picture is built the
way a fundus camera sees the retina:

1. a circular field of view (FOV) on a black background;
2. an orange-red background with blotchy texture and uneven illumination;
3. a bright yellowish optic disc, and a darker macula 2.5 disc diameters away;
4. arteries and veins that leave the disc, curve, branch and taper from about
   8 px to 1 px (at 512 x 512), the temporal ones arcing around the macula;
5. vessels absorb mostly green light, thin ones are fainter, the optics blur
   everything a little and the sensor adds noise.

The label is exact because it is drawn, not annotated: a pixel is a vessel when
it lies inside the disc swept along some vessel's centre line. The image is
rendered from the same discs and then blurred, so vessel edges look soft
(partial volume) while the label stays crisp, just like a human annotation.

Everything is driven by ``np.random.default_rng(seed)``: a seed always gives the
same picture, at any size.
"""
from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import overload

import numpy as np
from scipy import ndimage

from retina_lib.data.sample import Sample
from retina_lib.data.transforms import as_height_width
from retina_lib.errors import UserInputError

# Sizes below are in pixels of a 512 x 512 picture and scale with the picture.
REFERENCE_SIZE = 512
VEIN_START_WIDTH = 8.0
ARTERY_START_WIDTH = 6.5
MIN_VESSEL_WIDTH = 1.0  # never scaled: a vessel narrower than a pixel is invisible
# The share of FOV pixels that are vessels, aimed at per picture (the drawn
# share lands a little lower, 10-13%). Real photographs: 7-12% in CHASE_DB1,
# 12.7% in DRIVE.
VESSEL_FRACTION_RANGE = (0.11, 0.14)

# Training and test pictures come from non-overlapping blocks of seeds.
_SPLIT_SEED_OFFSETS = {"train": 0, "test": 500_000}
_SEEDS_PER_DATASET_SEED = 1_000_000
_DEFAULT_SPLIT_SIZES = {"train": 20, "test": 8}  # as CHASE_DB1


@dataclass(frozen=True)
class FundusGeometry:
    """Where the anatomy sits in one picture (pixel coordinates, row/column)."""

    height: int
    width: int
    fov_centre: tuple[float, float]
    fov_radius: float
    disc_centre: tuple[float, float]
    disc_radius: float
    fovea_centre: tuple[float, float]
    scale: float  # picture size relative to 512 x 512


@dataclass
class Centrelines:
    """Points along every vessel's centre line, one entry per pixel step."""

    rows: np.ndarray
    cols: np.ndarray
    radii: np.ndarray  # half the vessel width at that point
    density: np.ndarray  # how strongly the vessel absorbs light there (0..1)


def make_fundus(size: int | tuple[int, int] = 512, seed: int = 0) -> Sample:
    """Draw one synthetic fundus photograph with its exact vessel label and FOV.

    Args:
        size: picture size, an int for a square picture or (height, width).
        seed: the same seed always gives the same picture.

    Returns:
        A :class:`Sample` named ``"synthetic_<seed>"``: image H x W x 3 float32
        in [0, 1], label and fov H x W bool, label only inside the FOV.
    """
    height, width = _picture_shape(size)
    rng = np.random.default_rng(seed)
    geometry = _place_anatomy(height, width, rng)
    fov = _circle_mask(height, width, geometry.fov_centre, geometry.fov_radius)
    target_vessel_area = rng.uniform(*VESSEL_FRACTION_RANGE) * fov.sum()
    centrelines = _grow_vessel_trees(geometry, target_vessel_area, rng)
    label, vessel_density = _rasterise_vessels(centrelines, height, width)
    label &= fov
    image = _render_image(geometry, vessel_density, rng)
    return Sample(image=image, label=label, fov=fov, name=f"synthetic_{seed}")


class SyntheticFundusDataset(Sequence[Sample]):
    """A lazy, read-only list of synthetic samples: each is drawn when indexed.

    Nothing is stored, so a dataset of any length costs no memory, and item
    ``i`` is the same picture every time it is asked for.
    """

    def __init__(self, split: str, n: int, size: int | tuple[int, int], seed: int) -> None:
        _check_split(split)
        if not 0 <= n <= _SPLIT_SEED_OFFSETS["test"]:
            raise UserInputError(f"n must be between 0 and {_SPLIT_SEED_OFFSETS['test']}, got {n!r}")
        self.split = split
        self.size = _picture_shape(size)
        self.seed = seed
        self._n = n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._n))]
        if not -self._n <= index < self._n:
            raise IndexError(f"index {index} out of range for {self._n} synthetic samples")
        index %= self._n
        sample_seed = (
            self.seed * _SEEDS_PER_DATASET_SEED + _SPLIT_SEED_OFFSETS[self.split] + index
        )
        sample = make_fundus(self.size, seed=sample_seed)
        return replace(sample, name=f"synthetic_{self.split}_{index:03d}")

    def __repr__(self) -> str:
        return (
            f"SyntheticFundusDataset(split={self.split!r}, n={self._n}, "
            f"size={self.size}, seed={self.seed})"
        )


def synthetic_dataset(
    split: str = "train",
    n: int | None = None,
    size: int | tuple[int, int] = 512,
    seed: int = 0,
) -> SyntheticFundusDataset:
    """A deterministic synthetic train or test set, generated lazily.

    Args:
        split: ``"train"`` or ``"test"``; the two never share a picture.
        n: number of pictures; by default 20 for train and 8 for test, like
            CHASE_DB1.
        size: picture size, an int or (height, width).
        seed: selects a different, equally deterministic, family of pictures.
    """
    _check_split(split)
    if n is None:
        n = _DEFAULT_SPLIT_SIZES[split]
    return SyntheticFundusDataset(split, n, size, seed)


def _check_split(split: str) -> None:
    if split not in _SPLIT_SEED_OFFSETS:
        raise ValueError(f"split must be one of {sorted(_SPLIT_SEED_OFFSETS)}, got {split!r}")


# --- anatomy ---------------------------------------------------------------


def _picture_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the picture to draw, refusing pictures too small to hold a fundus."""
    height, width = as_height_width(size)
    if min(height, width) < 32:
        raise UserInputError(f"size must be at least 32 pixels each way, got {size!r}")
    return height, width


def _place_anatomy(height: int, width: int, rng: np.random.Generator) -> FundusGeometry:
    """Choose the FOV, optic disc and fovea positions for one picture.

    A disc diameter is about 0.3 FOV radii, and the fovea sits about 2.5 disc
    diameters to the temporal side of the disc, a little below it. Left and
    right eyes are mirror images, so the side is random.
    """
    scale = min(height, width) / REFERENCE_SIZE
    fov_centre = (height / 2 + rng.normal(0, 3 * scale), width / 2 + rng.normal(0, 3 * scale))
    fov_radius = min(height, width) * rng.uniform(0.45, 0.48)
    disc_radius = fov_radius * rng.uniform(0.13, 0.16)
    disc_to_fovea = 5.0 * disc_radius * rng.uniform(0.9, 1.1)
    temporal_side = rng.choice([-1.0, 1.0])
    axis_angle = np.deg2rad(rng.uniform(-4, 12))  # fovea a little below the disc
    step_row = np.sin(axis_angle) * disc_to_fovea
    step_col = temporal_side * np.cos(axis_angle) * disc_to_fovea
    # Where the camera points: 0 puts the fovea in the middle (like DRIVE),
    # 1 would put the disc there (like CHASE_DB1).
    aim = rng.uniform(0.0, 0.8)
    fovea_centre = (fov_centre[0] + aim * step_row, fov_centre[1] + aim * step_col)
    disc_centre = (fovea_centre[0] - step_row, fovea_centre[1] - step_col)
    return FundusGeometry(
        height=height,
        width=width,
        fov_centre=fov_centre,
        fov_radius=fov_radius,
        disc_centre=disc_centre,
        disc_radius=disc_radius,
        fovea_centre=fovea_centre,
        scale=scale,
    )


def _circle_mask(height: int, width: int, centre: tuple[float, float], radius: float) -> np.ndarray:
    rows, cols = np.ogrid[:height, :width]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


# --- vessel trees ----------------------------------------------------------


@dataclass(order=True)
class _VesselSeed:
    """A vessel waiting to be grown; ordering makes the widest grow first."""

    priority: float
    row: float
    col: float
    heading: float  # radians, 0 = towards +column, pi/2 = towards +row
    final_heading: float  # the heading it turns towards as it grows
    turn_length: float  # pixels over which it makes most of that turn
    width: float
    density: float


def _main_vessel_seeds(geometry: FundusGeometry, rng: np.random.Generator) -> list[_VesselSeed]:
    """The arteries and veins that leave the optic disc.

    Four pairs, as in a real eye: superior and inferior temporal arcades that
    leave steeply and then turn to run past the macula, and superior and
    inferior nasal vessels that fan out the other way; plus smaller vessels,
    one heading for the macula. Veins are wider and darker than arteries.
    """
    disc_row, disc_col = geometry.disc_centre
    to_fovea = np.arctan2(
        geometry.fovea_centre[0] - disc_row, geometry.fovea_centre[1] - disc_col
    )
    disc_diameter = 2 * geometry.disc_radius
    seeds = []
    for is_vein in (True, False):
        width = (VEIN_START_WIDTH if is_vein else ARTERY_START_WIDTH) * geometry.scale
        density = rng.uniform(0.45, 0.55) if is_vein else rng.uniform(0.32, 0.42)
        for side in (-1.0, 1.0):  # superior / inferior
            seeds.append(
                _seed_from_disc(
                    geometry,
                    heading=to_fovea + side * np.deg2rad(rng.uniform(55, 80)),
                    final_heading=to_fovea + side * np.deg2rad(rng.uniform(5, 20)),
                    turn_length=disc_diameter * rng.uniform(1.0, 1.5),
                    width=width,
                    density=density,
                    rng=rng,
                )
            )
            nasal_heading = to_fovea + np.pi - side * np.deg2rad(rng.uniform(30, 75))
            seeds.append(
                _seed_from_disc(
                    geometry,
                    heading=nasal_heading,
                    final_heading=nasal_heading + side * np.deg2rad(rng.uniform(0, 20)),
                    turn_length=disc_diameter * 2,
                    width=width * rng.uniform(0.7, 0.9),
                    density=density,
                    rng=rng,
                )
            )
        # smaller vessels: one towards the macula, a few in any direction
        headings = [to_fovea + rng.normal(0, 0.25)] + list(rng.uniform(0, 2 * np.pi, rng.integers(1, 4)))
        for heading in headings:
            seeds.append(
                _seed_from_disc(
                    geometry,
                    heading=heading,
                    final_heading=heading,
                    turn_length=disc_diameter,
                    width=width * rng.uniform(0.35, 0.55),
                    density=density * 0.9,
                    rng=rng,
                )
            )
    return seeds


def _seed_from_disc(
    geometry: FundusGeometry,
    heading: float,
    final_heading: float,
    turn_length: float,
    width: float,
    density: float,
    rng: np.random.Generator,
) -> _VesselSeed:
    """A vessel that emerges near the centre of the optic disc."""
    offset = rng.normal(0, 0.15 * geometry.disc_radius, size=2)
    return _VesselSeed(
        priority=-width,
        row=geometry.disc_centre[0] + offset[0],
        col=geometry.disc_centre[1] + offset[1],
        heading=heading,
        final_heading=final_heading,
        turn_length=turn_length,
        width=width,
        density=density,
    )


def _grow_vessel_trees(
    geometry: FundusGeometry, target_area: float, rng: np.random.Generator
) -> Centrelines:
    """Grow branching vessel trees from the disc until they cover ``target_area`` pixels.

    Vessels wait in a queue, widest first; growing one lays down its centre line
    and queues its side branches. Stopping on area (rather than on a count)
    keeps the vessel fraction of every picture close to its target, and since
    the thinnest vessels come last they are what the budget trims.
    """
    queue = _main_vessel_seeds(geometry, rng)
    heapq.heapify(queue)
    pieces: list[Centrelines] = []
    area = 0.0
    # Summing widths along centre lines estimates the drawn area well enough:
    # overlaps at crossings and on the disc roughly cancel the extra pixels
    # that one-pixel vessels cover when they run diagonally.
    while queue and area < target_area:
        seed = heapq.heappop(queue)
        piece, branches = _grow_one_vessel(seed, geometry, rng)
        if piece is None:
            continue
        pieces.append(piece)
        area += float(np.sum(2 * piece.radii))
        for branch in branches:
            heapq.heappush(queue, branch)
    return Centrelines(
        rows=np.concatenate([p.rows for p in pieces]),
        cols=np.concatenate([p.cols for p in pieces]),
        radii=np.concatenate([p.radii for p in pieces]),
        density=np.concatenate([p.density for p in pieces]),
    )


def _grow_one_vessel(
    seed: _VesselSeed, geometry: FundusGeometry, rng: np.random.Generator
) -> tuple[Centrelines | None, list[_VesselSeed]]:
    """Lay down one vessel's centre line, one pixel per step, and pick its branches.

    The heading turns smoothly from the seed's heading to its final heading,
    bends slowly at random, and the vessel snakes a little from side to side.
    The width shrinks linearly to one pixel and drops at each branch so that
    parent and child together carry the same flow (Murray's law,
    w_parent^3 = w_after^3 + w_child^3). The vessel ends where it leaves the
    FOV, reaches the fovea's vessel-free zone or has run its length.
    """
    scale = geometry.scale
    width_at_512 = seed.width / scale
    # Wide vessels run far; thin ones still run a good way.
    taper_length = (width_at_512 * rng.uniform(80, 120) + rng.uniform(30, 80)) * scale
    max_steps = int(min(taper_length, 2.2 * geometry.fov_radius))
    if max_steps < 4:
        return None, []
    steps = np.arange(max_steps, dtype=np.float64)

    # The course bends gently and slowly; on top, the vessel snakes from side
    # to side (tortuosity), thin vessels more tightly than wide ones.
    bend = _smooth_noise_1d(max_steps, correlation=25.0 * scale, rng=rng) * (0.004 / scale)
    turn = (seed.heading - seed.final_heading) * np.exp(-steps / seed.turn_length)
    heading = seed.final_heading + turn + np.cumsum(bend)
    thinness = 1.0 - min(width_at_512, 4.0) / 4.0
    snake = _smooth_noise_1d(max_steps, correlation=(12.0 - 6.0 * thinness) * scale, rng=rng)
    snake *= (1.0 + thinness) * scale * np.minimum(steps / 20.0, 1.0)
    rows = seed.row + np.cumsum(np.sin(heading)) + snake * np.cos(heading)
    cols = seed.col + np.cumsum(np.cos(heading)) - snake * np.sin(heading)

    width = np.maximum(seed.width * (1.0 - steps / taper_length), MIN_VESSEL_WIDTH)
    branches: list[tuple[int, _VesselSeed]] = []  # (where along this vessel, branch)
    branch_spacing = rng.uniform(30, 60) * scale
    position = int(rng.exponential(branch_spacing)) + int(geometry.disc_radius * 0.8)
    while position < max_steps - 4:
        parent_width = width[position]
        if parent_width < 1.5 * MIN_VESSEL_WIDTH:
            break
        # Mostly small side branches, now and then a fork into near-equal halves.
        ratio = rng.uniform(0.75, 0.95) if rng.random() < 0.15 else rng.uniform(0.3, 0.6)
        child_width = max(parent_width * ratio, 1.5 * MIN_VESSEL_WIDTH)
        side = rng.choice([-1.0, 1.0])
        branch_angle = np.deg2rad(rng.uniform(40, 80))
        branch = _VesselSeed(
            priority=-child_width,
            row=rows[position],
            col=cols[position],
            heading=heading[position] + side * branch_angle,
            final_heading=heading[position] + side * branch_angle * rng.uniform(0.3, 0.8),
            turn_length=rng.uniform(20, 60) * scale,
            width=child_width,
            density=seed.density * rng.uniform(0.85, 1.0),
        )
        branches.append((position, branch))
        remaining = max(parent_width**3 - child_width**3, 0.0) ** (1 / 3)
        width[position:] *= max(remaining, MIN_VESSEL_WIDTH) / parent_width
        position += int(rng.exponential(branch_spacing)) + 4

    keep = _steps_until_vessel_ends(rows, cols, geometry)
    if keep < 4:
        return None, []
    radii = width[:keep] / 2
    # Thin vessels are paler: less blood in the light path.
    paleness = np.minimum(0.55 + 0.45 * (2 * radii / scale) / 3.0, 1.0)
    piece = Centrelines(
        rows=rows[:keep],
        cols=cols[:keep],
        radii=radii,
        density=seed.density * paleness,
    )
    return piece, [branch for position, branch in branches if position < keep]


def _steps_until_vessel_ends(rows: np.ndarray, cols: np.ndarray, geometry: FundusGeometry) -> int:
    """The number of steps before the vessel leaves the FOV or enters the fovea's vessel-free zone."""
    fov_row, fov_col = geometry.fov_centre
    fovea_row, fovea_col = geometry.fovea_centre
    outside_fov = (rows - fov_row) ** 2 + (cols - fov_col) ** 2 > (1.02 * geometry.fov_radius) ** 2
    in_fovea = (rows - fovea_row) ** 2 + (cols - fovea_col) ** 2 < geometry.disc_radius**2
    ends = np.flatnonzero(outside_fov | in_fovea)
    return int(ends[0]) if ends.size else len(rows)


def _smooth_noise_1d(length: int, correlation: float, rng: np.random.Generator) -> np.ndarray:
    """Random values every ``correlation`` steps, joined by straight lines."""
    knots = np.arange(0.0, length + correlation, correlation)
    return np.interp(np.arange(length), knots, rng.standard_normal(knots.size))


# --- drawing ---------------------------------------------------------------


def _rasterise_vessels(
    centrelines: Centrelines, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stamp a disc at every centre-line point: the label, and the absorption map.

    A pixel belongs to a vessel when its centre lies within the local radius of
    a centre-line point; radii are at least 0.71 px so that every point marks
    at least one pixel. Where vessels overlap, the stronger absorption wins.
    Points are grouped by stamp size so that each group is one array operation.
    """
    label = np.zeros(height * width, dtype=bool)
    density = np.zeros(height * width, dtype=np.float32)
    radii = np.maximum(centrelines.radii, 0.71)
    stamp_sizes = np.ceil(radii).astype(int)
    for reach in np.unique(stamp_sizes):
        chosen = stamp_sizes == reach
        offsets = np.arange(-reach, reach + 1)
        d_row, d_col = np.meshgrid(offsets, offsets, indexing="ij")
        centre_rows = np.round(centrelines.rows[chosen]).astype(int)
        centre_cols = np.round(centrelines.cols[chosen]).astype(int)
        pixel_rows = centre_rows[:, None] + d_row.ravel()[None, :]
        pixel_cols = centre_cols[:, None] + d_col.ravel()[None, :]
        distance_sq = (pixel_rows - centrelines.rows[chosen, None]) ** 2 + (
            pixel_cols - centrelines.cols[chosen, None]
        ) ** 2
        inside = (
            (distance_sq <= radii[chosen, None] ** 2)
            & (pixel_rows >= 0) & (pixel_rows < height)
            & (pixel_cols >= 0) & (pixel_cols < width)
        )
        flat = (pixel_rows * width + pixel_cols)[inside]
        values = np.broadcast_to(centrelines.density[chosen, None], inside.shape)[inside]
        label[flat] = True
        np.maximum.at(density, flat, values.astype(np.float32))
    return label.reshape(height, width), density.reshape(height, width)


def _smooth_field(shape: tuple[int, int], grain: float, rng: np.random.Generator) -> np.ndarray:
    """Blotchy noise with unit spread (float32): broad blotches plus finer grain.

    White noise on a coarse grid (a point every ``grain`` px) is smoothed there
    at three scales, where it is cheap, and then stretched to the picture size
    by linear interpolation.
    """
    coarse_shape = (int(shape[0] / grain) + 2, int(shape[1] / grain) + 2)
    white = rng.standard_normal(coarse_shape)
    coarse = np.zeros(coarse_shape)
    for sigma, weight in ((8.0, 1.0), (2.5, 0.5), (0.8, 0.3)):
        octave = ndimage.gaussian_filter(white, sigma=sigma, mode="wrap")
        coarse += weight * octave / octave.std()
    coarse /= coarse.std()
    stretched_rows = _stretch_linear(coarse.astype(np.float32), shape[0], axis=0)
    return _stretch_linear(stretched_rows, shape[1], axis=1)


def _stretch_linear(values: np.ndarray, length: int, axis: int) -> np.ndarray:
    """Resample ``values`` to ``length`` points along ``axis`` by linear interpolation."""
    positions = np.linspace(0, values.shape[axis] - 1, length)
    below = np.minimum(positions.astype(int), values.shape[axis] - 2)
    fraction = (positions - below).astype(np.float32)
    if axis == 1:
        return values[:, below] * (1 - fraction) + values[:, below + 1] * fraction
    fraction = fraction[:, None]
    return values[below] * (1 - fraction) + values[below + 1] * fraction


def _render_image(
    geometry: FundusGeometry, vessel_density: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Paint the fundus: background, disc, macula, vessels, blur and noise.

    Each effect is a single-channel map; they meet the three colour channels
    only at the end, which keeps this fast.
    """
    rows = np.arange(geometry.height, dtype=np.float32)[:, None]
    cols = np.arange(geometry.width, dtype=np.float32)[None, :]
    illumination = _illumination(geometry, rows, cols, rng)
    disc, cup, glow = _optic_disc(geometry, rows, cols, rng)
    macula = _macula(geometry, rows, cols, rng)
    # Choroidal blotches, strongest in red.
    texture = 0.06 * _smooth_field((geometry.height, geometry.width), 3.5 * geometry.scale, rng)
    # Vessels absorb green light most, red light least; the optics blur them.
    absorption = ndimage.gaussian_filter(vessel_density, 0.7 * max(geometry.scale, 0.75))

    fundus_colour = (rng.uniform(0.58, 0.82), rng.uniform(0.22, 0.34), rng.uniform(0.05, 0.12))
    disc_colour = (1.0, rng.uniform(0.62, 0.78), rng.uniform(0.2, 0.35))
    cup_colour = (1.0, 0.88, 0.5)
    texture_strength = (1.0, 0.7, 0.5)
    macula_strength = (0.6, 1.0, 1.0)
    vessel_strength = (0.3, 0.75, 0.6)

    background_weight = (1.0 - disc) * (1.0 - cup)
    disc_weight = disc * (1.0 - cup)
    light = illumination * glow
    image = np.empty((geometry.height, geometry.width, 3), dtype=np.float32)
    for channel in range(3):
        colour = (fundus_colour[channel] * background_weight) * (
            (1.0 + texture_strength[channel] * texture) * (1.0 - macula_strength[channel] * macula)
        )
        colour += disc_colour[channel] * disc_weight + cup_colour[channel] * cup
        colour *= light * (1.0 - vessel_strength[channel] * absorption)
        image[..., channel] = colour
    # Sensor noise (uniform noise of the same spread looks alike and is cheaper
    # to draw than Gaussian noise) and a little stray light everywhere.
    noise_level = rng.uniform(0.006, 0.012)
    image += (rng.random(image.shape, dtype=np.float32) - 0.5) * np.float32(np.sqrt(12) * noise_level)
    image += 0.01
    return np.clip(image, 0.0, 1.0, out=image)


def _illumination(
    geometry: FundusGeometry, rows: np.ndarray, cols: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """How brightly each pixel is lit: falling off towards the rim, tilted, 0 outside the FOV."""
    fov_row, fov_col = (float(v) for v in geometry.fov_centre)
    radius = float(geometry.fov_radius)
    rim_distance = np.sqrt((rows - fov_row) ** 2 + (cols - fov_col) ** 2) / radius
    tilt_angle = rng.uniform(0, 2 * np.pi)
    tilt = (rows - fov_row) * (np.sin(tilt_angle) / radius) + (cols - fov_col) * (np.cos(tilt_angle) / radius)
    illumination = 1.0 - rng.uniform(0.4, 0.6) * rim_distance * rim_distance * rim_distance
    illumination *= 1.0 + rng.uniform(0.05, 0.18) * tilt
    # A shadow just inside the FOV's edge, where the camera's aperture cuts in.
    shadow_width = rng.uniform(0.03, 0.08)
    edge_closeness = np.minimum(rim_distance, 1.0) - 1.0  # 0 at the edge, negative inside
    illumination *= 1.0 - rng.uniform(0.1, 0.5) * np.exp(edge_closeness * (1 / shadow_width))
    # Black outside the FOV, with a rim about a pixel wide.
    illumination *= np.clip((1.0 - rim_distance) * (radius / geometry.scale) + 0.5, 0.0, 1.0)
    return illumination


def _optic_disc(
    geometry: FundusGeometry, rows: np.ndarray, cols: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The disc (a yellow dome), its paler cup, and the glow of light it scatters around.

    Returns (disc weight, cup weight, glow factor), all single-channel maps.
    """
    disc_row, disc_col = (float(v) for v in geometry.disc_centre)
    disc_radius = float(geometry.disc_radius)
    squash = rng.uniform(0.85, 1.0)  # discs are often a little oval
    distance_sq = ((rows - disc_row) / disc_radius) ** 2 + ((cols - disc_col) / (disc_radius * squash)) ** 2
    disc = rng.uniform(0.55, 0.75) * np.sqrt(np.clip(1.15 - distance_sq, 0.0, 1.0))
    cup = disc * rng.uniform(0.4, 0.8) * np.exp(distance_sq * -(1 / rng.uniform(0.3, 0.5) ** 2))
    glow = 1.0 + 0.3 * np.exp(distance_sq * -0.2)
    return disc, cup, glow


def _macula(
    geometry: FundusGeometry, rows: np.ndarray, cols: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """How much darker the macula is: a patch about a disc diameter across, darkest at the fovea."""
    fovea_row, fovea_col = (float(v) for v in geometry.fovea_centre)
    distance_sq = ((rows - fovea_row) ** 2 + (cols - fovea_col) ** 2) * (1 / float(geometry.disc_radius) ** 2)
    macula = rng.uniform(0.2, 0.35) * np.exp(distance_sq * (-1 / 3.0))
    macula += 0.1 * np.exp(distance_sq * (-1 / 0.15))
    return macula
