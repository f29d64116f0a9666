"""What ``checkpoint.pth`` holds, and how a training run is saved to it and continued from it.

A checkpoint is everything :func:`~retina_lib.training.trainer.fit` needs to go on as
if it had never stopped: the model, the optimizer, the learning-rate schedule
and the gradient scaler, the epoch, the history, the best score and weights,
the run's settings and the states of the random generators. It holds only
tensors, dicts, lists, numbers and strings, so it loads with
``torch.load(path, weights_only=True)``.

Every checkpoint records ``format_version``
(:data:`~retina_lib.training.weights.CHECKPOINT_FORMAT_VERSION`); files from
before versions existed are read as version 1, a newer or unknown version is
refused.

Resuming checks these things before anything is restored, and raises
:class:`~retina_lib.training.run_folder.ResumeError` saying what is wrong:

* the file is a checkpoint of this kind of run, in a format version this
  library reads (every entry present, of the right type, weights of the same
  architecture, floating point and finite, optimizer state shaped like the
  parameters), not a hand-made or foreign file that would fail half-way
  through with a bare KeyError or inside the optimizer's first step;
* it was made with the same settings (:func:`settings_differences`).
"""
from __future__ import annotations

import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import nn

from retina_lib.epoch_loop import EpochResult
from retina_lib.system.files import write_atomically
from retina_lib.training.config import TrainConfig
from retina_lib.training.run_folder import BEST_WEIGHTS_FILE, CHECKPOINT_FILE, ResumeError, save_curves, save_history
from retina_lib.training.weights import (CHECKPOINT_FORMAT_VERSION, WeightsError, architecture_problems, check_state_dict,
                                        checkpoint_version_problem, integer_weights_problem, is_full_checkpoint,
                                        safe_torch_load)

# --------------------------------------------------------------------------
# Settings that must match when resuming
# --------------------------------------------------------------------------


#: Settings an older version recorded under another name: old name -> current name.
#: :func:`current_names` translates a checkpoint's record, so such a run can still be resumed.
RENAMED_SETTINGS = {"optimise": "loss"}

#: Options of the dataset (``dataset_options`` of :func:`~retina_lib.recipes.train_recipe`),
#: recorded by older versions as separate ``dataset_NAME`` keys and now inside the ``dataset`` label.
OLD_DATASET_PREFIX = "dataset_"


def dataset_label(name: str, options: Optional[Mapping[str, Any]] = None) -> str:
    """The run record's name for a dataset and its options, e.g. ``"synthetic n=6 size=96"``.

    The options are sorted by name, so the same data always gets the same label.
    """
    return " ".join([name] + [f"{key}={value}" for key, value in sorted((options or {}).items())])


def run_settings(config: TrainConfig, train_size: int, val_size: int, dataset: Optional[str]) -> dict[str, Any]:
    """The run record: everything that identifies a run, as a flat dict of plain values.

    This is the one place its keys are made: the recipe's fields
    (:meth:`TrainConfig.settings`), the number of training and validation
    images per epoch, and the dataset's label (None when fit was given
    datasets without a name).
    """
    return {**config.settings(), "train_size": train_size, "val_size": val_size, "dataset": dataset}


def current_names(saved: Mapping[str, Any]) -> dict[str, Any]:
    """A checkpoint's run record with the keys of older versions translated to today's.

    ``optimise`` is now ``loss``; ``dataset`` plus ``dataset_n``, ``dataset_size``...
    are now one ``dataset`` label (:func:`dataset_label`); a record without a
    ``dataset`` (fit called without one) now says None.
    """
    translated = {RENAMED_SETTINGS.get(key, key): value for key, value in saved.items()
                  if not key.startswith(OLD_DATASET_PREFIX)}
    old_options = {key[len(OLD_DATASET_PREFIX):]: value for key, value in saved.items()
                   if key.startswith(OLD_DATASET_PREFIX)}
    name = translated.get("dataset")
    if old_options and name is not None:
        translated["dataset"] = dataset_label(name, old_options)
    translated.setdefault("dataset", None)
    return translated


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
# Random generators
# --------------------------------------------------------------------------

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


# --------------------------------------------------------------------------
# Checking a checkpoint before using it
# --------------------------------------------------------------------------

_NUMBER = (int, float)
#: The entries of a checkpoint and the types they must have (None: may be absent as None).
CHECKPOINT_ENTRIES: dict[str, tuple[type, ...]] = {
    "model": (Mapping,), "best_model": (Mapping,), "optimizer": (Mapping,),
    "scheduler": (Mapping, type(None)), "scaler": (Mapping, type(None)),
    "epoch": (int,), "history": (Mapping,), "best_score": _NUMBER, "best_epoch": (int,),
    "config": (Mapping,), "rng": (Mapping,),
}
#: The random-generator entries, as :func:`rng_states` writes them.
RNG_ENTRIES: dict[str, tuple[type, ...]] = {
    "python_version": (int,), "python": (torch.Tensor,), "python_gauss": (float, type(None)),
    "numpy": (torch.Tensor,), "numpy_position": (int,), "numpy_has_gauss": (int,), "numpy_gauss": _NUMBER,
    "torch": (torch.Tensor,), "cuda": (list,),
}


def _wrong_entries(stored: Mapping[str, Any], entries: Mapping[str, tuple[type, ...]], prefix: str) -> list[str]:
    problems = []
    for key, types in entries.items():
        if key not in stored:
            problems.append(f"no {prefix}{key!r}")
        elif isinstance(stored[key], bool) or not isinstance(stored[key], types):
            problems.append(f"{prefix}{key!r} is a {type(stored[key]).__name__}")
    return problems


def checkpoint_problems(stored: Any) -> list[str]:
    """What is missing or of the wrong type in a loaded ``checkpoint.pth`` (empty when it is well formed)."""
    if not isinstance(stored, Mapping):
        return [f"it holds a {type(stored).__name__}, not a dict"]
    problems = _wrong_entries(stored, CHECKPOINT_ENTRIES, "")
    if isinstance(stored.get("rng"), Mapping):
        problems += _wrong_entries(stored["rng"], RNG_ENTRIES, "rng ")
    history = stored.get("history")
    if isinstance(history, Mapping) and isinstance(stored.get("epoch"), int):
        for key, values in history.items():
            if not isinstance(values, list) or len(values) != stored["epoch"]:
                problems.append(f"history {key!r} does not hold one value per epoch ({stored['epoch']})")
                break
    return problems


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load ``checkpoint.pth`` safely; a file that is not a well-formed checkpoint raises ResumeError."""
    try:
        stored = safe_torch_load(path)
    except WeightsError as error:
        raise ResumeError(f"cannot resume: {error}") from error
    if not is_full_checkpoint(stored):
        raise ResumeError(f"{path} is not a full training checkpoint (written by fit with out_dir)")
    version_problem = checkpoint_version_problem(stored)
    if version_problem is not None:
        raise ResumeError(f"cannot resume from {path}: {version_problem}")
    problems = checkpoint_problems(stored)
    if problems:
        raise ResumeError(f"cannot resume from {path}: it is not a checkpoint written by fit: " + "; ".join(problems))
    return stored


def optimizer_shape_problems(optimizer: torch.optim.Optimizer, saved: Mapping[str, Any]) -> list[str]:
    """Saved per-parameter optimizer tensors (Adam's running averages, ...) whose shape is not their parameter's.

    ``Optimizer.load_state_dict`` checks the number of parameters but not
    the shapes of what it stores for each, so a wrong one only fails at the
    next step, deep inside Adam, as a bare RuntimeError. Saved parameters are
    matched to this optimizer's in order, as ``load_state_dict`` does; a
    state whose groups or sizes do not match is left to ``load_state_dict``,
    whose error :meth:`RunState.restore` reports.
    """
    groups, state = saved.get("param_groups"), saved.get("state")
    if not isinstance(groups, list) or not isinstance(state, Mapping):
        return []
    saved_ids = [index for group in groups if isinstance(group, Mapping) for index in group.get("params", [])]
    parameters = [parameter for group in optimizer.param_groups for parameter in group["params"]]
    if len(saved_ids) != len(parameters):
        return []
    problems = []
    for position, (saved_id, parameter) in enumerate(zip(saved_ids, parameters)):
        entries = state.get(saved_id, {})
        for name, value in (entries.items() if isinstance(entries, Mapping) else ()):
            if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape != parameter.shape:
                problems.append(f"parameter {position} {name!r} is {tuple(value.shape)}, "
                                f"the parameter is {tuple(parameter.shape)}")
    if len(problems) > 3:
        problems = problems[:3] + [f"and {len(problems) - 3} more"]
    return problems


# --------------------------------------------------------------------------
# The state of a run
# --------------------------------------------------------------------------

def new_history(with_validation: bool) -> dict[str, list[float]]:
    """An empty history with the keys fit fills in every epoch."""
    keys = ["train_loss", "train_dice_loss", "train_iou_loss"]
    if with_validation:
        keys += ["val_loss", "val_dice_loss", "val_iou_loss", "val_dice"]
    return {key: [] for key in keys + ["lr", "epoch_seconds"]}


class RunState:
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
        self.history = new_history(with_validation)
        self.best_score = -math.inf
        self.best_epoch = 0
        self.best_model = cpu_copy(model.state_dict())
        # Whether linknet.pth holds best_model: not yet, and not surely after a resume (see save).
        self.best_on_disk = False

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
            "format_version": CHECKPOINT_FORMAT_VERSION,
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
        """Continue from ``checkpoint`` (see :func:`load_checkpoint`), after checking it fits this run.

        The weights are checked first and loaded last, so a refused
        checkpoint leaves the model as it was.
        """
        differences = settings_differences(current_names(checkpoint["config"]), self.settings)
        if differences:
            raise ResumeError(f"cannot resume {source}: it was made with other settings: " + "; ".join(differences))
        self._check_fits(checkpoint, source)
        try:
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            if self.scheduler is not None:
                self.scheduler.load_state_dict(checkpoint["scheduler"])
            if self.scaler is not None and checkpoint["scaler"] is not None:
                self.scaler.load_state_dict(checkpoint["scaler"])
            restore_rng_states(checkpoint["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as error:
            raise ResumeError(f"cannot resume {source}: its optimizer, schedule or random states do not "
                              f"fit this run ({type(error).__name__}: {error})") from error
        self.model.load_state_dict(checkpoint["model"])
        self.epoch = checkpoint["epoch"]
        self.history = checkpoint["history"]
        self.best_score = checkpoint["best_score"]
        self.best_epoch = checkpoint["best_epoch"]
        self.best_model = checkpoint["best_model"]

    def _check_fits(self, checkpoint: Mapping[str, Any], source: Path) -> None:
        """Refuse weights of another architecture, NaN weights and a history with other curves."""
        for key in ("model", "best_model"):
            try:
                check_state_dict(source, checkpoint[key])
            except WeightsError as error:
                raise ResumeError(f"cannot resume: {key!r} of {error}") from error
            problems = architecture_problems(self.model, checkpoint[key])
            if problems:
                raise ResumeError(f"cannot resume {source}: its {key!r} is for another architecture than "
                                  f"{type(self.model).__name__}: " + "; ".join(problems))
            integer_problem = integer_weights_problem(self.model, checkpoint[key])
            if integer_problem is not None:
                raise ResumeError(f"cannot resume {source}: in its {key!r}, {integer_problem}")
        optimizer_problems = optimizer_shape_problems(self.optimizer, checkpoint["optimizer"])
        if optimizer_problems:
            raise ResumeError(f"cannot resume {source}: its optimizer state does not fit this model's parameters: "
                              + "; ".join(optimizer_problems))
        if set(checkpoint["history"]) != set(self.history):
            raise ResumeError(f"cannot resume {source}: its history has the curves {sorted(checkpoint['history'])}, "
                              f"this run records {sorted(self.history)}")
        if self.scheduler is not None and checkpoint["scheduler"] is None:
            raise ResumeError(f"cannot resume {source}: it has no learning-rate schedule state")

    def save(self, run_dir: Path, improved: bool, draw_curves: bool) -> None:
        """Write this epoch's files: the checkpoint, linknet.pth if improved, the history (and curves).

        The checkpoint comes first: a run stopped while writing it (a full
        disk, ``kill -9``) in its first epoch leaves no run file, so it can be
        started again, and one stopped later can be resumed. The checkpoint
        holds the best weights too, so linknet.pth is also written on the
        first save after a resume, in case the stop came before it.
        """
        checkpoint = self.checkpoint()
        write_atomically(run_dir / CHECKPOINT_FILE, lambda path: torch.save(checkpoint, path))
        if improved or not self.best_on_disk:
            write_atomically(run_dir / BEST_WEIGHTS_FILE, lambda path: torch.save(self.best_model, path))
            self.best_on_disk = True
        save_history(self.history, run_dir)
        if draw_curves:
            save_curves(self.history, run_dir)
