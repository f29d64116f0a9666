"""The standard retinal-vessel evaluation: pixel counts, scores and curves.

Every function here compares a *probability map* (floats in [0, 1], one per
pixel) with the *ground truth* (bool, True = vessel), counting only pixels
inside the *field of view* (FOV, bool; None = every pixel counts). This is the
convention of the retinal literature: the black border around the fundus is
trivially "no vessel" and would inflate accuracy and specificity.

Two kinds of numbers come out:

* **Threshold-based** scores (accuracy, sensitivity, specificity, precision,
  F1 = Dice, IoU) binarise the map with ``probability >= threshold`` and count
  true/false positives/negatives (:func:`confusion_counts`,
  :func:`scores_from_counts`).
* **Threshold-free** scores (AUC-ROC, AUC-PR) look at every threshold at once.
  They are computed *exactly* from a :class:`ScoreHistogram`: the sorted
  distinct scores with the number of vessel and background pixels at each.
  Pixels with equal scores cannot be separated by any threshold, so they form
  one operating point; the histogram makes that explicit. Histograms of
  several images merge with ``+`` (pooling), so a whole dataset never needs its
  pixels in memory at once, only its distinct scores.

Scores are compared in float32 everywhere: a float64 map (or threshold) is
rounded once to float32, so counts, histograms and thresholds always agree.

A hard mask (for example the second human observer) is just a probability map
of 0s and 1s: pass it as a bool array. Its AUC-ROC is still well defined: the
ROC has a single point between (0, 0) and (1, 1), and the area equals
(sensitivity + specificity) / 2 at threshold 0.5.

Inputs may be numpy arrays or torch tensors (converted with
``.detach().cpu().numpy()``); only numpy is needed here.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Optional

import numpy as np
import numpy.typing as npt

METRIC_NAMES = (
    "f1", "iou", "accuracy", "sensitivity", "specificity", "precision",
    "auc_roc", "auc_pr", "threshold",
)
"""The keys of every dict returned by :func:`vessel_metrics` and friends, in order."""


# --------------------------------------------------------------------------
# Input checking: turn (probability, label, fov) into the pixels that count.
# --------------------------------------------------------------------------

def _to_numpy(array: npt.ArrayLike) -> np.ndarray:
    """A numpy view of a numpy array or torch tensor (torch is not imported here)."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _as_bool_mask(array: np.ndarray, name: str) -> np.ndarray:
    """``array`` as bool, refusing anything but 0/1 values (no silent thresholding)."""
    if array.dtype == bool:
        return array
    if not np.isin(array, (0, 1)).all():
        raise ValueError(f"{name} must be a bool mask (or contain only 0 and 1); "
                         f"got dtype {array.dtype} with other values")
    return array.astype(bool)


def _pixels_inside_fov(
    probability: npt.ArrayLike, label: npt.ArrayLike, fov: Optional[npt.ArrayLike]
) -> tuple[np.ndarray, np.ndarray]:
    """The float32 scores and bool labels of the pixels inside the FOV, as 1-D arrays.

    All the checks live here, so every public function rejects bad input the
    same way: mismatched shapes, probabilities outside [0, 1] (or NaN),
    non-binary labels and an empty FOV are errors, never guessed around.
    """
    probability, label = _to_numpy(probability), _to_numpy(label)
    fov = None if fov is None else _to_numpy(fov)
    shapes = {"probability": probability.shape, "label": label.shape}
    if fov is not None:
        shapes["fov"] = fov.shape
    if len(set(shapes.values())) != 1:
        raise ValueError("shapes must match, got " + ", ".join(f"{k} {v}" for k, v in shapes.items()))

    if probability.size == 0:
        raise ValueError(f"probability has no pixels (shape {probability.shape})")
    scores = probability.astype(np.float32, copy=False)
    if not (scores.min() >= 0.0 and scores.max() <= 1.0):  # NaN fails too
        raise ValueError(f"probability must lie in [0, 1], found values from {scores.min()} to {scores.max()}")
    label = _as_bool_mask(label, "label")
    if fov is None:
        return scores.ravel(), label.ravel()
    fov = _as_bool_mask(fov, "fov")
    if not fov.any():
        raise ValueError(f"fov selects no pixel (shape {fov.shape}): nothing to evaluate")
    return scores[fov], label[fov]


def _float32_threshold(threshold: float) -> np.float32:
    """The threshold as the float32 the scores are compared with."""
    if not isinstance(threshold, (int, float, np.floating, np.integer)) or math.isnan(threshold):
        raise ValueError(f"threshold must be a number, got {threshold!r}")
    return np.float32(threshold)


# --------------------------------------------------------------------------
# Threshold-based scores.
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class ConfusionCounts:
    """Pixel counts of one binarised prediction; add two to pool their pixels.

    tp: vessel predicted as vessel, fp: background predicted as vessel,
    tn: background predicted as background, fn: vessel predicted as background.

    Taught in notebook 02, section 4.
    """

    tp: int
    fp: int
    tn: int
    fn: int

    def __add__(self, other: ConfusionCounts) -> ConfusionCounts:
        return ConfusionCounts(self.tp + other.tp, self.fp + other.fp,
                               self.tn + other.tn, self.fn + other.fn)

    @property
    def total(self) -> int:
        """Number of pixels counted."""
        return self.tp + self.fp + self.tn + self.fn


def confusion_counts(
    probability: npt.ArrayLike,
    label: npt.ArrayLike,
    fov: Optional[npt.ArrayLike] = None,
    threshold: float = 0.5,
) -> ConfusionCounts:
    """Count tp/fp/tn/fn inside the FOV, predicting vessel where ``probability >= threshold``.

    ``probability`` may be a bool mask (a hard prediction): True counts as 1.0.

    Taught in notebook 02, section 1.
    """
    scores, is_vessel = _pixels_inside_fov(probability, label, fov)
    predicted = scores >= _float32_threshold(threshold)
    tp = int(np.count_nonzero(predicted & is_vessel))
    fp = int(np.count_nonzero(predicted)) - tp
    fn = int(np.count_nonzero(is_vessel)) - tp
    tn = scores.size - tp - fp - fn
    return ConfusionCounts(tp=tp, fp=fp, tn=tn, fn=fn)


def _ratio(numerator: int, denominator: int, perfect: bool) -> float:
    """numerator / denominator, with 0/0 = 1.0 for a perfect prediction and 0.0 otherwise."""
    if denominator == 0:
        return 1.0 if perfect else 0.0
    return numerator / denominator


def scores_from_counts(counts: ConfusionCounts) -> dict[str, float]:
    """accuracy, sensitivity, specificity, precision, f1 and iou of some counts.

    sensitivity = recall = tp / (tp + fn); specificity = tn / (tn + fp);
    precision = tp / (tp + fp); f1 = Dice = 2tp / (2tp + fp + fn);
    iou = Jaccard = tp / (tp + fp + fn).

    The 0/0 convention, one rule for all: a ratio whose denominator is 0 is
    **1.0 if the prediction has no error at all (fp == fn == 0), else 0.0**.
    Examples: an image without vessels predicted without vessels scores 1.0
    everywhere (nothing to find, nothing wrongly claimed); predicting no
    vessel where there are some gives precision 0.0 (not a perfect 1.0 that
    would reward doing nothing); predicting vessels on an image without any
    gives sensitivity 0.0. A perfect prediction therefore always scores 1.0,
    an imperfect one never gets a free 1.0, and no NaN or warning appears.
    Counting no pixel at all is an error (accuracy has no meaning then).

    Taught in notebook 02, section 1.
    """
    if counts.total == 0:
        raise ValueError("counts are all zero: no pixel was evaluated")
    tp, fp, tn, fn = counts.tp, counts.fp, counts.tn, counts.fn
    perfect = fp == 0 and fn == 0
    return {
        "accuracy": (tp + tn) / counts.total,
        "sensitivity": _ratio(tp, tp + fn, perfect),
        "specificity": _ratio(tn, tn + fp, perfect),
        "precision": _ratio(tp, tp + fp, perfect),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, perfect),
        "iou": _ratio(tp, tp + fp + fn, perfect),
    }


# --------------------------------------------------------------------------
# The mergeable summary behind every threshold-free score.
# --------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ScoreHistogram:
    """Distinct scores (float32, ascending) with vessel/background pixel counts at each.

    This is everything AUC-ROC, AUC-PR and the best threshold depend on, and
    it is far smaller than the image when scores repeat. Add two histograms
    (``a + b``, or :func:`merge_histograms` for many) to pool their pixels.

    Its size is the number of distinct scores. If memory matters on a large
    dataset with continuous outputs, round the maps first (e.g. to float16,
    which has about 15k values in [0, 1]); the curves barely change.
    """

    scores: np.ndarray     # float32, strictly increasing
    positives: np.ndarray  # int64, vessel pixels with that score
    negatives: np.ndarray  # int64, background pixels with that score

    def __post_init__(self) -> None:
        if not (self.scores.shape == self.positives.shape == self.negatives.shape):
            raise ValueError(f"scores {self.scores.shape}, positives {self.positives.shape} and "
                             f"negatives {self.negatives.shape} must have the same length")

    def __add__(self, other: ScoreHistogram) -> ScoreHistogram:
        return merge_histograms([self, other])

    @property
    def total_positives(self) -> int:
        """Number of vessel pixels summarised."""
        return int(self.positives.sum())

    @property
    def total_negatives(self) -> int:
        """Number of background pixels summarised."""
        return int(self.negatives.sum())


def _collapse_equal_scores(
    scores: np.ndarray, positives: np.ndarray, negatives: np.ndarray
) -> ScoreHistogram:
    """Sort by score and add up the counts of equal scores: the one histogram builder.

    A stable sort (timsort) is linear on already-sorted runs, which makes
    merging histograms (concatenated sorted runs) cheap.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    is_new_score = np.concatenate(([True], sorted_scores[1:] != sorted_scores[:-1]))
    starts = np.flatnonzero(is_new_score)
    return ScoreHistogram(
        scores=sorted_scores[starts],
        positives=np.add.reduceat(positives[order], starts),
        negatives=np.add.reduceat(negatives[order], starts),
    )


def score_histogram(
    probability: npt.ArrayLike, label: npt.ArrayLike, fov: Optional[npt.ArrayLike] = None
) -> ScoreHistogram:
    """The :class:`ScoreHistogram` of one image's pixels inside the FOV.

    Taught in notebook 04, section 4.
    """
    scores, is_vessel = _pixels_inside_fov(probability, label, fov)
    positives = is_vessel.astype(np.int64)
    return _collapse_equal_scores(scores, positives, 1 - positives)


def merge_histograms(histograms: Iterable[ScoreHistogram]) -> ScoreHistogram:
    """Pool several histograms into one, as if built from all their pixels together.

    Taught in notebook 04, section 4.
    """
    histograms = list(histograms)
    if not histograms:
        raise ValueError("merge_histograms needs at least one histogram")
    return _collapse_equal_scores(
        np.concatenate([h.scores for h in histograms]),
        np.concatenate([h.positives for h in histograms]),
        np.concatenate([h.negatives for h in histograms]),
    )


def _cumulative_counts(hist: ScoreHistogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, tp, fp) for every operating point, from the highest threshold down.

    Predicting ``score >= threshold`` with threshold = the k-th highest
    distinct score marks exactly the pixels of the k highest scores as
    vessels, so tp and fp are running sums from the top. A first point with
    threshold +inf (nothing predicted, tp = fp = 0) starts every curve.
    """
    thresholds = np.concatenate(([np.inf], hist.scores[::-1])).astype(np.float32)
    tp = np.concatenate(([0], np.cumsum(hist.positives[::-1])))
    fp = np.concatenate(([0], np.cumsum(hist.negatives[::-1])))
    return thresholds, tp, fp


def _require_vessels(hist: ScoreHistogram, what: str) -> None:
    if hist.total_positives == 0:
        raise ValueError(f"{what} is undefined without vessel pixels in the label (inside the FOV)")


def _require_background(hist: ScoreHistogram, what: str) -> None:
    if hist.total_negatives == 0:
        raise ValueError(f"{what} is undefined without background pixels in the label (inside the FOV)")


# --------------------------------------------------------------------------
# Threshold-free scores.
# --------------------------------------------------------------------------

def roc_curve(hist: ScoreHistogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, from (0, 0) to (1, 1).

    thresholds decrease from +inf (nothing predicted: the point (0, 0)) to
    the lowest score (everything predicted: the point (1, 1)). Tied scores
    are one point, so the curve never pretends ties could be split.
    """
    _require_vessels(hist, "the ROC curve")
    _require_background(hist, "the ROC curve")
    thresholds, tp, fp = _cumulative_counts(hist)
    return fp / hist.total_negatives, tp / hist.total_positives, thresholds


def pr_curve(hist: ScoreHistogram) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, thresholds) at every distinct score, recall increasing.

    The first point (threshold +inf, nothing predicted) is recall 0 with
    precision 1 by convention (as in scikit-learn); it only anchors plots and
    adds nothing to :func:`auc_pr`. The last point is recall 1.
    """
    _require_vessels(hist, "the precision-recall curve")
    thresholds, tp, fp = _cumulative_counts(hist)
    predicted = tp + fp
    precision = np.ones(len(tp))
    precision[1:] = tp[1:] / predicted[1:]  # every later point predicts >= 1 pixel
    return precision, tp / hist.total_positives, thresholds


def auc_roc(hist: ScoreHistogram) -> float:
    """Area under the ROC curve, exactly, by trapezoids between operating points.

    With ties as one point, the trapezoid over a tied group counts each tied
    (vessel, background) pair as half a win, so the area equals the
    Mann-Whitney probability P(score_vessel > score_background)
    + 0.5 * P(score_vessel == score_background) for a random pair.
    """
    fpr, tpr, _ = roc_curve(hist)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def auc_pr(hist: ScoreHistogram) -> float:
    """Area under the precision-recall curve as *average precision* (AP).

    AP = sum over operating points n of (R_n - R_{n-1}) * P_n: each step in
    recall is weighted by the precision actually reached there (step-wise, as
    scikit-learn's ``average_precision_score``). The trapezoid rule is not
    used because precision does not vary linearly between two operating
    points; joining them with straight lines (notably from the conventional
    start at precision 1) credits precisions no threshold achieves and
    over-estimates the area.
    """
    precision, recall, _ = pr_curve(hist)
    return float(np.sum(np.diff(recall) * precision[1:]))


def best_f1_threshold(hist: ScoreHistogram) -> tuple[float, float]:
    """(threshold, f1): the threshold maximising F1 under the ``probability >= threshold`` rule.

    This is how the course chooses the binarisation threshold: on the
    histogram of the **training** split (pooled), then that fixed threshold
    is applied to validation/test images. Never choose it on the test split:
    the test score would then be optimistically tuned to the very labels it
    is meant to judge. Among equally good thresholds the highest is returned.
    ``confusion_counts(..., threshold=threshold)`` on the same pixels gives
    exactly this F1.

    Taught in notebook 04, section 4.
    """
    _require_vessels(hist, "the best F1 threshold")
    thresholds, tp, fp = _cumulative_counts(hist)
    thresholds, tp, fp = thresholds[1:], tp[1:], fp[1:]  # drop "predict nothing"
    fn = hist.total_positives - tp
    f1 = 2 * tp / (2 * tp + fp + fn)  # denominator >= 2 * total_positives > 0
    best = int(np.argmax(f1))  # first maximum = highest threshold among ties
    return float(thresholds[best]), float(f1[best])


# --------------------------------------------------------------------------
# Everything at once, for one image or a dataset.
# --------------------------------------------------------------------------

def metrics_from(counts: ConfusionCounts, hist: ScoreHistogram, threshold: float) -> dict[str, float]:
    """The METRIC_NAMES dict from counts at ``threshold`` and the matching histogram.

    The building block for scoring one image or a pool of images, for callers
    that accumulate counts and histograms themselves (see ``evaluation.py``).
    """
    scores = scores_from_counts(counts)
    scores["auc_roc"] = auc_roc(hist)
    scores["auc_pr"] = auc_pr(hist)
    scores["threshold"] = float(threshold)
    return {name: scores[name] for name in METRIC_NAMES}


def vessel_metrics(
    probability: npt.ArrayLike,
    label: npt.ArrayLike,
    fov: Optional[npt.ArrayLike] = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """All metrics of one image (keys: :data:`METRIC_NAMES`).

    f1, iou, accuracy, sensitivity, specificity and precision use
    ``probability >= threshold``; auc_roc and auc_pr use every threshold.
    A bool ``probability`` (hard mask) is evaluated as a map of 0s and 1s.
    """
    counts = confusion_counts(probability, label, fov, threshold)
    return metrics_from(counts, score_histogram(probability, label, fov), threshold)


_END = object()


def _images(
    probabilities: Iterable[npt.ArrayLike],
    labels: Iterable[npt.ArrayLike],
    fovs: Optional[Iterable[Optional[npt.ArrayLike]]],
) -> Iterator[tuple[npt.ArrayLike, npt.ArrayLike, Optional[npt.ArrayLike]]]:
    """Yield (probability, label, fov) per image, one at a time (so generators work),
    raising ValueError if the collections hold different numbers of images."""
    named = {"probabilities": iter(probabilities), "labels": iter(labels)}
    if fovs is not None:
        named["fovs"] = iter(fovs)
    count = 0
    while True:
        items = {name: next(iterator, _END) for name, iterator in named.items()}
        finished = [name for name, item in items.items() if item is _END]
        if len(finished) == len(items):
            return
        if finished:
            raise ValueError(f"{' and '.join(finished)} ran out after {count} images, "
                             f"before {' and '.join(n for n in items if n not in finished)}")
        yield items["probabilities"], items["labels"], items.get("fovs")
        count += 1


def _image_summaries(
    probabilities: Iterable[npt.ArrayLike],
    labels: Iterable[npt.ArrayLike],
    fovs: Optional[Iterable[Optional[npt.ArrayLike]]],
    threshold: float,
) -> list[tuple[ConfusionCounts, ScoreHistogram]]:
    """(counts at ``threshold``, histogram) of every image, computed once each.

    Images are consumed one at a time, so ``probabilities`` may be a generator: only
    the small summaries are kept, never the pixels.
    """
    summaries = [(confusion_counts(probability, label, fov, threshold), score_histogram(probability, label, fov))
                 for probability, label, fov in _images(probabilities, labels, fovs)]
    if not summaries:
        raise ValueError("no images given: probabilities and labels are empty")
    return summaries


def _pooled_from(summaries: list[tuple[ConfusionCounts, ScoreHistogram]], threshold: float) -> dict[str, float]:
    """Metrics of all images' pixels together: summed counts, merged histograms."""
    pooled_counts = ConfusionCounts(0, 0, 0, 0)
    for counts, _ in summaries:
        pooled_counts = pooled_counts + counts
    pooled_hist = merge_histograms(hist for _, hist in summaries)
    return metrics_from(pooled_counts, pooled_hist, threshold)


def dataset_metrics(
    probabilities: Iterable[npt.ArrayLike],
    labels: Iterable[npt.ArrayLike],
    fovs: Optional[Iterable[Optional[npt.ArrayLike]]] = None,
    threshold: float = 0.5,
) -> dict[str, object]:
    """``{"pooled": metrics, "per_image": [metrics, ...]}`` in one pass over the images.

    Each image's counts and histogram are computed once; the per-image
    metrics come from them and the pooled metrics from their sums, so this
    costs hardly more than :func:`pooled_metrics`. ``probabilities`` may be a
    generator. Every image needs vessel and background pixels inside its FOV
    (its AUC-ROC is undefined otherwise); use :func:`pooled_metrics` when
    only the pooled numbers are wanted.

    Pooled vs. mean of per-image: pooled metrics treat all FOV pixels of all
    images as one big image, so every *pixel* weighs the same (large images
    and images with more vessels count more), and the pooled AUC also ranks
    pixels *across* images (a model whose scores drift from image to image
    is penalised). The mean of the per-image list weighs every *image* the
    same and shows the spread between images. Papers report either; say which.
    """
    summaries = _image_summaries(probabilities, labels, fovs, threshold)
    return {"pooled": _pooled_from(summaries, threshold),
            "per_image": [metrics_from(counts, hist, threshold) for counts, hist in summaries]}


def pooled_metrics(
    probabilities: Iterable[npt.ArrayLike],
    labels: Iterable[npt.ArrayLike],
    fovs: Optional[Iterable[Optional[npt.ArrayLike]]] = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """All metrics over the FOV pixels of all images pooled together (keys: :data:`METRIC_NAMES`).

    This is *not* the mean of per-image scores: see :func:`dataset_metrics`
    for the difference and for the per-image list. Single images without
    vessels (or without background) are fine here as long as the pool has both.
    """
    return _pooled_from(_image_summaries(probabilities, labels, fovs, threshold), threshold)
