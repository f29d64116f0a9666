"""The command line: ``python -m retina_lib {train,evaluate,predict,download} ...``.

Only argument parsing lives here; every step is a library function that the
notebooks call too. Examples::

    python -m retina_lib download chase_db1
    python -m retina_lib train --dataset chase_db1 --out runs/chase
    torchrun --nproc_per_node 2 -m retina_lib train --dataset chase_db1 --out runs/chase2   # two GPUs
    python -m retina_lib predict photo.jpg          # the course's shipped network and its threshold
    python -m retina_lib evaluate --dataset chase_db1 --weights runs/chase/linknet.pth --json results.json
    python -m retina_lib predict photo.jpg --weights runs/chase/linknet.pth --threshold 0.47 --out predictions/

Expected failures (a missing file, weights of another network, an unknown
dataset, an unreadable image: a ``retina_lib.errors.UserInputError`` or an
``OSError``) print one line ``error: ...`` and exit with status 2; ``--debug``
shows the full traceback instead. Any other exception, a plain ``ValueError``
included, is a bug in the library and keeps its traceback. ``predict`` with
several images writes the maps of every image it can read and reports the
others at the end (status 2). Outputs are checked before any work by
:mod:`retina_lib.scoring.outputs`: an input or the weights is never
overwritten, another existing file only with ``--overwrite``. Impossible numbers (``--lr
inf``, ``--epochs 0``, ``--threshold 2``) are refused while parsing.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from retina_lib import pretrained
from retina_lib.data import DATASET_NAMES, download, load_dataset
from retina_lib.data.readers import read_image
from retina_lib.system.hardware import pick_device
from retina_lib.system.hardware import AMP_CHOICES
from retina_lib.epoch_loop import LOSS_CHOICES, NonFiniteLossError
from retina_lib.scoring.evaluation import format_table, score_network
from retina_lib.errors import UserInputError
from retina_lib.scoring.inference import predict
from retina_lib.scoring.outputs import (check_json_path, check_prediction_paths, prediction_paths, save_prediction,
                                        write_json)
from retina_lib.recipes import RECIPES, recipe, train_recipe
from retina_lib.training.run_folder import BEST_WEIGHTS_FILE
from retina_lib.training.config import MODE_CHOICES, TrainConfig
from retina_lib.training.weights import load_weights
from retina_lib.training.distributed import process_rank_and_count, start_distributed, stop_distributed

#: Exit status for expected errors (the status argparse uses for bad arguments).
ERROR_STATUS = 2
#: ``--resident`` choices, as fit's ``resident`` values.
RESIDENT_OPTIONS = {"auto": "auto", "on": True, "off": False}

#: Exit status after Ctrl+C, by shell convention (128 + SIGINT).
INTERRUPTED_STATUS = 130

#: Errors caused by the input or the environment, not by a bug: reported in one
#: line. UserInputError covers DatasetError, WeightsError and ResumeError; OSError
#: covers missing files, an existing run folder and DownloadError; NonFiniteLossError
#: a recipe that diverged. Anything else, a plain ValueError included, is a bug
#: in the library and shows its traceback.
EXPECTED_ERRORS = (UserInputError, OSError, NonFiniteLossError)

#: Library argument names in error messages, and the options that set them on the command line.
OPTION_NAMES = {"Pass skip_incomplete=True": "Pass --skip-incomplete"}


# --------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------

def dataset_options(args: argparse.Namespace) -> dict[str, Any]:
    """Options for ``load_dataset``: sizes for the synthetic dataset, skipping for real ones."""
    options = {"n": args.synthetic_n, "size": args.synthetic_size}
    given = {key: value for key, value in options.items() if value is not None}
    if given and args.dataset != "synthetic":
        raise UserInputError(f"--synthetic-n and --synthetic-size only apply to --dataset synthetic, not {args.dataset!r}")
    if args.skip_incomplete:
        if args.dataset == "synthetic":
            raise UserInputError("--skip-incomplete applies to real datasets, not to --dataset synthetic")
        given["skip_incomplete"] = True
    return given


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The preset's recipe with the settings given on the command line replaced (options named as its fields)."""
    changes = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "loss": args.loss,
               "mode": args.mode, "size": args.size, "samples_per_epoch": args.samples_per_epoch,
               "val_count": args.val_count, "seed": args.seed}
    changes = {key: value for key, value in changes.items() if value is not None}
    if args.schedule is not None:
        changes["schedule"] = None if args.schedule == "constant" else args.schedule
    return recipe(args.preset, **changes)


def command_train(args: argparse.Namespace) -> None:
    config = train_config(args)
    out_dir = args.out if args.out is not None else Path("runs") / f"{args.dataset}_{args.preset}"
    device = start_distributed(args.device)  # launched by torchrun: join the other processes
    try:
        _, history = train_recipe(
            config, args.dataset, root=args.data_dir, out_dir=out_dir, dataset_options=dataset_options(args),
            device=device, amp=args.amp, resident=RESIDENT_OPTIONS[args.resident], resume=args.resume,
            num_workers=args.num_workers,
        )
        rank, _ = process_rank_and_count()
    finally:
        stop_distributed()
    if rank != 0:
        return  # the first process reports for all
    if "val_dice" in history:
        best = int(np.argmax(history["val_dice"]))
        print(f"best epoch {best + 1} of {len(history['val_dice'])}: validation Dice {history['val_dice'][best]:.4f}")
    else:
        print("no validation images (--val-count 0): kept the last epoch")
    print(f"weights: {out_dir / BEST_WEIGHTS_FILE}")


def weights_in_use(args: argparse.Namespace) -> Path:
    """The weights file a command reads: ``--weights``, else the shipped network's (never an output)."""
    return args.weights if args.weights is not None else pretrained.weights_path()


def chosen_network(weights: Optional[Path], device: str) -> tuple[torch.nn.Module, Optional[dict[str, Any]]]:
    """The network ``--weights`` names, or the course's shipped one (and its model card) without it."""
    if weights is not None:
        return load_weights(weights).to(pick_device(device)), None
    model, card = pretrained.load(pick_device(device))
    print(f"weights: {pretrained.describe(card)}")
    return model, card


def check_threshold_given(args: argparse.Namespace) -> None:
    """A network of one's own must say its cut; refused before any weights are read."""
    if args.weights is not None and args.threshold is None:
        raise UserInputError(
            f"--weights {args.weights} needs --threshold: the cut between vessel and background belongs to "
            f"each network (0.5 is rarely the best one). `python -m retina_lib evaluate --dataset NAME "
            f"--weights {args.weights}` prints the threshold chosen on that dataset's training split")


def prediction_threshold(args: argparse.Namespace, card: Optional[dict[str, Any]]) -> float:
    """``--threshold``, else the shipped network's cut from its model card (the TTA one with ``--tta``)."""
    if args.threshold is not None or card is None:
        return args.threshold
    threshold = card["threshold_tta"] if args.tta else card["threshold"]
    print(f"threshold: {threshold:.4f}, chosen on the training split of {card['training_data']['dataset']}"
          f"{' with flip TTA' if args.tta else ''} (model card)")
    return threshold


def command_evaluate(args: argparse.Namespace) -> None:
    if args.json is not None:
        check_json_path(args.json, weights_in_use(args), args.dataset, args.data_dir, overwrite=args.overwrite)
    model, _ = chosen_network(args.weights, args.device)
    options = dataset_options(args)
    test_samples = load_dataset(args.dataset, split=args.split, root=args.data_dir, **options)
    train_samples = (load_dataset(args.dataset, split="train", root=args.data_dir, **options)
                     if args.threshold is None else None)
    results = score_network(model, test_samples, train_samples=train_samples, threshold=args.threshold, tta=args.tta)
    print(f"{args.dataset}, {args.split} split:")
    print(format_table(results))
    if args.json is not None:
        write_json(args.json, results)
        print(f"results: {args.json}")


def command_predict(args: argparse.Namespace) -> None:
    check_prediction_paths(args.images, args.out, weights_in_use(args), overwrite=args.overwrite)
    check_threshold_given(args)
    model, card = chosen_network(args.weights, args.device)
    threshold = prediction_threshold(args, card)
    failures = []
    for image_path in args.images:  # one unreadable image does not stop the others
        paths = prediction_paths(image_path, args.out)
        try:
            probability = predict(model, read_image(image_path), tta=args.tta)
            save_prediction(probability, threshold, paths)
        except (UserInputError, OSError) as error:
            failures.append(f"{image_path}: {' '.join(str(error).splitlines())}")
            continue
        print(f"{image_path} -> {paths[0]}, {paths[1]}")
    if failures:
        raise UserInputError(f"{len(failures)} of {len(args.images)} image(s) could not be predicted "
                         f"(the others were written): " + "; ".join(failures))


def command_download(args: argparse.Namespace) -> None:
    print(download(args.name, root=args.data_dir))


# --------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------

def _number_type(convert: Callable[[str], Any], accepts: Callable[[Any], bool], wanted: str) -> Callable[[str], Any]:
    """An argparse ``type`` that converts with ``convert`` and refuses values ``accepts`` rejects."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}") from None
        if not accepts(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not {wanted}")
        return value

    parse.__name__ = wanted  # argparse names the type in some messages
    return parse


#: Argument types that refuse, while parsing, what would fail (or give NaN) much later.
positive_int = _number_type(int, lambda value: value >= 1, "a whole number of at least 1")
non_negative_int = _number_type(int, lambda value: value >= 0, "a whole number of 0 or more")
positive_float = _number_type(float, lambda value: math.isfinite(value) and value > 0,
                              "a positive finite number")
probability = _number_type(float, lambda value: 0.0 <= value <= 1.0, "a number between 0 and 1")


class RenamedOption(argparse.Action):
    """An option that was renamed: using it stops with a message naming the new spelling.

    ``--crop PX`` and ``--resize PX`` became ``--mode crop|resize --size PX``,
    the names of :class:`~retina_lib.training.config.TrainConfig`'s fields; a
    command recorded with the old spelling fails here, saying what to type instead.
    """

    def __init__(self, option_strings: list[str], dest: str, replacement: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        parser.error(f"{option_string} is now {self.replacement} (the same names as TrainConfig's fields)")


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", required=True, metavar="NAME", help=f"one of {', '.join(DATASET_NAMES)}")
    parser.add_argument("--data-dir", type=Path, metavar="DIR", help="where the datasets are (default: the library's)")
    parser.add_argument("--synthetic-n", type=positive_int, metavar="N", help="number of synthetic images")
    parser.add_argument("--synthetic-size", type=positive_int, metavar="PX", help="side of the synthetic images")
    parser.add_argument("--skip-incomplete", action="store_true",
                        help="skip images whose label or mask is missing (with a warning naming them) "
                             "instead of stopping")


def build_parser() -> argparse.ArgumentParser:
    course = TrainConfig()  # the defaults are the course recipe
    parser = argparse.ArgumentParser(prog="python -m retina_lib", description="Retinal vessel segmentation with LinkNet.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    # The same flag after the command; SUPPRESS keeps it from resetting one given before the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback of errors")
    device = argparse.ArgumentParser(add_help=False)
    device.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:1 or mps")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", parents=[common, device], help="train LinkNet on a dataset's training split",
        description="Train LinkNet. The last --val-count images of the TRAIN split are held out for "
                    "validation (choosing the best epoch); the test split is never used. Writes "
                    "linknet.pth (best weights), checkpoint.pth, history.json and curves.png into --out.",
    )
    add_dataset_arguments(train)
    train.add_argument("--preset", choices=list(RECIPES), default="course",
                       help="the recipe to start from (default: %(default)s, the course's recommendation: "
                            "512x512 crops, BCE + Dice, Adam 1e-3 with a cosine schedule, batch 4, 40 epochs of "
                            "100 crops; 'original': the original material's recipe (512x512 resize, Dice + IoU, "
                            "Adam 1e-4, batch 4, 100 epochs); 'best': course + clDice loss); the options below "
                            "change single settings of it, and have the names of TrainConfig's fields")
    train.add_argument("--epochs", type=positive_int, help=f"passes over the data (course: {course.epochs})")
    train.add_argument("--batch-size", type=positive_int, help=f"images per step (course: {course.batch_size})")
    train.add_argument("--lr", type=positive_float, help=f"Adam's learning rate (course: {course.lr})")
    train.add_argument("--loss", choices=LOSS_CHOICES, help=f"what to minimise (course: {course.loss})")
    train.add_argument("--schedule", choices=["cosine", "constant"],
                       help=f"learning-rate schedule (course: {course.schedule or 'constant'})")
    train.add_argument("--mode", choices=MODE_CHOICES,
                       help=f"how training images are made: random --size crops at native resolution, or whole "
                            f"images resized to --size (course: {course.mode})")
    train.add_argument("--size", type=positive_int, metavar="PX",
                       help=f"side of the square training images in pixels (course: {course.size})")
    for old, mode in (("--crop", "crop"), ("--resize", "resize")):  # the names before TrainConfig's were used
        train.add_argument(old, action=RenamedOption, metavar="PX", help=argparse.SUPPRESS, default=argparse.SUPPRESS,
                           replacement=f"--mode {mode} --size PX")
    train.add_argument("--samples-per-epoch", type=positive_int, metavar="N",
                       help=f"images per epoch (course: {course.samples_per_epoch})")
    train.add_argument("--val-count", type=non_negative_int, metavar="N",
                       help=f"training images held out for validation, 0 for none (course: {course.val_count})")
    train.add_argument("--seed", type=int, help=f"seed (course: {course.seed})")
    train.add_argument("--amp", choices=AMP_CHOICES, default="auto", help="mixed precision (default: %(default)s)")
    train.add_argument("--num-workers", type=non_negative_int, default=0, metavar="N",
                       help="data-loading processes (default: 0)")
    train.add_argument("--resident", choices=list(RESIDENT_OPTIONS), default="auto",
                       help="keep the training images on the device and augment them there "
                            "(default: %(default)s, which means on CUDA GPUs)")
    train.add_argument("--out", type=Path, metavar="RUN_DIR", help="output folder (default: runs/DATASET_PRESET)")
    train.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    train.set_defaults(handler=command_train)

    evaluation = commands.add_parser(
        "evaluate", parents=[common, device], help="score trained weights on a dataset split",
        description="Score the weights inside the field of view at native resolution. The threshold is "
                    "chosen on the TRAIN split (best F1) unless --threshold is given.",
    )
    add_dataset_arguments(evaluation)
    evaluation.add_argument("--weights", type=Path, metavar="PATH",
                            help="linknet.pth or checkpoint.pth (default: the course's shipped network)")
    evaluation.add_argument("--split", default="test", help="default: %(default)s")
    evaluation.add_argument("--threshold", type=probability,
                            help="fixed threshold instead of one chosen on the train split")
    evaluation.add_argument("--tta", action="store_true", help="average over flips (4x slower)")
    evaluation.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    evaluation.add_argument("--overwrite", action="store_true",
                            help="replace an existing --json file (never the weights or a dataset file)")
    evaluation.set_defaults(handler=command_evaluate)

    prediction = commands.add_parser(
        "predict", parents=[common, device], help="write vessel maps for photographs",
        description="For each IMAGE write NAME_prob.png (probability x 255) and NAME_mask.png "
                    "(probability >= --threshold) at the image's own resolution. Outputs that would "
                    "overwrite an input or the weights, that two inputs would share, or that exist and "
                    "were not written by predict are refused before anything is written.",
    )
    prediction.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    prediction.add_argument("--weights", type=Path, metavar="PATH",
                            help="linknet.pth or checkpoint.pth (default: the course's shipped network, "
                                 "retina_lib.pretrained, with its model card's threshold)")
    prediction.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: beside each image)")
    prediction.add_argument("--threshold", type=probability,
                            help="probability cut for the mask; required with --weights (default: the shipped "
                                 "network's cut, chosen on its training split)")
    prediction.add_argument("--tta", action="store_true", help="average over flips (4x slower)")
    prediction.add_argument("--overwrite", action="store_true",
                            help="replace existing NAME_prob.png/NAME_mask.png files that predict did not write "
                                 "(never an input or the weights)")
    prediction.set_defaults(handler=command_predict)

    fetch = commands.add_parser("download", parents=[common], help="download a public dataset",
                                description="Download and unpack a dataset; prints where it is.")
    fetch.add_argument("name", metavar="NAME", help=f"the dataset, one of {', '.join(DATASET_NAMES)}")
    fetch.add_argument("--data-dir", type=Path, metavar="DIR", help="where to put it (default: the library's)")
    fetch.set_defaults(handler=command_download)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit status (0 on success)."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except EXPECTED_ERRORS as error:
        if args.debug:
            raise
        message = " ".join(str(error).splitlines()) or type(error).__name__
        for library_words, option_words in OPTION_NAMES.items():
            message = message.replace(library_words, option_words)
        print(f"error: {message}", file=sys.stderr)
        return ERROR_STATUS
    except KeyboardInterrupt:
        if args.debug:
            raise
        return INTERRUPTED_STATUS
    return 0
