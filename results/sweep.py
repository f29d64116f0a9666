"""Choose training recipes on CHASE_DB1 WITHOUT looking at the test split.

Two sweeps use this script. The first chose the ``course`` preset (group
``course``, run on an H200). The second searched for the ``best`` preset
(group ``best``: the clDice loss at two schedule lengths, with and without flip
test-time augmentation; run on a 2-core CPU; ``BEST_CANDIDATES`` says in which order).

Every candidate recipe is trained with the command line (``python -m
retina_lib train``, the exact arguments are recorded), holding out the last 4
images of the TRAIN split. Each run is then scored on those 4 validation images
at native resolution inside the FOV, with the threshold chosen on the other 16
training images. The recipe with the best validation F1 wins. The test split is
scored afterwards, never here (``results/gpu_session.sh`` for ``course``, the
``evaluate`` commands in ``results/README.md`` for ``best``).

    python results/sweep.py --data-dir ../shared/datasets --device cuda --out runs/sweep
    python results/sweep.py --group best --data-dir ../shared/datasets --device cpu --out runs/best_sweep

Writes ``OUT/sweep.json`` (one entry per recipe: command, training time,
validation scores, with and without flip test-time augmentation) and prints a
table. A candidate whose run folder already holds a checkpoint is resumed
(``--resume``), so an interrupted sweep goes on where it stopped and a finished
run is only scored. The sweeps are kept in the package as
``retina_lib/course_results/chase_db1/sweep.json`` (``course``) and
``retina_lib/course_results/chase_db1/best_sweep.json`` (``best``), each run's history
as ``retina_lib/course_results/chase_db1/sweep_NAME/history.json`` or
``.../best_sweep_NAME/history.json`` (copied there from OUT;
``load_result("chase_db1/best_sweep")`` reads one).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from retina_lib.cli import main as cli_main
from retina_lib.data import load_dataset
from retina_lib.scoring.evaluation import score_network
from retina_lib.system.files import write_atomically
from retina_lib.training.weights import load_weights
from retina_lib.training.trainer import split_validation

#: name -> the recipe's command-line options (all seeded with --seed 0), the sweep that chose ``course``.
#: The commands recorded in ``sweep.json`` were run when ``original`` was the default preset and the image
#: options were spelled ``--crop PX``/``--resize PX``; these are the same runs in today's spelling
#: (``--preset original`` named, ``--mode crop|resize --size PX``).
COURSE_CANDIDATES: dict[str, list[str]] = {
    "original": ["--preset", "original", "--mode", "resize", "--size", "512", "--loss", "dice+iou", "--lr", "1e-4",
                 "--epochs", "100"],
    "crop512_bce_1e-3": ["--preset", "original", "--mode", "crop", "--size", "512", "--loss", "bce+dice",
                         "--lr", "1e-3", "--schedule", "cosine", "--epochs", "40", "--samples-per-epoch", "100"],
    "crop512_diceiou_1e-3": ["--preset", "original", "--mode", "crop", "--size", "512", "--loss", "dice+iou",
                             "--lr", "1e-3", "--schedule", "cosine", "--epochs", "40", "--samples-per-epoch", "100"],
    "resize512_bce_1e-3": ["--preset", "original", "--mode", "resize", "--size", "512", "--loss", "bce+dice",
                           "--lr", "1e-3", "--schedule", "cosine", "--epochs", "40", "--samples-per-epoch", "100"],
    "crop512_bce_1e-3_short": ["--preset", "original", "--mode", "crop", "--size", "512", "--loss", "bce+dice",
                               "--lr", "1e-3", "--schedule", "cosine", "--epochs", "20", "--samples-per-epoch", "100"],
    "crop512_bce_1e-3_long": ["--preset", "original", "--mode", "crop", "--size", "512", "--loss", "bce+dice",
                              "--lr", "1e-3", "--schedule", "cosine", "--epochs", "80", "--samples-per-epoch", "100"],
}

#: The sweep for the ``best`` preset, made on a 2-core CPU, in this order: the course recipe, the clDice
#: loss added to it (the change that won), then both at half the schedule (20 epochs) to see whether
#: clDice only speeds training up or also ends higher.
BEST_CANDIDATES: dict[str, list[str]] = {
    "course": ["--preset", "course"],
    "cldice_e40": ["--preset", "course", "--loss", "bce+dice+cldice"],
    "cldice_e20": ["--preset", "course", "--epochs", "20", "--loss", "bce+dice+cldice"],
    "course_e20": ["--preset", "course", "--epochs", "20"],
    # Added for the shipped network (issue 17): doubling the schedule was the clearest lever measured.
    "cldice_e80": ["--preset", "course", "--epochs", "80", "--loss", "bce+dice+cldice"],
}

GROUPS = {"course": COURSE_CANDIDATES, "best": BEST_CANDIDATES}


def validation_scores(weights: Path, data_dir: str, device: str, tta: bool = False) -> dict:
    """F1, AUC... on the 4 held-out TRAIN images, threshold chosen on the other 16 (with the same ``tta``)."""
    samples = load_dataset("chase_db1", "train", root=data_dir)
    fit_part, val_part = split_validation(samples, 4)
    model = load_weights(weights).to(device)
    results = score_network(model, val_part, train_samples=fit_part, with_baselines=False, tta=tta, progress=False)
    return {key: results[key] for key in ("f1", "auc_roc", "auc_pr", "threshold", "sensitivity", "specificity")}


def training_seconds(run_dir: Path) -> float:
    """The summed epoch times of a run (also right for a run resumed after an interruption)."""
    history = json.loads((run_dir / "history.json").read_text())
    return round(sum(history["epoch_seconds"]), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", choices=list(GROUPS), default="course", help="which sweep (default: course)")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--only", nargs="*", help="run only these candidates")
    parser.add_argument("--seed", type=int, default=0,
                        help="training seed (default 0); another seed is stored as NAME_seedN, to measure "
                             "how far the seed alone moves a candidate's validation scores")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="options appended to every run")
    args = parser.parse_args()
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    args.out.mkdir(parents=True, exist_ok=True)
    summary_path = args.out / "sweep.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name, options in GROUPS[args.group].items():
        if args.only and name not in args.only:
            continue
        key = name if args.seed == 0 else f"{name}_seed{args.seed}"
        run_dir = args.out / key
        command = ["train", "--dataset", "chase_db1", "--data-dir", args.data_dir, "--seed", str(args.seed),
                   "--val-count", "4", "--device", device, "--num-workers", str(args.num_workers),
                   "--out", str(run_dir), *options, *args.extra]
        resume = ["--resume"] if (run_dir / "checkpoint.pth").exists() else []
        print("python -m retina_lib " + " ".join(command + resume), flush=True)
        start = time.perf_counter()
        status = cli_main(command + resume)
        seconds = time.perf_counter() - start
        entry = {"command": "python -m retina_lib " + " ".join(command), "train_seconds": round(seconds, 1),
                 "exit_status": status, "device": torch.cuda.get_device_name() if device.startswith("cuda") else device}
        if status in (0, None):
            entry["train_seconds"] = training_seconds(run_dir)
            entry["validation"] = validation_scores(run_dir / "linknet.pth", args.data_dir, device)
            entry["validation_tta"] = validation_scores(run_dir / "linknet.pth", args.data_dir, device, tta=True)
        summary[key] = entry
        text = json.dumps(summary, indent=2)
        write_atomically(summary_path, lambda path: path.write_text(text))
        print(key, json.dumps(entry.get("validation")), f"{seconds:.0f} s", flush=True)
    best = max((n for n in summary if "validation" in summary[n]), key=lambda n: summary[n]["validation"]["f1"])
    write_atomically(args.out / "best.txt", lambda path: path.write_text(best))
    print(f"\n{'recipe':28s} {'val F1':>7s} {'val AUC':>8s} {'+TTA F1':>8s} {'+TTA AUC':>9s} {'train s':>8s}")
    for name, entry in summary.items():
        val, tta = entry.get("validation", {}), entry.get("validation_tta", {})
        print(f"{name:28s} {val.get('f1', float('nan')):7.4f} {val.get('auc_roc', float('nan')):8.4f} "
              f"{tta.get('f1', float('nan')):8.4f} {tta.get('auc_roc', float('nan')):9.4f} "
              f"{entry['train_seconds']:8.1f}")
    print(f"best on validation: {best}")


if __name__ == "__main__":
    main()
