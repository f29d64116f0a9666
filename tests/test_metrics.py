"""Tests for retina_lib.metrics: every fast formula against a slow, obvious one."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from retina_lib.metrics import (
    METRIC_NAMES,
    ConfusionCounts,
    auc_pr,
    auc_roc,
    best_f1_threshold,
    confusion_counts,
    dataset_metrics,
    merge_histograms,
    pooled_metrics,
    pr_curve,
    roc_curve,
    score_histogram,
    scores_from_counts,
    vessel_metrics,
)

# Any RuntimeWarning (0/0, invalid value...) fails the test: the module promises none.
pytestmark = pytest.mark.filterwarnings("error")

SEEDS = range(6)


def random_case(seed: int, tied: bool, with_fov: bool, shape=(8, 9)):
    """A small random (prob, label, fov) with both classes inside the FOV.

    ``tied`` rounds probabilities to one decimal so many pixels share a score.
    """
    rng = np.random.default_rng(seed)
    label = rng.random(shape) < 0.35
    prob = np.clip(label * 0.3 + rng.random(shape) * 0.7, 0.0, 1.0)
    if tied:
        prob = np.round(prob, 1)
    fov = rng.random(shape) < 0.7 if with_fov else None
    inside = np.ones(shape, bool) if fov is None else fov
    first, second = np.argwhere(inside)[:2]
    label[tuple(first)], label[tuple(second)] = True, False
    return prob, label, fov


CASES = [(seed, tied, with_fov) for seed in SEEDS for tied in (True, False) for with_fov in (True, False)]


def inside_pixels(prob, label, fov):
    """Plain Python lists of the (float32 score, label) pairs inside the FOV."""
    pairs = []
    for index in np.ndindex(prob.shape):
        if fov is None or fov[index]:
            pairs.append((float(np.float32(prob[index])), bool(label[index])))
    return pairs


def brute_counts(pairs, threshold):
    tp = fp = tn = fn = 0
    for score, is_vessel in pairs:
        predicted = score >= float(np.float32(threshold))
        if predicted and is_vessel:
            tp += 1
        elif predicted:
            fp += 1
        elif is_vessel:
            fn += 1
        else:
            tn += 1
    return tp, fp, tn, fn


def brute_f1(pairs, threshold) -> Fraction:
    tp, fp, _, fn = brute_counts(pairs, threshold)
    return Fraction(2 * tp, 2 * tp + fp + fn)


# ---------------------------------------------------------------- hand example

# Seven pixels, no FOV:
#   prob  0.9  0.8  0.8  0.6  0.4  0.3  0.1
#   label  V    V    .    .    V    .    .      (V = vessel; P = 3, N = 4)
# At threshold 0.5 the first four are predicted vessel: tp=2, fp=2, fn=1, tn=2.
#   accuracy 4/7, sensitivity 2/3, specificity 2/4, precision 2/4,
#   f1 = 4/(4+2+1) = 4/7, iou = 2/(2+2+1) = 2/5.
# AUC-ROC by pairs (12 vessel/background pairs): 0.9 beats all 4; 0.8 beats
#   0.6, 0.3, 0.1 and ties 0.8 (half) = 3.5; 0.4 beats 0.3, 0.1 = 2.
#   Total 9.5 / 12 = 19/24.
# Operating points (threshold: tp, fp -> recall, precision):
#   0.9: 1,0 -> 1/3, 1     0.8: 2,1 -> 2/3, 2/3   0.6: 2,2 -> 2/3, 1/2
#   0.4: 3,2 -> 1, 3/5     0.3: 3,3 -> 1, 1/2     0.1: 3,4 -> 1, 3/7
# AP = 1/3*1 + 1/3*2/3 + 0*1/2 + 1/3*3/5 + 0 + 0 = 34/45.
# F1 per threshold: 1/2, 2/3, 4/7, 3/4, 2/3, 3/5 -> best 3/4 at 0.4.
HAND_PROB = np.array([0.9, 0.8, 0.8, 0.6, 0.4, 0.3, 0.1])
HAND_LABEL = np.array([1, 1, 0, 0, 1, 0, 0], dtype=bool)


def test_hand_example_counts_and_scores():
    counts = confusion_counts(HAND_PROB, HAND_LABEL, threshold=0.5)
    assert counts == ConfusionCounts(tp=2, fp=2, tn=2, fn=1)
    scores = scores_from_counts(counts)
    expected = {"accuracy": 4 / 7, "sensitivity": 2 / 3, "specificity": 1 / 2,
                "precision": 1 / 2, "f1": 4 / 7, "iou": 2 / 5}
    assert scores == pytest.approx(expected)


def test_hand_example_histogram_and_curves():
    hist = score_histogram(HAND_PROB, HAND_LABEL)
    np.testing.assert_array_equal(hist.scores, np.float32([0.1, 0.3, 0.4, 0.6, 0.8, 0.9]))
    np.testing.assert_array_equal(hist.positives, [0, 0, 1, 0, 1, 1])
    np.testing.assert_array_equal(hist.negatives, [1, 1, 0, 1, 1, 0])

    fpr, tpr, thresholds = roc_curve(hist)
    np.testing.assert_allclose(fpr, [0, 0, 1 / 4, 2 / 4, 2 / 4, 3 / 4, 1])
    np.testing.assert_allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    np.testing.assert_array_equal(thresholds, np.float32([np.inf, 0.9, 0.8, 0.6, 0.4, 0.3, 0.1]))

    precision, recall, _ = pr_curve(hist)
    np.testing.assert_allclose(precision, [1, 1, 2 / 3, 1 / 2, 3 / 5, 1 / 2, 3 / 7])
    np.testing.assert_allclose(recall, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])

    assert auc_roc(hist) == pytest.approx(19 / 24)
    assert auc_pr(hist) == pytest.approx(34 / 45)
    threshold, f1 = best_f1_threshold(hist)
    assert threshold == float(np.float32(0.4))
    assert f1 == pytest.approx(3 / 4)


def test_hand_example_vessel_metrics_keys_and_values():
    metrics = vessel_metrics(HAND_PROB, HAND_LABEL, threshold=0.5)
    assert tuple(metrics) == METRIC_NAMES
    assert all(isinstance(value, float) for value in metrics.values())
    assert metrics["f1"] == pytest.approx(4 / 7)
    assert metrics["auc_roc"] == pytest.approx(19 / 24)
    assert metrics["auc_pr"] == pytest.approx(34 / 45)
    assert metrics["threshold"] == 0.5


# ------------------------------------------------------ against brute force

@pytest.mark.parametrize("seed, tied, with_fov", CASES)
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_confusion_counts_match_explicit_loop(seed, tied, with_fov, threshold):
    prob, label, fov = random_case(seed, tied, with_fov)
    counts = confusion_counts(prob, label, fov, threshold)
    assert (counts.tp, counts.fp, counts.tn, counts.fn) == brute_counts(inside_pixels(prob, label, fov), threshold)


@pytest.mark.parametrize("seed, tied, with_fov", CASES)
def test_auc_roc_matches_pairwise_mann_whitney(seed, tied, with_fov):
    prob, label, fov = random_case(seed, tied, with_fov)
    pairs = inside_pixels(prob, label, fov)
    vessel = [score for score, is_vessel in pairs if is_vessel]
    background = [score for score, is_vessel in pairs if not is_vessel]
    wins = sum(1.0 if v > b else 0.5 if v == b else 0.0 for v in vessel for b in background)
    assert auc_roc(score_histogram(prob, label, fov)) == pytest.approx(wins / (len(vessel) * len(background)))


@pytest.mark.parametrize("seed, tied, with_fov", CASES)
def test_auc_pr_matches_average_precision_loop(seed, tied, with_fov):
    prob, label, fov = random_case(seed, tied, with_fov)
    pairs = inside_pixels(prob, label, fov)
    n_vessel = sum(is_vessel for _, is_vessel in pairs)
    average_precision, previous_recall = 0.0, 0.0
    for threshold in sorted({score for score, _ in pairs}, reverse=True):
        tp, fp, _, _ = brute_counts(pairs, threshold)
        recall = tp / n_vessel
        average_precision += (recall - previous_recall) * tp / (tp + fp)
        previous_recall = recall
    assert auc_pr(score_histogram(prob, label, fov)) == pytest.approx(average_precision)


@pytest.mark.parametrize("seed, tied, with_fov", CASES)
def test_best_f1_threshold_beats_every_threshold_and_matches_counts(seed, tied, with_fov):
    prob, label, fov = random_case(seed, tied, with_fov)
    pairs = inside_pixels(prob, label, fov)
    candidates = sorted({score for score, _ in pairs}, reverse=True)
    best_f1 = max(brute_f1(pairs, t) for t in candidates)
    highest_best = next(t for t in candidates if brute_f1(pairs, t) == best_f1)

    threshold, f1 = best_f1_threshold(score_histogram(prob, label, fov))
    assert threshold == highest_best
    assert f1 == pytest.approx(float(best_f1))
    # The returned threshold, fed back to the `prob >= threshold` rule, gives that F1.
    assert scores_from_counts(confusion_counts(prob, label, fov, threshold))["f1"] == f1


def test_best_f1_threshold_prefers_the_highest_of_equally_good_thresholds():
    # prob 0.9 V, 0.7 ., 0.6 ., 0.5 V (P = 2). F1 at 0.9: 2/(2+0+1) = 2/3;
    # at 0.7: 2/4; at 0.6: 2/5; at 0.5: 4/(4+2+0) = 2/3 -> tie, keep 0.9.
    prob = np.array([0.9, 0.7, 0.6, 0.5])
    label = np.array([True, False, False, True])
    threshold, f1 = best_f1_threshold(score_histogram(prob, label))
    assert threshold == float(np.float32(0.9))
    assert f1 == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed, tied, with_fov", CASES)
def test_curves_run_from_origin_to_corner_one_point_per_distinct_score(seed, tied, with_fov):
    prob, label, fov = random_case(seed, tied, with_fov)
    hist = score_histogram(prob, label, fov)
    n_distinct = len({score for score, _ in inside_pixels(prob, label, fov)})
    assert len(hist.scores) == n_distinct

    fpr, tpr, thresholds = roc_curve(hist)
    assert len(fpr) == n_distinct + 1
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert thresholds[0] == np.inf and np.all(np.diff(thresholds) < 0)

    precision, recall, pr_thresholds = pr_curve(hist)
    assert recall[0] == 0.0 and recall[-1] == 1.0 and np.all(np.diff(recall) >= 0)
    assert np.all((precision > 0) & (precision <= 1))
    np.testing.assert_array_equal(pr_thresholds, thresholds)


# ------------------------------------------------------------------ pooling

def test_merged_histograms_equal_histogram_of_concatenated_pixels():
    cases = [random_case(seed, tied=True, with_fov=True) for seed in range(4)]
    merged = merge_histograms(score_histogram(p, l, f) for p, l, f in cases)
    concatenated = score_histogram(np.concatenate([p[f] for p, _, f in cases]),
                                   np.concatenate([l[f] for _, l, f in cases]))
    for got in (merged, sum((score_histogram(p, l, f) for p, l, f in cases[1:]),
                            score_histogram(*cases[0]))):
        np.testing.assert_array_equal(got.scores, concatenated.scores)
        np.testing.assert_array_equal(got.positives, concatenated.positives)
        np.testing.assert_array_equal(got.negatives, concatenated.negatives)
    assert merged.total_positives + merged.total_negatives == sum(int(f.sum()) for _, _, f in cases)


def test_pooled_metrics_equal_metrics_of_one_concatenated_image():
    cases = [random_case(seed, tied=seed % 2 == 0, with_fov=True) for seed in range(4)]
    probs, labels, fovs = zip(*cases)
    pooled = pooled_metrics(probs, labels, fovs, threshold=0.4)
    as_one_image = vessel_metrics(np.concatenate([p[f] for p, _, f in cases]),
                                  np.concatenate([l[f] for _, l, f in cases]), threshold=0.4)
    assert pooled == pytest.approx(as_one_image)


def test_dataset_metrics_gives_pooled_and_per_image_from_generators():
    cases = [random_case(seed, tied=False, with_fov=True) for seed in range(3)]
    result = dataset_metrics((p for p, _, _ in cases), (l for _, l, _ in cases),
                             (f for _, _, f in cases), threshold=0.6)
    assert result["pooled"] == pytest.approx(pooled_metrics(*zip(*cases), threshold=0.6))
    assert len(result["per_image"]) == len(cases)
    for metrics, (prob, label, fov) in zip(result["per_image"], cases):
        assert metrics == pytest.approx(vessel_metrics(prob, label, fov, threshold=0.6))
    # Pooling is not averaging: the mean of per-image AUCs differs from the pooled AUC.
    mean_auc = np.mean([m["auc_roc"] for m in result["per_image"]])
    assert result["pooled"]["auc_roc"] != pytest.approx(mean_auc, abs=1e-9)


def test_pooled_metrics_accept_an_image_without_vessels():
    prob, label, fov = random_case(0, tied=True, with_fov=False)
    empty_label = np.zeros_like(label)
    with pytest.raises(ValueError, match="undefined without vessel"):
        vessel_metrics(prob, empty_label)
    pooled = pooled_metrics([prob, prob], [label, empty_label])
    assert 0.0 < pooled["auc_roc"] < 1.0


def test_mismatched_number_of_images_is_an_error():
    prob, label, fov = random_case(0, tied=True, with_fov=True)
    with pytest.raises(ValueError, match="labels ran out after 1 images"):
        pooled_metrics([prob, prob], [label])
    with pytest.raises(ValueError, match="fovs ran out"):
        dataset_metrics([prob, prob], [label, label], [fov])
    with pytest.raises(ValueError, match="no images"):
        pooled_metrics([], [])


# -------------------------------------------------------------- behaviour

@pytest.mark.parametrize("seed", SEEDS)
def test_pixels_outside_the_fov_change_nothing(seed):
    prob, label, fov = random_case(seed, tied=True, with_fov=True)
    rng = np.random.default_rng(100 + seed)
    other_prob = np.where(fov, prob, rng.random(prob.shape))
    other_label = np.where(fov, label, rng.random(prob.shape) < 0.5)
    assert vessel_metrics(other_prob, other_label, fov) == vessel_metrics(prob, label, fov)
    assert vessel_metrics(prob[fov], label[fov]) == vessel_metrics(prob, label, fov)


@pytest.mark.parametrize("as_bool", [False, True])
def test_perfect_prediction_scores_one(as_bool):
    _, label, fov = random_case(3, tied=False, with_fov=True)
    prob = label.copy() if as_bool else label * 0.6 + 0.2  # any perfect ranking
    metrics = vessel_metrics(prob, label, fov)
    for name in ("f1", "iou", "accuracy", "sensitivity", "specificity", "precision", "auc_roc", "auc_pr"):
        assert metrics[name] == 1.0, name


@pytest.mark.parametrize("seed", SEEDS)
def test_hard_mask_auc_is_mean_of_sensitivity_and_specificity(seed):
    _, label, fov = random_case(seed, tied=False, with_fov=True)
    other_observer = np.random.default_rng(seed).random(label.shape) < 0.4
    metrics = vessel_metrics(other_observer, label, fov)
    assert metrics["auc_roc"] == pytest.approx((metrics["sensitivity"] + metrics["specificity"]) / 2)
    fpr, _, thresholds = roc_curve(score_histogram(other_observer, label, fov))
    assert len(fpr) == 3  # (0, 0), the mask's single operating point, (1, 1)
    np.testing.assert_array_equal(thresholds, np.float32([np.inf, 1, 0]))


@pytest.mark.parametrize(
    "counts, expected",
    [
        # no vessels anywhere, none predicted: nothing wrong -> every ratio 1.0
        (ConfusionCounts(tp=0, fp=0, tn=5, fn=0),
         dict(sensitivity=1.0, specificity=1.0, precision=1.0, f1=1.0, iou=1.0, accuracy=1.0)),
        # vessels missed, none predicted: precision 0/0 -> 0.0 (no free 1.0)
        (ConfusionCounts(tp=0, fp=0, tn=5, fn=2),
         dict(sensitivity=0.0, specificity=1.0, precision=0.0, f1=0.0, iou=0.0, accuracy=5 / 7)),
        # no vessels in the label, some predicted: sensitivity 0/0 -> 0.0
        (ConfusionCounts(tp=0, fp=3, tn=5, fn=0),
         dict(sensitivity=0.0, specificity=5 / 8, precision=0.0, f1=0.0, iou=0.0, accuracy=5 / 8)),
        # everything is vessel and found: specificity 0/0 -> 1.0
        (ConfusionCounts(tp=4, fp=0, tn=0, fn=0),
         dict(sensitivity=1.0, specificity=1.0, precision=1.0, f1=1.0, iou=1.0, accuracy=1.0)),
        # everything is vessel, some missed: specificity 0/0 -> 0.0
        (ConfusionCounts(tp=3, fp=0, tn=0, fn=1),
         dict(sensitivity=3 / 4, specificity=0.0, precision=1.0, f1=6 / 7, iou=3 / 4, accuracy=3 / 4)),
    ],
)
def test_zero_division_conventions(counts, expected):
    assert scores_from_counts(counts) == pytest.approx(expected)


def test_no_pixel_counted_is_an_error():
    with pytest.raises(ValueError, match="no pixel"):
        scores_from_counts(ConfusionCounts(0, 0, 0, 0))


def test_counts_add_up_when_pooling():
    assert ConfusionCounts(1, 2, 3, 4) + ConfusionCounts(10, 20, 30, 40) == ConfusionCounts(11, 22, 33, 44)


def test_shape_mismatch_names_the_shapes():
    prob, label, fov = random_case(0, tied=True, with_fov=True)
    with pytest.raises(ValueError, match=r"probability \(8, 9\), label \(9, 8\)"):
        confusion_counts(prob, label.T)
    with pytest.raises(ValueError, match=r"fov \(1, 8, 9\)"):
        score_histogram(prob, label, fov[None])
    with pytest.raises(ValueError, match="shapes must match"):
        vessel_metrics(prob[None], label, fov)


@pytest.mark.parametrize(
    "prob_change, label_change, fov_change, message",
    [
        (lambda p: p * 2, None, None, r"probability must lie in \[0, 1\]"),
        (lambda p: np.where(p > 0.5, np.nan, p), None, None, r"probability must lie in \[0, 1\]"),
        (None, lambda l: l * 2.5, None, "label must be a bool mask"),
        (None, None, lambda f: np.zeros_like(f), "fov selects no pixel"),
        (lambda p: p[:, :0], lambda l: l[:, :0], lambda f: f[:, :0], "probability has no pixels"),
    ],
)
def test_bad_input_is_rejected_with_a_clear_message(prob_change, label_change, fov_change, message):
    prob, label, fov = random_case(0, tied=True, with_fov=True)
    prob = prob_change(prob) if prob_change else prob
    label = label_change(label) if label_change else label
    fov = fov_change(fov) if fov_change else fov
    with pytest.raises(ValueError, match=message):
        vessel_metrics(prob, label, fov)


def test_zero_one_labels_of_other_dtypes_are_accepted():
    prob, label, fov = random_case(1, tied=True, with_fov=True)
    assert vessel_metrics(prob, label.astype(np.float32), fov.astype(np.uint8)) == vessel_metrics(prob, label, fov)


def test_threshold_free_scores_need_both_classes():
    prob, label, _ = random_case(0, tied=True, with_fov=False)
    only_background = score_histogram(prob, np.zeros_like(label))
    only_vessels = score_histogram(prob, np.ones_like(label))
    for function in (auc_roc, auc_pr, best_f1_threshold):
        with pytest.raises(ValueError, match="without vessel"):
            function(only_background)
    with pytest.raises(ValueError, match="without background"):
        auc_roc(only_vessels)
    assert auc_pr(only_vessels) == 1.0  # every prediction is right: precision 1 at every recall


def test_torch_tensors_give_the_same_numbers():
    prob, label, fov = random_case(2, tied=False, with_fov=True)
    prob_tensor = torch.tensor(prob, dtype=torch.float32, requires_grad=True)
    from_torch = vessel_metrics(prob_tensor, torch.from_numpy(label), torch.from_numpy(fov))
    assert from_torch == vessel_metrics(prob.astype(np.float32), label, fov)


def test_float64_scores_are_rounded_once_to_float32_everywhere():
    # 0.3 and its float64 neighbour are the same float32: one operating point,
    # and the threshold 0.3 selects both, in the counts as in the histogram.
    prob = np.array([0.3, np.nextafter(0.3, 0.0), 0.9, 0.1])
    label = np.array([True, False, True, False])
    hist = score_histogram(prob, label)
    assert len(hist.scores) == 3
    assert confusion_counts(prob, label, threshold=0.3) == ConfusionCounts(tp=2, fp=1, tn=1, fn=0)
