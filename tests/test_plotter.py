"""Tests of retina_lib.plotter and retina_lib.widgets (the explorers are built on the plots)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display needed; must come before pyplot is imported

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from ipywidgets import FloatSlider, IntSlider, SelectionSlider
from matplotlib.figure import Figure

from retina_lib import metrics, plotter, widgets
from retina_lib.data.sample import Sample

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The documented Okabe-Ito colours of the error overlay, written out here (not
# read from the module) so that a change of palette is a visible decision.
WHITE = (1.0, 1.0, 1.0)
VERMILLION = (213 / 255, 94 / 255, 0.0)
SKY_BLUE = (86 / 255, 180 / 255, 233 / 255)


@pytest.fixture(autouse=True)
def close_figures():
    """Every test makes figures; close them so memory does not grow across the run."""
    yield
    plt.close("all")


def make_case(seed: int = 0, size: int = 32) -> dict[str, np.ndarray]:
    """A small synthetic image with thin vessels, a circular FOV and a noisy prediction."""
    rng = np.random.default_rng(seed)
    label = np.zeros((size, size), dtype=bool)
    label[:, size // 3] = True          # a vertical vessel, one pixel wide
    label[size // 2, :] = True          # a horizontal one
    label[np.arange(size), np.arange(size)] = True  # a diagonal one
    rows, columns = np.mgrid[:size, :size]
    fov = (rows - size / 2) ** 2 + (columns - size / 2) ** 2 < (size / 2 - 1) ** 2
    prob = np.clip(0.7 * label + rng.normal(0.15, 0.2, label.shape), 0.0, 1.0).astype(np.float32)
    image = np.clip(rng.uniform(0.2, 0.8, (size, size, 3)) - 0.2 * label[..., None], 0, 1).astype(np.float32)
    return {"image": image, "label": label, "fov": fov, "prob": prob}


def assert_titled_and_labelled(fig: Figure, axes_count: int) -> None:
    """The figure has a title and its first ``axes_count`` axes have both axis labels."""
    assert isinstance(fig, Figure)
    assert fig.get_suptitle().strip()
    assert len(fig.axes) >= axes_count
    for ax in fig.axes[:axes_count]:
        assert ax.get_xlabel().strip() and ax.get_ylabel().strip()


def legend_texts(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


# --------------------------------------------------------------------------
# Every figure function: returns a titled Figure and writes a PNG on request.
# --------------------------------------------------------------------------

def _histogram(case):
    return metrics.score_histogram(case["prob"], case["label"], case["fov"])


FIGURE_BUILDERS = {
    "plot": lambda case, save_to: plotter.plot([0.5, 0.4, 0.3], [0.6, 0.5, 0.45], save_to=save_to),
    "plot_history": lambda case, save_to: plotter.plot_history(
        {"train_loss": [1.0, 0.8], "val_loss": [1.1, 0.9], "val_dice": [0.5, 0.6]}, save_to=save_to),
    "show_samples": lambda case, save_to: plotter.show_samples(
        [case["image"]], [case["label"]], [case["prob"]], save_to=save_to),
    "plot_error_overlay": lambda case, save_to: plotter.plot_error_overlay(
        case["image"], case["label"], case["prob"], case["fov"], save_to=save_to),
    "plot_roc_pr": lambda case, save_to: plotter.plot_roc_pr({"model": _histogram(case)}, save_to=save_to),
    "threshold_view": lambda case, save_to: widgets.threshold_view(
        case["prob"], case["label"], case["fov"], case["image"], 0.5, save_to=save_to),
    "shift_view": lambda case, save_to: widgets.shift_view(case["label"], case["fov"], 1, 0.5, save_to=save_to),
}


@pytest.mark.parametrize("name", sorted(FIGURE_BUILDERS))
def test_every_figure_has_a_title_and_saves_a_png(name, tmp_path):
    save_to = tmp_path / "nested" / f"{name}.png"
    fig = FIGURE_BUILDERS[name](make_case(), save_to)
    assert isinstance(fig, Figure)
    assert fig.get_suptitle().strip(), f"{name} made a figure without a title"
    assert save_to.read_bytes().startswith(PNG_SIGNATURE)


# --------------------------------------------------------------------------
# Training curves
# --------------------------------------------------------------------------

def test_plot_draws_both_losses_against_epochs_from_one():
    dice_loss, iou_loss = [0.9, 0.5, 0.3, 0.25], [0.95, 0.6, 0.45, 0.4]
    fig = plotter.plot(dice_loss, iou_loss)
    assert_titled_and_labelled(fig, 1)
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["Dice loss", "IoU loss"]
    assert legend_texts(ax) == ["Dice loss", "IoU loss"]
    for line, values in zip(lines, (dice_loss, iou_loss)):
        np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3, 4])
        np.testing.assert_array_equal(line.get_ydata(), values)


def test_plot_refuses_losses_of_different_lengths():
    with pytest.raises(ValueError, match="dice_loss has 3 epochs but iou_loss has 2"):
        plotter.plot([0.3, 0.2, 0.1], [0.4, 0.3])


def test_plot_history_splits_losses_and_scores_and_marks_the_best_epoch():
    history = {
        "train_loss": [1.0, 0.8, 0.6, 0.5, 0.4],
        "val_loss": [1.1, 0.9, 0.7, 0.75, 0.8],
        "train_dice_loss": [0.5, 0.4, 0.3, 0.25, 0.2],
        "val_dice": [0.50, 0.62, 0.71, 0.69, 0.70],  # best at epoch 3
        "lr": [1e-4] * 5,  # not plotted: neither a loss nor a validation score
    }
    fig = plotter.plot_history(history)
    assert_titled_and_labelled(fig, 2)
    loss_ax, score_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()][:3] == ["train_loss", "val_loss", "train_dice_loss"]
    assert loss_ax.get_lines()[1].get_linestyle() == "--"  # validation dashed
    assert "val_dice" in [line.get_label() for line in score_ax.get_lines()]
    for ax in (loss_ax, score_ax):
        best_lines = [line for line in ax.get_lines() if line.get_label().startswith("best epoch")]
        assert len(best_lines) == 1
        np.testing.assert_array_equal(best_lines[0].get_xdata(), [3, 3])
        assert "0.710" in best_lines[0].get_label()
        assert any(text.startswith("best epoch 3") for text in legend_texts(ax))
    assert not any("lr" == line.get_label() for ax in fig.axes for line in ax.get_lines())


def test_plot_history_with_losses_only_has_one_panel_and_no_best_epoch():
    fig = plotter.plot_history({"train_dice_loss": [0.5, 0.4], "train_iou_loss": [0.6, 0.5]})
    assert len(fig.axes) == 1
    assert not any(line.get_label().startswith("best epoch") for line in fig.axes[0].get_lines())


def test_epoch_axes_have_only_whole_number_ticks():
    figures = [plotter.plot([0.9, 0.8, 0.7], [0.95, 0.9, 0.85]),
               plotter.plot_history({"train_loss": [0.9, 0.8, 0.7], "val_dice": [0.1, 0.2, 0.3]})]
    for fig in figures:
        fig.canvas.draw()
        for ax in fig.axes:
            ticks = ax.get_xticks()
            np.testing.assert_array_equal(ticks, np.round(ticks))  # never an epoch 1.5


def test_plot_history_refuses_a_history_without_curves():
    with pytest.raises(ValueError, match="no loss keys"):
        plotter.plot_history({"lr": [1e-4, 1e-4]})


# --------------------------------------------------------------------------
# Sample grid
# --------------------------------------------------------------------------

def test_show_samples_accepts_numpy_and_torch_images_in_a_grid():
    first, second = make_case(0), make_case(1)
    torch_image = torch.from_numpy(second["image"]).permute(2, 0, 1)  # 3 x H x W, as PyTorch feeds it
    fig = plotter.show_samples(
        [first["image"], torch_image], [first["label"], second["label"]],
        predictions=[first["prob"], torch.from_numpy(second["prob"])[None]],  # 1 x H x W is accepted too
        titles=["first", "second"], fovs=[first["fov"], second["fov"]],
    )
    assert fig.get_suptitle()
    assert len(fig.axes) == 6  # 2 samples x (image, label, prediction)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["image", "label", "prediction (probability)"]
    assert fig.axes[0].get_ylabel() == "first" and fig.axes[3].get_ylabel() == "second"
    np.testing.assert_allclose(fig.axes[3].get_images()[0].get_array(), second["image"])


def test_show_samples_without_predictions_has_two_columns():
    case = make_case()
    fig = plotter.show_samples([case["image"]], [case["label"]])
    assert len(fig.axes) == 2


def test_show_samples_names_the_bad_argument():
    case = make_case()
    with pytest.raises(ValueError, match="labels has 2 entries but images has 1"):
        plotter.show_samples([case["image"]], [case["label"], case["label"]])
    with pytest.raises(ValueError, match=r"images\[0\] must be"):
        plotter.show_samples([case["label"]], [case["label"]])


# --------------------------------------------------------------------------
# Error overlay
# --------------------------------------------------------------------------

def test_error_overlay_colours_each_kind_of_pixel():
    grey = 0.8
    image = np.full((4, 4, 3), grey, dtype=np.float32)
    label = np.zeros((4, 4), dtype=bool)
    prob = np.zeros((4, 4), dtype=np.float32)
    fov = np.ones((4, 4), dtype=bool)
    label[0, 0], prob[0, 0] = True, 0.9    # true positive
    prob[0, 1] = 0.7                       # false positive
    label[0, 2], prob[0, 2] = True, 0.2    # false negative
    prob[0, 3] = 0.1                       # true negative
    prob[1, 0] = 0.5                       # exactly at the threshold: counts as vessel (>=), a false positive
    fov[3, 3], label[3, 3], prob[3, 3] = False, True, 0.9  # outside the FOV: no colour whatever it is
    fov[3, 2], prob[3, 2] = False, 0.9

    overlay = plotter.error_overlay(image, label, prob, fov, threshold=0.5)

    assert overlay.shape == (4, 4, 3)
    np.testing.assert_allclose(overlay[0, 0], WHITE)
    np.testing.assert_allclose(overlay[0, 1], VERMILLION)
    np.testing.assert_allclose(overlay[1, 0], VERMILLION)
    np.testing.assert_allclose(overlay[0, 2], SKY_BLUE)
    np.testing.assert_allclose(overlay[0, 3], [grey * plotter.INSIDE_FOV_BRIGHTNESS] * 3, atol=1e-6)
    np.testing.assert_allclose(overlay[3, 3], [grey * plotter.OUTSIDE_FOV_BRIGHTNESS] * 3, atol=1e-6)
    np.testing.assert_allclose(overlay[3, 2], overlay[3, 3])
    assert 0 < plotter.OUTSIDE_FOV_BRIGHTNESS < plotter.INSIDE_FOV_BRIGHTNESS < 1  # outside is dimmer


def test_error_overlay_without_image_or_fov_has_a_black_background():
    label = np.array([[True, False], [False, False]])
    prob = np.array([[1.0, 0.0], [0.0, 0.0]])
    overlay = plotter.error_overlay(None, label, prob)
    np.testing.assert_allclose(overlay[0, 0], WHITE)
    np.testing.assert_array_equal(overlay[1:, :], 0.0)


def test_error_overlay_colours_exactly_what_the_metrics_count():
    case = make_case()
    threshold = 0.4
    overlay = plotter.error_overlay(case["image"], case["label"], case["prob"], case["fov"], threshold)
    counts = metrics.confusion_counts(case["prob"], case["label"], case["fov"], threshold)

    def pixels_of(colour) -> int:
        return int(np.all(np.isclose(overlay, colour), axis=-1).sum())

    assert counts.tp > 0 and counts.fp > 0 and counts.fn > 0  # the case exercises every colour
    assert (pixels_of(WHITE), pixels_of(VERMILLION), pixels_of(SKY_BLUE)) == (counts.tp, counts.fp, counts.fn)


def test_error_overlay_accepts_torch_and_refuses_logits():
    case = make_case()
    from_torch = plotter.error_overlay(
        torch.from_numpy(case["image"]).permute(2, 0, 1), torch.from_numpy(case["label"]),
        torch.from_numpy(case["prob"])[None], torch.from_numpy(case["fov"]),
    )
    np.testing.assert_array_equal(from_torch, plotter.error_overlay(case["image"], case["label"], case["prob"], case["fov"]))
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\]"):
        plotter.error_overlay(case["image"], case["label"], case["prob"] * 10 - 5)
    with pytest.raises(ValueError, match="fov has size"):
        plotter.error_overlay(case["image"], case["label"], case["prob"], case["fov"][:-1])


def test_plot_error_overlay_legend_names_colours_with_counts():
    case = make_case()
    counts = metrics.confusion_counts(case["prob"], case["label"], case["fov"], 0.3)
    fig = plotter.plot_error_overlay(case["image"], case["label"], case["prob"], case["fov"], threshold=0.3)
    assert "0.30" in fig.get_suptitle()
    legend = fig.axes[0].get_legend()
    texts = [text.get_text() for text in legend.get_texts()]
    assert texts == [f"true positive: {counts.tp:,}", f"false positive: {counts.fp:,}",
                     f"false negative: {counts.fn:,}"]
    colours = [tuple(patch.get_facecolor()[:3]) for patch in legend.get_patches()]
    np.testing.assert_allclose(colours, [WHITE, VERMILLION, SKY_BLUE])
    titled = plotter.plot_error_overlay(case["image"], case["label"], case["prob"], title="Image_01L")
    assert titled.get_suptitle() == "Image_01L"


# --------------------------------------------------------------------------
# ROC and precision-recall
# --------------------------------------------------------------------------

def test_plot_roc_pr_shows_aucs_operating_points_and_reference_points():
    good, noisy = make_case(0), make_case(1)
    noisy_prob = np.clip(noisy["prob"] + np.random.default_rng(2).uniform(0, 0.5, noisy["prob"].shape), 0, 1)
    histograms = {
        "good": metrics.score_histogram(good["prob"], good["label"], good["fov"]),
        "noisy": metrics.score_histogram(noisy_prob, noisy["label"], noisy["fov"]),
    }
    observer = metrics.scores_from_counts(metrics.confusion_counts(good["label"], good["label"], good["fov"]))
    fig = plotter.plot_roc_pr(histograms, operating_points={"good": 0.45},
                              reference_points={"2nd observer": observer})

    assert_titled_and_labelled(fig, 2)
    roc_ax, pr_ax = fig.axes
    for name, histogram in histograms.items():
        assert f"{name} (AUC {metrics.auc_roc(histogram):.3f})" in legend_texts(roc_ax)
        assert f"{name} (AUC {metrics.auc_pr(histogram):.3f})" in legend_texts(pr_ax)

    # The marked operating point is exactly what binarising at 0.45 scores.
    expected = metrics.scores_from_counts(metrics.confusion_counts(good["prob"], good["label"], good["fov"], 0.45))
    roc_point, = [line for line in roc_ax.get_lines() if line.get_label() == "good at threshold 0.45"]
    pr_point, = [line for line in pr_ax.get_lines() if line.get_label() == "good at threshold 0.45"]
    np.testing.assert_allclose([roc_point.get_xdata()[0], roc_point.get_ydata()[0]],
                               [1 - expected["specificity"], expected["sensitivity"]])
    np.testing.assert_allclose([pr_point.get_xdata()[0], pr_point.get_ydata()[0]],
                               [expected["sensitivity"], expected["precision"]])

    observer_point, = [line for line in roc_ax.get_lines() if line.get_label() == "2nd observer"]
    assert (observer_point.get_xdata()[0], observer_point.get_ydata()[0]) == (0.0, 1.0)


def test_plot_roc_pr_operating_point_on_a_tied_score_matches_the_metrics():
    label = np.array([True, True, False, False, False, True])
    prob = np.array([0.9, 0.5, 0.5, 0.2, 0.7, 0.1], dtype=np.float32)
    fig = plotter.plot_roc_pr({"m": metrics.score_histogram(prob, label)}, operating_points={"m": 0.5})
    expected = metrics.scores_from_counts(metrics.confusion_counts(prob, label, threshold=0.5))
    point, = [line for line in fig.axes[0].get_lines() if line.get_label() == "m at threshold 0.50"]
    np.testing.assert_allclose([point.get_xdata()[0], point.get_ydata()[0]],
                               [1 - expected["specificity"], expected["sensitivity"]])


def test_plot_roc_pr_refuses_an_operating_point_for_an_unknown_model():
    case = make_case()
    with pytest.raises(ValueError, match="operating_points name models \\['Frangi'\\]"):
        plotter.plot_roc_pr({"LinkNet": _histogram(case)}, operating_points={"Frangi": 0.5})


# --------------------------------------------------------------------------
# Widgets: the plain views and the explorers built on them
# --------------------------------------------------------------------------

def slider_descriptions(widget) -> list[str]:
    return [child.description for child in widget.children
            if isinstance(child, (IntSlider, FloatSlider, SelectionSlider))]


def test_threshold_view_reports_the_scores_at_its_threshold():
    case = make_case()
    fig = widgets.threshold_view(case["prob"], case["label"], case["fov"], case["image"], threshold=0.35)
    scores = metrics.scores_from_counts(metrics.confusion_counts(case["prob"], case["label"], case["fov"], 0.35))
    title = fig.get_suptitle()
    assert "0.35" in title
    assert f"Dice {scores['f1']:.3f}" in title and f"IoU {scores['iou']:.3f}" in title
    assert f"accuracy {scores['accuracy']:.3f}" in title
    bars = fig.axes[1].patches
    np.testing.assert_allclose([bar.get_width() for bar in bars], [scores["f1"], scores["iou"], scores["accuracy"]])
    assert fig.axes[1].get_xlabel() and fig.axes[1].get_ylabel()


def test_threshold_explorer_has_a_threshold_slider_that_redraws():
    case = make_case()
    explorer = widgets.threshold_explorer(case["prob"], case["label"], case["fov"], case["image"])
    slider, = [child for child in explorer.children if isinstance(child, SelectionSlider)]
    values = [value for _, value in slider.options]
    assert (slider.description, values[0], values[-1]) == ("threshold", 0.05, 0.95)
    explorer.update()  # ipywidgets 8 draws when the explorer is made, 7 when it is first shown
    assert isinstance(explorer.result, Figure) and "0.50" in explorer.result.get_suptitle()
    slider.value = 0.3
    assert "0.30" in explorer.result.get_suptitle()


def test_shifted_prediction_moves_the_label_without_wrapping():
    label = np.zeros((3, 5), dtype=bool)
    label[:, 0] = label[:, 4] = True
    moved_right = widgets.shifted_prediction(label, 1, blur_sigma=0)
    np.testing.assert_array_equal(moved_right[0], [0, 1, 0, 0, 0])
    moved_left = widgets.shifted_prediction(label, -2, blur_sigma=0)
    np.testing.assert_array_equal(moved_left[0], [0, 0, 1, 0, 0])
    blurred = widgets.shifted_prediction(label, 0, blur_sigma=1.0)
    assert blurred.min() >= 0 and blurred.max() <= 1 and 0 < blurred[0, 1] < 1
    with pytest.raises(ValueError, match="shift 5 moves the label"):
        widgets.shifted_prediction(label, 5, blur_sigma=0)


def test_shift_view_shows_dice_collapsing_while_accuracy_stays_high():
    case = make_case()
    perfect = widgets.shift_view(case["label"], case["fov"], shift=0, threshold=0.5, blur_sigma=0)
    assert "Dice 1.000" in perfect.get_suptitle()
    shifted = metrics.scores_from_counts(metrics.confusion_counts(
        widgets.shifted_prediction(case["label"], 2, blur_sigma=0), case["label"], case["fov"]))
    assert shifted["f1"] < 0.5 < 0.8 < shifted["accuracy"]  # the lesson of the losses notebook


def test_shift_explorer_has_its_three_sliders():
    case = make_case()
    explorer = widgets.shift_explorer(case["label"], case["fov"])
    assert slider_descriptions(explorer) == ["shift (px)", "threshold", "blur sigma"]
    explorer.update()  # ipywidgets 8 draws when the explorer is made, 7 when it is first shown
    assert isinstance(explorer.result, Figure)


def test_browse_predictions_pages_through_samples():
    first, second = make_case(0), make_case(1)
    samples = [
        Sample(image=first["image"], label=first["label"], fov=first["fov"], name="Image_01L"),
        (second["image"], second["label"], second["fov"]),
    ]
    browser = widgets.browse_predictions(samples, [first["prob"], second["prob"]], threshold=0.4)
    assert slider_descriptions(browser) == ["image", "threshold"]
    index_slider, = [child for child in browser.children if isinstance(child, IntSlider)]
    assert (index_slider.min, index_slider.max) == (0, 1)
    browser.update()  # ipywidgets 8 draws when the browser is made, 7 when it is first shown
    assert browser.result.get_suptitle().startswith("Image_01L")
    index_slider.value = 1
    assert browser.result.get_suptitle().startswith("image 1")
    with pytest.raises(ValueError, match="samples has 2 entries but probs has 1"):
        widgets.browse_predictions(samples, [first["prob"]])


# The architecture diagram of notebook 01 --------------------------------------


def _linknet_shapes(size: int):
    from retina_lib.model import LinkNet
    from retina_lib.model_stats import LINKNET_STAGES, on_meta, record_shapes

    return record_shapes(on_meta(LinkNet), LINKNET_STAGES, size)


def test_linknet_diagram_shows_every_stage_with_its_recorded_shape(tmp_path):
    fig = plotter.plot_linknet_diagram(_linknet_shapes(512), 512, save_to=tmp_path / "diagram.png")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    texts = [text.get_text() for text in ax.texts]
    boxes = [text for text in texts if "\n" in text]
    assert len(boxes) == 14  # the input, 6 encoder-side stages, 7 decoder-side stages
    assert "input image\n3 x 512 x 512" in boxes
    assert "encoder4, /2\n512 x 16 x 16" in boxes
    assert "decoder1\n64 x 128 x 128" in boxes
    assert "full-conv 2x2, x2: logits\n1 x 512 x 512" in boxes
    assert texts.count("+") == 4  # one addition per link, encoders 1 to 4
    assert (tmp_path / "diagram.png").read_bytes().startswith(PNG_SIGNATURE)


def test_linknet_diagram_follows_the_input_size():
    boxes = [text.get_text() for text in plotter.plot_linknet_diagram(_linknet_shapes(256), 256).axes[0].texts]
    assert "encoder4, /2\n512 x 8 x 8" in boxes and "input image\n3 x 256 x 256" in boxes


def test_linknet_diagram_names_the_stages_it_lacks():
    shapes = _linknet_shapes(256)
    del shapes["decoder2"], shapes["pool"]
    with pytest.raises(ValueError, match=r"lacks the stages \['pool', 'decoder2'\]"):
        plotter.plot_linknet_diagram(shapes, 256)
