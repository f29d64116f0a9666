"""One pass over a data loader: :class:`Train` (with gradients) and :class:`Evaluate` (without).

These keep the call the original course material used in its training loop::

    train, evaluate = Train(dice=DiceLoss(), iou=IoU()), Evaluate(dice=DiceLoss(), iou=IoU())
    for epoch in range(epochs):
        train_dice, train_iou = train.forward(model=model, loader=train_loader, optimizer=optimizer)
        val_dice, val_iou = evaluate.forward(model=model, loader=val_loader)
        dice_loss.append(train_dice)
        iou_loss.append(train_iou)

and fix what was wrong with it:

* **The target is the vessel label.** A batch is ``(image, label)`` or
  ``(image, label, fov)``. The original validation compared predictions with
  the field-of-view masks, which measures nothing useful. Here the FOV is only
  used to score the thresholded Dice *inside* the field of view, the way
  published results are computed; the losses cover the whole image, so the
  network also learns that there are no vessels outside the FOV.
* **What is optimised is said out loud**: ``loss="dice+iou"`` (the
  original recipe: Dice loss + IoU loss, both back-propagated) or
  ``loss="bce+dice"`` (:class:`~retina_lib.losses.BCEDiceLoss`, usually
  easier to train) or ``loss="bce+dice+cldice"`` (the same plus half a
  centreline Dice loss, :class:`~retina_lib.losses.ClDiceLoss`, which rewards
  thin vessels). The Dice and IoU losses are reported either way.
* **Evaluation runs in eval mode, without gradients**, so batch-norm
  statistics and weights are left alone.
* **Everything follows the model's device** (CPU, CUDA or Apple MPS).

:meth:`Train.run_epoch` and :meth:`Evaluate.run_epoch` return an
:class:`EpochResult` with every number; ``forward`` returns just the two
losses, as before. :func:`retina_lib.training.trainer.fit` is built on these classes.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from retina_lib.system.hardware import autocast_dtype, check_amp, model_device
from retina_lib.losses import BCEDiceLoss, ClDiceLoss, DiceLoss, IoU

#: The losses :class:`Train` can minimise: the ``loss`` argument here, in
#: :class:`~retina_lib.training.config.TrainConfig` and ``--loss`` on the command line.
LOSS_CHOICES = ("dice+iou", "bce+dice", "bce+dice+cldice")

#: The weight of the clDice loss in "bce+dice+cldice": BCE + Dice loss + CLDICE_WEIGHT * clDice loss.
#: clDice alone says nothing about vessel WIDTHS (a centreline is as long in a thin mask as in a
#: thick one), so the pixel losses stay in charge and clDice is added at half weight (not tuned).
CLDICE_WEIGHT = 0.5

#: Predictions with a probability of at least this count as vessel when the
#: thresholded Dice is scored (a probability of 0.5 is a logit of 0).
DICE_THRESHOLD = 0.5


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the message names the epoch and the batch.

    Carrying on would turn every weight into NaN within a step, so training
    stops at the first bad batch, before the optimizer step.
    """

    def __init__(self, phase: str, value: float, batch: int, epoch: Optional[int] = None) -> None:
        where = f"batch {batch}" if epoch is None else f"epoch {epoch}, batch {batch}"
        super().__init__(
            f"the {phase} loss became {value} at {where}: check the inputs for NaN or "
            f"infinite values, or lower the learning rate"
        )
        self.phase = phase
        self.value = value
        self.batch = batch
        self.epoch = epoch


# --------------------------------------------------------------------------
# Epoch results
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class EpochResult:
    """Means over the images of one pass through a loader.

    Attributes:
        loss: the loss that was optimised (or would be, for evaluation).
        dice_loss: soft Dice loss, 1 - soft Dice.
        iou_loss: soft IoU loss, 1 - soft IoU.
        dice: Dice of the prediction thresholded at 0.5 (= F1), inside the
            FOV when the batches carry one. This is what "best epoch" means.
    """

    loss: float
    dice_loss: float
    iou_loss: float
    dice: float


class _RunningMeans:
    """Per-image means of the batch values, so a short last batch weighs less."""

    def __init__(self) -> None:
        self.sums = [0.0, 0.0, 0.0, 0.0]
        self.images = 0

    def add(self, values: Sequence[float], images: int) -> None:
        self.sums = [total + value * images for total, value in zip(self.sums, values)]
        self.images += images

    def result(self, loader_name: str) -> EpochResult:
        if self.images == 0:
            raise ValueError(f"the {loader_name} loader yielded no batches: is its dataset empty?")
        return EpochResult(*(total / self.images for total in self.sums))


# --------------------------------------------------------------------------
# Train and Evaluate
# --------------------------------------------------------------------------

class _Engine(nn.Module):
    """What :class:`Train` and :class:`Evaluate` share: the losses and one batch's arithmetic.

    Args:
        dice: soft Dice loss; always reported.
        iou: soft IoU loss; always reported.
        loss: what is minimised: "dice+iou" (the original recipe: the sum of both losses),
            "bce+dice" (binary cross-entropy + Dice, see BCEDiceLoss) or
            "bce+dice+cldice" (that plus CLDICE_WEIGHT x the clDice loss, see ClDiceLoss).
        amp: mixed precision, one of :data:`AMP_CHOICES`; "auto" means
            :func:`default_amp` for the model's device.
        channels_last: send images in channels-last memory layout (faster
            convolutions on recent GPUs and CPUs; the model should be converted
            too: ``model.to(memory_format=torch.channels_last)``).
    """

    phase = "batch"

    def __init__(
        self,
        dice: Optional[DiceLoss] = None,
        iou: Optional[IoU] = None,
        *,
        loss: str = "dice+iou",
        amp: str = "auto",
        channels_last: bool = False,
    ) -> None:
        super().__init__()
        if loss not in LOSS_CHOICES:
            raise ValueError(f"loss must be one of {', '.join(LOSS_CHOICES)}; got {loss!r}")
        self.dice = dice if dice is not None else DiceLoss()
        self.iou = iou if iou is not None else IoU()
        self.loss = loss
        self.bce_dice = BCEDiceLoss() if loss.startswith("bce+dice") else None
        self.cldice = ClDiceLoss() if loss == "bce+dice+cldice" else None
        self.amp = check_amp(amp)
        self.channels_last = channels_last
        self.hard_dice = DiceLoss(from_logits=False)

    def unpack(self, batch: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor, Optional[Tensor]]:
        """Split a batch into (image, label, fov or None) on ``device``."""
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            described = f"{len(batch)} items" if isinstance(batch, (tuple, list)) else f"a {type(batch).__name__}"
            raise ValueError(f"a batch must be (image, label) or (image, label, fov); got {described}")
        non_blocking = device.type == "cuda"
        memory_format = torch.channels_last if self.channels_last else torch.preserve_format
        image = batch[0].to(device, non_blocking=non_blocking, memory_format=memory_format)
        label = batch[1].to(device, non_blocking=non_blocking)
        fov = batch[2].to(device, non_blocking=non_blocking) if len(batch) == 3 else None
        return image, label, fov

    def batch_losses(self, logits: Tensor, label: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return (optimised loss, Dice loss, IoU loss) of one batch, against the label."""
        _, dice_loss = self.dice(logits, label)
        _, iou_loss = self.iou(logits, label)
        if self.bce_dice is not None:
            _, loss = self.bce_dice(logits, label)
            if self.cldice is not None:
                loss = loss + CLDICE_WEIGHT * self.cldice(logits, label)[1]
        else:
            loss = dice_loss + iou_loss
        return loss, dice_loss, iou_loss

    def thresholded_dice(self, logits: Tensor, label: Tensor, fov: Optional[Tensor]) -> Tensor:
        """Dice of ``probability >= 0.5`` against the label, inside the FOV if there is one."""
        with torch.no_grad():
            prediction = (torch.sigmoid(logits.detach().float()) >= DICE_THRESHOLD).float()
            score, _ = self.hard_dice(prediction, label, mask=fov)
        return score

    def batches(self, loader: Iterable, epoch: Optional[int], progress: bool) -> Iterable:
        """The loader, wrapped in a per-batch progress bar that disappears when done."""
        if not progress:
            return loader
        description = self.phase if epoch is None else f"epoch {epoch} {self.phase}"
        return tqdm(loader, desc=description, leave=False, unit="batch")

    def step_values(
        self, loss: Tensor, dice_loss: Tensor, iou_loss: Tensor, dice: Tensor, batch: int, epoch: Optional[int]
    ) -> list[float]:
        """The batch's numbers as floats (one device sync); raise if the loss is not finite."""
        values = torch.stack([loss.detach(), dice_loss.detach(), iou_loss.detach(), dice]).tolist()
        if not math.isfinite(values[0]):
            raise NonFiniteLossError(self.phase, values[0], batch, epoch)
        return values


class Train(_Engine):
    """One training epoch: ``train.forward(model=..., loader=..., optimizer=...) -> (dice_loss, iou_loss)``.

    See :class:`_Engine` for the constructor arguments. With float16 mixed
    precision (CUDA GPUs without bfloat16) the gradients are scaled by
    :attr:`scaler`, created on first use; its state belongs in checkpoints.

    Taught in notebook 03, section 2.
    """

    phase = "training"
    scaler: Optional[torch.amp.GradScaler] = None

    def gradient_scaler(self, device: torch.device, dtype: Optional[torch.dtype]) -> Optional[torch.amp.GradScaler]:
        """The GradScaler float16 needs (its small range underflows gradients), else None."""
        if dtype is not torch.float16:
            return None
        if self.scaler is None:
            self.scaler = torch.amp.GradScaler(device.type)
        return self.scaler

    def run_epoch(
        self,
        model: nn.Module,
        loader: Iterable,
        optimizer: torch.optim.Optimizer,
        *,
        epoch: Optional[int] = None,
        progress: bool = False,
    ) -> EpochResult:
        """Train ``model`` on every batch of ``loader`` once and return the epoch's means.

        ``epoch`` only labels the progress bar and error messages.
        Raises :class:`NonFiniteLossError` before the optimizer step of the
        first batch whose loss is NaN or infinite.
        """
        device = model_device(model)
        dtype = autocast_dtype(self.amp, device)
        scaler = self.gradient_scaler(device, dtype)
        model.train()
        means = _RunningMeans()
        for batch_number, batch in enumerate(self.batches(loader, epoch, progress), start=1):
            image, label, fov = self.unpack(batch, device)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                logits = model(image)
            loss, dice_loss, iou_loss = self.batch_losses(logits, label)
            dice = self.thresholded_dice(logits, label, fov)
            values = self.step_values(loss, dice_loss, iou_loss, dice, batch_number, epoch)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            means.add(values, images=image.shape[0])
        return means.result("training")

    def forward(self, model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer) -> tuple[float, float]:
        """Train for one epoch; return its mean (Dice loss, IoU loss), as the original loop expects."""
        result = self.run_epoch(model, loader, optimizer)
        return result.dice_loss, result.iou_loss


class Evaluate(_Engine):
    """One pass without gradients: ``evaluate.forward(model=..., loader=...) -> (dice_loss, iou_loss)``.

    The model is put in eval mode (batch norm uses its running statistics and
    does not update them) and put back in its previous mode afterwards.

    Taught in notebook 03, section 2.
    """

    phase = "validation"

    @torch.no_grad()
    def run_epoch(
        self, model: nn.Module, loader: Iterable, *, epoch: Optional[int] = None, progress: bool = False
    ) -> EpochResult:
        """Score ``model`` on every batch of ``loader``; return the means over images."""
        device = model_device(model)
        dtype = autocast_dtype(self.amp, device)
        was_training = model.training
        model.eval()
        try:
            means = _RunningMeans()
            for batch_number, batch in enumerate(self.batches(loader, epoch, progress), start=1):
                image, label, fov = self.unpack(batch, device)
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    logits = model(image)
                loss, dice_loss, iou_loss = self.batch_losses(logits, label)
                dice = self.thresholded_dice(logits, label, fov)
                means.add(self.step_values(loss, dice_loss, iou_loss, dice, batch_number, epoch), image.shape[0])
        finally:
            model.train(was_training)
        return means.result("validation")

    def forward(self, model: nn.Module, loader: Iterable) -> tuple[float, float]:
        """Evaluate once; return the mean (Dice loss, IoU loss) against the vessel labels."""
        result = self.run_epoch(model, loader)
        return result.dice_loss, result.iou_loss
