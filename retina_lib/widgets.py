"""Interactive explorers for the notebooks: move a slider, watch the scores respond.

Each explorer is a thin ``ipywidgets.interactive`` wrapper around a plain
*view* function that returns a matplotlib Figure. The notebooks call the view
once with fixed values, so a figure is there even when the notebook is read
without a running kernel (on GitHub, in a PDF); the explorer adds the sliders
for whoever runs it.

Every explorer returns its ``interactive`` widget: make it the last
expression of a cell (or pass it to ``display``) to show it. Sliders update
when released (``continuous_update=False``), because each update redraws a
full-size figure.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from ipywidgets import FloatSlider, IntSlider, interactive
from matplotlib.figure import Figure
from skimage.filters import gaussian

from . import metrics
from .data.sample import Sample
from .plotter import as_pixel_map, draw_error_overlay, plot_error_overlay, save_figure

#: The scores the explorers show: {name on the figure: key of metrics.scores_from_counts}.
#: F1 is the Dice coefficient of the binarised prediction.
SHOWN_SCORES = {"Dice": "f1", "IoU": "iou", "accuracy": "accuracy"}


def _threshold_slider(value: float = 0.5) -> FloatSlider:
    """The binarisation-threshold slider every explorer shares."""
    return FloatSlider(value=value, min=0.05, max=0.95, step=0.05, description="threshold",
                       continuous_update=False)


def _overlay_and_scores(
    image: np.ndarray | torch.Tensor | None,
    label: np.ndarray | torch.Tensor,
    prediction: np.ndarray | torch.Tensor,
    fov: np.ndarray | torch.Tensor | None,
    threshold: float,
    title: str,
) -> Figure:
    """The figure of both views: error overlay on the left, score bars on the right."""
    fig, (overlay_ax, scores_ax) = plt.subplots(1, 2, figsize=(10, 4.5), width_ratios=(2, 1),
                                             layout="constrained")
    counts = draw_error_overlay(overlay_ax, image, label, prediction, fov, threshold)
    overlay_ax.set_title("errors (inside the FOV)" if fov is not None else "errors")
    scores = metrics.scores_from_counts(counts)
    names = list(SHOWN_SCORES)
    values = [scores[key] for key in SHOWN_SCORES.values()]
    bars = scores_ax.barh(names, values, color="grey")
    scores_ax.bar_label(bars, fmt="%.3f", padding=2)
    scores_ax.set_xlim(0, 1.2)  # room for the value printed after a bar at 1.0
    scores_ax.set_xticks(np.linspace(0, 1, 6))
    scores_ax.set_xlabel("score")
    scores_ax.set_ylabel("metric")
    scores_ax.invert_yaxis()  # first score on top
    scores_ax.set_title("scores")
    summary = ", ".join(f"{name} {value:.3f}" for name, value in zip(names, values))
    fig.suptitle(f"{title}\n{summary}")
    return fig


# --------------------------------------------------------------------------
# Threshold: how the choice of threshold trades false positives for misses.
# --------------------------------------------------------------------------

def threshold_view(
    prob: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    fov: np.ndarray | torch.Tensor | None = None,
    image: np.ndarray | torch.Tensor | None = None,
    threshold: float = 0.5,
    save_to: str | Path | None = None,
) -> Figure:
    """The prediction binarised at ``threshold``, its errors, and its Dice, IoU and accuracy."""
    title = f"Prediction binarised at threshold {threshold:.2f}"
    return save_figure(_overlay_and_scores(image, label, prob, fov, threshold, title), save_to)


def threshold_explorer(
    prob: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    fov: np.ndarray | torch.Tensor | None = None,
    image: np.ndarray | torch.Tensor | None = None,
) -> interactive:
    """:func:`threshold_view` with a threshold slider (0.05 to 0.95)."""
    def view(threshold: float) -> Figure:
        return threshold_view(prob, label, fov, image, threshold)

    return interactive(view, threshold=_threshold_slider())


# --------------------------------------------------------------------------
# Shift: why Dice and IoU punish a small misplacement that accuracy ignores.
# --------------------------------------------------------------------------

def shifted_prediction(label: np.ndarray | torch.Tensor, shift: int, blur_sigma: float) -> np.ndarray:
    """A made-up "prediction": the label moved ``shift`` pixels right (left if negative), then blurred.

    Pixels uncovered by the shift are background (no wrap-around). Blurring
    with a Gaussian of ``blur_sigma`` pixels turns the hard mask into
    probability-like values, so the threshold decides how thick the
    predicted vessels are; ``blur_sigma=0`` keeps the hard mask.
    """
    label = as_pixel_map(label, "label").astype(np.float32)
    width = label.shape[1]
    if abs(shift) >= width:
        raise ValueError(f"shift {shift} moves the label ({width} pixels wide) out of the image")
    if blur_sigma < 0:
        raise ValueError(f"blur_sigma must be >= 0, got {blur_sigma}")
    moved = np.zeros_like(label)
    if shift >= 0:
        moved[:, shift:] = label[:, :width - shift]
    else:
        moved[:, :shift] = label[:, -shift:]
    if blur_sigma > 0:
        moved = gaussian(moved, sigma=blur_sigma, preserve_range=True)
    return np.clip(moved, 0.0, 1.0).astype(np.float32)  # the blur may overshoot 1 by a rounding error


def shift_view(
    label: np.ndarray | torch.Tensor,
    fov: np.ndarray | torch.Tensor | None = None,
    shift: int = 0,
    threshold: float = 0.5,
    blur_sigma: float = 1.0,
    save_to: str | Path | None = None,
) -> Figure:
    """Score :func:`shifted_prediction` against the label it was made from."""
    prediction = shifted_prediction(label, shift, blur_sigma)
    title = f"Label shifted by {shift} px, blurred (sigma {blur_sigma:g} px), threshold {threshold:.2f}"
    return save_figure(_overlay_and_scores(None, label, prediction, fov, threshold, title), save_to)


def shift_explorer(label: np.ndarray | torch.Tensor, fov: np.ndarray | torch.Tensor | None = None) -> interactive:
    """:func:`shift_view` with sliders for the shift, the threshold and the blur."""
    def view(shift: int, threshold: float, blur_sigma: float) -> Figure:
        return shift_view(label, fov, shift, threshold, blur_sigma)

    return interactive(
        view,
        shift=IntSlider(value=0, min=-5, max=5, step=1, description="shift (px)", continuous_update=False),
        threshold=_threshold_slider(),
        blur_sigma=FloatSlider(value=1.0, min=0.0, max=3.0, step=0.25, description="blur sigma",
                               continuous_update=False),
    )


# --------------------------------------------------------------------------
# Browse: page through a test set's predictions.
# --------------------------------------------------------------------------

def browse_predictions(
    samples: Sequence[Sample | tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    probs: Sequence[np.ndarray | torch.Tensor],
    threshold: float = 0.5,
) -> interactive:
    """Page through predictions with an image slider and a threshold slider.

    ``samples`` are :class:`~retina_lib.data.sample.Sample` objects or
    ``(image, label, fov)`` tuples; ``probs[i]`` is the probability map of
    ``samples[i]``. Each page is :func:`retina_lib.plotter.plot_error_overlay`.
    """
    if len(samples) != len(probs):
        raise ValueError(f"samples has {len(samples)} entries but probs has {len(probs)}")
    if len(samples) == 0:
        raise ValueError("samples is empty: nothing to browse")

    def view(index: int, threshold: float) -> Figure:
        sample = samples[index]
        if isinstance(sample, Sample):
            image, label, fov, name = sample.image, sample.label, sample.fov, sample.name
        else:
            (image, label, fov), name = sample, f"image {index}"
        return plot_error_overlay(image, label, probs[index], fov, threshold,
                                  title=f"{name}: errors at threshold {threshold:.2f}")

    return interactive(
        view,
        index=IntSlider(value=0, min=0, max=len(samples) - 1, description="image", continuous_update=False),
        threshold=_threshold_slider(threshold),
    )
