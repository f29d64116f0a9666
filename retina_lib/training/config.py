"""One training recipe's settings, :class:`TrainConfig`: what a run computes, in one object.

The same object travels one way: a named recipe (:mod:`retina_lib.recipes`,
or the command line's ``--preset`` plus single options) becomes a
``TrainConfig``; :func:`~retina_lib.training.trainer.training_datasets` reads
its data fields, :func:`~retina_lib.training.trainer.fit` its optimisation
fields, and the run record stored in ``checkpoint.pth`` is
:meth:`TrainConfig.settings` (plus the dataset and its size, see
:func:`~retina_lib.training.checkpoints.run_settings`). Nothing is split off and
merged back on the way.

How a run is executed (device, mixed precision, memory format, data workers,
where the files go) is not part of the recipe: those are :func:`fit`'s own
keyword arguments, so a run stopped on a GPU can continue on another machine.

The vocabulary is the same in Python and on the command line:

=====================  ==============================  =========================
field                  Python                          command line
=====================  ==============================  =========================
what is minimised      ``loss="bce+dice"``             ``--loss bce+dice``
how images are made    ``mode="crop"``                 ``--mode crop``
their side in pixels   ``size=512``                    ``--size 512``
=====================  ==============================  =========================
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

from retina_lib.epoch_loop import LOSS_CHOICES
from retina_lib.errors import UserInputError

#: Learning-rate schedules a recipe may use: None keeps the rate constant.
SCHEDULE_CHOICES = (None, "cosine")

#: How training images are made from the pictures: random ``size`` crops at
#: native resolution, or whole pictures resized to ``size`` (the original material).
MODE_CHOICES = ("crop", "resize")


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe; the defaults are the course's recommended recipe ("course").

    Notebook 03 (section "The course recipe") shows these fields and why each
    value was chosen; ``recipe("original")`` in :mod:`retina_lib.recipes` is
    the original material's recipe, kept by name for comparison.

    Optimisation (read by :func:`~retina_lib.training.trainer.fit`):
        epochs: passes over the training set (40).
        batch_size: images per step (4).
        lr: Adam's learning rate (1e-3).
        loss: what is minimised: "bce+dice" (binary cross-entropy + Dice loss),
            "dice+iou" (the original: Dice loss + IoU loss) or "bce+dice+cldice"
            (see :data:`~retina_lib.epoch_loop.LOSS_CHOICES`).
        schedule: "cosine" (the learning rate decays to 0 over ``epochs``) or
            None (constant).
        seed: seeds the initial weights, shuffling and augmentation.

    Data (read by :func:`~retina_lib.training.trainer.training_datasets`):
        mode: "crop" (random ``size`` crops at native resolution) or
            "resize" (whole images resized to ``size``, the original).
        size: side of the square training images in pixels (512).
        samples_per_epoch: images drawn per epoch (100; None: one per training image).
        val_count: images held out from the END of the training split for
            validation (never the test split: the test set must stay unseen
            until the final evaluation).
    """

    epochs: int = 40
    batch_size: int = 4
    lr: float = 1e-3
    loss: str = "bce+dice"
    schedule: Optional[str] = "cosine"
    seed: int = 0
    mode: str = "crop"
    size: int = 512
    samples_per_epoch: Optional[int] = 100
    val_count: int = 4

    def check(self) -> None:
        """Refuse impossible settings with a message naming the field, before any work starts."""
        if self.epochs < 1:
            raise UserInputError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserInputError(f"batch_size must be at least 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserInputError(f"lr must be a positive finite number, got {self.lr}")
        if self.loss not in LOSS_CHOICES:
            raise UserInputError(f"loss must be one of {', '.join(LOSS_CHOICES)}; got {self.loss!r}")
        if self.schedule not in SCHEDULE_CHOICES:
            raise UserInputError(f"schedule must be None or 'cosine', got {self.schedule!r}")
        if self.mode not in MODE_CHOICES:
            raise UserInputError(f"mode must be one of {', '.join(MODE_CHOICES)}; got {self.mode!r}")
        if self.samples_per_epoch is not None and self.samples_per_epoch < 1:
            raise UserInputError(f"samples_per_epoch must be at least 1 or None, got {self.samples_per_epoch}")
        if self.val_count < 0:
            raise UserInputError(f"val_count must be 0 or more, got {self.val_count}")

    def settings(self) -> dict[str, Any]:
        """Every field as a plain dict, for the run record in ``checkpoint.pth``."""
        return asdict(self)
