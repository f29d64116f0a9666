"""Hostile and broken inputs: none may run code, destroy a file, or give a silent wrong answer.

Covers weights files (malicious pickles through every loading path, random,
truncated and NaN weights, hand-made checkpoints), images (decompression
bombs, 32-bit files, folders given as files), ``predict`` name collisions,
``evaluate`` on a label without vessels, and command-line numbers.
"""
from __future__ import annotations

import json
import math
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from retina_lib.cli import main
from retina_lib.data import DatasetError, Sample, read_image
from retina_lib.scoring.evaluation import evaluate
from retina_lib.scoring.inference import predict
from retina_lib.model import LinkNet
from retina_lib.training.run_folder import CHECKPOINT_FILE, ResumeError
from retina_lib.training.weights import WeightsError, load_weights
from retina_lib.training.trainer import fit
from test_cli import SYNTHETIC, assert_one_line_error, run
from test_evaluation import TEST_ODDS, GreenChannelModel, make_sample
from test_training import FAST, blob_images, tiny, tiny_net


class CreatesFile:
    """Unpickling this object calls ``open(path, "w")``: it creates ``path``. Stands for any hidden code."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture(scope="module")
def linknet_file(tmp_path_factory) -> Path:
    """An untrained LinkNet's state dict on disk (a valid ``linknet.pth``)."""
    path = tmp_path_factory.mktemp("weights") / "linknet.pth"
    torch.manual_seed(0)
    torch.save(LinkNet().state_dict(), path)
    return path


def photo(path: Path, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
    return path


# --------------------------------------------------------------------------
# Malicious pickles: through every path that loads a .pth file
# --------------------------------------------------------------------------

def malicious_weights(path: Path, marker: Path, full_checkpoint: bool = False) -> Path:
    payload = {"initial.conv.weight": torch.zeros(1), "hidden": CreatesFile(marker)}
    torch.save({"best_model": payload, "optimizer": {}} if full_checkpoint else payload, path)
    return path


def test_the_malicious_pickle_really_runs_code_when_loaded_unsafely(tmp_path: Path) -> None:
    """Checks the test's own weapon: without weights_only it does create its file."""
    marker = tmp_path / "marker"
    torch.load(malicious_weights(tmp_path / "evil.pth", marker), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("full_checkpoint", [False, True])
def test_a_malicious_pickle_runs_no_code_through_any_loading_path(tmp_path: Path, capsys, linknet_file: Path,
                                                                  full_checkpoint: bool) -> None:
    marker = tmp_path / "marker"
    evil = malicious_weights(tmp_path / "evil.pth", marker, full_checkpoint)
    with pytest.raises(WeightsError, match="refused: it holds Python objects \\(io.open\\)") as error:
        load_weights(evil)
    assert "weights_only" not in str(error.value) and "likely succeed" not in str(error.value), \
        "never relay torch's advice to load with weights_only=False"

    image = photo(tmp_path / "photo.png")
    status, _, err = run(capsys, "predict", str(image), "--weights", str(evil), "--device", "cpu")
    assert_one_line_error(status, err, "refused")
    status, _, err = run(capsys, "evaluate", *SYNTHETIC, "--weights", str(evil), "--device", "cpu")
    assert_one_line_error(status, err, "refused")

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / CHECKPOINT_FILE).write_bytes(evil.read_bytes())
    with pytest.raises(ResumeError, match="refused"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=run_dir, resume=True, **FAST)
    status, _, err = run(capsys, "train", *SYNTHETIC, "--epochs", "1", "--preset", "original", "--mode", "resize", "--size", "64", "--val-count", "1",
                         "--device", "cpu", "--out", str(run_dir), "--resume")
    assert_one_line_error(status, err, "refused")
    assert not marker.exists(), "the hidden code ran"
    assert not list(tmp_path.glob("photo_*.png"))


# --------------------------------------------------------------------------
# Random, truncated, NaN and infinite weights; a folder as weights
# --------------------------------------------------------------------------

def broken_weights(kind: str, folder: Path, linknet_file: Path) -> Path:
    path = folder / f"{kind}.pth"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "truncated":
        path.write_bytes(linknet_file.read_bytes()[: linknet_file.stat().st_size // 2])
    else:
        state = torch.load(linknet_file, weights_only=True)
        state["classifier.weight"].view(-1)[0] = float("nan") if kind == "nan" else float("inf")
        torch.save(state, path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("random", "not a PyTorch weights file that loads safely"),
    ("truncated", "not a PyTorch weights file that loads safely"),
    ("nan", "hold NaN or infinite values"),
    ("inf", "hold NaN or infinite values"),
])
def test_broken_weights_are_refused_before_predicting(tmp_path: Path, capsys, linknet_file: Path, kind: str,
                                                      message: str) -> None:
    weights = broken_weights(kind, tmp_path, linknet_file)
    with pytest.raises(WeightsError, match=message):
        load_weights(weights)
    image = photo(tmp_path / "photo.png")
    status, _, err = run(capsys, "predict", str(image), "--weights", str(weights), "--device", "cpu")
    assert_one_line_error(status, err, message)
    assert "weights_only" not in err and "likely succeed" not in err, "torch's advice to load unsafely"
    assert not (tmp_path / "photo_prob.png").exists() and not (tmp_path / "photo_mask.png").exists()


def test_a_folder_as_weights_is_called_a_folder(tmp_path: Path, capsys) -> None:
    image = photo(tmp_path / "photo.png")
    status, _, err = run(capsys, "predict", str(image), "--weights", str(tmp_path), "--device", "cpu")
    assert_one_line_error(status, err, "is a folder")


def test_a_network_giving_nan_gives_no_prediction() -> None:
    class NaNModel(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.full_like(x[:, :1], float("nan"))

    with pytest.raises(ValueError, match="NaN or infinite for 1920 of 1920 pixels"):
        predict(NaNModel(), np.zeros((40, 48, 3), np.float32))


# --------------------------------------------------------------------------
# Hand-made or foreign checkpoints
# --------------------------------------------------------------------------

def damage(checkpoint: dict, how: str) -> object:
    if how == "not a dict":
        return [checkpoint]
    if how == "no config":
        del checkpoint["config"]
    elif how == "no rng":
        del checkpoint["rng"]
    elif how == "rng without python":
        del checkpoint["rng"]["python"]
    elif how == "epoch as text":
        checkpoint["epoch"] = "1"
    elif how == "another architecture":
        checkpoint["model"] = nn.Linear(3, 2).state_dict()
    elif how == "another optimizer":
        other = torch.optim.Adam(nn.Linear(3, 2).parameters())
        checkpoint["optimizer"] = other.state_dict()
    elif how == "short history":
        checkpoint["history"]["train_loss"] = []
    elif how == "nan weights":
        next(iter(checkpoint["model"].values()))[0] = float("nan")
    elif how == "bad rng state":
        checkpoint["rng"]["torch"] = torch.zeros(3, dtype=torch.uint8)
    return checkpoint


@pytest.mark.parametrize("how, message", [
    ("not a dict", "not a full training checkpoint"),
    ("no config", "no 'config'"),
    ("no rng", "no 'rng'"),
    ("rng without python", "no rng 'python'"),
    ("epoch as text", "'epoch' is a str"),
    ("another architecture", "'model' is for another architecture"),
    ("another optimizer", "optimizer, schedule or random states do not fit"),
    ("short history", "one value per epoch"),
    ("nan weights", "NaN or infinite"),
    ("bad rng state", "optimizer, schedule or random states do not fit"),
])
def test_hand_made_checkpoints_raise_the_resume_error(tmp_path: Path, how: str, message: str) -> None:
    fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)
    checkpoint = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    torch.save(damage(checkpoint, how), tmp_path / CHECKPOINT_FILE)
    with pytest.raises(ResumeError, match=message):
        fit(tiny_net(), blob_images(2), config=tiny(2), out_dir=tmp_path, resume=True, **FAST)


def test_a_hand_made_checkpoint_is_one_line_on_the_command_line(tmp_path: Path, capsys) -> None:
    torch.save({"best_model": {}, "optimizer": {}}, tmp_path / CHECKPOINT_FILE)
    status, _, err = run(capsys, "train", *SYNTHETIC, "--epochs", "1", "--preset", "original", "--mode", "resize", "--size", "64", "--val-count", "1",
                         "--device", "cpu", "--out", str(tmp_path), "--resume")
    assert_one_line_error(status, err, "not a checkpoint written by fit: no 'model'")


# --------------------------------------------------------------------------
# predict never destroys an input, and goes on after a bad image
# --------------------------------------------------------------------------

def test_predict_refuses_an_output_that_is_an_input(tmp_path: Path, capsys, linknet_file: Path) -> None:
    scan, victim = photo(tmp_path / "scan.png"), photo(tmp_path / "scan_prob.png", seed=1)
    before = victim.read_bytes()
    status, _, err = run(capsys, "predict", str(scan), str(victim), "--weights", str(linknet_file), "--device", "cpu")
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
                         "--weights", str(linknet_file), "--device", "cpu")
    assert_one_line_error(status, err, words)
    assert not (tmp_path / "scan_prob.png").exists()


def test_predict_refuses_same_names_from_two_folders_into_one_out(tmp_path: Path, capsys, linknet_file: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = photo(tmp_path / "a" / "eye.png"), photo(tmp_path / "b" / "eye.png", seed=1)
    status, _, err = run(capsys, "predict", str(first), str(second), "--weights", str(linknet_file),
                         "--device", "cpu", "--out", str(tmp_path / "out"))
    assert_one_line_error(status, err, "have the same name")
    status, out, err = run(capsys, "predict", str(first), str(second), "--weights", str(linknet_file),
                           "--device", "cpu")  # beside each image: no clash
    assert status == 0, err
    assert (tmp_path / "a" / "eye_prob.png").is_file() and (tmp_path / "b" / "eye_prob.png").is_file()


def test_predict_goes_on_after_a_bad_image_and_fails_at_the_end(tmp_path: Path, capsys, linknet_file: Path) -> None:
    good, later = photo(tmp_path / "good.png"), photo(tmp_path / "later.png", seed=1)
    broken = tmp_path / "broken.png"
    broken.write_text("not a picture")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    status, out, err = run(capsys, "predict", str(good), str(broken), str(folder), str(later),
                           "--weights", str(linknet_file), "--device", "cpu")
    assert_one_line_error(status, err, "2 of 4 image(s) could not be predicted")
    assert "broken.png: cannot decode" in err and "folder.png: a folder, not an image file" in err
    assert (tmp_path / "good_prob.png").is_file() and (tmp_path / "later_mask.png").is_file()
    assert "later.png ->" in out


# --------------------------------------------------------------------------
# Images: decompression bombs, 32-bit files
# --------------------------------------------------------------------------

def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height greyscale pixels but that holds no pixel data.

    Decoding it would fail ("cannot decode"); a refusal that says how many
    pixels it claims therefore proves the header was read and nothing more.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width, height, claimed", [
    (8000, 8000, "8000 x 8000 = 64,000,000 pixels"),  # above the library's limit, below Pillow's
    (12000, 12000, "144,000,000 pixels"),  # Pillow warns
    (100000, 100000, "10,000,000,000 pixels"),  # Pillow refuses
])
def test_bombs_are_refused_before_decoding_naming_the_file(tmp_path: Path, width: int, height: int,
                                                           claimed: str) -> None:
    bomb = png_header_only(tmp_path / "bomb.png", width, height)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning may escape
        with pytest.raises(DatasetError, match=f"bomb.png: its header claims {claimed}"):
            read_image(bomb)


def test_a_gzipped_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    import gzip

    path = tmp_path / "im0001.ppm.gz"
    with gzip.open(path, "wb") as stream:
        stream.write(b"P6\n100000 100000\n255\n")
    with pytest.raises(DatasetError, match="im0001.ppm.gz: its header claims"):
        read_image(path)


def test_bombs_are_one_line_in_predict_evaluate_and_train(tmp_path: Path, capsys, linknet_file: Path) -> None:
    bomb = png_header_only(tmp_path / "bomb.png", 12000, 12000)
    status, _, err = run(capsys, "predict", str(bomb), "--weights", str(linknet_file), "--device", "cpu")
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


def test_a_32_bit_image_beyond_16_bits_is_refused_not_clipped(tmp_path: Path) -> None:
    values = (np.arange(64 * 64).reshape(64, 64) * 1000).astype(np.int32)
    Image.fromarray(values).save(tmp_path / "wide.tif")
    with pytest.raises(DatasetError, match="wide.tif: a 32-bit integer image with values from 0 to 4095000"):
        read_image(tmp_path / "wide.tif")
    Image.fromarray((values // 1000 * 16).astype(np.int32)).save(tmp_path / "narrow.tif")  # 0..65520: 16-bit data
    image = read_image(tmp_path / "narrow.tif")
    assert image.shape == (64, 64, 3) and image.max() == pytest.approx(65520 / 65535)


def test_a_folder_given_as_an_image_is_called_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="a folder, not an image file"):
        read_image(tmp_path)


# --------------------------------------------------------------------------
# evaluate: a label without vessels, a too-small image, --json
# --------------------------------------------------------------------------

def test_a_vessel_free_label_leaves_its_auc_undefined_and_everything_else_scored() -> None:
    samples = [make_sample(10 + seed, TEST_ODDS, f"test{seed}") for seed in range(2)]
    empty = Sample(samples[0].image, np.zeros_like(samples[0].label), samples[0].fov, name="no_vessels")
    with pytest.warns(UserWarning, match="image 'no_vessels': its label has no vessel pixels"):
        results = evaluate(GreenChannelModel(), [*samples, empty], threshold=0.5, progress=False)
    by_name = {scores["name"]: scores for scores in results["per_image"]}
    assert by_name["no_vessels"]["auc_roc"] is None and by_name["no_vessels"]["auc_pr"] is None
    assert by_name["no_vessels"]["specificity"] < 1 and math.isfinite(by_name["test0"]["auc_roc"])
    assert 0.5 < results["auc_roc"] < 1 and results["n_images"] == 3
    json.dumps(results)  # None becomes null: the results still save


def test_a_too_small_image_is_named_in_evaluate() -> None:
    tiny = Sample(np.zeros((16, 16, 3), np.float32), np.eye(16, dtype=bool), np.ones((16, 16), bool), name="crumb")
    with pytest.raises(ValueError, match="sample 'crumb': image must be at least 32 x 32"):
        evaluate(GreenChannelModel(), [tiny], threshold=0.5, progress=False)


def test_evaluate_json_into_a_folder_is_refused_before_evaluating(tmp_path: Path, capsys, linknet_file: Path) -> None:
    status, out, err = run(capsys, "evaluate", *SYNTHETIC, "--weights", str(linknet_file), "--device", "cpu",
                           "--threshold", "0.5", "--json", str(tmp_path))
    assert_one_line_error(status, err, "is a folder; give a file name")
    assert out == "", "refused before the evaluation ran"


# --------------------------------------------------------------------------
# Command-line numbers and wording
# --------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [("--lr", "inf"), ("--lr", "nan"), ("--lr", "-1"), ("--lr", "0"),
                                           ("--epochs", "0"), ("--batch-size", "-2"), ("--val-count", "-1")])
def test_impossible_training_numbers_are_refused_while_parsing(capsys, option: str, value: str) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--dataset", "synthetic", option, value])
    assert exit_.value.code == 2
    assert f"argument {option}: '{value}' is not" in capsys.readouterr().err


def test_fit_refuses_an_infinite_learning_rate() -> None:
    with pytest.raises(ValueError, match="lr must be a positive finite number, got inf"):
        fit(tiny_net(), blob_images(2), config=tiny(1, lr=float("inf")), **FAST)


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
