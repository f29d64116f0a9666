"""Named training recipes, and one function that runs a recipe on a dataset.

Three recipes matter in this course:

* ``original`` - what the material this course descends from did: whole images
  resized to 512x512, Dice loss + IoU loss, Adam at 1e-4, batch 4, 100 epochs.
* ``course`` - the recipe this course recommends, chosen by experiment on the
  TRAINING split of CHASE_DB1 (``results/sweep.py``; see ``results/README.md``
  for the numbers behind the choice).
* ``best`` - the course recipe taken further, also chosen on the training
  split only (``results/sweep.py --group best``): the clDice loss (a soft
  skeleton term that rewards thin, connected vessels) added to BCE + Dice,
  everything else unchanged. Training takes about 1.6 times as long;
  score it with flip test-time augmentation too (``evaluate --tta``), as its
  sweep did.

The command line (``python -m retina_lib train --preset course``) and the
training notebook both call :func:`train_recipe`, so a run started from either
computes exactly the same thing for the same seed.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from retina_lib.data import load_dataset
from retina_lib.system.hardware import seed_everything
from retina_lib.model import LinkNet
from retina_lib.training.trainer import TrainConfig, fit, training_datasets

COURSE = TrainConfig(
    epochs=40, batch_size=4, lr=1e-3, optimise="bce+dice", schedule="cosine",
    mode="crop", size=512, samples_per_epoch=100,
)

RECIPES: dict[str, TrainConfig] = {
    "original": TrainConfig(),
    "course": COURSE,
    "best": replace(COURSE, optimise="bce+dice+cldice"),  # the course recipe plus clDice, nothing else
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
    **fit_options: Any,
) -> tuple[LinkNet, dict]:
    """Train LinkNet with ``config`` on the TRAIN split of ``dataset``; return (model, history).

    The last ``config.val_count`` training images validate (they pick the best
    epoch); the test split is never touched. ``fit_options`` go to :func:`fit`
    (device, amp, resume, num_workers, progress...). The seed is set before the
    network is built, so the initial weights are reproducible too.

    Taught in notebook 03, section 4.
    """
    options = dataset_options or {}
    samples = load_dataset(dataset, split="train", root=root, **options)
    train_set, val_set = training_datasets(samples, config)
    seed_everything(config.seed)
    model = model if model is not None else LinkNet()
    history = fit(
        model, train_set, val_set, **config.fit_arguments(), out_dir=out_dir,
        config={"dataset": dataset, **config.data_settings(),
                **{f"dataset_{key}": value for key, value in options.items()}},
        **fit_options,
    )
    return model, history
