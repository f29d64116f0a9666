"""score_network, format_table and the Frangi baseline.

A fake model whose vessel probability *is* the image's green channel makes the
expected numbers computable by hand with the metrics module.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from retina_lib.baselines import frangi_vesselness
from retina_lib.data import Sample, load_dataset
from retina_lib.scoring.evaluation import format_table, score_network
from retina_lib.metrics import (
    METRIC_NAMES,
    ConfusionCounts,
    auc_roc,
    best_f1_threshold,
    confusion_counts,
    merge_histograms,
    score_histogram,
    scores_from_counts,
)

SIZE = (40, 48)


class GreenChannelModel(nn.Module):
    """Returns the logit of the green channel: after the sigmoid, P(vessel) = green."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.logit(x[:, 1:2].clamp(1e-6, 1 - 1e-6))


def disc(size: tuple[int, int] = SIZE, radius: float | None = None) -> np.ndarray:
    """A centred disc, by default of 45 % of the shorter side."""
    rows, cols = np.mgrid[: size[0], : size[1]]
    radius = 0.45 * min(size) if radius is None else radius
    return (rows - size[0] / 2) ** 2 + (cols - size[1] / 2) ** 2 < radius ** 2


def make_sample(seed: int, vessel_odds: dict[float, float], name: str, second_observer: bool = False) -> Sample:
    """Green values on a 1/8 grid (exact in float16); each pixel of value g is a
    vessel with probability vessel_odds[g], so the best threshold is set by the odds."""
    rng = np.random.default_rng(seed)
    green = rng.choice(list(vessel_odds), size=SIZE)
    label = rng.random(SIZE) < np.vectorize(vessel_odds.get)(green)
    image = np.stack([np.full(SIZE, 0.5), green, np.full(SIZE, 0.2)], axis=-1).astype(np.float32)
    second = label ^ (rng.random(SIZE) < 0.1) if second_observer else None
    return Sample(image=image, label=label, fov=disc(), name=name, second_label=second)


# Training images reward a high cut; test images would prefer a lower one.
TRAIN_ODDS = {0.125: 0.02, 0.25: 0.05, 0.375: 0.1, 0.5: 0.3, 0.625: 0.5, 0.75: 0.9, 0.875: 0.95}
TEST_ODDS = {0.125: 0.02, 0.25: 0.2, 0.375: 0.6, 0.5: 0.7, 0.625: 0.8, 0.75: 0.9, 0.875: 0.95}


@pytest.fixture(scope="module")
def train_samples() -> list[Sample]:
    return [make_sample(seed, TRAIN_ODDS, f"train{seed}") for seed in range(3)]


@pytest.fixture(scope="module")
def held_out_samples() -> list[Sample]:
    return [make_sample(10 + seed, TEST_ODDS, f"test{seed}", second_observer=True) for seed in range(2)]


def pooled_histogram(samples: Sequence[Sample]):
    return merge_histograms(score_histogram(s.image[..., 1], s.label, s.fov) for s in samples)


def pooled_scores(samples: Sequence[Sample], maps: Sequence[np.ndarray], threshold: float) -> dict[str, float]:
    counts = sum((confusion_counts(m, s.label, s.fov, threshold) for s, m in zip(samples, maps)),
                 start=ConfusionCounts(0, 0, 0, 0))
    return scores_from_counts(counts)


# --------------------------------------------------------------------------
# The threshold comes from training data.
# --------------------------------------------------------------------------

def test_threshold_is_chosen_on_train_and_applied_unchanged_to_test(train_samples, held_out_samples):
    train_threshold, _ = best_f1_threshold(pooled_histogram(train_samples))
    test_threshold, _ = best_f1_threshold(pooled_histogram(held_out_samples))
    assert train_threshold != 0.5 and train_threshold != test_threshold  # the case can tell them apart

    results = score_network(GreenChannelModel(), held_out_samples, train_samples=train_samples,
                       with_baselines=False, progress=False)
    assert results["threshold"] == train_threshold
    expected = pooled_scores(held_out_samples, [s.image[..., 1] for s in held_out_samples], train_threshold)
    for name, value in expected.items():
        assert results[name] == pytest.approx(value, abs=1e-12), name
    assert results["auc_roc"] == pytest.approx(auc_roc(pooled_histogram(held_out_samples)), abs=1e-12)


def test_an_explicit_threshold_is_used_as_given(held_out_samples):
    results = score_network(GreenChannelModel(), held_out_samples, threshold=0.375, progress=False)
    assert results["threshold"] == 0.375
    expected = pooled_scores(held_out_samples, [s.image[..., 1] for s in held_out_samples], 0.375)
    assert results["f1"] == pytest.approx(expected["f1"], abs=1e-12)
    assert "frangi" not in results  # its threshold would need training data


def test_a_threshold_source_is_required(held_out_samples):
    with pytest.raises(ValueError, match="train_samples"):
        score_network(GreenChannelModel(), held_out_samples, progress=False)
    with pytest.raises(ValueError, match="between 0 and 1"):
        score_network(GreenChannelModel(), held_out_samples, threshold=1.5, progress=False)


def test_unlabelled_test_samples_are_refused_by_name(held_out_samples):
    unlabelled = Sample(held_out_samples[0].image, None, held_out_samples[0].fov, name="01_test")
    with pytest.raises(ValueError, match="01_test"):
        score_network(GreenChannelModel(), [unlabelled], threshold=0.5, progress=False)


# --------------------------------------------------------------------------
# The shape of the results.
# --------------------------------------------------------------------------

def test_results_hold_pooled_per_image_and_reference_rows(train_samples, held_out_samples):
    results = score_network(GreenChannelModel(), held_out_samples, train_samples=train_samples,
                       progress=False, return_probabilities=True)
    for key in ("model", "second_observer", "frangi"):
        scores = results if key == "model" else results[key]
        assert set(METRIC_NAMES) <= set(scores), key
        assert scores["n_images"] == len(held_out_samples)
        assert [entry["name"] for entry in scores["per_image"]] == [s.name for s in held_out_samples]
        assert all(set(METRIC_NAMES) <= set(entry) for entry in scores["per_image"])
    assert len(results["probabilities"]) == len(held_out_samples)
    np.testing.assert_allclose(results["probabilities"][0], held_out_samples[0].image[..., 1], atol=1e-6)

    second = results["second_observer"]
    expected = pooled_scores(held_out_samples, [s.second_label for s in held_out_samples], 0.5)
    assert second["f1"] == pytest.approx(expected["f1"], abs=1e-12)
    assert second["auc_roc"] == pytest.approx((expected["sensitivity"] + expected["specificity"]) / 2)

    frangi_maps = [frangi_vesselness(s.image, s.fov) for s in train_samples]
    frangi_threshold, _ = best_f1_threshold(merge_histograms(
        score_histogram(m.astype(np.float16).astype(np.float32), s.label, s.fov)
        for m, s in zip(frangi_maps, train_samples)))
    assert results["frangi"]["threshold"] == frangi_threshold


def test_no_second_observer_row_without_second_labels(train_samples):
    results = score_network(GreenChannelModel(), train_samples, threshold=0.5, progress=False)
    assert "second_observer" not in results
    assert results["n_images"] == len(train_samples)
    assert "probabilities" not in results


class CountingSamples(Sequence):
    """A lazy dataset that counts how often each sample is read (decoded)."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples, self.reads = samples, [0] * len(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        sample = self.samples[index]  # IndexError ends iteration
        self.reads[index] += 1
        return sample


def test_each_sample_is_read_once(train_samples, held_out_samples):
    train, test = CountingSamples(train_samples), CountingSamples(held_out_samples)
    score_network(GreenChannelModel(), test, train_samples=train, progress=False)
    assert train.reads == [1] * len(train_samples)
    assert test.reads == [1] * len(held_out_samples)


def test_format_table_has_a_row_per_method(train_samples, held_out_samples):
    results = score_network(GreenChannelModel(), held_out_samples, train_samples=train_samples, progress=False)
    table = format_table(results)
    lines = table.splitlines()
    for column in ("F1", "IoU", "Acc", "Se", "Sp", "Pr", "AUC-ROC", "AUC-PR", "threshold"):
        assert column in lines[0]
    assert [line.split()[0] for line in lines[1:4]] == ["LinkNet", "2nd", "Frangi"]
    assert f"{results['f1']:.4f}" in lines[1]
    # the second observer's tracing is binary: no threshold to tune, one operating point, no AUC
    assert lines[2].split()[-3:] == ["-", "-", "-"]
    assert f"{results['second_observer']['auc_roc']:.4f}" not in lines[2]
    assert "one operating point" in lines[-1]
    assert f"{results['frangi']['threshold']:.4f}" in lines[3]


# --------------------------------------------------------------------------
# The Frangi baseline.
# --------------------------------------------------------------------------

def test_frangi_finds_a_dark_line_and_ignores_the_frame():
    size = (565, 565)  # DRIVE's width: the reference scale of the Frangi sigmas
    image = np.full((*size, 3), 0.6, np.float32)
    image[280:284, 100:465, 1] = 0.3  # a dark horizontal "vessel" in the green channel
    # The black frame of a fundus photograph, with the soft edge that vignetting gives.
    image *= ndimage.gaussian_filter(disc(size, radius=250).astype(np.float32), sigma=4)[..., None]
    fov = disc(size, radius=253)  # reaching a little beyond the disc, as estimated masks do
    vesselness = frangi_vesselness(image, fov)
    assert vesselness.shape == size and vesselness.dtype == np.float32
    assert vesselness.min() >= 0.0 and vesselness.max() <= 1.0
    assert np.all(vesselness[~fov] == 0.0)
    on_line = vesselness[281:283, 200:365].mean()
    background = vesselness[150:250, 200:365].mean()
    assert on_line > 0.5 > 10 * background
    # The frame's edge is not a vessel: the rim of the FOV stays dark.
    rim = fov & ~disc(size, radius=230)
    assert vesselness[rim].max() < 0.1


def test_frangi_separates_vessels_on_a_synthetic_fundus():
    sample = load_dataset("synthetic", "test", n=1, size=256, seed=0)[0]
    vesselness = frangi_vesselness(sample.image, sample.fov)
    assert auc_roc(score_histogram(vesselness, sample.label, sample.fov)) > 0.8


def test_frangi_works_without_a_fov_and_checks_it():
    image = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    assert frangi_vesselness(image).shape == (64, 64)
    with pytest.raises(ValueError, match="fov"):
        frangi_vesselness(image, np.ones((64, 32), bool))


def test_frangi_on_a_real_chase_image(shared_datasets):
    sample = load_dataset("chase_db1", "test", root=shared_datasets)[0]
    vesselness = frangi_vesselness(sample.image, sample.fov)
    assert auc_roc(score_histogram(vesselness, sample.label, sample.fov)) > 0.85


# --------------------------------------------------------------------------
# A label without vessels, a too-small image
# --------------------------------------------------------------------------

def test_a_vessel_free_label_leaves_its_auc_undefined_and_everything_else_scored() -> None:
    samples = [make_sample(10 + seed, TEST_ODDS, f"test{seed}") for seed in range(2)]
    empty = Sample(samples[0].image, np.zeros_like(samples[0].label), samples[0].fov, name="no_vessels")
    with pytest.warns(UserWarning, match="image 'no_vessels': its label has no vessel pixels"):
        results = score_network(GreenChannelModel(), [*samples, empty], threshold=0.5, progress=False)
    by_name = {scores["name"]: scores for scores in results["per_image"]}
    assert by_name["no_vessels"]["auc_roc"] is None and by_name["no_vessels"]["auc_pr"] is None
    assert by_name["no_vessels"]["specificity"] < 1 and math.isfinite(by_name["test0"]["auc_roc"])
    assert 0.5 < results["auc_roc"] < 1 and results["n_images"] == 3
    json.dumps(results)  # None becomes null: the results still save


def test_a_too_small_image_is_named_in_score_network() -> None:
    tiny = Sample(np.zeros((16, 16, 3), np.float32), np.eye(16, dtype=bool), np.ones((16, 16), bool), name="crumb")
    with pytest.raises(ValueError, match="sample 'crumb': image must be at least 32 x 32"):
        score_network(GreenChannelModel(), [tiny], threshold=0.5, progress=False)
