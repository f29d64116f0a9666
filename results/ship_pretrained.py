"""Turn a finished training run into the network that ships with the course, and write its model card.

    python results/ship_pretrained.py --run runs/best_sweep/cldice_e80 --sweep runs/best_sweep/sweep.json \
        --candidate cldice_e80 --data-dir ../shared/datasets

What it does, in order:

1. stores the run's best weights (``linknet.pth``, float32) in float16 as
   ``retina_lib/pretrained/linknet_chase_db1.pth``; this and every file below
   is written by :func:`retina_lib.system.files.write_atomically`, whole or not at all;
2. scores the float32 original AND the stored float16 file on the CHASE_DB1
   test split, with and without flip TTA, each with the threshold chosen on the
   training split (so the card says how far storing in float16 moved the scores);
3. scores the stored file on HRF (never trained on) with the card's threshold;
4. writes ``retina_lib/pretrained/model_card.json``, the full results as
   ``retina_lib/course_results/chase_db1/test_shipped*.json`` and
   ``retina_lib/course_results/hrf/test_shipped_chase_threshold.json``, and the
   run's history as ``retina_lib/course_results/chase_db1/best_sweep_CANDIDATE/history.json``.

The test split is scored here, once, after the candidate was chosen on
validation images (``results/sweep.py``); nothing here feeds back into the choice.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from retina_lib.data import load_dataset
from retina_lib.model import count_parameters
from retina_lib.pretrained import CARD_FILE, WEIGHTS_FILE, sha256_of
from retina_lib.scoring.evaluation import score_network
from retina_lib.system.files import write_atomically
from retina_lib.training.weights import load_weights

REPOSITORY = Path(__file__).resolve().parents[1]
PRETRAINED = REPOSITORY / "retina_lib" / "pretrained"
RESULTS = REPOSITORY / "retina_lib" / "course_results"
HEADLINE = ("f1", "iou", "accuracy", "sensitivity", "specificity", "precision", "auc_roc", "auc_pr", "threshold")
CREDIT = ("CHASE_DB1, Child Heart And Health Study in England, Kingston University London (CC BY 4.0): "
          "M. M. Fraz et al., \"An ensemble classification-based approach applied to retinal blood vessel "
          "segmentation\", IEEE Trans. Biomed. Eng. 59(9), 2012")


def cpu_name() -> str:
    """The CPU's model name and whether it computes bfloat16 natively (Linux; else platform's guess)."""
    info = Path("/proc/cpuinfo")
    if not info.is_file():
        return platform.processor() or "unknown CPU"
    lines = info.read_text(errors="replace").splitlines()
    name = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    native = [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]
    return f"{name}, {os.cpu_count()} cores, " + (f"native bfloat16 ({', '.join(native)})" if native
                                                   else "no native bfloat16")


def headline(results: dict[str, Any]) -> dict[str, float]:
    return {key: round(float(results[key]), 6) for key in HEADLINE}


def score(weights: Path, data_dir: str, tta: bool) -> dict[str, Any]:
    """CHASE_DB1 test scores of ``weights``, threshold chosen on the 20 training images."""
    model = load_weights(weights)
    test = load_dataset("chase_db1", "test", root=data_dir)
    train = load_dataset("chase_db1", "train", root=data_dir)
    return score_network(model, test, train_samples=train, tta=tta, with_baselines=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="the chosen run's folder (holds linknet.pth)")
    parser.add_argument("--sweep", type=Path, required=True, help="the sweep.json that chose it")
    parser.add_argument("--candidate", required=True, help="its name in sweep.json")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--training-commit", help="the commit the run was trained with (default: HEAD now)")
    parser.add_argument("--skip-hrf", action="store_true", help="leave out the HRF scores (about 6 minutes)")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    sweep = json.loads(args.sweep.read_text())
    entry = sweep[args.candidate]
    history = json.loads((args.run / "history.json").read_text())
    checkpoint = torch.load(args.run / "checkpoint.pth", map_location="cpu", weights_only=True)
    recipe = {key: value for key, value in checkpoint["config"].items()}
    best_epoch = int(checkpoint["best_epoch"])
    original = args.run / "linknet.pth"
    model = load_weights(original)
    half = {key: value.half() if value.is_floating_point() else value for key, value in model.state_dict().items()}
    shipped = PRETRAINED / WEIGHTS_FILE
    # Saved through a buffer: torch.save names its zip records after the file it writes, here a random
    # temporary name, so saving to the path would give a different sha256 on every run of this script.
    buffer = io.BytesIO()
    torch.save(half, buffer)
    write_atomically(shipped, lambda path: path.write_bytes(buffer.getvalue()))
    print(f"wrote {shipped} ({shipped.stat().st_size / 1e6:.1f} MB)", flush=True)

    scores: dict[str, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    for label, weights, tta in (("float32", original, False), ("float16", shipped, False),
                                ("float32_tta", original, True), ("float16_tta", shipped, True)):
        start = time.perf_counter()
        scores[label] = score(weights, args.data_dir, tta)
        seconds[label] = round(time.perf_counter() - start, 1)
        print(label, json.dumps(headline(scores[label])), f"{seconds[label]} s", flush=True)
    for name, label in (("test_shipped", "float16"), ("test_shipped_tta", "float16_tta")):
        path = RESULTS / "chase_db1" / f"{name}.json"
        text = json.dumps(scores[label], indent=2, default=float)
        write_atomically(path, lambda target, text=text: target.write_text(text))

    history_name = f"chase_db1/best_sweep_{args.candidate}/history"
    history_path = RESULTS / f"{history_name}.json"
    history_path.parent.mkdir(parents=True, exist_ok=True)
    history_text = json.dumps(history, indent=2)
    write_atomically(history_path, lambda target: target.write_text(history_text))

    threshold = scores["float16"]["threshold"]
    hrf: dict[str, Any] = {}
    if not args.skip_hrf:
        start = time.perf_counter()
        hrf = score_network(load_weights(shipped), load_dataset("hrf", "test", root=args.data_dir, skip_incomplete=True),
                       threshold=threshold, with_baselines=False)
        seconds["hrf"] = round(time.perf_counter() - start, 1)
        text = json.dumps(hrf, indent=2, default=float)
        write_atomically(RESULTS / "hrf" / "test_shipped_chase_threshold.json", lambda target: target.write_text(text))
        print("hrf", json.dumps(headline(hrf)), f"{seconds['hrf']} s", flush=True)

    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPOSITORY, capture_output=True, text=True).stdout.strip()
    card = {
        "name": f"linknet-chase_db1-{args.candidate}",
        "architecture": "LinkNet (Chaurasia & Culurciello 2017): ResNet-18 encoder, 4 decoder blocks, "
                        "additive skips, 1 output channel (vessel logit; sigmoid for the probability)",
        "parameters": count_parameters(model),
        "file": WEIGHTS_FILE,
        "file_bytes": shipped.stat().st_size,
        "sha256": sha256_of(shipped),
        "stored_dtype": "float16 (loaded into a float32 network)",
        "recipe": recipe,
        "best_epoch": best_epoch,
        "command": entry["command"],
        "ship_command": "python results/ship_pretrained.py --run RUN_DIR --sweep SWEEP_JSON "
                        f"--candidate {args.candidate} --data-dir DATA_DIR",
        "commit": args.training_commit or commit,
        "ship_commit": commit,
        "training_data": {"dataset": "CHASE_DB1", "split": "train (images 01-10, L and R eyes): the first 16 "
                          "images train, the last 4 validate (choose the best epoch)", "credit": CREDIT},
        "training_seconds": round(sum(history["epoch_seconds"]), 1),
        "median_epoch_seconds": round(statistics.median(history["epoch_seconds"]), 1),
        "history": history_name,
        "hardware": cpu_name(),
        "torch": torch.__version__,
        "validation": entry.get("validation"),
        "validation_tta": entry.get("validation_tta"),
        "threshold": threshold,
        "threshold_tta": scores["float16_tta"]["threshold"],
        "threshold_rule": "the probability cut with the best pooled F1 over the 20 CHASE_DB1 training images",
        "test": headline(scores["float16"]),
        "test_tta": headline(scores["float16_tta"]),
        "float32_original": {"test": headline(scores["float32"]), "test_tta": headline(scores["float32_tta"])},
        "hrf_with_chase_threshold": headline(hrf) if hrf else None,
        "scoring_seconds": seconds,
        "licence": "CC BY 4.0, like the CHASE_DB1 photographs and labels they were learned from: "
                   "credit CHASE_DB1 (above) and retina-linknet when you use or share them",
    }
    card_path = PRETRAINED / CARD_FILE
    text = json.dumps(card, indent=2) + "\n"
    write_atomically(card_path, lambda target: target.write_text(text))
    print(f"wrote {card_path}")


if __name__ == "__main__":
    main()
