"""Tests for the command line, ``python -m retina_lib``: run in-process through ``main``."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from retina_lib import cli
from retina_lib.cli import main
from retina_lib.errors import UserInputError
from retina_lib.training.run_folder import CHECKPOINT_FILE
from test_data_readers import png_header_only

#: A tiny synthetic dataset, trained for one epoch on the CPU.
SYNTHETIC = ["--dataset", "synthetic", "--synthetic-n", "3", "--synthetic-size", "64"]


def photo(path: Path, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path



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


@pytest.mark.slow
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
    status, _, err = run(capsys, "predict", str(image), "--weights", str(tmp_path / "nothing.pth"), "--device", "cpu", "--threshold", "0.5")
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
    status, _, err = run(capsys, "predict", str(broken), "--weights", str(weights), "--device", "cpu", "--threshold", "0.5")
    assert_one_line_error(status, err, "broken.png")


def test_a_link_loop_among_the_images_is_one_line_and_the_others_are_predicted(tmp_path: Path, capsys) -> None:
    """Issue 18, case 16: a symlink loop once stopped every image with a bare RuntimeError from the name check."""
    weights = tmp_path / "linknet.pth"
    from retina_lib.model import LinkNet
    torch.save(LinkNet().state_dict(), weights)
    (tmp_path / "loop.png").symlink_to("loop.png")
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(tmp_path / "other.png")
    status, out, err = run(capsys, "predict", str(tmp_path / "loop.png"), str(tmp_path / "other.png"),
                           "--weights", str(weights), "--device", "cpu", "--threshold", "0.5")
    assert_one_line_error(status, err, "1 of 2 image(s) could not be predicted")
    assert "loop.png: a symbolic link that leads back to itself" in err
    assert (tmp_path / "other_prob.png").is_file() and (tmp_path / "other_mask.png").is_file()
    assert not (tmp_path / "loop_prob.png").exists()


def test_synthetic_options_only_for_the_synthetic_dataset(tmp_path: Path, capsys) -> None:
    status, _, err = run(capsys, "train", "--dataset", "drive", "--synthetic-n", "3", "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "--synthetic-n and --synthetic-size only apply to --dataset synthetic")


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        main(["--debug", "predict", str(tmp_path / "x.png"), "--weights", str(tmp_path / "nothing.pth"), "--threshold", "0.5"])
    with pytest.raises(FileNotFoundError):
        main(["predict", str(tmp_path / "x.png"), "--weights", str(tmp_path / "nothing.pth"), "--threshold", "0.5", "--debug"])


def test_skip_incomplete_reaches_the_loader_and_is_refused_for_synthetic():
    from retina_lib.cli import build_parser, dataset_options

    real = build_parser().parse_args(["evaluate", "--dataset", "hrf", "--weights", "w.pth", "--skip-incomplete"])
    assert dataset_options(real) == {"skip_incomplete": True}
    synthetic = build_parser().parse_args(["evaluate", "--dataset", "synthetic", "--weights", "w.pth",
                                           "--skip-incomplete"])
    with pytest.raises(ValueError, match="real datasets"):
        dataset_options(synthetic)


# --------------------------------------------------------------------------
# Issue 18: predict and evaluate never overwrite what the user owns (cases 1, 2, 5, 18)
# --------------------------------------------------------------------------

def fsynced_names(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the name of every file forced to the disk from now on (Linux: names read from /proc)."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the file behind a descriptor")
    names: list[str] = []
    real_fsync = os.fsync

    def fsync(descriptor: int) -> None:
        names.append(Path(os.readlink(f"/proc/self/fd/{descriptor}")).name)
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)
    return names


def was_synced(name: str, synced: list[str]) -> bool:
    """Whether ``name`` itself or a temporary file renamed to it (``.NAME.XXXX.partial``) was forced to disk."""
    return any(seen == name or seen.startswith(f".{name}.") for seen in synced)


def test_case_1_predict_keeps_an_expert_label_named_like_its_mask(tmp_path: Path, capsys, linknet_file: Path) -> None:
    eye = photo(tmp_path / "eye.png")
    label = tmp_path / "eye_mask.png"
    Image.fromarray(np.eye(40, 48, dtype=np.uint8) * 255).save(label)
    before = label.read_bytes()
    status, _, err = run(capsys, "predict", str(eye), "--weights", str(linknet_file), "--device", "cpu", "--threshold", "0.5")
    assert_one_line_error(status, err, "eye_mask.png already exists and was not written by retina_lib")
    assert label.read_bytes() == before and not (tmp_path / "eye_prob.png").exists(), "nothing was written"

    status, _, err = run(capsys, "predict", str(eye), "--weights", str(linknet_file), "--device", "cpu", "--threshold", "0.5", "--overwrite")
    assert status == 0, err
    assert label.read_bytes() != before, "--overwrite replaces it, as asked"
    status, _, err = run(capsys, "predict", str(eye), "--weights", str(linknet_file), "--device", "cpu", "--threshold", "0.5")
    assert status == 0, "predict's own maps are replaced without --overwrite: " + err


def test_case_1_predict_never_overwrites_the_weights(tmp_path: Path, capsys, linknet_file: Path) -> None:
    eye = photo(tmp_path / "eye.png")
    weights = tmp_path / "eye_prob.png"
    weights.write_bytes(linknet_file.read_bytes())
    status, _, err = run(capsys, "predict", str(eye), "--weights", str(weights), "--device", "cpu", "--threshold", "0.5", "--overwrite")
    assert_one_line_error(status, err, "would overwrite the weights")
    assert weights.read_bytes() == linknet_file.read_bytes()


def evaluate_json(capsys, weights: Path, json_path: Path, *more: str) -> tuple[int, str, str]:
    return run(capsys, "evaluate", *SYNTHETIC, "--weights", str(weights), "--device", "cpu", "--threshold", "0.5",
               "--json", str(json_path), *more)


def test_case_2_evaluate_json_never_overwrites_the_weights(tmp_path: Path, capsys, linknet_file: Path) -> None:
    weights = tmp_path / "linknet.pth"
    weights.write_bytes(linknet_file.read_bytes())
    status, out, err = evaluate_json(capsys, weights, tmp_path / "." / "linknet.pth", "--overwrite")
    assert_one_line_error(status, err, "would overwrite the weights")
    assert out == "", "refused before the evaluation"
    assert weights.read_bytes() == linknet_file.read_bytes()


def test_case_2_evaluate_json_replaces_another_file_only_with_overwrite(tmp_path: Path, capsys,
                                                                        linknet_file: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pth"
    checkpoint.write_bytes(b"a checkpoint the user needs for --resume")
    status, out, err = evaluate_json(capsys, linknet_file, checkpoint)
    assert_one_line_error(status, err, "already exists and was not written by retina_lib")
    assert out == "" and checkpoint.read_bytes() == b"a checkpoint the user needs for --resume"
    status, _, err = evaluate_json(capsys, linknet_file, checkpoint, "--overwrite")
    assert status == 0, err
    assert json.loads(checkpoint.read_text())["n_images"] == 3


def test_case_2_evaluate_json_never_writes_into_the_dataset(tmp_path: Path, capsys, linknet_file: Path) -> None:
    image = tmp_path / "data" / "CHASEDB1" / "Image_01L.png"
    image.parent.mkdir(parents=True)
    photo(image)
    before = image.read_bytes()
    status, out, err = run(capsys, "evaluate", "--dataset", "chase_db1", "--data-dir", str(tmp_path / "data"),
                           "--weights", str(linknet_file), "--device", "cpu", "--threshold", "0.5",
                           "--json", str(image), "--overwrite")
    assert_one_line_error(status, err, "is inside the dataset folder")
    assert image.read_bytes() == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write into read-only folders")
def test_case_2_a_read_only_json_folder_is_refused_before_evaluating(tmp_path: Path, capsys,
                                                                      linknet_file: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        status, out, err = evaluate_json(capsys, linknet_file, folder / "results.json")
    finally:
        folder.chmod(0o755)
    assert_one_line_error(status, err, "is not writable")
    assert out == ""


def test_case_5_a_full_disk_keeps_the_previous_prediction_pair(tmp_path: Path, capsys, linknet_file: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    eye = photo(tmp_path / "eye.png")
    assert run(capsys, "predict", str(eye), "--weights", str(linknet_file), "--device", "cpu", "--threshold", "0.5")[0] == 0
    outputs = [tmp_path / "eye_prob.png", tmp_path / "eye_mask.png"]
    before = [path.read_bytes() for path in outputs]
    photo(eye, seed=1)  # a new photograph: new maps
    real_save, saves = Image.Image.save, []

    def save(self, fp, *args, **kwargs):
        saves.append(fp)
        if len(saves) == 2:  # the disk fills up while the mask is written
            Path(fp).write_bytes(b"\x89PNG\r\n\x1a\n half")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    status, _, err = run(capsys, "predict", str(eye), "--weights", str(linknet_file), "--device", "cpu", "--threshold", "0.5")
    assert_one_line_error(status, err, "no space left on the disk")
    assert [path.read_bytes() for path in outputs] == before, "the previous pair is kept whole and together"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["eye.png", "eye_mask.png", "eye_prob.png"]


def test_case_18_predict_forces_its_maps_to_the_disk(tmp_path: Path, capsys, linknet_file: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    eye = photo(tmp_path / "eye.png")
    synced = fsynced_names(monkeypatch)
    assert run(capsys, "predict", str(eye), "--weights", str(linknet_file), "--device", "cpu", "--threshold", "0.5")[0] == 0
    assert was_synced("eye_prob.png", synced) and was_synced("eye_mask.png", synced), synced


# --------------------------------------------------------------------------
# Hostile inputs on the command line: one line each, nothing overwritten (were in test_safety.py)
# --------------------------------------------------------------------------

def test_a_hand_made_checkpoint_is_one_line_on_the_command_line(tmp_path: Path, capsys) -> None:
    torch.save({"best_model": {}, "optimizer": {}}, tmp_path / CHECKPOINT_FILE)
    status, _, err = run(capsys, "train", *SYNTHETIC, "--epochs", "1", "--preset", "original", "--mode", "resize", "--size", "64", "--val-count", "1",
                         "--device", "cpu", "--out", str(tmp_path), "--resume")
    assert_one_line_error(status, err, "not a checkpoint written by fit: no 'model'")


def test_predict_refuses_an_output_that_is_an_input(tmp_path: Path, capsys, linknet_file: Path) -> None:
    scan, victim = photo(tmp_path / "scan.png"), photo(tmp_path / "scan_prob.png", seed=1)
    before = victim.read_bytes()
    status, _, err = run(capsys, "predict", str(scan), str(victim), "--weights", str(linknet_file), "--device", "cpu", "--threshold", "0.5")
    assert_one_line_error(status, err, "would overwrite the input")
    assert victim.read_bytes() == before
    assert not (tmp_path / "scan_mask.png").exists(), "nothing is written"


@pytest.mark.parametrize("second, words", [("scan.jpg", "have the same name"),
                                           ("scan.png", "the same image is given twice")])
def test_predict_refuses_two_inputs_with_one_output(tmp_path: Path, capsys, linknet_file: Path, second: str,
                                                    words: str) -> None:
    photo(tmp_path / "scan.png")
    photo(tmp_path / second, seed=1)
    status, _, err = run(capsys, "predict", str(tmp_path / "scan.png"), str(tmp_path / second),
                         "--weights", str(linknet_file), "--device", "cpu", "--threshold", "0.5")
    assert_one_line_error(status, err, words)
    assert not (tmp_path / "scan_prob.png").exists()


def test_predict_refuses_same_names_from_two_folders_into_one_out(tmp_path: Path, capsys, linknet_file: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = photo(tmp_path / "a" / "eye.png"), photo(tmp_path / "b" / "eye.png", seed=1)
    status, _, err = run(capsys, "predict", str(first), str(second), "--weights", str(linknet_file),
                         "--device", "cpu", "--threshold", "0.5", "--out", str(tmp_path / "out"))
    assert_one_line_error(status, err, "have the same name")
    status, out, err = run(capsys, "predict", str(first), str(second), "--weights", str(linknet_file),
                           "--device", "cpu", "--threshold", "0.5")  # beside each image: no clash
    assert status == 0, err
    assert (tmp_path / "a" / "eye_prob.png").is_file() and (tmp_path / "b" / "eye_prob.png").is_file()


def test_predict_goes_on_after_a_bad_image_and_fails_at_the_end(tmp_path: Path, capsys, linknet_file: Path) -> None:
    good, later = photo(tmp_path / "good.png"), photo(tmp_path / "later.png", seed=1)
    broken = tmp_path / "broken.png"
    broken.write_text("not a picture")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    status, out, err = run(capsys, "predict", str(good), str(broken), str(folder), str(later),
                           "--weights", str(linknet_file), "--device", "cpu", "--threshold", "0.5")
    assert_one_line_error(status, err, "2 of 4 image(s) could not be predicted")
    assert "broken.png: cannot decode" in err and "folder.png: a folder, not an image file" in err
    assert (tmp_path / "good_prob.png").is_file() and (tmp_path / "later_mask.png").is_file()
    assert "later.png ->" in out


def test_bombs_are_one_line_in_predict_evaluate_and_train(tmp_path: Path, capsys, linknet_file: Path) -> None:
    bomb = png_header_only(tmp_path / "bomb.png", 12000, 12000)
    status, _, err = run(capsys, "predict", str(bomb), "--weights", str(linknet_file), "--device", "cpu", "--threshold", "0.5")
    assert_one_line_error(status, err, "bomb.png: its header claims")

    for split in ("train", "test"):
        (tmp_path / "data" / split / "images").mkdir(parents=True)
        (tmp_path / "data" / split / "masks").mkdir()
        for name in ("a", "b", "c"):
            photo(tmp_path / "data" / split / "images" / f"{name}.png", size=(64, 64))
            Image.fromarray(np.eye(64, dtype=np.uint8) * 255).save(tmp_path / "data" / split / "masks" / f"{name}.png")
        png_header_only(tmp_path / "data" / split / "images" / "b.png", 12000, 12000)
    status, _, err = run(capsys, "evaluate", "--dataset", "folder", "--data-dir", str(tmp_path / "data"),
                         "--weights", str(linknet_file), "--threshold", "0.5", "--device", "cpu")
    assert status == 2 and "Traceback" not in err  # after the progress bar of the images before it:
    assert err.strip().splitlines()[-1].startswith("error: ") and "b.png: its header claims" in err
    status, _, err = run(capsys, "train", "--dataset", "folder", "--data-dir", str(tmp_path / "data"), "--epochs", "1",
                         "--preset", "original", "--mode", "resize", "--size", "64", "--val-count", "1", "--device", "cpu", "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "b.png: its header claims")


def test_evaluate_json_into_a_folder_is_refused_before_evaluating(tmp_path: Path, capsys, linknet_file: Path) -> None:
    status, out, err = run(capsys, "evaluate", *SYNTHETIC, "--weights", str(linknet_file), "--device", "cpu",
                           "--threshold", "0.5", "--json", str(tmp_path))
    assert_one_line_error(status, err, "is a folder; give a file name")
    assert out == "", "refused before the evaluation ran"


@pytest.mark.parametrize("option, value", [("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1"), ("--lr", "0"),
                                           ("--epochs", "0"), ("--batch-size", "-2"), ("--val-count", "-1")])
def test_impossible_training_numbers_are_refused_while_parsing(capsys, option: str, value: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--dataset", "synthetic", option, value])
    assert exit_.value.code == 2
    assert f"argument {option}: '{value}' is not" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_thresholds_outside_0_1_are_refused_while_parsing(capsys, value: str) -> None:
    with pytest.raises(SystemExit):
        main(["predict", "x.png", "--weights", "w.pth", "--threshold", value])
    assert "is not a number between 0 and 1" in capsys.readouterr().err


def test_the_command_line_names_its_own_option_for_skipping(tmp_path: Path, capsys) -> None:
    images, masks = tmp_path / "train" / "images", tmp_path / "train" / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    for name in ("a", "b"):
        photo(images / f"{name}.png", size=(64, 64))
    Image.fromarray(np.eye(64, dtype=np.uint8) * 255).save(masks / "a.png")
    status, _, err = run(capsys, "train", "--dataset", "folder", "--data-dir", str(tmp_path), "--device", "cpu",
                         "--out", str(tmp_path / "run"))
    assert_one_line_error(status, err, "Pass --skip-incomplete to leave the incomplete samples out")
    assert "skip_incomplete=True" not in err


# --------------------------------------------------------------------------
# A user's mistake is one line; a library bug keeps its traceback
# --------------------------------------------------------------------------

def fail_while_loading_weights(monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """Make ``predict`` fail with ``error`` where it loads the weights, as a bug inside the library would."""
    def load_weights(path):
        raise error

    monkeypatch.setattr(cli, "load_weights", load_weights)


def test_a_plain_value_error_is_a_bug_and_shows_its_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    fail_while_loading_weights(monkeypatch, ValueError("operands could not be broadcast together"))
    with pytest.raises(ValueError, match="operands could not be broadcast"):
        main(["predict", str(tmp_path / "eye.png"), "--weights", str(tmp_path / "w.pth"), "--threshold", "0.5"])
    assert "error:" not in capsys.readouterr().err, "a bug must not be dressed up as the user's mistake"


def test_a_user_input_error_is_one_line_without_traceback(tmp_path: Path, capsys, monkeypatch) -> None:
    fail_while_loading_weights(monkeypatch, UserInputError("w.pth: made for another network"))
    status, _, err = run(capsys, "predict", str(tmp_path / "eye.png"), "--weights", str(tmp_path / "w.pth"), "--threshold", "0.5")
    assert_one_line_error(status, err, "w.pth: made for another network")
    assert "Traceback" not in err
