"""The benchmark's bookkeeping (no timings: those belong in benchmarks/, never in tests)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench  # noqa: E402


def test_training_step_flops_are_about_three_forward_passes() -> None:
    counts = bench.count_flops("linknet", 512)
    assert counts["forward"] / 1e9 == pytest.approx(21.4, abs=0.1)  # the figure the README and notebook 01 quote
    # The backward computes two gradients per convolution (weights, activations) but none for the image.
    assert 2.5 < counts["training_step"] / counts["forward"] < 3.0
    assert counts["training_step"] == counts["forward"] + counts["backward"]


def test_peer_comparison_is_skipped_with_a_message_when_the_package_is_missing(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "segmentation_models_pytorch", None)  # makes the import fail
    paths = bench.train_paths(torch.device("cpu"))
    report = bench.peer_comparison(64, torch.device("cpu"), bench.QUICK_SETTINGS, paths)
    assert "segmentation_models_pytorch" in report["skipped"]
    assert "peer comparison skipped" in capsys.readouterr().out
