"""Tests for retina_lib.training.trainer: fit, checkpoints, resuming, loading weights."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from retina_lib.data import load_dataset
from retina_lib.epoch_loop import NonFiniteLossError
from retina_lib.model import LinkNet
from retina_lib.training.run_folder import (
    BEST_WEIGHTS_FILE,
    CHECKPOINT_FILE,
    CURVES_FILE,
    HISTORY_FILE,
    ResumeError,
)
from retina_lib.cli import main
from retina_lib.recipes import recipe, train_recipe
from retina_lib.system.hardware import seed_everything
from retina_lib.training.checkpoints import current_names, dataset_label
from retina_lib.training.config import TrainConfig
from retina_lib.training.trainer import fit, split_validation, training_datasets
from retina_lib.training.weights import load_weights

#: How the tests run fit: everything on the CPU in float32, quietly.
FAST = dict(device="cpu", amp="off", progress=False)


def tiny(epochs: int, **changes) -> TrainConfig:
    """A quick recipe for the tiny test network: the original's loss and constant rate, batch 2, lr 1e-2."""
    return replace(recipe("original"), **{"epochs": epochs, "batch_size": 2, "lr": 1e-2, **changes})


def tiny_net(seed: int = 0) -> nn.Module:
    """A two-layer convolutional net with batch norm, for tests that do not need LinkNet itself."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))


def blob_images(n: int, size: int = 32, seed: int = 0) -> TensorDataset:
    """(image, label, fov) with bright green discs as "vessels": easy to learn, quick to make."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    images, labels = [], []
    for _ in range(n):
        label = np.zeros((size, size), bool)
        for _ in range(3):
            r, c = rng.integers(4, size - 4, size=2)
            label |= (rows - r) ** 2 + (cols - c) ** 2 <= 9
        image = rng.uniform(0.0, 0.4, (3, size, size)).astype(np.float32)
        image[1][label] += 0.5
        images.append(image)
        labels.append(label[None].astype(np.float32))
    image, label = torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(labels))
    return TensorDataset(image, label, torch.ones_like(label))


class NoisyEpochs(Dataset):
    """Adds noise from the GLOBAL torch generator, and knows its epoch; can stop training in one.

    The global generator is only reproduced after an interruption if fit
    restores the random states from the checkpoint, which is what this tests.
    """

    def __init__(self, base: TensorDataset, interrupt_in_epoch: int | None = None) -> None:
        self.base = base
        self.interrupt_in_epoch = interrupt_in_epoch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        if self.epoch == self.interrupt_in_epoch:
            raise KeyboardInterrupt
        image, label, fov = self.base[index]
        return image + 0.05 * torch.randn(image.shape), label, fov


def assert_same_history(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        if key != "epoch_seconds":
            np.testing.assert_allclose(first[key], second[key], rtol=1e-6, err_msg=key)


def test_fit_lowers_the_training_loss_and_records_every_epoch() -> None:
    train, val = blob_images(4), blob_images(2, seed=1)
    history = fit(tiny_net(), train, val, config=tiny(6), **FAST)
    assert set(history) == {"train_loss", "train_dice_loss", "train_iou_loss", "val_loss", "val_dice_loss",
                            "val_iou_loss", "val_dice", "lr", "epoch_seconds"}
    assert all(len(values) == 6 for values in history.values())
    assert history["train_loss"][-1] < history["train_loss"][0]
    np.testing.assert_allclose(history["train_loss"],
                               np.add(history["train_dice_loss"], history["train_iou_loss"]), rtol=1e-6)


def test_without_validation_there_are_no_validation_curves(tmp_path: Path) -> None:
    history = fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)
    assert not any(key.startswith("val_") for key in history)
    assert_same_history(json.loads((tmp_path / HISTORY_FILE).read_text()), history)


def test_the_model_ends_with_the_best_epoch_weights(tmp_path: Path) -> None:
    model = tiny_net()
    history = fit(model, blob_images(4), blob_images(2, seed=1), config=tiny(4, schedule="cosine"),
                  out_dir=tmp_path, **FAST)
    best_epoch = int(np.argmax(history["val_dice"])) + 1
    checkpoint = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert checkpoint["best_epoch"] == best_epoch
    assert checkpoint["epoch"] == 4
    assert checkpoint["best_score"] == pytest.approx(max(history["val_dice"]))
    best = torch.load(tmp_path / BEST_WEIGHTS_FILE, weights_only=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, best[key]), key
    assert history["lr"][0] == pytest.approx(1e-2) and history["lr"][-1] < history["lr"][0]  # cosine


@pytest.mark.slow
def test_checkpoints_load_with_weights_only_and_linknet_pth_into_a_fresh_linknet(tmp_path: Path) -> None:
    torch.manual_seed(0)
    fit(LinkNet(), blob_images(2, size=64), config=tiny(1), out_dir=tmp_path, **FAST)
    assert {path.name for path in tmp_path.iterdir()} >= {BEST_WEIGHTS_FILE, CHECKPOINT_FILE, HISTORY_FILE,
                                                           CURVES_FILE}
    assert not list(tmp_path.glob("*.partial"))
    checkpoint = torch.load(tmp_path / CHECKPOINT_FILE, weights_only=True)
    assert {"model", "best_model", "optimizer", "epoch", "history", "config", "rng"} <= checkpoint.keys()
    fresh = LinkNet()
    fresh.load_state_dict(torch.load(tmp_path / BEST_WEIGHTS_FILE, weights_only=True))
    from_checkpoint = load_weights(tmp_path / CHECKPOINT_FILE)
    assert isinstance(from_checkpoint, LinkNet) and not from_checkpoint.training
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, from_checkpoint.state_dict()[key]), key


@pytest.mark.slow
def test_an_interrupted_run_resumes_with_the_same_history(tmp_path: Path) -> None:
    base, val = blob_images(4), blob_images(2, seed=1)
    straight_model = tiny_net()
    straight = fit(straight_model, NoisyEpochs(base), val, config=tiny(4), out_dir=tmp_path / "straight", **FAST)

    run_dir = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_net(), NoisyEpochs(base, interrupt_in_epoch=3), val, config=tiny(4), out_dir=run_dir, **FAST)
    assert torch.load(run_dir / CHECKPOINT_FILE, weights_only=True)["epoch"] == 2

    resumed_model = tiny_net(seed=99)  # its own weights do not matter: the checkpoint's are loaded
    resumed = fit(resumed_model, NoisyEpochs(base), val, config=tiny(4), out_dir=run_dir, resume=True, **FAST)
    assert_same_history(straight, resumed)
    for key, value in straight_model.state_dict().items():
        torch.testing.assert_close(value, resumed_model.state_dict()[key], msg=key)


def test_the_interruption_message_says_how_to_resume(tmp_path: Path, capsys) -> None:
    with pytest.raises(KeyboardInterrupt):
        fit(tiny_net(), NoisyEpochs(blob_images(2), interrupt_in_epoch=2), config=tiny(3), out_dir=tmp_path, **FAST)
    message = capsys.readouterr().err
    assert "holds epoch 1" in message and "resume=True" in message and "--resume" in message


@pytest.mark.slow
def test_a_finished_run_can_be_extended(tmp_path: Path) -> None:
    data, val = NoisyEpochs(blob_images(4)), blob_images(2, seed=1)
    straight = fit(tiny_net(), data, val, config=tiny(3), out_dir=tmp_path / "straight", **FAST)
    fit(tiny_net(), data, val, config=tiny(2), out_dir=tmp_path / "extended", **FAST)
    extended = fit(tiny_net(), data, val, config=tiny(3), out_dir=tmp_path / "extended", resume=True, **FAST)
    assert_same_history(straight, extended)


@pytest.mark.parametrize("change, named", [
    ({"config": tiny(2, lr=1e-3)}, "lr: 0.01 in the checkpoint, 0.001 now"),
    ({"config": tiny(2, loss="bce+dice")}, "loss: 'dice+iou' in the checkpoint, 'bce+dice' now"),
    ({"dataset": "stare"}, "dataset: 'drive' in the checkpoint, 'stare' now"),
    ({"config": tiny(1)}, "epochs: 2 in the checkpoint, 1 now"),
])
def test_resuming_with_other_settings_is_refused_naming_them(tmp_path: Path, change: dict, named: str) -> None:
    arguments = {**FAST, "config": tiny(2), "dataset": "drive"}
    fit(tiny_net(), blob_images(2), out_dir=tmp_path, **arguments)
    with pytest.raises(ResumeError, match=re.escape(named)):
        fit(tiny_net(), blob_images(2), out_dir=tmp_path, resume=True, **{**arguments, **change})


def test_a_checkpoint_recorded_with_the_old_setting_names_can_be_resumed(tmp_path: Path) -> None:
    """Runs recorded before ``optimise`` became ``loss`` (and with ``dataset_NAME`` keys) continue as before."""
    fit(tiny_net(), blob_images(4), config=tiny(2), dataset=dataset_label("synthetic", {"n": 6, "size": 96}),
        out_dir=tmp_path / "run", **FAST)
    checkpoint = torch.load(tmp_path / "run" / CHECKPOINT_FILE, weights_only=True)
    record = checkpoint["config"]
    old_record = {("optimise" if key == "loss" else key): value for key, value in record.items()}
    old_record.update(dataset="synthetic", dataset_n=6, dataset_size=96)
    assert current_names(old_record) == record
    torch.save({**checkpoint, "config": old_record}, tmp_path / "run" / CHECKPOINT_FILE)
    resumed = fit(tiny_net(), blob_images(4), config=tiny(3), dataset=dataset_label("synthetic", {"size": 96, "n": 6}),
                  out_dir=tmp_path / "run", resume=True, **FAST)
    assert len(resumed["train_loss"]) == 3
    old_record["optimise"] = "bce+dice"
    torch.save({**checkpoint, "config": old_record}, tmp_path / "run" / CHECKPOINT_FILE)
    with pytest.raises(ResumeError, match="loss: 'bce\\+dice' in the checkpoint, 'dice\\+iou' now"):
        fit(tiny_net(), blob_images(4), config=tiny(3), dataset=dataset_label("synthetic", {"n": 6, "size": 96}),
            out_dir=tmp_path / "run", resume=True, **FAST)


def test_an_existing_run_is_not_overwritten_and_a_missing_one_not_resumed(tmp_path: Path) -> None:
    with pytest.raises(ResumeError, match="no checkpoint.pth"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, resume=True, **FAST)
    fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)
    with pytest.raises(FileExistsError, match="already holds a training run"):
        fit(tiny_net(), blob_images(2), config=tiny(1), out_dir=tmp_path, **FAST)


def test_a_nan_input_stops_fit_naming_epoch_and_batch() -> None:
    data = blob_images(4)
    data.tensors[0][:, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="training loss became nan at epoch 1, batch 1"):
        fit(tiny_net(), data, config=tiny(2), **FAST)


def test_fit_takes_a_train_config_not_a_dict() -> None:
    with pytest.raises(TypeError, match="config must be a TrainConfig"):
        fit(tiny_net(), blob_images(2), config={"epochs": 1}, **FAST)


def test_split_validation_holds_out_the_last_training_images() -> None:
    samples = list("abcdef")
    assert split_validation(samples, 2) == (list("abcd"), list("ef"))
    assert split_validation(samples, 0) == (samples, [])
    with pytest.raises(ValueError, match="val_count=6 leaves no training images"):
        split_validation(samples, 6)


def test_the_defaults_are_the_course_recipe() -> None:
    assert TrainConfig() == recipe("course")
    course = TrainConfig()
    assert (course.epochs, course.lr, course.loss, course.schedule, course.mode, course.samples_per_epoch) == (
        40, 1e-3, "bce+dice", "cosine", "crop", 100)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="schedule must be None or 'cosine', got 'step'"):
        fit(tiny_net(), blob_images(2), config=tiny(1, schedule="step"), **FAST)
    with pytest.raises(ValueError, match="loss must be one of dice\\+iou, bce\\+dice, bce\\+dice\\+cldice; got 'dice'"):
        fit(tiny_net(), blob_images(2), config=tiny(1, loss="dice"), **FAST)
    with pytest.raises(ValueError, match="resume=True needs out_dir"):
        fit(tiny_net(), blob_images(2), config=tiny(1), resume=True, **FAST)


def test_fit_learns_on_the_synthetic_dataset() -> None:
    samples = load_dataset("synthetic", n=4, size=64)
    config = tiny(8, mode="resize", size=64, val_count=1)
    train_set, val_set = training_datasets(samples, config)
    assert (len(train_set), len(val_set)) == (3, 1)
    history = fit(tiny_net(), train_set, val_set, config, **FAST)
    assert np.mean(history["train_loss"][-2:]) < history["train_loss"][0]


def test_three_ways_of_starting_the_same_run_give_identical_weights(tmp_path: Path) -> None:
    """The command line, train_recipe and fit by hand compute the same run, bit for bit, and record it alike.

    This pins what a refactor of the configuration must not change: a recorded
    command (here without --preset: the course recipe is the default) and the
    notebook's call reproduce each other's weights exactly.
    """
    config = recipe("course", epochs=2, size=64, samples_per_epoch=4, val_count=1)
    data = {"n": 4, "size": 96}
    status = main(["train", "--dataset", "synthetic", "--synthetic-n", "4", "--synthetic-size", "96",
                   "--epochs", "2", "--size", "64", "--samples-per-epoch", "4", "--val-count", "1",
                   "--device", "cpu", "--amp", "off", "--out", str(tmp_path / "cli")])
    assert status == 0
    # progress stays on (as on the command line): with the progress bars on or off, the same run has been
    # measured to differ in the 7th digit of the first epoch's loss, even on one thread.
    train_recipe(config, "synthetic", dataset_options=data, out_dir=tmp_path / "recipe", device="cpu", amp="off")
    train_set, val_set = training_datasets(load_dataset("synthetic", split="train", **data), config)
    seed_everything(config.seed)
    by_hand = LinkNet()
    fit(by_hand, train_set, val_set, config, dataset=dataset_label("synthetic", data), out_dir=tmp_path / "fit",
        device="cpu", amp="off")

    weights = [torch.load(tmp_path / run / BEST_WEIGHTS_FILE, weights_only=True) for run in ("cli", "recipe", "fit")]
    for other in weights[1:]:
        assert other.keys() == weights[0].keys()
        assert all(torch.equal(other[key], weights[0][key]) for key in weights[0])
    assert all(torch.equal(value.cpu(), weights[0][key]) for key, value in by_hand.state_dict().items())
    records = [torch.load(tmp_path / run / CHECKPOINT_FILE, weights_only=True)["config"]
               for run in ("cli", "recipe", "fit")]
    assert records[0] == records[1] == records[2] == {
        **config.settings(), "train_size": 4, "val_size": 1, "dataset": "synthetic n=4 size=96"}


def test_fit_refuses_an_infinite_learning_rate() -> None:
    with pytest.raises(ValueError, match="lr must be a positive finite number, got inf"):
        fit(tiny_net(), blob_images(2), config=tiny(1, lr=float("inf")), **FAST)
