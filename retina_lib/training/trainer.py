"""Training for many epochs: :func:`fit`, following a recipe (:class:`~retina_lib.training.config.TrainConfig`).

:func:`fit` repeats :class:`~retina_lib.epoch_loop.Train` and
:class:`~retina_lib.epoch_loop.Evaluate` for a number of epochs and takes care of
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

The jobs around the epoch loop live in their own modules, each named after it:

* :mod:`retina_lib.training.config` - the recipe, :class:`TrainConfig`, the one
  object that travels from the named recipe to the run record;
* :mod:`retina_lib.training.run_folder` - the run folder: one run at a time (a lock),
  files written whole or not at all;
* :mod:`retina_lib.training.checkpoints` - what ``checkpoint.pth`` holds, saving a run
  and checking a checkpoint before resuming from it;
* :mod:`retina_lib.training.weights` - loading ``linknet.pth`` safely (:func:`load_weights`);
* :mod:`retina_lib.training.batch_sources` - the DataLoader, or batches kept in memory on the device;
* :mod:`retina_lib.training.distributed` - several processes under ``torchrun``.

Several processes: launched by ``torchrun --nproc_per_node N -m retina_lib
train ...`` (see :func:`start_distributed`), N copies of :func:`fit` run side by
side, one per GPU (or CPU process). Each trains on its own share of every
epoch, DistributedDataParallel averages their gradients so that all keep the
same weights, and only the first process (rank 0) writes files and shows
progress. ``config.batch_size`` is per process: the effective batch is N times larger.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from retina_lib.data import SegmentationDataset
from retina_lib.data.sample import Sample
from retina_lib.epoch_loop import EpochResult, Evaluate, Train
from retina_lib.system.hardware import autocast_dtype, check_amp, default_channels_last, pick_device, seed_everything
from retina_lib.training.batch_sources import Batches, item_count, make_batches, start_epoch
from retina_lib.training.checkpoints import RunState, load_checkpoint, run_settings
from retina_lib.training.config import TrainConfig
from retina_lib.training.distributed import mean_over_processes, process_rank_and_count, share_buffers
from retina_lib.training.run_folder import CHECKPOINT_FILE, open_run_folder
from retina_lib.errors import UserInputError

#: Drawing ``curves.png`` takes about half a second, more than an epoch of a
#: small dataset on a fast GPU, so it is redrawn at most this often (and
#: always after the last epoch). ``history.json`` is written every epoch.
CURVES_INTERVAL_SECONDS = 60.0


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def split_validation(samples: Sequence[Sample], val_count: int) -> tuple[list[Sample], list[Sample]]:
    """Split a TRAIN split into (training samples, validation samples): the last ``val_count`` validate.

    Validation picks the best epoch, so it must not be the test set, which
    has to stay unseen until the final evaluation. Taking the last images
    (rather than random ones) keeps the split the same on every machine.
    ``val_count=0`` means no validation.

    Taught in notebook 03, section 1.
    """
    if val_count < 0:
        raise UserInputError(f"val_count must be 0 or more, got {val_count}")
    if val_count >= len(samples):
        raise UserInputError(
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
# fit, in named steps
# --------------------------------------------------------------------------

def fit(
    model: nn.Module,
    train_data: Dataset,
    val_data: Optional[Dataset] = None,
    config: TrainConfig = TrainConfig(),
    *,
    dataset: Optional[str] = None,
    device: str | torch.device = "auto",
    amp: str = "auto",
    channels_last: Optional[bool] = None,
    resident: bool | str = "auto",
    num_workers: int = 0,
    progress: bool = True,
    out_dir: Optional[str | Path] = None,
    resume: bool = False,
) -> dict[str, list[float]]:
    """Train ``model`` with Adam following ``config`` and return the history of per-epoch losses.

    ``config`` says WHAT is computed (epochs, batch size, learning rate, loss,
    schedule, seed; the data fields describe how ``train_data`` was made). It
    is recorded in ``checkpoint.pth`` as it is and must match to resume. The
    keyword arguments after it say HOW (device, precision, data workers,
    files), so a run stopped on a GPU can continue on another machine.

    Args:
        model: the network, e.g. ``LinkNet()``. Seed its initialisation
            yourself (``seed_everything(config.seed)`` before ``LinkNet()``);
            fit seeds everything after. It is moved to ``device`` and, with
            ``channels_last``, to that memory format, and stays there.
        train_data, val_data: datasets of ``(image, label)`` or
            ``(image, label, fov)`` (e.g. made by :func:`training_datasets`), or
            :class:`~retina_lib.training.resident_batches.ResidentBatches`. Without
            ``val_data`` there is no best epoch to choose: the last one is kept.
        config: the recipe (default: the course's, :class:`TrainConfig`).
        dataset: the data's name for the run record (e.g. ``"chase_db1"``), so
            that resuming on other data is refused; :func:`~retina_lib.recipes.train_recipe`
            passes it.
        device: "auto" (CUDA, then Apple MPS, then CPU) or a device name.
        amp: mixed precision, "auto" (see :func:`~retina_lib.system.hardware.default_amp`),
            "off", "bf16" or "fp16" (float16 uses a gradient scaler).
        channels_last: channels-last memory format; None (the default)
            decides with :func:`~retina_lib.system.hardware.default_channels_last`.
        resident: keep the training images on the device and augment them
            there (:class:`~retina_lib.training.resident_batches.ResidentBatches`): True, False,
            or "auto" (on CUDA GPUs, for SegmentationDatasets in "crop" or
            "resize" mode; see :func:`~retina_lib.training.batch_sources.use_resident_data`).
        num_workers: DataLoader worker processes preparing batches.
        progress: show a progress bar over epochs (and a transient one per pass).
        out_dir: folder for ``linknet.pth``, ``checkpoint.pth``,
            ``history.json`` and ``curves.png`` (see the module docstring), or
            None to save nothing. A folder that holds another run's files
            (any of them, see :mod:`retina_lib.training.run_folder`) is refused unless
            ``resume`` is True, and so is a folder another process is
            training into right now (:class:`~retina_lib.training.run_folder.RunFolderInUseError`).
        resume: continue the run saved in ``out_dir``. The recipe must be
            the same, except that ``epochs`` may grow (with a constant lr);
            otherwise :class:`~retina_lib.training.run_folder.ResumeError` says which settings differ.

    Each epoch's shuffle depends only on (seed, epoch), and a dataset with
    ``set_epoch`` is told the epoch, so a resumed run sees the same batches as
    an uninterrupted one. Under ``torchrun`` (see the module docstring)
    ``config.batch_size`` is per process, and only rank 0 saves files and shows progress.

    Returns:
        The history: lists with one value per epoch under ``train_loss``
        (the optimised loss), ``train_dice_loss``, ``train_iou_loss``, and,
        with ``val_data``, ``val_loss``, ``val_dice_loss``, ``val_iou_loss``
        and ``val_dice`` (Dice of the 0.5-thresholded prediction inside the
        FOV), plus ``lr`` and ``epoch_seconds``.

    At the end, the model holds the BEST weights (highest ``val_dice``), not
    the last ones; ``linknet.pth`` holds the same. Raises
    :class:`~retina_lib.epoch_loop.NonFiniteLossError` if a loss becomes NaN or
    infinite. On Ctrl+C (KeyboardInterrupt) the last complete epoch's
    checkpoint is kept and the way to resume is printed.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig (e.g. recipe('course')), got a {type(config).__name__}")
    config.check()
    check_amp(amp)
    run_dir = Path(out_dir) if out_dir is not None else None
    if resume and run_dir is None:
        raise ValueError("resume=True needs out_dir, the folder of the run to continue")
    settings = run_settings(config, item_count(train_data), item_count(val_data) if val_data is not None else 0,
                            dataset)
    compute_device = pick_device(device) if isinstance(device, str) else torch.device(device)
    if channels_last is None:
        channels_last = default_channels_last(compute_device)
    rank, world_size = process_rank_and_count()
    is_main_process = rank == 0  # the one that writes files and shows progress
    # One run at a time in a folder: held (locked) until fit returns or fails. Only the first process
    # writes files, so only it holds the lock; the others only check the folder.
    held_folder = (open_run_folder(run_dir, resume, lock=is_main_process) if run_dir is not None
                   else contextlib.nullcontext())
    with held_folder:
        seed_everything(config.seed)
        trained = place_model(model, compute_device, channels_last, world_size)
        optimizer, scheduler = make_optimizer(model, config)
        train = Train(loss=config.loss, amp=amp, channels_last=channels_last)
        evaluate = Evaluate(loss=config.loss, amp=amp, channels_last=channels_last)
        scaler = train.gradient_scaler(compute_device, autocast_dtype(amp, compute_device))
        run = RunState(model, optimizer, scheduler, scaler, settings, with_validation=val_data is not None)
        if resume:
            run.restore(load_checkpoint(run_dir / CHECKPOINT_FILE), run_dir / CHECKPOINT_FILE)
        generator = torch.Generator()
        train_batches = make_batches(train_data, config.batch_size, True, resident, num_workers, compute_device,
                                     generator, config.seed, rank, world_size)
        val_batches = (make_batches(val_data, config.batch_size, False, resident, num_workers, compute_device,
                                    generator, config.seed, rank, world_size) if val_data is not None else None)
        epochs = EpochRunner(trained, model, train, evaluate, optimizer, scheduler, train_data, train_batches,
                             val_batches, generator, config.seed, compute_device, world_size)
        run_epochs(epochs, run, config.epochs, run_dir, is_main_process, progress and is_main_process)
        model.load_state_dict(run.best_model)
        return run.history


def place_model(model: nn.Module, device: torch.device, channels_last: bool, world_size: int) -> nn.Module:
    """Move ``model`` to ``device`` (and memory format); return what is trained: it, or its DDP wrapper.

    With several processes, DistributedDataParallel averages the gradients in backward().
    """
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids) if world_size > 1 else model


def make_optimizer(model: nn.Module, config: TrainConfig) -> tuple[
        torch.optim.Optimizer, Optional[torch.optim.lr_scheduler.LRScheduler]]:
    """Adam at ``config.lr``, and the cosine schedule over ``config.epochs`` when the recipe asks for it."""
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
                 if config.schedule == "cosine" else None)
    return optimizer, scheduler


@dataclass
class EpochRunner:
    """What one epoch needs, gathered so that :meth:`run` reads as the steps of an epoch."""

    trained: nn.Module  # the model, or its DistributedDataParallel wrapper
    model: nn.Module
    train: Train
    evaluate: Evaluate
    optimizer: torch.optim.Optimizer
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler]
    train_data: Dataset
    train_batches: Batches
    val_batches: Optional[Batches]
    generator: torch.Generator
    seed: int
    device: torch.device
    world_size: int

    def run(self, epoch: int, progress: bool) -> tuple[EpochResult, Optional[EpochResult], float]:
        """Train one epoch, then validate; return (training result, validation result or None, lr used)."""
        self.generator.manual_seed(epoch_seed(self.seed, epoch))
        start_epoch(self.train_data, self.train_batches, epoch)
        train_result = self.train.run_epoch(self.trained, self.train_batches, self.optimizer, epoch=epoch,
                                            progress=progress)
        if self.world_size > 1:
            train_result = mean_over_processes(train_result, self.device)
            share_buffers(self.model)
        val_result = (self.evaluate.run_epoch(self.model, self.val_batches, epoch=epoch, progress=progress)
                      if self.val_batches is not None else None)
        lr_used = self.optimizer.param_groups[0]["lr"]
        if self.scheduler is not None:
            self.scheduler.step()
        return train_result, val_result, lr_used


def run_epochs(epochs: EpochRunner, run: RunState, last_epoch: int, run_dir: Optional[Path],
               is_main_process: bool, progress: bool) -> None:
    """Run the epochs after ``run.epoch`` up to ``last_epoch``, recording each in ``run``.

    The first process saves every epoch into ``run_dir`` (when there is one);
    the others only train.
    """
    saved_epoch = run.epoch  # the epoch checkpoint.pth holds, for the message on Ctrl+C
    curves_drawn = -math.inf  # when curves.png was last drawn: never
    bar = tqdm(total=last_epoch, initial=run.epoch, desc="training", unit="epoch", disable=not progress)
    try:
        for epoch in range(run.epoch + 1, last_epoch + 1):
            started = time.perf_counter()
            train_result, val_result, lr_used = epochs.run(epoch, progress)
            improved = run.end_epoch(epoch, train_result, val_result, lr_used, time.perf_counter() - started)
            if run_dir is not None and is_main_process:
                draw_curves = epoch == last_epoch or time.perf_counter() - curves_drawn >= CURVES_INTERVAL_SECONDS
                run.save(run_dir, improved, draw_curves)
                saved_epoch = epoch
                if draw_curves:
                    curves_drawn = time.perf_counter()
            bar.set_postfix(_progress_numbers(train_result, val_result))
            bar.update(1)
    except KeyboardInterrupt:
        bar.close()
        if is_main_process:
            print(f"\n{_interruption_message(run_dir, saved_epoch)}", file=sys.stderr)
        raise
    bar.close()


def _progress_numbers(train_result: EpochResult, val_result: Optional[EpochResult]) -> dict[str, str]:
    """The numbers shown beside the progress bar."""
    numbers = {"loss": f"{train_result.loss:.4f}"}
    if val_result is not None:
        numbers["val_dice"] = f"{val_result.dice:.4f}"
    return numbers


def _interruption_message(run_dir: Optional[Path], saved_epoch: int) -> str:
    """What was kept after Ctrl+C, and how to go on."""
    if run_dir is None:
        return "Training interrupted; nothing was saved (out_dir=None)."
    if saved_epoch == 0:
        return f"Training interrupted before the first epoch ended; nothing to resume in {run_dir}."
    return (f"Training interrupted. {run_dir / CHECKPOINT_FILE} holds epoch {saved_epoch}; continue with "
            f"fit(..., out_dir={str(run_dir)!r}, resume=True) or the same `python -m retina_lib train` "
            f"command plus --resume.")
