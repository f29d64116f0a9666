"""Collect the ablation table (original recipe vs course recipe) into retina_lib/course_results/ablation.json.

    python results/make_ablation.py

Reads the evaluation JSON files written by ``python -m retina_lib evaluate ...
--json`` (listed below with the runs they score) and the training histories,
all kept in ``retina_lib/course_results/``, and writes one entry per run: the test
scores, the training wall time, the hardware and the commands. The results
notebook shows it with ``retina_lib.course_results.load_result("ablation")``.
"""
from __future__ import annotations

import json
from pathlib import Path

from retina_lib.system.files import write_atomically

#: The measured results, shipped inside the package (see retina_lib/course_results/__init__.py).
MEASURED = Path(__file__).resolve().parents[1] / "retina_lib" / "course_results"
KEYS = ("f1", "iou", "accuracy", "sensitivity", "specificity", "auc_roc", "auc_pr", "threshold")

#: label -> (evaluation JSON, hardware, training wall time in s, train command);
#: "sweep:NAME" takes the command recorded in chase_db1/sweep.json for that candidate.
RUNS = {
    "original recipe (H200)": (
        "chase_db1/test_original_h200.json", "1x NVIDIA H200, torch 2.11, bf16", 49.0, "sweep:original"),
    "course recipe (H200)": (
        "chase_db1/test_course_h200.json", "1x NVIDIA H200, torch 2.11, bf16", 29.8, "sweep:crop512_bce_1e-3"),
    "course recipe (CPU)": (
        "chase_db1/test_course_cpu.json", "2-core AMD EPYC (avx512_bf16), torch 2.13 CPU, bf16", None,
        "python -m retina_lib train --dataset chase_db1 --data-dir DATA --preset course --device cpu "
        "--out runs/chase_db1_course"),
}


def portable(command: str) -> str:
    """``command`` with the folders of the machine it ran on replaced by DATA and runs/NAME.

    The sweep recorded its exact commands, including a data folder and an
    output folder that only existed on the GPU machine; a reader needs the
    options, not those paths.
    """
    words = command.split()
    for position, word in enumerate(words[:-1]):
        if word == "--data-dir":
            words[position + 1] = "DATA"
        elif word == "--out":
            words[position + 1] = "runs/" + Path(words[position + 1]).name
    return " ".join(words)


def main() -> None:
    table = {}
    for label, (scores_file, hardware, seconds, command) in RUNS.items():
        path = MEASURED / scores_file
        if not path.is_file():
            print(f"skipped {label}: {path} not found")
            continue
        scores = json.loads(path.read_text())
        entry = {key: scores[key] for key in KEYS}
        if command.startswith("sweep:"):
            sweep = json.loads((MEASURED / "chase_db1" / "sweep.json").read_text())
            command = portable(sweep[command.removeprefix("sweep:")]["command"])
        if seconds is None:  # the CPU run's own history says how long it trained
            history = json.loads((MEASURED / "chase_db1" / "course_cpu_history.json").read_text())
            seconds = round(sum(history["epoch_seconds"]), 1)
        entry.update(train_seconds=seconds, hardware=hardware, train_command=command,
                     evaluate_command="python -m retina_lib evaluate --dataset chase_db1 --data-dir DATA "
                                      "--weights RUN/linknet.pth --split test --json OUT.json")
        table[label] = entry
    text = json.dumps(table, indent=2)
    write_atomically(MEASURED / "ablation.json", lambda path: path.write_text(text))
    print(f"wrote {MEASURED / 'ablation.json'} ({len(table)} runs)")


if __name__ == "__main__":
    main()
