"""Interactive explorers for the notebooks: move a slider, watch the scores respond.

Each explorer is a thin ``ipywidgets.interactive`` wrapper around a plain
*view* function that returns a matplotlib Figure. The notebooks call the view
once with fixed values, so a figure is there even when the notebook is read
without a running kernel (on GitHub, in a PDF); the explorer adds the sliders
for whoever runs it. The pairs, view first:

* :func:`threshold_view` / :func:`threshold_explorer`: one prediction at a threshold;
* :func:`shift_view` / :func:`shift_explorer`: a label scored against itself, shifted;
* :func:`prediction_view` / :func:`browse_predictions`: a test set's predictions, page by page.

Every explorer returns its ``interactive`` widget: make it the last
expression of a cell (or pass it to ``display``) to show it. Sliders update
when released (``continuous_update=False``), because each update redraws a
full-size figure.

The module uses only what ipywidgets 7.7.1 (the version Google Colab ships)
and 8.x both have: ``interactive``, ``IntSlider``, ``FloatSlider`` and
``SelectionSlider``, with the ``description``, ``continuous_update`` and
``style`` arguments.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import display
from ipywidgets import FloatSlider, IntSlider, SelectionSlider, interactive
from matplotlib.figure import Figure
from skimage.filters import gaussian

from retina_lib import metrics
from retina_lib.data.sample import Sample
from retina_lib.plotter import as_pixel_map, draw_error_overlay, save_figure

#: The scores the threshold and shift explorers show: {name on the figure: key of
#: metrics.scores_from_counts}. F1 is the Dice coefficient of the binarised prediction.
SHOWN_SCORES = {"Dice": "f1", "IoU": "iou", "accuracy": "accuracy"}

#: The scores the prediction browser shows: what a threshold trades (precision
#: against sensitivity) and what it costs overall (F1), the terms of the results notebook.
BROWSER_SCORES = {"F1": "f1", "precision": "precision", "sensitivity": "sensitivity"}

#: The thresholds every threshold slider offers, besides the one it starts at.
THRESHOLD_GRID = tuple(round(0.05 * step, 2) for step in range(1, 20))  # 0.05, 0.10, ..., 0.95

#: Lets a slider's description be as wide as its text (ipywidgets 7 cuts long ones off).
SLIDER_STYLE = {"description_width": "initial"}


def threshold_text(threshold: float) -> str:
    """A threshold as it is printed: two decimals, or up to four where it has more (0.50, 0.4773)."""
    text = f"{threshold:.4f}".rstrip("0")
    return text if len(text.partition(".")[2]) >= 2 else f"{threshold:.2f}"


def check_threshold(threshold: float) -> None:
    """Refuse a binarisation threshold outside [0, 1] (or not a number) with a ValueError.

    Every probability lies in [0, 1], so a threshold of 2 marks no pixel as
    vessel and -1 marks all of them: the figure would be drawn, plausibly
    labelled, and wrong. Views and explorers refuse alike.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating, np.integer)) \
            or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold!r}")


def _threshold_slider(value: float = 0.5) -> SelectionSlider:
    """The binarisation-threshold slider every explorer shares.

    It offers the steps of :data:`THRESHOLD_GRID` *and* ``value`` itself, so
    a threshold chosen on the training split (0.4773, say) is where the
    slider starts and a place it can always be moved back to: a plain slider
    with steps of 0.05 would round it away.
    """
    check_threshold(value)
    values = sorted({*THRESHOLD_GRID, value})
    return SelectionSlider(options=[(threshold_text(option), option) for option in values], value=value,
                           description="threshold", continuous_update=False, style=SLIDER_STYLE)


def _shown(figure: Figure) -> Figure:
    """Display ``figure`` now, in the explorer's output area, and close it in pyplot.

    ``interactive`` does not display what its function returns, and the way
    it used to flush pyplot's figures no longer works with recent matplotlib
    (which names the inline backend "inline"): the figure of a slider
    position would then stay open and appear only below the next cell the
    learner runs, all of them at once. Displaying it here works the same
    with ipywidgets 7 and 8 and with any matplotlib; closing it keeps it
    from being shown a second time and from piling up in memory (pyplot
    warns after 20 open figures). The figure is returned so that
    ``explorer.result`` holds it.
    """
    display(figure)
    plt.close(figure)
    return figure


def _overlay_and_scores(
    probability: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    fov: np.ndarray | torch.Tensor | None,
    image: np.ndarray | torch.Tensor | None,
    threshold: float,
    title: str,
    shown: dict[str, str] = SHOWN_SCORES,
) -> Figure:
    """The figure of every view: error overlay on the left, bars of the ``shown`` scores on the right."""
    fig, (overlay_ax, scores_ax) = plt.subplots(1, 2, figsize=(10, 4.5), width_ratios=(2, 1),
                                             layout="constrained")
    counts = draw_error_overlay(overlay_ax, probability, label, fov, image, threshold)
    overlay_ax.set_title("errors (inside the FOV)" if fov is not None else "errors")
    scores = metrics.scores_from_counts(counts)
    names = list(shown)
    values = [scores[key] for key in shown.values()]
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
    probability: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    fov: np.ndarray | torch.Tensor | None = None,
    image: np.ndarray | torch.Tensor | None = None,
    threshold: float = 0.5,
    save_to: str | Path | None = None,
) -> Figure:
    """The prediction binarised at ``threshold``, its errors, and its Dice, IoU and accuracy.

    Taught in notebook 04, section 8.
    """
    check_threshold(threshold)
    title = f"Prediction binarised at threshold {threshold_text(threshold)}"
    return save_figure(_overlay_and_scores(probability, label, fov, image, threshold, title), save_to)


def threshold_explorer(
    probability: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    fov: np.ndarray | torch.Tensor | None = None,
    image: np.ndarray | torch.Tensor | None = None,
    threshold: float = 0.5,
) -> interactive:
    """:func:`threshold_view` with a threshold slider (0.05 to 0.95, and ``threshold``, where it starts)."""
    def view(threshold: float) -> Figure:
        return _shown(threshold_view(probability, label, fov, image, threshold))

    return interactive(view, threshold=_threshold_slider(threshold))


# --------------------------------------------------------------------------
# Shift: why Dice and IoU punish a small misplacement that accuracy ignores.
# --------------------------------------------------------------------------

def shifted_prediction(label: np.ndarray | torch.Tensor, shift: int, blur_sigma: float) -> np.ndarray:
    """A made-up "prediction": the label moved ``shift`` pixels right (left if negative), then blurred.

    Pixels uncovered by the shift are background (no wrap-around). Blurring
    with a Gaussian of ``blur_sigma`` pixels turns the hard mask into
    probability-like values, so the threshold decides how thick the
    predicted vessels are; ``blur_sigma=0`` keeps the hard mask.

    Taught in notebook 02, section 6.
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
    """Score :func:`shifted_prediction` against the label it was made from.

    Taught in notebook 02, section 6.
    """
    check_threshold(threshold)
    probability = shifted_prediction(label, shift, blur_sigma)
    title = f"Label shifted by {shift} px, blurred (sigma {blur_sigma:g} px), threshold {threshold_text(threshold)}"
    return save_figure(_overlay_and_scores(probability, label, fov, None, threshold, title), save_to)


def shift_explorer(label: np.ndarray | torch.Tensor, fov: np.ndarray | torch.Tensor | None = None) -> interactive:
    """:func:`shift_view` with sliders for the shift, the threshold and the blur.

    Taught in notebook 02, section 6.
    """
    def view(shift: int, threshold: float, blur_sigma: float) -> Figure:
        return _shown(shift_view(label, fov, shift, threshold, blur_sigma))

    return interactive(
        view,
        shift=IntSlider(value=0, min=-5, max=5, step=1, description="shift (px)", continuous_update=False,
                        style=SLIDER_STYLE),
        threshold=_threshold_slider(),
        blur_sigma=FloatSlider(value=1.0, min=0.0, max=3.0, step=0.25, description="blur sigma",
                               continuous_update=False, style=SLIDER_STYLE),
    )


# --------------------------------------------------------------------------
# Browse: page through a test set's predictions.
# --------------------------------------------------------------------------

def _sample_parts(sample: Sample | tuple, index: int) -> tuple:
    """(image, label, fov, name) of a :class:`Sample` or of an ``(image, label, fov)`` tuple."""
    if isinstance(sample, Sample):
        return sample.image, sample.label, sample.fov, sample.name
    image, label, fov = sample
    return image, label, fov, f"image {index}"


def _check_pages(samples: Sequence, probabilities: Sequence) -> None:
    if len(samples) != len(probabilities):
        raise ValueError(f"samples has {len(samples)} entries but probabilities has {len(probabilities)}")
    if len(samples) == 0:
        raise ValueError("samples is empty: nothing to browse")


def prediction_view(
    samples: Sequence[Sample | tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    probabilities: Sequence[np.ndarray | torch.Tensor],
    index: int = 0,
    threshold: float = 0.5,
    save_to: str | Path | None = None,
) -> Figure:
    """One page of :func:`browse_predictions`: the errors of ``samples[index]`` and its F1, precision, sensitivity.

    ``samples`` are :class:`~retina_lib.data.sample.Sample` objects or
    ``(image, label, fov)`` tuples; ``probabilities[i]`` is the probability map of
    ``samples[i]``. The scores are those of this one image inside its FOV,
    so a threshold's cost in F1 and what it trades (precision against
    sensitivity) can be read off directly.

    Taught in notebook 04, section 8.
    """
    _check_pages(samples, probabilities)
    check_threshold(threshold)
    if not 0 <= index < len(samples):
        raise ValueError(f"index {index} is outside 0..{len(samples) - 1}")
    image, label, fov, name = _sample_parts(samples[index], index)
    title = f"{name}: errors at threshold {threshold_text(threshold)}"
    return save_figure(_overlay_and_scores(probabilities[index], label, fov, image, threshold, title, BROWSER_SCORES),
                       save_to)


def browse_predictions(
    samples: Sequence[Sample | tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    probabilities: Sequence[np.ndarray | torch.Tensor],
    threshold: float = 0.5,
) -> interactive:
    """:func:`prediction_view` with an image slider and a threshold slider.

    The threshold slider starts at ``threshold`` (pass the one chosen on the
    training split) and offers it besides the steps of 0.05, so it can
    always be moved back there.

    Taught in notebook 04, section 8.
    """
    _check_pages(samples, probabilities)

    def view(index: int, threshold: float) -> Figure:
        return _shown(prediction_view(samples, probabilities, index, threshold))

    return interactive(
        view,
        index=IntSlider(value=0, min=0, max=len(samples) - 1, description="image", continuous_update=False,
                        style=SLIDER_STYLE),
        threshold=_threshold_slider(threshold),
    )
