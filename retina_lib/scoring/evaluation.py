"""Score a trained network on a test split the way the literature does.

The conventions (notebook 04, sections 2 and 4, shows them at work), and how :func:`score_network` follows them:

* **Native resolution, inside the field of view.** Every test image is
  predicted at its own size (:func:`retina_lib.scoring.inference.predict`) and only
  FOV pixels are counted, against the first human observer's label.
* **The threshold comes from training data.** F1, IoU, accuracy and the other
  threshold-based scores depend on where the probability map is cut. Choosing
  that cut on the test labels would tune the result to the very answers it is
  judged by, so the threshold that maximises the pooled F1 over the *training*
  images is applied, unchanged, to the test images. (An explicit threshold,
  for example one chosen on a validation split, may be given instead.)
* **Pooled and per image.** The headline numbers pool all test FOV pixels as
  one big image; ``per_image`` lists each image's own scores (see
  :func:`retina_lib.metrics.dataset_metrics` for the difference).
* **References.** The second human observer (where the dataset has one) shows
  how far two experts agree; the Frangi filter shows what needs no learning.

Memory stays bounded on large datasets (HRF: 45 images of 8 million pixels):
each map is scored as soon as it is made and only its counts and its
:class:`~retina_lib.metrics.ScoreHistogram` are kept. For that, maps are
**rounded to float16** before scoring (about 15 000 distinct values in [0, 1],
3 significant digits), so that a histogram never has more entries than that,
however many pixels it summarises. All scores, including the chosen threshold,
refer to these rounded maps, so they agree with each other exactly.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
from torch import nn
from tqdm.auto import tqdm

from retina_lib.baselines import frangi_vesselness
from retina_lib.data.sample import Sample
from retina_lib.errors import UserInputError
from retina_lib.scoring.inference import predict
from retina_lib.metrics import (
    METRIC_NAMES,
    ConfusionCounts,
    ScoreHistogram,
    auc_pr,
    best_f1_threshold,
    confusion_counts,
    metrics_from,
    score_histogram,
    scores_from_counts,
)

#: A second observer's label is a hard 0/1 map: any threshold in (0, 1] gives
#: the same binary map, and 0.5 is reported. Its AUC-ROC is that of a single
#: operating point, (sensitivity + specificity) / 2.
SECOND_OBSERVER_THRESHOLD = 0.5


def rounded_scores(probability: np.ndarray) -> np.ndarray:
    """``probability`` rounded to float16 (and back to float32): the map that is scored (see module docstring).

    Taught in notebook 04, section 4.
    """
    return np.asarray(probability).astype(np.float16).astype(np.float32)


def _check_labelled(sample: Sample, where: str) -> None:
    """Refuse a sample without a vessel label, naming it: it cannot be scored."""
    if sample.label is None:
        raise UserInputError(f"{where}: sample {sample.name!r} has no vessel label, so it cannot be "
                         f"scored (e.g. DRIVE's test.zip from grand-challenge ships no 1st_manual)")


class Scorecard:
    """Collects one method's scores image by image: per-image metrics and the pooled sums.

    Only counts and histograms are kept, never the maps themselves.
    """

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.per_image: list[dict[str, Any]] = []
        self.counts = ConfusionCounts(0, 0, 0, 0)
        self.histogram: Optional[ScoreHistogram] = None

    def add(self, sample: Sample, probability: np.ndarray) -> None:
        """Score one map of ``sample`` (probabilities, or a bool mask) inside its FOV."""
        counts = confusion_counts(probability, sample.label, sample.fov, self.threshold)
        histogram = score_histogram(probability, sample.label, sample.fov)
        scores = image_metrics(counts, histogram, self.threshold, sample.name)
        self.per_image.append({"name": sample.name, **scores})
        self.counts = self.counts + counts
        self.histogram = histogram if self.histogram is None else self.histogram + histogram

    def result(self) -> dict[str, Any]:
        """Pooled metrics, plus ``per_image`` and ``n_images``."""
        if self.histogram is None:
            raise ValueError("no image was scored")
        return {**metrics_from(self.counts, self.histogram, self.threshold),
                "per_image": self.per_image, "n_images": len(self.per_image)}


def image_metrics(counts: ConfusionCounts, histogram: ScoreHistogram, threshold: float,
                  name: str) -> dict[str, Optional[float]]:
    """One image's metrics; its AUCs are None (with a warning naming it) where they are undefined.

    A label without vessel pixels inside the FOV (or without background) has
    no ROC curve: there is no pair of a vessel and a background pixel to
    rank. That image's own AUC-ROC (and, without vessels, AUC-PR) is then
    undefined, but its pixels still count in the pooled scores, which are
    well defined as long as some image has vessels.
    """
    if histogram.total_positives and histogram.total_negatives:
        return metrics_from(counts, histogram, threshold)
    missing = "vessel" if not histogram.total_positives else "background"
    undefined = "AUC-ROC and AUC-PR are" if not histogram.total_positives else "AUC-ROC is"
    warnings.warn(f"image {name!r}: its label has no {missing} pixels inside the FOV, so its own {undefined} "
                  f"undefined (None in per_image); it still counts in the pooled scores", stacklevel=3)
    scores: dict[str, Optional[float]] = dict(scores_from_counts(counts))
    scores["auc_roc"] = None
    scores["auc_pr"] = auc_pr(histogram) if histogram.total_positives else None
    scores["threshold"] = float(threshold)
    return {metric: scores[metric] for metric in METRIC_NAMES}


def _predict_sample(model: nn.Module, sample: Sample, tta: bool) -> np.ndarray:
    """:func:`predict` for one sample; an image it cannot take (too small, say) is named in the error."""
    try:
        return predict(model, sample.image, tta=tta)
    except UserInputError as error:
        raise UserInputError(f"sample {sample.name!r}: {error}") from error


def _check_threshold(threshold: float) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) \
            or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a probability between 0 and 1, got {threshold!r}")
    return float(threshold)


def choose_thresholds(
    model: Optional[nn.Module],
    train_samples: Sequence[Sample],
    *,
    frangi: bool,
    tta: bool = False,
    progress: bool = True,
) -> dict[str, float]:
    """The best-F1 thresholds on the training images, pooled over their FOV pixels.

    Returns ``{"model": t}`` if a model is given and ``{"frangi": t}`` if
    ``frangi``, both computed in one pass over ``train_samples`` (each image
    is read once). Ties go to the highest threshold
    (:func:`~retina_lib.metrics.best_f1_threshold`).
    """
    histograms: dict[str, ScoreHistogram] = {}
    for sample in tqdm(train_samples, desc="thresholds on train", disable=not progress):
        _check_labelled(sample, "train_samples")
        maps = {}
        if model is not None:
            maps["model"] = _predict_sample(model, sample, tta)
        if frangi:
            maps["frangi"] = frangi_vesselness(sample.image, sample.fov)
        for name, probability in maps.items():
            histogram = score_histogram(rounded_scores(probability), sample.label, sample.fov)
            histograms[name] = histogram + histograms[name] if name in histograms else histogram
    if not histograms:
        raise ValueError("choose_thresholds: train_samples is empty (or nothing was asked for)")
    return {name: best_f1_threshold(histogram)[0] for name, histogram in histograms.items()}


def score_network(
    model: nn.Module,
    test_samples: Sequence[Sample],
    *,
    train_samples: Optional[Sequence[Sample]] = None,
    threshold: Optional[float] = None,
    tta: bool = False,
    with_baselines: bool = True,
    progress: bool = True,
    return_probabilities: bool = False,
) -> dict[str, Any]:
    """Score ``model`` on ``test_samples``: pooled and per-image metrics inside the FOV.

    Args:
        model: a network returning one logit map (e.g. a trained LinkNet).
        test_samples: labelled samples (a list, or a lazy dataset: each sample
            is read once).
        train_samples: labelled training samples; the model's threshold is the
            one maximising the pooled F1 over them, and the Frangi baseline's
            threshold is chosen the same way.
        threshold: a fixed threshold for the model instead (it wins over
            ``train_samples``, which are then used only for Frangi). One of
            ``threshold`` and ``train_samples`` is required: there is no
            default, because 0.5 is rarely the best cut and the test labels
            must not be used to find a better one.
        tta: average predictions over flips (4 x slower).
        with_baselines: also score the second observer (on the test samples
            that have one) and Frangi (only when ``train_samples`` are given,
            since its threshold must come from them too). Frangi runs on the
            CPU: about 1 s per CHASE_DB1 image, 30 s per HRF image.
        progress: show progress bars.
        return_probabilities: also return the model's probability maps of the
            test images (float32, not rounded), for plots. Costs 4 bytes per pixel.

    Returns:
        ``f1, iou, accuracy, sensitivity, specificity, precision, auc_roc,
        auc_pr, threshold`` (pooled), ``per_image`` (a list of dicts with
        ``name`` and the same keys; an image whose label has no vessel pixels
        in its FOV has ``auc_roc`` and ``auc_pr`` None, see
        :func:`image_metrics`) and ``n_images``. Where computed,
        ``second_observer`` and ``frangi`` hold dicts of the same form.
        With ``return_probabilities``, ``probabilities`` (a list of arrays).

    Taught in notebook 04, section 2.
    """
    if threshold is None and train_samples is None:
        raise ValueError("score_network needs train_samples (to choose the threshold that maximises F1 on "
                         "training data) or an explicit threshold=...; choosing it on the test labels "
                         "would inflate the test scores, and 0.5 is rarely the best cut")
    if len(test_samples) == 0:
        raise UserInputError("test_samples is empty: there is nothing to evaluate")
    with_frangi = with_baselines and train_samples is not None

    thresholds = {} if threshold is None else {"model": _check_threshold(threshold)}
    if threshold is None or with_frangi:
        thresholds.update(choose_thresholds(
            model if threshold is None else None, train_samples,
            frangi=with_frangi, tta=tta, progress=progress,
        ))

    model_card = Scorecard(thresholds["model"])
    frangi_card = Scorecard(thresholds["frangi"]) if with_frangi else None
    observer_card = Scorecard(SECOND_OBSERVER_THRESHOLD) if with_baselines else None
    probabilities = []
    for sample in tqdm(test_samples, desc="evaluating on test", disable=not progress):
        _check_labelled(sample, "test_samples")
        probability = _predict_sample(model, sample, tta)
        model_card.add(sample, rounded_scores(probability))
        if return_probabilities:
            probabilities.append(probability)
        if frangi_card is not None:
            frangi_card.add(sample, rounded_scores(frangi_vesselness(sample.image, sample.fov)))
        if observer_card is not None and sample.second_label is not None:
            observer_card.add(sample, sample.second_label)

    results = model_card.result()
    if observer_card is not None and observer_card.per_image:
        results["second_observer"] = observer_card.result()
    if frangi_card is not None:
        results["frangi"] = frangi_card.result()
    if return_probabilities:
        results["probabilities"] = probabilities
    return results


#: Row labels of :func:`format_table` for the reference methods, in order.
REFERENCE_ROWS = {"second_observer": "2nd observer", "frangi": "Frangi"}

_COLUMNS = {"f1": "F1", "iou": "IoU", "accuracy": "Acc", "sensitivity": "Se", "specificity": "Sp",
            "precision": "Pr", "auc_roc": "AUC-ROC", "auc_pr": "AUC-PR", "threshold": "threshold"}

#: Columns that need a probability map; a binary tracing has none of them.
_NOT_FOR_A_BINARY_MAP = ("threshold", "auc_roc", "auc_pr")


def format_table(results: dict[str, Any], model_name: str = "LinkNet") -> str:
    """The pooled scores of :func:`score_network` as a plain-text table, one row per method.

    Rows: the model, then the second observer and Frangi where present.
    The second observer's tracing is binary: it has one operating point (its Se
    and Sp), not a curve, so its threshold and its AUCs are shown as "-" (an
    "AUC" of one point is not comparable with the AUC of a probability map).

    Taught in notebook 04, section 2.
    """
    rows = [("model", model_name, results)] + [
        (key, label, results[key]) for key, label in REFERENCE_ROWS.items() if key in results
    ]
    name_width = max(len(label) for _, label, _ in rows)
    lines = [" " * name_width + "".join(f"{title:>10}" for title in _COLUMNS.values())]
    for key, label, scores in rows:
        cells = ["-" if column in _NOT_FOR_A_BINARY_MAP and key == "second_observer" else f"{scores[column]:.4f}"
                 for column in _COLUMNS]
        lines.append(f"{label:<{name_width}}" + "".join(f"{cell:>10}" for cell in cells))
    lines.append(f"pooled over the FOV pixels of {results['n_images']} test images")
    if "second_observer" in results:
        lines.append("2nd observer: a binary tracing, one operating point (its Se and Sp), no curve and so no AUC")
    return "\n".join(lines)
