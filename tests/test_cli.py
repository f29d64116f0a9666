"""Tests for the command line, ``python -m retina_lib``: run in-process through ``main``."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from retina_lib.cli import main

#: A tiny synthetic dataset, trained for one epoch on the CPU.
SYNTHETIC = ["--dataset", "synthetic", "--synthetic-n", "3", "--synthetic-size", "64"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` -> (exit status, stdout, stderr)."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status: int, err: str, expected: str) -> None:
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "download"])
def test_every_command_has_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    assert f"usage: python -m retina_lib {command}" in capsys.readouterr().out


def test_python_dash_m_shows_help() -> None:
    result = subprocess.run([sys.executable, "-m", "retina_lib", "--help"], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1],
                            timeout=900)  # only a guard against a hang, not a speed limit
    assert result.returncode == 0, result.stderr
    for command in ("train", "evaluate", "predict", "download"):
        assert command in result.stdout


def test_train_evaluate_predict_round_trip(tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "run"
    status, out, err = run(capsys, "train", *SYNTHETIC, "--epochs", "1", "--batch-size", "2", "--preset", "original", "--mode", "resize", "--size", "64",
                           "--val-count", "1", "--device", "cpu", "--out", str(run_dir))
    assert status == 0, err
    assert "best epoch 1 of 1" in out
    for name in ("linknet.pth", "checkpoint.pth", "history.json", "curves.png"):
        assert (run_dir / name).is_file(), name
    assert len(json.loads((run_dir / "history.json").read_text())["val_dice"]) == 1

    results_path = tmp_path / "results.json"
    status, out, err = run(capsys, "evaluate", *SYNTHETIC, "--weights", str(run_dir / "linknet.pth"),
                           "--device", "cpu", "--json", str(results_path))
    assert status == 0, err
    assert "F1" in out and "LinkNet" in out
    results = json.loads(results_path.read_text())
    for key in ("f1", "iou", "accuracy", "sensitivity", "specificity", "precision", "auc_roc", "auc_pr",
                "threshold", "per_image"):
        assert key in results, key
    assert len(results["per_image"]) == 3 and "name" in results["per_image"][0]

    photo = np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.jpg")
    status, out, err = run(capsys, "predict", str(tmp_path / "photo.jpg"), "--weights", str(run_dir / "checkpoint.pth"),
                           "--device", "cpu", "--threshold", "0.3")
    assert status == 0, err
    probability = np.asarray(Image.open(tmp_path / "photo_prob.png"))
    mask = np.asarray(Image.open(tmp_path / "photo_mask.png"))
    assert probability.shape == mask.shape == (70, 90)
    assert probability.dtype == mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    # probability >= 0.3 exactly when probability * 255 rounds to 77 or more
    assert np.all(mask[probability >= 77] == 255) and np.all(mask[probability <= 76] == 0)


def test_missing_weights_is_one_line(tmp_path: Path, capsys) -> None:
    image = tmp_path / "photo.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(image)
    status, _, err = run(capsys, "predict", str(image), "--weights", str(tmp_path / "nothing.pth"), "--device", "cpu")
    assert_one_line_error(status, err, "weights file not found")


def test_weights_of_another_architecture_are_one_line(tmp_path: Path, capsys) -> None:
    weights = tmp_path / "linear.pth"
    torch.save(nn.Linear(4, 2).state_dict(), weights)
    status, _, err = run(capsys, "evaluate", *SYNTHETIC, "--weights", str(weights), "--device", "cpu")
    assert_one_line_error(status, err, "another architecture")


def test_unknown_dataset_is_one_line(tmp_path: Path, capsys) -> None:
    status, _, err = run(capsys, "train", "--dataset", "no_such_set", "--data-dir", str(tmp_path), "--device", "cpu",
                         "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "no_such_set")


def test_unreadable_image_is_one_line(tmp_path: Path, capsys) -> None:
    weights = tmp_path / "linknet.pth"
    from retina_lib.model import LinkNet
    torch.save(LinkNet().state_dict(), weights)
    broken = tmp_path / "broken.png"
    broken.write_text("this is not a picture")
    status, _, err = run(capsys, "predict", str(broken), "--weights", str(weights), "--device", "cpu")
    assert_one_line_error(status, err, "broken.png")


def test_synthetic_options_only_for_the_synthetic_dataset(tmp_path: Path, capsys) -> None:
    status, _, err = run(capsys, "train", "--dataset", "drive", "--synthetic-n", "3", "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "--synthetic-n and --synthetic-size only apply to --dataset synthetic")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        main(["--debug", "predict", str(tmp_path / "x.png"), "--weights", str(tmp_path / "nothing.pth")])
    with pytest.raises(FileNotFoundError):
        main(["predict", str(tmp_path / "x.png"), "--weights", str(tmp_path / "nothing.pth"), "--debug"])


def test_skip_incomplete_reaches_the_loader_and_is_refused_for_synthetic():
    from retina_lib.cli import build_parser, dataset_options

    real = build_parser().parse_args(["evaluate", "--dataset", "hrf", "--weights", "w.pth", "--skip-incomplete"])
    assert dataset_options(real) == {"skip_incomplete": True}
    synthetic = build_parser().parse_args(["evaluate", "--dataset", "synthetic", "--weights", "w.pth",
                                           "--skip-incomplete"])
    with pytest.raises(ValueError, match="real datasets"):
        dataset_options(synthetic)
