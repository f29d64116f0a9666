"""Figures for the course: training curves, sample grids, error overlays, ROC/PR curves.

Every function builds its figure with matplotlib's object-oriented API and
RETURNS the :class:`matplotlib.figure.Figure`, so a notebook shows it and a
script can keep or save it. None of them calls ``plt.show()``: that decision
belongs to the caller. Pass ``save_to="some/file.png"`` to also write a PNG.

Tip for notebooks: write ``fig = plotter.plot(...)`` (or end the line with
``;``). A figure that is both returned as the cell's last value and drawn by
the inline backend would otherwise be shown twice.

Colours of the error overlay come from the Okabe-Ito palette (Okabe & Ito,
"Color Universal Design", 2008), chosen so that readers with the common forms
of colour-blindness can still tell the three kinds of pixel apart:

* true positive (vessel found): white, the brightest thing on a dimmed image;
* false positive (vessel invented): vermillion;
* false negative (vessel missed): sky blue.

Vermillion and sky blue differ in hue for every kind of colour vision, and
both differ from white in brightness and saturation.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch, Patch
from matplotlib.ticker import MaxNLocator
from skimage.color import rgb2gray

from retina_lib import metrics
from retina_lib.system.files import write_atomically

#: Okabe-Ito colours (RGB in [0, 1]) of the error overlay; see the module docstring.
TRUE_POSITIVE_COLOUR = (1.0, 1.0, 1.0)                    # white
FALSE_POSITIVE_COLOUR = (213 / 255, 94 / 255, 0.0)        # vermillion
FALSE_NEGATIVE_COLOUR = (86 / 255, 180 / 255, 233 / 255)  # sky blue
#: The field-of-view border drawn by :func:`show_samples` (Okabe-Ito yellow).
FOV_BORDER_COLOUR = (240 / 255, 228 / 255, 66 / 255)

#: The photograph under the overlay is shown in grey, scaled by these factors,
#: so the coloured pixels stand out and the pixels outside the field of view
#: (never scored) recede further.
INSIDE_FOV_BRIGHTNESS = 0.5
OUTSIDE_FOV_BRIGHTNESS = 0.15

#: Markers of the reference points in :func:`plot_roc_pr` (black, one shape each).
REFERENCE_MARKERS = "*XDsP^v"

#: Resolution of saved PNGs: enough for slides, small enough for a repository.
SAVE_DPI = 100


# --------------------------------------------------------------------------
# Input checking shared by the figures
# --------------------------------------------------------------------------

def as_rgb_image(image: np.ndarray | torch.Tensor, name: str = "image") -> np.ndarray:
    """Return ``image`` as an H x W x 3 float numpy array.

    Accepts the two layouts the course meets: numpy H x W x 3 (how images are
    stored and plotted) and torch 3 x H x W (how PyTorch feeds them to the
    network). ``name`` appears in the error message.
    """
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
        if image.ndim == 3 and image.shape[0] == 3:
            image = image.transpose(1, 2, 0)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(
            f"{name} must be a numpy H x W x 3 or a torch 3 x H x W image, got shape {image.shape}"
        )
    return image.astype(np.float32)


def as_pixel_map(array: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """Return a label, FOV or probability map as an H x W numpy array.

    A leading channel of size 1 (``1 x H x W``, what a one-class network
    returns per image) is dropped; any other shape is an error naming ``name``.
    """
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{name} must be an H x W map (or 1 x H x W), got shape {array.shape}")
    return array


def binarise(probability: np.ndarray, threshold: float) -> np.ndarray:
    """Vessel where ``probability >= threshold``: the rule of :func:`retina_lib.metrics.confusion_counts`.

    Compared in float32 like the metrics module does, so the pixels coloured
    here are exactly the pixels it counts. Bool maps (hard masks) work too.
    Values outside [0, 1] are refused: they are usually logits that never
    went through the sigmoid.

    Taught in notebook 04, section 6.
    """
    scores = probability.astype(np.float32)
    if scores.size and not (scores.min() >= 0.0 and scores.max() <= 1.0):  # NaN fails too
        raise ValueError(
            f"probability must hold probabilities in [0, 1], found values from {scores.min()} to {scores.max()} "
            "(logits? apply retina_lib.model.probabilities first)"
        )
    return scores >= np.float32(threshold)


def _check_same_size(reference: np.ndarray, other: np.ndarray, name: str) -> None:
    """Raise if ``other`` does not cover the same H x W pixels as ``reference``."""
    if other.shape[:2] != reference.shape[:2]:
        raise ValueError(f"{name} has size {other.shape[:2]}, expected {reference.shape[:2]}")


def save_figure(fig: Figure, save_to: str | Path | None) -> Figure:
    """Save ``fig`` as a PNG when ``save_to`` is a path, then return it.

    Every figure function of the course ends here, so they all save the same
    way (parent folders created, 100 dpi, margins trimmed, written whole with
    :func:`retina_lib.system.files.write_atomically`).
    """
    if save_to is not None:
        save_to = Path(save_to)
        save_to.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(save_to, lambda path: fig.savefig(path, dpi=SAVE_DPI, bbox_inches="tight", format="png"))
    return fig


# --------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------

def plot(dice_loss: Sequence[float], iou_loss: Sequence[float], save_to: str | Path | None = None) -> Figure:
    """Plot the per-epoch Dice and IoU training losses, epochs counted from 1.

    This is the call the original course material made
    (``plotter.plot(dice_loss, iou_loss)``), kept so old notebooks still run.
    For train *and* validation curves use :func:`plot_history`.
    """
    if len(dice_loss) != len(iou_loss):
        raise ValueError(
            f"dice_loss has {len(dice_loss)} epochs but iou_loss has {len(iou_loss)}; "
            "both should hold one value per epoch"
        )
    if len(dice_loss) == 0:
        raise ValueError("dice_loss and iou_loss are empty: nothing to plot")
    epochs = np.arange(1, len(dice_loss) + 1)
    fig, ax = plt.subplots(figsize=(5, 3.5), layout="constrained")
    ax.plot(epochs, dice_loss, marker=".", label="Dice loss")
    ax.plot(epochs, iou_loss, marker=".", label="IoU loss")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no 2.5 ticks
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.suptitle("Training losses")
    return save_figure(fig, save_to)


def _best_epoch(val_dice: Sequence[float]) -> int:
    """The epoch (counted from 1) with the highest validation Dice; NaNs are skipped."""
    return int(np.nanargmax(np.asarray(val_dice, dtype=float))) + 1


def plot_history(history: Mapping[str, Sequence[float]], save_to: str | Path | None = None) -> Figure:
    """Plot training against validation curves from a history of per-epoch lists.

    Keys ending in ``loss`` (``train_loss``, ``val_dice_loss``, ...) share the
    left panel; validation scores (keys starting with ``val_`` that are not
    losses, such as ``val_dice``) get a second panel, because scores and
    losses live on different scales. Training curves are solid, validation
    curves dashed. Other keys (a learning rate, timings) are not plotted.

    When ``val_dice`` is present the best epoch (highest validation Dice) is
    marked on every panel: that is the checkpoint worth keeping, and the gap
    between the curves after it shows over-fitting.

    Taught in notebook 03, section 2.
    """
    loss_keys = [key for key in history if key.endswith("loss")]
    score_keys = [key for key in history if key.startswith("val_") and not key.endswith("loss")]
    if not loss_keys and not score_keys:
        raise ValueError(
            f"history has no loss keys (ending in 'loss') and no validation scores "
            f"(starting with 'val_'); its keys are {sorted(history)}"
        )
    panels = [keys for keys in (loss_keys, score_keys) if keys]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.5), squeeze=False, layout="constrained")
    best = _best_epoch(history["val_dice"]) if "val_dice" in history else None
    for ax, keys in zip(axes[0], panels):
        for key in keys:
            values = history[key]
            epochs = np.arange(1, len(values) + 1)
            linestyle = "--" if key.startswith("val_") else "-"
            ax.plot(epochs, values, linestyle=linestyle, marker=".", label=key)
        if best is not None:
            best_dice = history["val_dice"][best - 1]
            ax.axvline(best, color="grey", linestyle=":", label=f"best epoch {best} (val Dice {best_dice:.3f})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers: no 2.5 ticks
        ax.set_ylabel("loss" if keys is loss_keys else "validation score")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    if best is not None:  # val_dice is a validation score, so the last panel holds it
        axes[0][-1].plot([best], [history["val_dice"][best - 1]], marker="*", markersize=12, color="black")
    fig.suptitle("Training history")
    return save_figure(fig, save_to)


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------

def _no_ticks(ax: Axes) -> None:
    """Hide the pixel-index ticks of an image panel (keeping its title and y label)."""
    ax.set_xticks([])
    ax.set_yticks([])


def show_samples(
    images: Sequence[np.ndarray | torch.Tensor],
    labels: Sequence[np.ndarray | torch.Tensor],
    probabilities: Sequence[np.ndarray | torch.Tensor] | None = None,
    titles: Sequence[str] | None = None,
    fovs: Sequence[np.ndarray | torch.Tensor] | None = None,
    save_to: str | Path | None = None,
) -> Figure:
    """Show a few samples, one per row: the image, its label and (optionally) the predicted probabilities.

    Images may be numpy H x W x 3 or torch 3 x H x W; labels are H x W
    booleans; probabilities are H x W maps in [0, 1], shown on a fixed 0..1 scale
    so that "uncertain" looks the same in every row. ``titles`` name the rows;
    ``fovs`` draw the border of each field of view on the label and prediction.

    Taught in notebook 03, section 4.
    """
    count = len(images)
    if count == 0:
        raise ValueError("images is empty: nothing to show")
    for name, sequence in (("labels", labels), ("probabilities", probabilities), ("titles", titles), ("fovs", fovs)):
        if sequence is not None and len(sequence) != count:
            raise ValueError(f"{name} has {len(sequence)} entries but images has {count}")
    columns = ["image", "label"] + (["prediction (probability)"] if probabilities is not None else [])
    fig, axes = plt.subplots(count, len(columns), figsize=(2.5 * len(columns), 2.5 * count), squeeze=False,
                             layout="constrained")
    for row in range(count):
        image = as_rgb_image(images[row], f"images[{row}]")
        maps = {"labels": labels[row]} | ({"probabilities": probabilities[row]} if probabilities is not None else {})
        fov = None
        if fovs is not None:
            fov = as_pixel_map(fovs[row], f"fovs[{row}]")
            _check_same_size(image, fov, f"fovs[{row}]")
        axes[row][0].imshow(np.clip(image, 0.0, 1.0))
        for ax, (name, pixel_map) in zip(axes[row][1:], maps.items()):
            pixel_map = as_pixel_map(pixel_map, f"{name}[{row}]")
            _check_same_size(image, pixel_map, f"{name}[{row}]")
            ax.imshow(pixel_map, cmap="gray", vmin=0.0, vmax=1.0)
            if fov is not None:
                ax.contour(fov, levels=[0.5], colors=[FOV_BORDER_COLOUR], linewidths=0.8)
        for ax in axes[row]:
            _no_ticks(ax)
        if titles is not None:
            axes[row][0].set_ylabel(titles[row])
    for ax, column_title in zip(axes[0], columns):
        ax.set_title(column_title)
    fig.suptitle("Image, ground-truth label" + (" and prediction" if probabilities is not None else ""))
    return save_figure(fig, save_to)


def error_overlay(
    probability: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    fov: np.ndarray | torch.Tensor | None = None,
    image: np.ndarray | torch.Tensor | None = None,
    threshold: float = 0.5,
) -> np.ndarray:
    """Colour where a prediction is right and wrong, on a dimmed grey copy of the image.

    Returns an H x W x 3 float32 RGB array in [0, 1]. ``probability`` is the
    predicted map (binarised by :func:`binarise`, the rule the metrics use)
    or a bool mask. The arguments come in the order of
    :func:`retina_lib.metrics.confusion_counts` (map, label, FOV), then the
    image and the threshold, as in every view of :mod:`retina_lib.widgets`. Inside the field of view, true positives are white, false
    positives vermillion, false negatives sky blue and true negatives the grey
    image at ``INSIDE_FOV_BRIGHTNESS``. Pixels outside ``fov`` are never
    scored, so they get no colour: just the grey image at
    ``OUTSIDE_FOV_BRIGHTNESS``. Without an image the background is black.

    Taught in notebook 04, section 9.
    """
    label = as_pixel_map(label, "label").astype(bool)
    predicted = binarise(as_pixel_map(probability, "probability"), threshold)
    _check_same_size(label, predicted, "probability")
    if fov is None:
        fov = np.ones_like(label)
    fov = as_pixel_map(fov, "fov").astype(bool)
    _check_same_size(label, fov, "fov")
    if image is None:
        grey = np.zeros(label.shape, dtype=np.float32)
    else:
        rgb = as_rgb_image(image)
        _check_same_size(label, rgb, "image")
        grey = rgb2gray(np.clip(rgb, 0.0, 1.0)).astype(np.float32)

    brightness = np.where(fov, INSIDE_FOV_BRIGHTNESS, OUTSIDE_FOV_BRIGHTNESS).astype(np.float32)
    overlay = np.repeat((grey * brightness)[..., None], 3, axis=-1)
    overlay[fov & label & predicted] = TRUE_POSITIVE_COLOUR
    overlay[fov & ~label & predicted] = FALSE_POSITIVE_COLOUR
    overlay[fov & label & ~predicted] = FALSE_NEGATIVE_COLOUR
    return overlay


def draw_error_overlay(
    ax: Axes,
    probability: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    fov: np.ndarray | torch.Tensor | None = None,
    image: np.ndarray | torch.Tensor | None = None,
    threshold: float = 0.5,
) -> metrics.ConfusionCounts:
    """Draw :func:`error_overlay` on ``ax`` with a legend naming each colour and its pixel count.

    Separate from :func:`plot_error_overlay` so that other figures (the
    explorers in :mod:`retina_lib.widgets`) can put an overlay in one of
    their panels. Returns the counts shown in the legend, so a caller can
    turn them into scores without counting again.
    """
    ax.imshow(error_overlay(probability, label, fov, image, threshold))
    _no_ticks(ax)
    counts = metrics.confusion_counts(
        as_pixel_map(probability, "probability"), as_pixel_map(label, "label").astype(bool),
        None if fov is None else as_pixel_map(fov, "fov").astype(bool), threshold,
    )
    handles = [
        Patch(facecolor=TRUE_POSITIVE_COLOUR, edgecolor="black", label=f"true positive: {counts.tp:,}"),
        Patch(facecolor=FALSE_POSITIVE_COLOUR, edgecolor="black", label=f"false positive: {counts.fp:,}"),
        Patch(facecolor=FALSE_NEGATIVE_COLOUR, edgecolor="black", label=f"false negative: {counts.fn:,}"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small",
              title="pixels in FOV" if fov is not None else "pixels")
    return counts


def plot_error_overlay(
    probability: np.ndarray | torch.Tensor,
    label: np.ndarray | torch.Tensor,
    fov: np.ndarray | torch.Tensor | None = None,
    image: np.ndarray | torch.Tensor | None = None,
    threshold: float = 0.5,
    title: str | None = None,
    save_to: str | Path | None = None,
) -> Figure:
    """Show :func:`error_overlay` as a figure, with a legend of colours and counts.

    Taught in notebook 04, section 6.
    """
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    draw_error_overlay(ax, probability, label, fov, image, threshold)
    fig.suptitle(title if title else f"Errors at threshold {threshold:.2f}")
    return save_figure(fig, save_to)


# --------------------------------------------------------------------------
# ROC and precision-recall curves
# --------------------------------------------------------------------------

def _operating_point_index(curve_thresholds: np.ndarray, threshold: float) -> int:
    """Index of the curve point that binarising at ``threshold`` produces.

    The curves of :mod:`retina_lib.metrics` list thresholds from +inf down to
    the lowest score, and predict vessel where ``score >= curve threshold``.
    Binarising at ``threshold`` marks the same pixels as the lowest curve
    threshold that is still >= ``threshold``: the last such point.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"operating point threshold must lie in [0, 1], got {threshold}")
    return int(np.flatnonzero(curve_thresholds >= np.float32(threshold))[-1])


def plot_roc_pr(
    histograms: Mapping[str, metrics.ScoreHistogram],
    operating_points: Mapping[str, float] | None = None,
    reference_points: Mapping[str, Mapping[str, float]] | None = None,
    save_to: str | Path | None = None,
) -> Figure:
    """ROC curve (left) and precision-recall curve (right) for one or more named models.

    ``histograms`` maps a model's name to its :class:`~retina_lib.metrics.ScoreHistogram`
    (e.g. ``{"LinkNet": hist, "Frangi": hist2}``); the legend gives each
    model's AUC. ``operating_points`` maps a name to the threshold actually
    used to binarise, marked with a dot on both curves: a curve summarises
    every threshold, but a segmentation is made with one.

    ``reference_points`` are binary segmentations with no threshold to sweep,
    such as the second human observer: a name mapped to the scores
    dictionary of :func:`retina_lib.metrics.scores_from_counts` (its
    ``sensitivity``, ``specificity`` and ``precision`` place the marker).

    Taught in notebook 04, section 5.
    """
    if not histograms:
        raise ValueError("histograms is empty: give at least one {name: ScoreHistogram}")
    operating_points = dict(operating_points or {})
    unknown = sorted(set(operating_points) - set(histograms))
    if unknown:
        raise ValueError(f"operating_points name models {unknown} that are not in histograms {sorted(histograms)}")

    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(9, 4.5), layout="constrained")
    roc_ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    for name, histogram in histograms.items():
        fpr, tpr, thresholds = metrics.roc_curve(histogram)
        precision, recall, _ = metrics.pr_curve(histogram)  # same thresholds, same order
        line, = roc_ax.plot(fpr, tpr, label=f"{name} (AUC {metrics.auc_roc(histogram):.3f})")
        pr_ax.plot(recall, precision, color=line.get_color(), label=f"{name} (AUC {metrics.auc_pr(histogram):.3f})")
        if name in operating_points:
            threshold = operating_points[name]
            point = _operating_point_index(thresholds, threshold)
            point_label = f"{name} at threshold {threshold:.2f}"
            roc_ax.plot(fpr[point], tpr[point], "o", color=line.get_color(), label=point_label)
            pr_ax.plot(recall[point], precision[point], "o", color=line.get_color(), label=point_label)
    for index, (name, scores) in enumerate((reference_points or {}).items()):
        marker = REFERENCE_MARKERS[index % len(REFERENCE_MARKERS)]
        roc_ax.plot(1 - scores["specificity"], scores["sensitivity"], marker, color="black", markersize=9, label=name)
        pr_ax.plot(scores["sensitivity"], scores["precision"], marker, color="black", markersize=9, label=name)

    roc_ax.set_xlabel("false positive rate (1 - specificity)")
    roc_ax.set_ylabel("true positive rate (sensitivity)")
    roc_ax.set_title("ROC")
    pr_ax.set_xlabel("recall (sensitivity)")
    pr_ax.set_ylabel("precision")
    pr_ax.set_title("Precision-recall")
    for ax in (roc_ax, pr_ax):
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="lower right" if ax is roc_ax else "lower left")
    fig.suptitle("ROC and precision-recall curves (pixels inside the FOV)")
    return save_figure(fig, save_to)


# --------------------------------------------------------------------------
# The architecture diagram of notebook 01
# --------------------------------------------------------------------------

#: The left column of the diagram, top to bottom: (box title, stage whose output the box shows).
#: None stands for the input image itself.
LINKNET_ENCODER_COLUMN = [("input image", None), ("initial: conv 7x7, /2", "initial"),
                          ("max-pool 3x3, /2", "pool"), ("encoder1", "encoder1"), ("encoder2, /2", "encoder2"),
                          ("encoder3, /2", "encoder3"), ("encoder4, /2", "encoder4")]
#: The right column, top to bottom: the data flows up it, from decoder4 to the logits.
LINKNET_DECODER_COLUMN = [("full-conv 2x2, x2: logits", "classifier"), ("conv 3x3", "final_conv"),
                          ("full-conv 3x3, x2", "final_upsample"), ("decoder1", "decoder1"),
                          ("decoder2, x2", "decoder2"), ("decoder3, x2", "decoder3"), ("decoder4, x2", "decoder4")]
_DIAGRAM_FILL = {"encoder": "#c6dbef", "decoder": "#fdd0a2", "other": "#e0e0e0"}
_BOX_WIDTH, _BOX_HEIGHT = 2.6, 0.55


def plot_linknet_diagram(shapes: Mapping[str, tuple[tuple[int, ...], tuple[int, ...]]], input_size: int,
                         save_to: str | Path | None = None) -> Figure:
    """LinkNet as two columns of boxes, the encoder going down and the decoder coming up.

    ``shapes`` maps each stage to its (input shape, output shape), as
    :func:`retina_lib.model_stats.record_shapes` returns them for a square
    ``input_size`` image; every box shows its stage's output as channels x
    height x width. The dashed red arrows are the links: the input of encoder k
    carried across and added (the circled +) to the output of decoder k. Drawing
    from recorded shapes, not typed ones, means the picture cannot disagree with
    the model.
    """
    stages = [stage for _, stage in LINKNET_ENCODER_COLUMN + LINKNET_DECODER_COLUMN if stage is not None]
    missing = [stage for stage in stages if stage not in shapes]
    if missing:
        raise ValueError(f"shapes lacks the stages {missing}: record them with "
                         "record_shapes(model, LINKNET_STAGES, input_size)")

    def label(title: str, stage: str | None) -> str:
        _, channels, height, width = shapes[stage][1] if stage else (1, 3, input_size, input_size)
        return f"{title}\n{channels} x {height} x {width}"

    left_x, right_x = 0.0, 4.0
    fig, ax = plt.subplots(figsize=(8.5, 7.5))
    # Row r of each column is drawn at height -r.
    for x, column, downwards in ((left_x, LINKNET_ENCODER_COLUMN, True), (right_x, LINKNET_DECODER_COLUMN, False)):
        for row, (title, stage) in enumerate(column):
            kind = "encoder" if "encoder" in title else "decoder" if "decoder" in title else "other"
            ax.add_patch(FancyBboxPatch((x - _BOX_WIDTH / 2, -row - _BOX_HEIGHT / 2), _BOX_WIDTH, _BOX_HEIGHT,
                                        boxstyle="round,pad=0.03", facecolor=_DIAGRAM_FILL[kind],
                                        edgecolor="black"))
            ax.text(x, -row, label(title, stage), ha="center", va="center", fontsize=9)
            if row > 0:  # the arrow between this box and the one above it, in the direction of the data
                top, bottom = -row + 1 - _BOX_HEIGHT / 2 - 0.03, -row + _BOX_HEIGHT / 2 + 0.03
                start, end = (top, bottom) if downwards else (bottom, top)
                ax.annotate("", xy=(x, end), xytext=(x, start), arrowprops=dict(arrowstyle="->"))
    bottom_row = len(LINKNET_ENCODER_COLUMN) - 1  # encoder4 hands its output to decoder4
    ax.annotate("", xy=(right_x - _BOX_WIDTH / 2 - 0.03, -bottom_row),
                xytext=(left_x + _BOX_WIDTH / 2 + 0.03, -bottom_row), arrowprops=dict(arrowstyle="->"))
    # The links: the input of encoder k (the arrow above its box, rows 3 to 6) meets decoder k's output.
    for encoder_row in range(3, len(LINKNET_ENCODER_COLUMN)):
        y = -encoder_row + 0.5
        ax.plot([left_x], [y], "o", color="tab:red", markersize=4)
        ax.annotate("", xy=(right_x - 0.17, y), xytext=(left_x, y),
                    arrowprops=dict(arrowstyle="->", color="tab:red", linestyle="--"))
        ax.text(right_x, y, "+", ha="center", va="center", fontsize=12, fontweight="bold",
                bbox=dict(boxstyle="circle,pad=0.15", facecolor="white", edgecolor="tab:red"))
    ax.set_xlim(left_x - 1.5, right_x + 1.5)
    ax.set_ylim(-bottom_row - 0.5, 0.5)
    ax.set_axis_off()
    ax.set_title(f"LinkNet on a {input_size} x {input_size} image: each block's output as channels x height x width\n"
                 "blue: encoder (ResNet-18), orange: decoder, red: links, added with +")
    fig.tight_layout()
    return save_figure(fig, save_to)
