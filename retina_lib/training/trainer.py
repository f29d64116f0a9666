"""Training for many epochs: :func:`fit` and the recipe it follows, :class:`TrainConfig`.

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

* :mod:`retina_lib.training.run_folder` - the run folder: one run at a time (a lock),
  files written whole or not at all;
* :mod:`retina_lib.training.checkpoints` - what ``checkpoint.pth`` holds, saving a run
  and checking a checkpoint before resuming from it;
* :mod:`retina_lib.training.weights` - loading ``linknet.pth`` safely (:func:`load_weights`);
* :mod:`retina_lib.training.batch_sources` - the DataLoader, or batches kept on the GPU;
* :mod:`retina_lib.training.distributed` - several processes under ``torchrun``.

Several processes: launched by ``torchrun --nproc_per_node N -m retina_lib
train ...`` (see :func:`start_distributed`), N copies of :func:`fit` run side by
side, one per GPU (or CPU process). Each trains on its own share of every
epoch, DistributedDataParallel averages their gradients so that all keep the
same weights, and only the first process (rank 0) writes files and shows
progress. ``batch_size`` is per process: the effective batch is N times larger.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from retina_lib.training.batch_sources import item_count, make_batches, start_epoch
from retina_lib.training.checkpoints import RunState, load_checkpoint, run_settings
from retina_lib.data import SegmentationDataset
from retina_lib.data.sample import Sample
from retina_lib.system.hardware import pick_device, seed_everything
from retina_lib.training.distributed import (
    mean_over_processes,
    process_rank_and_count,
    share_buffers,
)
from retina_lib.epoch_loop import OPTIMISE_CHOICES, Evaluate, Train
from retina_lib.errors import UserInputError
from retina_lib.system.hardware import autocast_dtype, check_amp, default_channels_last
from retina_lib.training.run_folder import (
    CHECKPOINT_FILE,
    open_run_folder,
)

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
        optimise: "dice+iou" (the original: Dice loss + IoU loss), "bce+dice" or
            "bce+dice+cldice" (see :data:`~retina_lib.epoch_loop.OPTIMISE_CHOICES`).
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
# fit
# --------------------------------------------------------------------------

def _check_arguments(epochs: int, batch_size: int, lr: float, schedule: Optional[str], optimise: str,
                     amp: str, out_dir: Optional[Path], resume: bool) -> None:
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive finite number, got {lr}")
    if schedule not in SCHEDULE_CHOICES:
        raise ValueError(f"schedule must be None or 'cosine', got {schedule!r}")
    if optimise not in OPTIMISE_CHOICES:
        raise ValueError(f"optimise must be one of {', '.join(OPTIMISE_CHOICES)}; got {optimise!r}")
    check_amp(amp)
    if resume and out_dir is None:
        raise ValueError("resume=True needs out_dir, the folder of the run to continue")


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
            :class:`~retina_lib.training.resident_batches.DeviceBatches`. Without
            ``val_data`` there is no best epoch to choose: the last one is kept.
        epochs, batch_size, lr: the recipe (defaults: :class:`TrainConfig`).
        optimise: "dice+iou" (Dice loss + IoU loss, the original), "bce+dice" or
            "bce+dice+cldice" (see :class:`~retina_lib.epoch_loop.Train`).
        schedule: None (constant lr) or "cosine" (decays to 0 over ``epochs``).
        device: "auto" (CUDA, then Apple MPS, then CPU) or a device name.
        amp: mixed precision, "auto" (see :func:`~retina_lib.epoch_loop.default_amp`),
            "off", "bf16" or "fp16" (float16 uses a gradient scaler).
        channels_last: channels-last memory format; None (the default)
            decides with :func:`~retina_lib.epoch_loop.default_channels_last`
            (on for CUDA and the CPU, where it was measured faster).
        resident: keep the training images on the device and augment them
            there (:class:`~retina_lib.training.resident_batches.DeviceBatches`): True, False,
            or "auto" (on CUDA GPUs, for SegmentationDatasets in "crop" or
            "resize" mode; see :func:`use_resident_data`).
        seed: seeds shuffling and augmentation; each epoch's shuffle depends
            only on (seed, epoch), and a dataset with ``set_epoch`` is told the
            epoch, so a resumed run sees the same batches as an uninterrupted one.
        out_dir: folder for ``linknet.pth``, ``checkpoint.pth``,
            ``history.json`` and ``curves.png`` (see the module docstring), or
            None to save nothing. A folder that holds another run's files
            (any of them, see :mod:`retina_lib.training.run_folder`) is refused unless
            ``resume`` is True, and so is a folder another process is
            training into right now (:class:`~retina_lib.training.run_folder.RunFolderInUseError`).
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
    :class:`~retina_lib.epoch_loop.NonFiniteLossError` if a loss becomes NaN or
    infinite. On Ctrl+C (KeyboardInterrupt) the last complete epoch's
    checkpoint is kept and the way to resume is printed.
    """
    run_dir = Path(out_dir) if out_dir is not None else None
    _check_arguments(epochs, batch_size, lr, schedule, optimise, amp, run_dir, resume)
    recipe = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "optimise": optimise,
              "schedule": schedule, "seed": seed}  # the RECIPE_ARGUMENTS
    settings = run_settings(recipe, item_count(train_data), item_count(val_data) if val_data is not None else 0,
                            config)
    compute_device = pick_device(device) if isinstance(device, str) else torch.device(device)
    if channels_last is None:
        channels_last = default_channels_last(compute_device)
    rank, world_size = process_rank_and_count()
    is_main_process = rank == 0  # the one that writes files and shows progress
    progress = progress and is_main_process
    # One run at a time in a folder: held (locked) until fit returns or fails. Only the first process
    # writes files, so only it holds the lock; the others only check the folder.
    held_folder = (open_run_folder(run_dir, resume, lock=is_main_process) if run_dir is not None
                   else contextlib.nullcontext())
    with held_folder:
        seed_everything(seed)
        model.to(compute_device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
        # With several processes, DistributedDataParallel averages the gradients in backward().
        device_ids = [compute_device.index] if compute_device.type == "cuda" else None
        trained = DistributedDataParallel(model, device_ids=device_ids) if world_size > 1 else model
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs) if schedule == "cosine"
                     else None)
        train = Train(optimise=optimise, amp=amp, channels_last=channels_last)
        evaluate = Evaluate(optimise=optimise, amp=amp, channels_last=channels_last)
        scaler = train.gradient_scaler(compute_device, autocast_dtype(amp, compute_device))
        run = RunState(model, optimizer, scheduler, scaler, settings, with_validation=val_data is not None)
        if resume:
            run.restore(load_checkpoint(run_dir / CHECKPOINT_FILE), run_dir / CHECKPOINT_FILE)

        generator = torch.Generator()
        train_loader = make_batches(train_data, batch_size, True, resident, num_workers, compute_device,
                                    generator, seed, rank, world_size)
        val_loader = (make_batches(val_data, batch_size, False, resident, num_workers, compute_device,
                                   generator, seed, rank, world_size) if val_data is not None else None)

        saved_epoch = run.epoch  # the epoch checkpoint.pth holds, for the message on Ctrl+C
        curves_drawn = -math.inf  # when curves.png was last drawn: never
        bar = tqdm(total=epochs, initial=run.epoch, desc="training", unit="epoch", disable=not progress)
        try:
            for epoch in range(run.epoch + 1, epochs + 1):
                started = time.perf_counter()
                generator.manual_seed(epoch_seed(seed, epoch))
                start_epoch(train_data, train_loader, epoch)
                train_result = train.run_epoch(trained, train_loader, optimizer, epoch=epoch,
                                               progress=progress)
                if world_size > 1:
                    train_result = mean_over_processes(train_result, compute_device)
                    share_buffers(model)
                val_result = (evaluate.run_epoch(model, val_loader, epoch=epoch, progress=progress)
                              if val_loader is not None else None)
                lr_used = optimizer.param_groups[0]["lr"]
                if scheduler is not None:
                    scheduler.step()
                seconds = time.perf_counter() - started
                improved = run.end_epoch(epoch, train_result, val_result, lr_used, seconds)

                if run_dir is not None and is_main_process:
                    draw_curves = (epoch == epochs
                                   or time.perf_counter() - curves_drawn >= CURVES_INTERVAL_SECONDS)
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
