"""Named training recipes, and one function that runs a recipe on a dataset.

Three recipes matter in this course:

* ``course`` - the recipe this course recommends, chosen by experiment on the
  TRAINING split of CHASE_DB1 (``results/sweep.py``; see ``results/README.md``
  for the numbers behind the choice): random 512x512 crops, BCE + Dice loss,
  Adam at 1e-3 with a cosine schedule, batch 4, 40 epochs of 100 crops. It is
  :class:`TrainConfig`'s default, so ``TrainConfig()``, ``fit(model, data)`` and
  ``python -m retina_lib train`` without ``--preset`` all follow it.
* ``original`` - what the material this course descends from did: whole images
  resized to 512x512, Dice loss + IoU loss, Adam at 1e-4, batch 4, 100 epochs.
  Kept by name to compare with (notebook 04 shows it scores lower).
* ``best`` - the course recipe taken further, also chosen on the training
  split only (``results/sweep.py --group best``): the clDice loss (a soft
  skeleton term that rewards thin, connected vessels) added to BCE + Dice,
  everything else unchanged. Training takes about 1.6 times as long;
  score it with flip test-time augmentation too (``evaluate --tta``), as its
  sweep did.

The command line (``python -m retina_lib train --preset course``) and the
training notebook both call :func:`train_recipe`, so a run started from either
computes exactly the same thing for the same seed (``tests/test_training.py``
checks that the weights come out identical).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from retina_lib.data import load_dataset
from retina_lib.system.hardware import seed_everything
from retina_lib.model import LinkNet
from retina_lib.training.checkpoints import dataset_label
from retina_lib.training.config import TrainConfig
from retina_lib.training.trainer import fit, training_datasets

#: The course's recommended recipe: TrainConfig's defaults.
COURSE = TrainConfig()

#: The original material's recipe: the course recipe with the five fields it changed.
ORIGINAL = replace(COURSE, epochs=100, lr=1e-4, loss="dice+iou", schedule=None, mode="resize",
                   samples_per_epoch=None)

RECIPES: dict[str, TrainConfig] = {
    "course": COURSE,
    "original": ORIGINAL,
    "best": replace(COURSE, loss="bce+dice+cldice"),  # the course recipe plus clDice, nothing else
}


def recipe(name: str, **changes: Any) -> TrainConfig:
    """The named recipe, with any fields replaced (``recipe("course", epochs=2)``).

    Taught in notebook 03, section 4.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}")
    return replace(RECIPES[name], **changes)


def train_recipe(
    config: TrainConfig,
    dataset: str,
    *,
    root: Optional[str | Path] = None,
    out_dir: Optional[str | Path] = None,
    dataset_options: Optional[dict[str, Any]] = None,
    model: Optional[LinkNet] = None,
    **how: Any,
) -> tuple[LinkNet, dict]:
    """Train LinkNet with ``config`` on the TRAIN split of ``dataset``; return (model, history).

    The last ``config.val_count`` training images validate (they pick the best
    epoch); the test split is never touched. ``how`` goes to :func:`fit`: only
    how the run is executed (device, amp, resume, num_workers, progress...),
    never the recipe, which is ``config`` alone. The seed is set before the
    network is built, so the initial weights are reproducible too. The run
    record names the dataset and its options (:func:`dataset_label`).

    Taught in notebook 03, section 4.
    """
    config.check()
    options = dataset_options or {}
    samples = load_dataset(dataset, split="train", root=root, **options)
    train_set, val_set = training_datasets(samples, config)
    seed_everything(config.seed)
    model = model if model is not None else LinkNet()
    history = fit(model, train_set, val_set, config, dataset=dataset_label(dataset, options), out_dir=out_dir,
                  **how)
    return model, history
