"""Training for many epochs: :func:`fit`, its checkpoints, and resuming an interrupted run.

:func:`fit` repeats :class:`~retina_lib.engine.Train` and
:class:`~retina_lib.engine.Evaluate` for a number of epochs and takes care of
what a real run needs: the Adam optimizer, an optional cosine learning-rate
schedule, mixed precision, a seed, a progress bar, a history of losses, keeping
the best model, and files that survive an interruption.

The files written into ``out_dir`` after every epoch:

* ``linknet.pth`` - the **best** model so far (highest validation Dice), as a
  plain ``model.state_dict()``, the file the original course material saved.
  ``LinkNet().load_state_dict(torch.load(path, weights_only=True))`` loads it.
* ``checkpoint.pth`` - everything needed to continue: model, optimizer,
  schedule and gradient-scaler state, epoch, history, best score and weights,
  settings and random-number-generator states. ``fit(..., resume=True)``
  continues from it, so an interrupted run loses at most one epoch.
* ``history.json`` - the losses so far; ``curves.png`` - their plot (redrawn
  at most once a minute, see :data:`CURVES_INTERVAL_SECONDS`, and at the end).

Several processes: launched by ``torchrun --nproc_per_node N -m retina_lib
train ...`` (see :func:`start_distributed`), N copies of :func:`fit` run side by
side, one per GPU (or CPU process). Each trains on its own share of every
epoch, DistributedDataParallel averages their gradients so that all keep the
same weights, and only the first process (rank 0) writes files and shows
progress. ``batch_size`` is per process: the effective batch is N times larger.

The ``.pth`` files hold only tensors, dicts, lists, numbers and strings, so they
load with ``torch.load(path, weights_only=True)``, which cannot run code hidden
in a downloaded file. Each file is first written under a temporary name in the
same folder and then renamed over the old one (``os.replace`` is atomic), so a
crash or Ctrl+C while saving never leaves a half-written file.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import random
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from . import plotter
from .data.sample import Sample
from .data import SegmentationDataset
from .device import pick_device, seed_everything
from .engine import (
    OPTIMISE_CHOICES,
    EpochResult,
    Evaluate,
    NonFiniteLossError,
    Train,
    autocast_dtype,
    check_amp,
    default_amp,
    default_channels_last,
)
from .gpu_data import DEVICE_MODES, DeviceBatches
from .model import LinkNet

__all__ = [
    "TrainConfig", "fit", "load_weights", "split_validation", "training_datasets",
    "ResumeError", "WeightsError", "NonFiniteLossError", "default_amp", "default_channels_last",
    "start_distributed", "stop_distributed", "process_rank_and_count",
    "BEST_WEIGHTS_FILE", "CHECKPOINT_FILE", "HISTORY_FILE", "CURVES_FILE",
]

BEST_WEIGHTS_FILE = "linknet.pth"
CHECKPOINT_FILE = "checkpoint.pth"
HISTORY_FILE = "history.json"
CURVES_FILE = "curves.png"

#: fit's arguments that define WHAT is computed; they must match to resume.
#: The others (device, amp, channels_last, resident, num_workers, progress) say HOW, so a
#: run stopped on a GPU can continue on another machine.
RECIPE_ARGUMENTS = ("epochs", "batch_size", "lr", "optimise", "schedule", "seed")


#: Learning-rate schedules :func:`fit` knows: None keeps the rate constant.
SCHEDULE_CHOICES = (None, "cosine")

#: Drawing ``curves.png`` takes about half a second, more than an epoch of a
#: small dataset on a fast GPU, so it is redrawn at most this often (and
#: always after the last epoch). ``history.json`` is written every epoch.
CURVES_INTERVAL_SECONDS = 60.0


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe, with the original course material's values as defaults.

    This is the one place where the defaults live: :func:`fit` takes its
    default arguments from here and the command line its default options.

    Optimisation (the arguments of :func:`fit`):
        epochs: passes over the training set (100).
        batch_size: images per step (4).
        lr: Adam's learning rate (1e-4).
        optimise: "dice+iou" (the original: Dice loss + IoU loss) or "bce+dice".
        schedule: None (constant learning rate) or "cosine" (decays to 0).
        seed: seeds weights initialisation, shuffling and augmentation.

    Data (used by :func:`training_datasets`):
        mode: "resize" (the original: whole images resized to ``size``) or
            "crop" (random ``size`` crops at native resolution).
        size: side of the square training images in pixels (512).
        samples_per_epoch: images drawn per epoch (None: one per training image).
        val_count: images held out from the END of the training split for
            validation (never the test split: the test set must stay unseen
            until the final evaluation).
    """

    epochs: int = 100
    batch_size: int = 4
    lr: float = 1e-4
    optimise: str = "dice+iou"
    schedule: Optional[str] = None
    seed: int = 0
    mode: str = "resize"
    size: int = 512
    samples_per_epoch: Optional[int] = None
    val_count: int = 4

    def fit_arguments(self) -> dict[str, Any]:
        """The optimisation fields, as keyword arguments of :func:`fit`."""
        return {name: getattr(self, name) for name in RECIPE_ARGUMENTS}

    def data_settings(self) -> dict[str, Any]:
        """The data fields, for fit's ``config`` (so that resuming checks them too)."""
        return {"mode": self.mode, "size": self.size, "samples_per_epoch": self.samples_per_epoch,
                "val_count": self.val_count}


class ResumeError(ValueError):
    """A run cannot be resumed: no checkpoint, or one made with different settings."""


class WeightsError(ValueError):
    """A weights file cannot be loaded into the model; the message says why."""


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def split_validation(samples: Sequence[Sample], val_count: int) -> tuple[list[Sample], list[Sample]]:
    """Split a TRAIN split into (training samples, validation samples): the last ``val_count`` validate.

    Validation picks the best epoch, so it must not be the test set, which
    has to stay unseen until the final evaluation. Taking the last images
    (rather than random ones) keeps the split the same on every machine.
    ``val_count=0`` means no validation.
    """
    if val_count < 0:
        raise ValueError(f"val_count must be 0 or more, got {val_count}")
    if val_count >= len(samples):
        raise ValueError(
            f"val_count={val_count} leaves no training images: the training split has only "
            f"{len(samples)} image(s); lower val_count (0 disables validation)"
        )
    cut = len(samples) - val_count
    every = [samples[index] for index in range(len(samples))]  # a lazy dataset decodes each image here
    return every[:cut], every[cut:]


def training_datasets(samples: Sequence[Sample], config: TrainConfig) -> tuple[Dataset, Optional[Dataset]]:
    """The (training, validation or None) datasets of ``config`` from a dataset's TRAIN split.

    Training images are augmented; validation images are not, but are brought
    to the same ``mode`` and ``size``, so the validation Dice measures the
    network on inputs like the ones it trained on.
    """
    train_samples, val_samples = split_validation(samples, config.val_count)
    train_set = SegmentationDataset(
        train_samples, mode=config.mode, size=config.size, augment=True,
        samples_per_epoch=config.samples_per_epoch, seed=config.seed,
    )
    if not val_samples:
        return train_set, None
    val_set = SegmentationDataset(val_samples, mode=config.mode, size=config.size, augment=False, seed=config.seed)
    return train_set, val_set


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed seed for one epoch, so each epoch's shuffle depends only on (seed, epoch)."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------

def write_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Call ``write(temporary_path)``, then rename the result to ``path`` in one step.

    The temporary file is in the same folder, so ``os.replace`` is a rename on
    the same file system: readers see either the old file or the new one,
    never half of one.
    """
    temporary = path.with_name(path.name + ".partial")
    write(temporary)
    os.replace(temporary, path)


def cpu_copy(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy of a state dict (a snapshot later steps cannot change)."""
    return {key: value.detach().cpu().clone(memory_format=torch.contiguous_format) for key, value in state_dict.items()}


def rng_states() -> dict[str, Any]:
    """The states of Python's, NumPy's and PyTorch's random generators, as tensors and numbers.

    Stored this way (not as the tuples the libraries return) so the checkpoint
    loads with ``weights_only=True``.
    """
    python_version, python_state, python_gauss = random.getstate()
    _, numpy_keys, numpy_position, numpy_has_gauss, numpy_gauss = np.random.get_state()
    return {
        "python_version": python_version,
        "python": torch.tensor(python_state, dtype=torch.int64),
        "python_gauss": python_gauss,
        "numpy": torch.from_numpy(numpy_keys.astype(np.int64)),
        "numpy_position": int(numpy_position),
        "numpy_has_gauss": int(numpy_has_gauss),
        "numpy_gauss": float(numpy_gauss),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_states(states: Mapping[str, Any]) -> None:
    """Undo :func:`rng_states`. GPU states are restored when there are as many GPUs as before."""
    random.setstate((states["python_version"], tuple(states["python"].tolist()), states["python_gauss"]))
    np.random.set_state((
        "MT19937", states["numpy"].numpy().astype(np.uint32), states["numpy_position"],
        states["numpy_has_gauss"], states["numpy_gauss"],
    ))
    torch.set_rng_state(states["torch"])
    if torch.cuda.is_available() and len(states["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_history(history: Mapping[str, list[float]], run_dir: Path) -> None:
    """Write the history as ``history.json``."""
    write_atomically(run_dir / HISTORY_FILE, lambda path: path.write_text(json.dumps(history, indent=1)))


def save_curves(history: Mapping[str, list[float]], run_dir: Path) -> None:
    """Draw the history into ``curves.png`` with :func:`retina_lib.plotter.plot_history`."""

    def draw(path: Path) -> None:
        # Closed at once: else a notebook would show one figure per epoch at the end of the cell.
        plt.close(plotter.plot_history(history, save_to=path))

    write_atomically(run_dir / CURVES_FILE, draw)


# --------------------------------------------------------------------------
# Settings that must match when resuming
# --------------------------------------------------------------------------

def run_settings(recipe: Mapping[str, Any], train_size: int, val_size: int,
                 config: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """Everything that identifies a run, as a flat dict of plain values."""
    settings = dict(recipe)
    settings["train_size"] = train_size
    settings["val_size"] = val_size
    for key, value in (config or {}).items():
        if key in settings:
            raise ValueError(f"config key {key!r} is set by fit itself; pass it as fit's argument instead")
        if not (value is None or isinstance(value, (str, int, float, bool))):
            raise ValueError(
                f"config[{key!r}] = {value!r} is a {type(value).__name__}; config values must be "
                f"str, int, float, bool or None (so the checkpoint loads with weights_only=True)"
            )
        settings[key] = value
    return settings


def settings_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between a checkpoint's settings and the current ones.

    ``epochs`` may grow (train longer), except with the cosine schedule,
    whose learning-rate curve depends on the total number of epochs.
    """
    differences = []
    for key in sorted(set(saved) | set(current)):
        old, new = saved.get(key, "(not set)"), current.get(key, "(not set)")
        if old == new:
            continue
        if key == "epochs" and isinstance(old, int) and isinstance(new, int) and new > old:
            if current.get("schedule") is None:
                continue
            differences.append(f"epochs: {old} in the checkpoint, {new} now "
                               f"(epochs can only grow with a constant learning rate, not with schedule='cosine')")
            continue
        differences.append(f"{key}: {old!r} in the checkpoint, {new!r} now")
    return differences


# --------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------

def _new_history(with_validation: bool) -> dict[str, list[float]]:
    keys = ["train_loss", "train_dice_loss", "train_iou_loss"]
    if with_validation:
        keys += ["val_loss", "val_dice_loss", "val_iou_loss", "val_dice"]
    return {key: [] for key in keys + ["lr", "epoch_seconds"]}


class _Run:
    """A training run's state: what ``checkpoint.pth`` saves and :meth:`restore` brings back."""

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: Optional[torch.optim.lr_scheduler.LRScheduler],
                 scaler: Optional[torch.amp.GradScaler], settings: dict[str, Any], with_validation: bool) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.scaler = scaler
        self.settings = settings
        self.epoch = 0
        self.history = _new_history(with_validation)
        self.best_score = -math.inf
        self.best_epoch = 0
        self.best_model = cpu_copy(model.state_dict())

    def end_epoch(self, epoch: int, train: EpochResult, val: Optional[EpochResult], lr: float,
                  seconds: float) -> bool:
        """Record the epoch in the history; keep the weights if they are the best. True if they are.

        "Best" means the highest validation Dice; without validation every
        epoch counts as better than the one before, so the last is kept.
        """
        values = {"train_loss": train.loss, "train_dice_loss": train.dice_loss, "train_iou_loss": train.iou_loss,
                  "lr": lr, "epoch_seconds": seconds}
        if val is not None:
            values.update(val_loss=val.loss, val_dice_loss=val.dice_loss, val_iou_loss=val.iou_loss, val_dice=val.dice)
        for key, value in values.items():
            self.history[key].append(value)
        self.epoch = epoch
        score = val.dice if val is not None else float(epoch)
        if score <= self.best_score:
            return False
        self.best_score, self.best_epoch = score, epoch
        self.best_model = cpu_copy(self.model.state_dict())
        return True

    def checkpoint(self) -> dict[str, Any]:
        """Everything needed to continue, as plain containers of tensors and numbers."""
        return {
            "model": cpu_copy(self.model.state_dict()),
            "best_model": self.best_model,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "epoch": self.epoch,
            "history": self.history,
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "config": self.settings,
            "rng": rng_states(),
        }

    def restore(self, checkpoint: Mapping[str, Any], source: Path) -> None:
        """Continue from ``checkpoint``, after checking it was made with the same settings."""
        differences = settings_differences(checkpoint["config"], self.settings)
        if differences:
            raise ResumeError(f"cannot resume {source}: it was made with other settings: " + "; ".join(differences))
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        if self.scaler is not None and checkpoint["scaler"] is not None:
            self.scaler.load_state_dict(checkpoint["scaler"])
        restore_rng_states(checkpoint["rng"])
        self.epoch = checkpoint["epoch"]
        self.history = checkpoint["history"]
        self.best_score = checkpoint["best_score"]
        self.best_epoch = checkpoint["best_epoch"]
        self.best_model = checkpoint["best_model"]

    def save(self, run_dir: Path, improved: bool, draw_curves: bool) -> None:
        """Write this epoch's files: linknet.pth if improved, the checkpoint, the history (and curves)."""
        if improved:
            write_atomically(run_dir / BEST_WEIGHTS_FILE, lambda path: torch.save(self.best_model, path))
        checkpoint = self.checkpoint()
        write_atomically(run_dir / CHECKPOINT_FILE, lambda path: torch.save(checkpoint, path))
        save_history(self.history, run_dir)
        if draw_curves:
            save_curves(self.history, run_dir)


def _check_arguments(epochs: int, batch_size: int, lr: float, schedule: Optional[str], optimise: str,
                     amp: str, out_dir: Optional[Path], resume: bool) -> None:
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if schedule not in SCHEDULE_CHOICES:
        raise ValueError(f"schedule must be None or 'cosine', got {schedule!r}")
    if optimise not in OPTIMISE_CHOICES:
        raise ValueError(f"optimise must be one of {', '.join(OPTIMISE_CHOICES)}; got {optimise!r}")
    check_amp(amp)
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir, the folder of the run to continue")


def _prepare_run_dir(out_dir: Path, resume: bool) -> Path:
    """Create ``out_dir``; refuse to overwrite a run there unless resuming it."""
    checkpoint = out_dir / CHECKPOINT_FILE
    if resume and not checkpoint.is_file():
        raise ResumeError(f"cannot resume: there is no {CHECKPOINT_FILE} in {out_dir}; start without resume")
    if not resume and checkpoint.exists():
        raise FileExistsError(
            f"{out_dir} already holds a training run ({CHECKPOINT_FILE}); resume it with resume=True "
            f"(--resume), or choose another out_dir, or delete that folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


# --------------------------------------------------------------------------
# Batches: a DataLoader, or DeviceBatches with the data resident on the device
# --------------------------------------------------------------------------

RESIDENT_CHOICES = ("auto", True, False)


def use_resident_data(resident: bool | str, data: Dataset, device: torch.device) -> bool:
    """Whether ``data`` is served by :class:`~retina_lib.gpu_data.DeviceBatches` (stored and augmented on ``device``).

    "auto" means yes on CUDA GPUs, for a SegmentationDataset in "crop" or
    "resize" mode: there, preparing images on the CPU would leave the GPU
    waiting most of the time. On the CPU the DataLoader is as fast and is
    the path the course explains. ``data`` that is already a DeviceBatches
    is used as it is.
    """
    if resident not in RESIDENT_CHOICES:
        raise ValueError(f"resident must be 'auto', True or False, got {resident!r}")
    if isinstance(data, DeviceBatches):
        return True
    suitable = isinstance(data, SegmentationDataset) and data.mode in DEVICE_MODES
    if resident == "auto":
        return suitable and device.type == "cuda"
    if resident and not suitable:
        described = (f"a SegmentationDataset in mode {data.mode!r}" if isinstance(data, SegmentationDataset)
                     else f"a {type(data).__name__}")
        raise ValueError(f"resident=True needs a SegmentationDataset in mode {' or '.join(map(repr, DEVICE_MODES))} "
                         f"(or a DeviceBatches); got {described}")
    return resident


def _item_count(data: Dataset) -> int:
    """Training images per epoch, for the run's settings."""
    return data.samples_per_epoch if isinstance(data, DeviceBatches) else len(data)


def _batches(data: Dataset, batch_size: int, training: bool, resident: bool | str, num_workers: int,
             device: torch.device, generator: torch.Generator, seed: int, rank: int,
             world_size: int) -> DataLoader | DeviceBatches:
    """What fit iterates over for ``data``: a DataLoader or a DeviceBatches.

    With several processes the training data is shared out (each process its
    own items); validation data is not: every process scores all of it, so
    all of them choose the same best epoch.
    """
    if not training:
        rank, world_size = 0, 1
    if isinstance(data, DeviceBatches):
        if data.batch_size != batch_size or data.device.type != device.type:
            raise ValueError(f"the DeviceBatches has batch_size={data.batch_size} on {data.device}, but fit was "
                             f"asked for batch_size={batch_size} on {device}: make them agree")
        if (data.rank, data.world_size) != (rank, world_size):
            raise ValueError(f"the DeviceBatches is made for process {data.rank} of {data.world_size}, but this is "
                             f"process {rank} of {world_size}: pass a SegmentationDataset with resident=True instead")
        return data
    if use_resident_data(resident, data, device):
        return DeviceBatches.from_dataset(data, batch_size, device, shuffle=training, rank=rank,
                                          world_size=world_size)
    sampler = (DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
               if world_size > 1 else None)
    return DataLoader(
        data, batch_size=batch_size, shuffle=training and sampler is None, sampler=sampler,
        num_workers=num_workers, pin_memory=device.type == "cuda", generator=generator,
    )


def _start_epoch(data: Dataset, batches, epoch: int) -> None:
    """Tell the dataset, the DeviceBatches or the distributed sampler which epoch begins (new random draws)."""
    if hasattr(data, "set_epoch"):
        data.set_epoch(epoch)
    if isinstance(batches, DeviceBatches):
        batches.set_epoch(epoch)
    if isinstance(batches, DataLoader) and isinstance(batches.sampler, DistributedSampler):
        batches.sampler.set_epoch(epoch)


# --------------------------------------------------------------------------
# Several processes (torchrun)
# --------------------------------------------------------------------------

def process_rank_and_count() -> tuple[int, int]:
    """(rank, world size): this process's number and how many train together; (0, 1) for a plain run."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def start_distributed(device: str = "auto") -> str:
    """Join the process group if ``torchrun`` launched this process; return the device this process uses.

    torchrun starts N copies of the program and tells each, in environment
    variables, how many there are (WORLD_SIZE), which one it is (RANK,
    LOCAL_RANK on this machine) and where to meet (MASTER_ADDR, MASTER_PORT).
    GPUs talk with the NCCL backend, each process on the GPU of its
    LOCAL_RANK; CPU processes talk with gloo. Without torchrun (or with a
    single process) nothing happens and ``device`` is returned unchanged.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return device
    if pick_device(device).type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl")
        return f"cuda:{local_rank}"
    dist.init_process_group("gloo")
    return device


def stop_distributed() -> None:
    """Leave the process group (if any), so the program exits cleanly."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _mean_over_processes(result: EpochResult, device: torch.device) -> EpochResult:
    """The epoch's means over all processes (each trained on an equal share of the images)."""
    values = torch.tensor([result.loss, result.dice_loss, result.iou_loss, result.dice], device=device)
    dist.all_reduce(values)
    return EpochResult(*(values / dist.get_world_size()).tolist())


def _share_buffers(model: nn.Module) -> None:
    """Copy rank 0's batch-norm statistics to every process, so all validate exactly the same model.

    Gradients are averaged, so the weights agree; but each process updates
    its running means and variances on its own images.
    """
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def fit(
    model: nn.Module,
    train_data: Dataset,
    val_data: Optional[Dataset] = None,
    *,
    epochs: int = TrainConfig.epochs,
    batch_size: int = TrainConfig.batch_size,
    lr: float = TrainConfig.lr,
    optimise: str = TrainConfig.optimise,
    schedule: Optional[str] = TrainConfig.schedule,
    device: str | torch.device = "auto",
    amp: str = "auto",
    channels_last: Optional[bool] = None,
    resident: bool | str = "auto",
    seed: int = TrainConfig.seed,
    out_dir: Optional[str | Path] = None,
    resume: bool = False,
    num_workers: int = 0,
    progress: bool = True,
    config: Optional[Mapping[str, Any]] = None,
) -> dict[str, list[float]]:
    """Train ``model`` with Adam and return the history of per-epoch losses.

    Args:
        model: the network, e.g. ``LinkNet()``. Seed its initialisation
            yourself (``seed_everything(0)`` before ``LinkNet()``); fit seeds
            everything after. It is moved to ``device`` and, with
            ``channels_last``, to that memory format, and stays there.
        train_data, val_data: datasets of ``(image, label)`` or
            ``(image, label, fov)`` (e.g. ``SegmentationDataset``), or
            :class:`~retina_lib.gpu_data.DeviceBatches`. Without
            ``val_data`` there is no best epoch to choose: the last one is kept.
        epochs, batch_size, lr: the recipe (defaults: :class:`TrainConfig`).
        optimise: "dice+iou" (Dice loss + IoU loss, the original) or "bce+dice".
        schedule: None (constant lr) or "cosine" (decays to 0 over ``epochs``).
        device: "auto" (CUDA, then Apple MPS, then CPU) or a device name.
        amp: mixed precision, "auto" (see :func:`~retina_lib.engine.default_amp`),
            "off", "bf16" or "fp16" (float16 uses a gradient scaler).
        channels_last: channels-last memory format; None (the default)
            decides with :func:`~retina_lib.engine.default_channels_last`
            (on for CUDA and the CPU, where it was measured faster).
        resident: keep the training images on the device and augment them
            there (:class:`~retina_lib.gpu_data.DeviceBatches`): True, False,
            or "auto" (on CUDA GPUs, for SegmentationDatasets in "crop" or
            "resize" mode; see :func:`use_resident_data`).
        seed: seeds shuffling and augmentation; each epoch's shuffle depends
            only on (seed, epoch), and a dataset with ``set_epoch`` is told the
            epoch, so a resumed run sees the same batches as an uninterrupted one.
        out_dir: folder for ``linknet.pth``, ``checkpoint.pth``,
            ``history.json`` and ``curves.png`` (see the module docstring), or
            None to save nothing. A folder that already holds a checkpoint is
            refused unless ``resume`` is True.
        resume: continue the run saved in ``out_dir``. The settings must be
            the same, except that ``epochs`` may grow (with a constant lr);
            otherwise :class:`ResumeError` says which settings differ.
        num_workers: DataLoader worker processes preparing batches.
        (Under ``torchrun``, see the module docstring: ``batch_size`` is per
        process, and only rank 0 saves files and shows progress.)
        progress: show a progress bar over epochs (and a transient one per pass).
        config: extra settings that describe the run, e.g. the dataset name
            and image size (str, int, float, bool or None values); stored in
            the checkpoint and checked on resume.

    Returns:
        The history: lists with one value per epoch under ``train_loss``
        (the optimised loss), ``train_dice_loss``, ``train_iou_loss``, and,
        with ``val_data``, ``val_loss``, ``val_dice_loss``, ``val_iou_loss``
        and ``val_dice`` (Dice of the 0.5-thresholded prediction inside the
        FOV), plus ``lr`` and ``epoch_seconds``.

    At the end, the model holds the BEST weights (highest ``val_dice``), not
    the last ones; ``linknet.pth`` holds the same. Raises
    :class:`~retina_lib.engine.NonFiniteLossError` if a loss becomes NaN or
    infinite. On Ctrl+C (KeyboardInterrupt) the last complete epoch's
    checkpoint is kept and the way to resume is printed.
    """
    run_dir = Path(out_dir) if out_dir is not None else None
    _check_arguments(epochs, batch_size, lr, schedule, optimise, amp, run_dir, resume)
    recipe = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimise": optimise,
              "schedule": schedule, "seed": seed}  # the RECIPE_ARGUMENTS
    settings = run_settings(recipe, _item_count(train_data), _item_count(val_data) if val_data is not None else 0,
                            config)
    compute_device = pick_device(device) if isinstance(device, str) else torch.device(device)
    if channels_last is None:
        channels_last = default_channels_last(compute_device)
    rank, world_size = process_rank_and_count()
    is_main_process = rank == 0  # the one that writes files and shows progress
    progress = progress and is_main_process
    if run_dir is not None:
        run_dir = _prepare_run_dir(run_dir, resume)

    seed_everything(seed)
    model.to(compute_device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    # With several processes, DistributedDataParallel averages the gradients in backward().
    trained = (DistributedDataParallel(model, device_ids=[compute_device.index] if compute_device.type == "cuda"
                                       else None) if world_size > 1 else model)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs) if schedule == "cosine" else None
    train = Train(optimise=optimise, amp=amp, channels_last=channels_last)
    evaluate = Evaluate(optimise=optimise, amp=amp, channels_last=channels_last)
    scaler = train.gradient_scaler(compute_device, autocast_dtype(amp, compute_device))
    run = _Run(model, optimizer, scheduler, scaler, settings, with_validation=val_data is not None)
    if resume:
        run.restore(_load_checkpoint(run_dir / CHECKPOINT_FILE), run_dir / CHECKPOINT_FILE)

    generator = torch.Generator()
    train_loader = _batches(train_data, batch_size, True, resident, num_workers, compute_device, generator,
                            seed, rank, world_size)
    val_loader = (_batches(val_data, batch_size, False, resident, num_workers, compute_device, generator,
                           seed, rank, world_size) if val_data is not None else None)

    saved_epoch = run.epoch  # the epoch checkpoint.pth holds, for the message on Ctrl+C
    curves_drawn = -math.inf  # when curves.png was last drawn: never
    bar = tqdm(total=epochs, initial=run.epoch, desc="training", unit="epoch", disable=not progress)
    try:
        for epoch in range(run.epoch + 1, epochs + 1):
            started = time.perf_counter()
            generator.manual_seed(epoch_seed(seed, epoch))
            _start_epoch(train_data, train_loader, epoch)
            train_result = train.run_epoch(trained, train_loader, optimizer, epoch=epoch, progress=progress)
            if world_size > 1:
                train_result = _mean_over_processes(train_result, compute_device)
                _share_buffers(model)
            val_result = (evaluate.run_epoch(model, val_loader, epoch=epoch, progress=progress)
                          if val_loader is not None else None)
            lr_used = optimizer.param_groups[0]["lr"]
            if scheduler is not None:
                scheduler.step()
            improved = run.end_epoch(epoch, train_result, val_result, lr_used, time.perf_counter() - started)

            if run_dir is not None and is_main_process:
                draw_curves = epoch == epochs or time.perf_counter() - curves_drawn >= CURVES_INTERVAL_SECONDS
                run.save(run_dir, improved, draw_curves)
                saved_epoch = epoch
                if draw_curves:
                    curves_drawn = time.perf_counter()
            postfix = {"loss": f"{train_result.loss:.4f}"}
            if val_result is not None:
                postfix["val_dice"] = f"{val_result.dice:.4f}"
            bar.set_postfix(postfix)
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        if is_main_process:
            print(f"\n{_interruption_message(run_dir, saved_epoch)}", file=sys.stderr)
        raise
    bar.close()
    model.load_state_dict(run.best_model)
    return run.history


def _interruption_message(run_dir: Optional[Path], saved_epoch: int) -> str:
    """What was kept after Ctrl+C, and how to go on."""
    if run_dir is None:
        return "Training interrupted; nothing was saved (out_dir=None)."
    if saved_epoch == 0:
        return f"Training interrupted before the first epoch ended; nothing to resume in {run_dir}."
    return (f"Training interrupted. {run_dir / CHECKPOINT_FILE} holds epoch {saved_epoch}; continue with "
            f"fit(..., out_dir={str(run_dir)!r}, resume=True) or the same `python -m retina_lib train` "
            f"command plus --resume.")


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------

def _torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` onto the CPU; unreadable files raise WeightsError."""
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip()  # torch colours some messages
        first_line = message.splitlines()[0] if message else type(error).__name__
        raise WeightsError(f"{path}: not a PyTorch weights file that loads safely ({first_line})") from error


def _load_checkpoint(path: Path) -> dict[str, Any]:
    stored = _torch_load(path)
    if not _is_full_checkpoint(stored):
        raise ResumeError(f"{path} is not a full training checkpoint (written by fit with out_dir)")
    return stored


def _is_full_checkpoint(stored: Any) -> bool:
    return isinstance(stored, dict) and "best_model" in stored and "optimizer" in stored


def _architecture_problems(model: nn.Module, state: Mapping[str, Any]) -> list[str]:
    """What stops ``state`` from loading into ``model``: missing/unexpected keys, shape mismatches."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    mismatched = [
        f"{key} {tuple(state[key].shape)} instead of {tuple(expected[key].shape)}"
        for key in expected
        if key in state and isinstance(state[key], torch.Tensor) and state[key].shape != expected[key].shape
    ]
    problems = []
    for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", mismatched)):
        if items:
            shown = ", ".join(items[:3]) + (f" and {len(items) - 3} more" if len(items) > 3 else "")
            problems.append(f"{len(items)} {title} ({shown})")
    return problems


def load_weights(path: str | Path, model: Optional[nn.Module] = None) -> nn.Module:
    """Load ``linknet.pth`` or a full ``checkpoint.pth`` into ``model`` (a new LinkNet by default).

    A full checkpoint gives its best weights, the same as ``linknet.pth``.
    Without ``model``, a LinkNet with the stored number of input channels and
    classes is built. Loading uses ``weights_only=True``, so a file cannot run
    code. The model is returned on the CPU in eval mode, ready to predict.

    Raises FileNotFoundError for a missing file and :class:`WeightsError` for
    a file that is not a state dict or belongs to another architecture (the
    message lists a few missing or unexpected keys and shape mismatches).
    """
    path = Path(path)
    stored = _torch_load(path)
    state = stored["best_model"] if _is_full_checkpoint(stored) else stored
    if not isinstance(state, Mapping) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise WeightsError(f"{path}: expected a model state dict (names -> tensors), found {type(state).__name__}")
    if model is None:
        model = _linknet_for(state)
    problems = _architecture_problems(model, state)
    if problems:
        raise WeightsError(f"{path} holds weights for another architecture than {type(model).__name__}: "
                           + "; ".join(problems))
    model.load_state_dict(state)
    return model.eval()


def _linknet_for(state: Mapping[str, torch.Tensor]) -> LinkNet:
    """A LinkNet with the input channels and classes the state dict was trained with (3 and 1 if unclear)."""
    first_conv, classifier = state.get("initial.conv.weight"), state.get("classifier.weight")
    in_channels = first_conv.shape[1] if first_conv is not None and first_conv.ndim == 4 else 3
    num_classes = classifier.shape[1] if classifier is not None and classifier.ndim == 4 else 1
    return LinkNet(in_channels=in_channels, num_classes=num_classes)
