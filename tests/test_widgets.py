"""The explorers behave the same under whatever ipywidgets is installed (8.x here, 7.7.1 on Colab).

CI runs this file in an environment with ipywidgets 8 and in one with Colab's
7.7.1. Nothing here depends on when a version first draws (8 when the
explorer is made, 7 when it is first shown): tests call ``update()`` or
move a slider first.
"""
from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed; must come before pyplot is imported

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
from ipywidgets import FloatSlider, IntSlider, SelectionSlider
from matplotlib.figure import Figure

from retina_lib import metrics, widgets
from retina_lib.data.sample import Sample
from test_plotter import PNG_SIGNATURE, close_figures, make_case  # noqa: F401 (close_figures is an autouse fixture)

CHOSEN = 0.4773  # a threshold chosen on a training split, off the 0.05 grid


def two_pages() -> tuple[list, list]:
    first, second = make_case(0), make_case(1)
    samples = [Sample(image=first["image"], label=first["label"], fov=first["fov"], name="Image_11L"),
               (second["image"], second["label"], second["fov"])]
    return samples, [first["prob"], second["prob"]]


def threshold_slider(explorer) -> SelectionSlider:
    slider, = [child for child in explorer.children if getattr(child, "description", "") == "threshold"]
    return slider


def bar_values(figure: Figure) -> list[float]:
    return [bar.get_width() for bar in figure.axes[1].patches]


def test_ipywidgets_version_is_one_the_course_supports() -> None:
    major = int(ipywidgets.__version__.split(".")[0])
    assert major in (7, 8), f"ipywidgets {ipywidgets.__version__}: the course is tested with 7.7.1 and 8.x"


# --- the threshold slider can return to a chosen threshold ---------------------------------


def test_threshold_slider_starts_at_the_chosen_threshold_and_offers_the_grid() -> None:
    samples, probs = two_pages()
    slider = threshold_slider(widgets.browse_predictions(samples, probs, threshold=CHOSEN))
    values = [value for _, value in slider.options]
    labels = [label for label, _ in slider.options]
    assert slider.value == CHOSEN and CHOSEN in values
    assert {0.05, 0.45, 0.5, 0.95} <= set(values) and values == sorted(values)
    assert labels[values.index(CHOSEN)] == "0.4773" and labels[values.index(0.5)] == "0.50"


def test_threshold_slider_moves_away_and_back_to_the_chosen_threshold() -> None:
    samples, probs = two_pages()
    browser = widgets.browse_predictions(samples, probs, threshold=CHOSEN)
    slider = threshold_slider(browser)
    slider.value = 0.6
    assert "threshold 0.60" in browser.result.get_suptitle()
    slider.value = CHOSEN
    assert "threshold 0.4773" in browser.result.get_suptitle()
    expected = metrics.scores_from_counts(metrics.confusion_counts(probs[0], samples[0].label, samples[0].fov, CHOSEN))
    np.testing.assert_allclose(bar_values(browser.result), [expected["f1"], expected["precision"],
                                                            expected["sensitivity"]])


def test_a_threshold_on_the_grid_adds_no_extra_step() -> None:
    case = make_case()
    slider = threshold_slider(widgets.threshold_explorer(case["prob"], case["label"], case["fov"], threshold=0.5))
    assert len(slider.options) == len(widgets.THRESHOLD_GRID) and slider.value == 0.5


def test_a_threshold_outside_0_1_is_refused() -> None:
    samples, probs = two_pages()
    with pytest.raises(ValueError, match="threshold must lie in \\[0, 1\\], got 1.5"):
        widgets.browse_predictions(samples, probs, threshold=1.5)


@pytest.mark.parametrize("threshold", [2, -0.1, 1.5, float("nan"), "0.5"])
def test_every_view_refuses_a_threshold_outside_0_1_like_the_explorers(threshold) -> None:
    """Issue 18, case 19: threshold_view(threshold=2) drew a plausible figure with no vessel predicted."""
    case = make_case()
    samples, probs = two_pages()
    for draw in (lambda: widgets.threshold_view(case["prob"], case["label"], case["fov"], threshold=threshold),
                 lambda: widgets.shift_view(case["label"], case["fov"], threshold=threshold),
                 lambda: widgets.prediction_view(samples, probs, threshold=threshold),
                 lambda: widgets.threshold_explorer(case["prob"], case["label"], case["fov"], threshold=threshold)):
        with pytest.raises(ValueError, match=r"threshold must lie in \[0, 1\], got "):
            draw()
    assert not plt.get_fignums(), "no figure was drawn"


@pytest.mark.parametrize("threshold, text", [(0.5, "0.50"), (0.35, "0.35"), (0.4773, "0.4773"),
                                             (0.4248046875, "0.4248"), (1.0, "1.00")])
def test_threshold_text(threshold: float, text: str) -> None:
    assert widgets.threshold_text(threshold) == text


# --- the prediction browser shows F1, precision and sensitivity -----------------------------


def test_prediction_view_shows_f1_precision_and_sensitivity_of_that_image() -> None:
    samples, probs = two_pages()
    figure = widgets.prediction_view(samples, probs, index=1, threshold=0.35)
    expected = metrics.scores_from_counts(metrics.confusion_counts(probs[1], samples[1][1], samples[1][2], 0.35))
    assert [label.get_text() for label in figure.axes[1].get_yticklabels()] == ["F1", "precision", "sensitivity"]
    np.testing.assert_allclose(bar_values(figure), [expected["f1"], expected["precision"], expected["sensitivity"]])
    title = figure.get_suptitle()
    assert title.startswith("image 1: errors at threshold 0.35")
    assert f"F1 {expected['f1']:.3f}" in title and f"precision {expected['precision']:.3f}" in title
    assert f"sensitivity {expected['sensitivity']:.3f}" in title


def test_prediction_view_refuses_an_index_past_the_end() -> None:
    samples, probs = two_pages()
    with pytest.raises(ValueError, match="index 2 is outside 0..1"):
        widgets.prediction_view(samples, probs, index=2)


# --- every explorer has a static view that draws the same figure -----------------------------


def explorers_and_views() -> list[tuple[str, object, object]]:
    """(name, explorer, the static view at the explorer's starting values)."""
    case = make_case()
    samples, probs = two_pages()
    return [
        ("threshold", widgets.threshold_explorer(case["prob"], case["label"], case["fov"], case["image"], CHOSEN),
         lambda: widgets.threshold_view(case["prob"], case["label"], case["fov"], case["image"], CHOSEN)),
        ("shift", widgets.shift_explorer(case["label"], case["fov"]),
         lambda: widgets.shift_view(case["label"], case["fov"])),
        ("browse", widgets.browse_predictions(samples, probs, CHOSEN),
         lambda: widgets.prediction_view(samples, probs, 0, CHOSEN)),
    ]


@pytest.mark.slow
def test_each_explorer_starts_on_the_figure_of_its_static_view() -> None:
    for name, explorer, view in explorers_and_views():
        explorer.update()
        static = view()
        assert explorer.result.get_suptitle() == static.get_suptitle(), name
        np.testing.assert_allclose(bar_values(explorer.result), bar_values(static), err_msg=name)


def test_each_slider_move_displays_one_figure_and_keeps_none_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Undetached, every figure drawn for a slider position would pile up in pyplot and be
    shown again below the next cell the learner runs."""
    shown: list[object] = []
    monkeypatch.setattr(widgets, "display", lambda *objects, **options: shown.extend(objects))
    case = make_case()
    explorer = widgets.threshold_explorer(case["prob"], case["label"], case["fov"])
    slider = threshold_slider(explorer)
    shown.clear()  # ipywidgets 8 has drawn once already, 7 has not
    for value in (0.3, 0.4, 0.6, 0.7) * 6:
        slider.value = value
    assert len(shown) == 24 and all(isinstance(figure, Figure) for figure in shown)
    assert plt.get_fignums() == [], "the explorer's figures are not left open in pyplot"


def test_explorers_work_with_a_google_colab_module_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """On Colab ``google.colab`` is importable; nothing may change or break because of it."""
    google = types.ModuleType("google")
    colab = types.ModuleType("google.colab")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    reloaded = importlib.reload(widgets)
    try:
        case = make_case()
        samples, probs = two_pages()
        for explorer in (reloaded.threshold_explorer(case["prob"], case["label"], case["fov"]),
                         reloaded.shift_explorer(case["label"], case["fov"]),
                         reloaded.browse_predictions(samples, probs, CHOSEN)):
            slider = threshold_slider(explorer)
            slider.value = 0.3
            assert isinstance(explorer.result, Figure) and "threshold 0.30" in explorer.result.get_suptitle()
    finally:
        monkeypatch.undo()
        importlib.reload(widgets)


@pytest.mark.slow
def test_in_a_kernel_the_figure_goes_into_the_explorer_and_nowhere_else(tmp_path) -> None:
    """Run a small notebook in a real kernel with matplotlib's inline backend, as Jupyter and Colab do.

    nbclient records what the explorer's Output widget receives. After the
    slider moved three times the widget must hold one figure (the latest),
    and no figure may leak into a cell's own output (which is where figures
    left open in pyplot end up, below the next cell run).
    """
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    repository = str(Path(__file__).resolve().parents[1])
    cells = [
        f"import sys\nsys.path.insert(0, {repository!r})\n%matplotlib inline\n"
        "import numpy as np\nfrom retina_lib import widgets\n"
        "label = np.eye(32, dtype=bool)\nprob = np.clip(0.7 * label + 0.2, 0, 1)",
        "explorer = widgets.threshold_explorer(prob, label, threshold=0.4773)\nexplorer",
        "slider = [child for child in explorer.children if getattr(child, 'description', '') == 'threshold'][0]\n"
        "for value in (0.3, 0.6, 0.4773):\n    slider.value = value\n"
        "print(explorer.result.get_suptitle().splitlines()[0])",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])
    from nbclient.output_widget import OutputWidget

    class RecordingOutputWidget(OutputWidget):
        """nbclient's stand-in for a front end's Output widget, without its echo to the kernel.

        After every output, nbclient's own version sends the widget's new state to
        the kernel on the shell channel while it is waiting on that channel for the
        cell's reply, and that wait sometimes never ends (nbclient issue #312, seen
        here too). The test needs only what the widget received, so nothing is sent.
        """

        def sync_state(self) -> None:
            pass

    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3", store_widget_state=True,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.widget_registry["@jupyter-widgets/output"]["OutputModel"] = RecordingOutputWidget
    client.execute()
    assert notebook.cells[2].outputs[0]["text"].strip() == "Prediction binarised at threshold 0.4773"
    for cell in notebook.cells:
        assert not [output for output in cell.outputs if "image/png" in output.get("data", {})], cell.source
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    held = [output for model in state.values() if model["model_name"] == "OutputModel"
            for output in model["state"].get("outputs", [])]
    assert [sorted(output["data"]) for output in held] == [["image/png", "text/plain"]]


# --------------------------------------------------------------------------
# The plain views and the explorers built on them
# --------------------------------------------------------------------------

VIEW_BUILDERS = {
    "threshold_view": lambda case, save_to: widgets.threshold_view(
        case["prob"], case["label"], case["fov"], case["image"], 0.5, save_to=save_to),
    "shift_view": lambda case, save_to: widgets.shift_view(case["label"], case["fov"], 1, 0.5, save_to=save_to),
}


@pytest.mark.parametrize("name", sorted(VIEW_BUILDERS))
def test_every_view_has_a_title_and_saves_a_png(name, tmp_path):
    save_to = tmp_path / "nested" / f"{name}.png"
    fig = VIEW_BUILDERS[name](make_case(), save_to)
    assert isinstance(fig, Figure)
    assert fig.get_suptitle().strip(), f"{name} made a figure without a title"
    assert save_to.read_bytes().startswith(PNG_SIGNATURE)


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
    with pytest.raises(ValueError, match="samples has 2 entries but probabilities has 1"):
        widgets.browse_predictions(samples, [first["prob"]])
