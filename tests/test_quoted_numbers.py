"""Every figure the prose quotes from a measured result is the one in the JSON file it comes from.

The registry below lists each quoted figure: where it stands (a document and the
words around it, or a table row) and which stored value it rounds. Adding a
figure to the prose means adding one line here; changing a stored result or a
sentence without the other fails ``test_every_quoted_figure_matches_its_source``.
The machinery (finding the words, reading the tables) is ``tests/quoted_numbers.py``.

How to add a figure (one entry each):

* a new row of scores in a results table: ``scores(README, MAIN, "row label",
  "chase_db1/test_NAME", more=trained(Measured(..., 0, "2-core AMD CPU, {} min")))``;
* a figure in a sentence: ``Quote(README, "words before {} words after",
  result("chase_db1/test_NAME", "f1"), 4)`` (4 = decimals as the prose shows them);
* a value computed from stored ones: ``difference``, ``ratio``, ``minutes``, ``scaled``.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from quoted_numbers import (Figures, Measured, Quote, Sources, TableRow, Value, check_quote, check_row, prose,
                            uncovered_table_cells)

REPOSITORY = Path(__file__).resolve().parents[1]
BENCHMARKS = "benchmarks/README.md"
README, RESULTS, NOTEBOOK_03, NOTEBOOK_04 = ("README.md", "results/README.md", "notebooks/03_training.ipynb",
                                             "notebooks/04_results.ipynb")
NOTEBOOK_01, NOTEBOOK_02 = "notebooks/01_architecture.ipynb", "notebooks/02_losses.ipynb"


# ---- where a value comes from ------------------------------------------------------------------------------

def result(name: str, *keys: str | int) -> Value:
    """A value inside a stored result (``load_result(name)[key][key]...``)."""
    def read(sources: Sources):
        value = sources.result(name)
        for key in keys:
            value = value[key]
        return value
    return read


def benchmark(name: str, *keys: str) -> Value:
    """A value inside ``benchmarks/NAME.json``."""
    def read(sources: Sources):
        value = sources.benchmark(name)
        for key in keys:
            value = value[key]
        return value
    return read


def published(dataset: str, method: str, key: str) -> Value:
    """A published score as notebook 04's PUBLISHED table holds it (None: not reported)."""
    return lambda sources: sources.published(dataset, method)[key]


def card(*keys: str) -> Value:
    """A value of the shipped network's model card."""
    def read(sources: Sources):
        value = sources.model_card()
        for key in keys:
            value = value[key]
        return value
    return read


def magnitude(value: Value) -> Value:
    return lambda sources: abs(value(sources))


def minutes(seconds: Value) -> Value:
    return lambda sources: seconds(sources) / 60


def difference(a: Value, b: Value) -> Value:
    return lambda sources: a(sources) - b(sources)


def ratio(a: Value, b: Value) -> Value:
    return lambda sources: a(sources) / b(sources)


def scaled(value: Value, factor: float) -> Value:
    """A value in other units: parameters in millions (1e-6), a share in per cent (100)."""
    return lambda sources: value(sources) * factor


def epoch_minutes(history: str) -> Value:
    """The sum of a training history's epoch times, in minutes."""
    return lambda sources: sum(sources.result(history)["epoch_seconds"]) / 60


def best_val_dice(history: str) -> Value:
    return lambda sources: max(sources.result(history)["val_dice"])


def median_epoch_seconds(history: str) -> Value:
    return lambda sources: float(np.median(sources.result(history)["epoch_seconds"]))


def slowest_epoch_seconds(history: str) -> Value:
    return lambda sources: max(sources.result(history)["epoch_seconds"])


def best_epoch(history: str) -> Value:
    return lambda sources: int(np.argmax(sources.result(history)["val_dice"])) + 1


def mean_f1_of_group(name: str, suffix: str) -> Value:
    """The mean per-image F1 of one HRF group (image names end in _h, _g or _dr)."""
    return lambda sources: float(np.mean([image["f1"] for image in sources.result(name)["per_image"]
                                          if image["name"].endswith("_" + suffix)]))


def tta_gain(extreme) -> Value:
    """The smallest or largest gain of validation F1 from flip TTA over the first ``best`` sweep's runs
    (the four candidates of its table; the later 80-epoch and second-seed runs have their own section)."""
    first_sweep = ("course", "cldice_e40", "cldice_e20", "course_e20")
    return lambda sources: extreme(run["validation_tta"]["f1"] - run["validation"]["f1"]
                                   for name, run in sources.result("chase_db1/best_sweep").items()
                                   if name in first_sweep)


def images_seen(candidate: str) -> Value:
    """Epochs x crops per epoch of a sweep run, or x its 16 training images (20 minus 4 held out)."""
    def read(sources: Sources):
        words = sources.result("chase_db1/sweep")[candidate]["command"].split()
        option = {words[i]: words[i + 1] for i in range(len(words) - 1) if words[i].startswith("--")}
        per_epoch = int(option.get("--samples-per-epoch", 20 - int(option["--val-count"])))
        return int(option["--epochs"]) * per_epoch
    return read


# ---- table rows -----------------------------------------------------------------------------------------------

SCORE_KEYS = {"F1 (Dice)": "f1", "F1": "f1", "IoU": "iou", "Acc": "accuracy", "Se": "sensitivity",
              "Sp": "specificity", "AUC-ROC": "auc_roc", "AUC-PR": "auc_pr", "threshold": "threshold"}
README_SCORES = ("F1 (Dice)", "IoU", "Acc", "Se", "Sp", "AUC-ROC", "AUC-PR")
RESULTS_SCORES = ("F1", "IoU", "Acc", "Se", "Sp", "AUC-ROC", "AUC-PR")


def scores(document: str, section: str, label: str, name: str, *keys: str, columns=README_SCORES,
           threshold_digits: int | None = None, more: dict[str, Measured | str] | None = None) -> TableRow:
    """A row of scores from one stored result: 4 decimals, the threshold to ``threshold_digits``.

    ``more``: the row's other cells by column header (training time, hardware, ...).
    """
    cells: dict[str, Measured | str] = {column: Measured(result(name, *keys, SCORE_KEYS[column]), 4)
                                        for column in columns}
    if threshold_digits is not None:
        cells["threshold"] = Measured(result(name, *keys, "threshold"), threshold_digits)
    return TableRow(document, section, label, {**cells, **(more or {})})


def published_row(document: str, section: str, label: str, dataset: str, method: str,
                  columns: tuple[str, ...]) -> TableRow:
    """A published row: 3 decimals as the papers give them, "-" where notebook 04 has None."""
    return TableRow(document, section, label,
                    {column: Measured(published(dataset, method, SCORE_KEYS[column]), 3) for column in columns})


def validation(document: str, section: str, label: str, sweep: str, run: str, columns: dict[str, str],
               more: dict[str, Measured | str]) -> TableRow:
    """A row of a sweep table: validation scores of one run (``columns``: header -> "validation.f1")."""
    cells: dict[str, Measured | str] = {
        column: Measured(result(sweep, run, *path.split(".")), 4) for column, path in columns.items()}
    return TableRow(document, section, label, {**cells, **more})


PEER = ("results_cpu_peer", "peer")  # the comparison with segmentation_models_pytorch


def peer_img_s(model: str, path: str) -> Value:
    """Training images/s of ``model`` ("linknet" or "smp_linknet") on ``path`` ("plain" or "fast")."""
    return lambda sources: next(run["img_s"] for run in sources.benchmark("results_cpu_peer")["peer"]["train"]
                                if (run["model"], run["path"]) == (model, path))


def peer_ms(model: str, path: str) -> Value:
    """Inference milliseconds per image of ``model`` on ``path``."""
    return lambda sources: next(run["ms"] for run in sources.benchmark("results_cpu_peer")["peer"]["inference"]
                                if (run["model"], run["path"]) == (model, path))


def cpu_run(model: str, path: str, batch_size: int, key: str) -> Value:
    """A value of one training run of the CPU benchmark (``train_runs``, or ``train_halves`` for one half)."""
    def read(sources: Sources):
        runs = sources.benchmark("results_cpu")["train_runs"] + sources.benchmark("results_cpu")["train_halves"]
        return next(run[key] for run in runs
                    if (run["model"], run["path"], run["batch_size"]) == (model, path, batch_size))
    return read


def cpu_throughput_row(label: str, model: str, path: str, batch_sizes: tuple[int, ...]) -> TableRow:
    """A row of benchmarks/README's training table: images/s per batch size, peak memory at batch 4 in GiB."""
    cells: dict[str, Measured | Figures | str] = {
        f"batch {size}": Measured(cpu_run(model, path, size, "img_s"), 2) for size in batch_sizes}
    cells["peak RSS (batch 4)"] = Measured(scaled(cpu_run(model, path, 4, "peak_memory_mb"), 1 / 1024), 1, "{} GiB")
    return TableRow(BENCHMARKS, CPU_SPEED, label, cells)


def peer_row(label: str, ours: Value, theirs: Value, ratio_value: Value, digits: int, template: str,
             ratio_template: str) -> TableRow:
    """A row of the comparison with segmentation_models_pytorch: ours, the peer's, their ratio (2 decimals)."""
    return TableRow(BENCHMARKS, PEER_SECTION, label, {
        "our `LinkNet`": Measured(ours, digits, template), "smp `Linknet`": Measured(theirs, digits, template),
        "ours / smp": Measured(ratio_value, 2, ratio_template)})


def memory_format_img_s(name: str, model: str, path: str) -> Value:
    """Training images/s of ``model`` on ``path`` ("float32 contiguous", ...) in ``benchmarks/NAME.json``."""
    return lambda sources: next(run["img_s"] for run in sources.benchmark(name)["train"]
                                if (run["model"], run["path"]) == (model, path))


def memory_format_rows(name: str, section: str, precisions: dict[str, str]) -> list[TableRow]:
    """The table of one ``memory_format.py`` run: each network's images/s in both layouts, and the ratios.

    ``precisions`` maps the JSON's path prefix ("float32", "bf16") to the words after the row label
    ("" where the table holds one precision, ", float32" where it holds several).
    """
    rows = []
    for precision, words in precisions.items():
        for label, model in (("LinkNet (ours)", "linknet"), ("smp Linknet", "smp_linknet")):
            rows.append(TableRow(BENCHMARKS, section, label + words, {
                "contiguous": Measured(memory_format_img_s(name, model, f"{precision} contiguous"), 2),
                "channels-last": Measured(memory_format_img_s(name, model, f"{precision} channels_last"), 2),
                "channels-last / contiguous": Measured(
                    benchmark(name, "ratios", f"{model} {precision} channels_last / contiguous"), 2)}))
        rows.append(TableRow(BENCHMARKS, section, "ours / smp" + words, {
            layout: Measured(benchmark(name, "ratios", f"ours / smp, {precision} {key}"), 2)
            for layout, key in (("contiguous", "contiguous"), ("channels-last", "channels_last"))}))
    return rows


def threads_row(label: str, condition: str, workload: str) -> TableRow:
    """A row of benchmarks/README's threads table: median step with 1 and 2 threads (ms), and their ratio."""
    def milliseconds(threads: str) -> Value:
        return scaled(benchmark("threads_cpu", condition, workload, "median_step_s", threads), 1000)
    return TableRow(BENCHMARKS, THREADS, label, {
        "1 thread": Measured(milliseconds("1"), 0, "{} ms"), "2 threads": Measured(milliseconds("2"), 0, "{} ms"),
        "2 threads / 1 thread": Measured(benchmark("threads_cpu", condition, workload, "ratio_vs_1_thread", "2"), 2)})


MAIN = "Results on real photographs (CHASE_DB1 test split)"
COURSE_CHOICE = "How the course recipe was chosen (validation only)"
TEST_SPLIT = "Test split: the original recipe against the course recipe"
BEST_CHOICE = "Candidates and the choice (validation only)"
SHIPPED_CHOICE = "Choosing it: the longer schedule, and a second seed (validation only)"
BEST_TEST = "Test split of CHASE_DB1"
BEST_HRF = "HRF, never seen in training"
SPEED = "Performance"
CPU_SPEED = "Results on the CPU (2 cores)"
PEER_SECTION = "Against the peer: segmentation_models_pytorch's LinkNet (CPU)"
MEMORY_512 = "512 x 512 on the quiet machine, as the CPU is"
MEMORY_512_AVX2 = "512 x 512 on the quiet machine, capped at AVX2"
MEMORY_128_AVX2 = "128 x 128, one thread, on a busy machine, capped at AVX2"
THREADS = "Threads"

BEST_MINUTES = Measured(minutes(result("chase_db1/best_sweep", "cldice_e40", "train_seconds")), 0,
                        "2-core AMD CPU, {} min")
SHIPPED_MINUTES = Measured(minutes(result("chase_db1/best_sweep", "cldice_e80", "train_seconds")), 0,
                           "2-core AMD CPU, {} min")
SWEEP_COLUMNS = {"val F1": "validation.f1", "val AUC-ROC": "validation.auc_roc", "val AUC-PR": "validation.auc_pr"}
BEST_SWEEP_COLUMNS = {**SWEEP_COLUMNS, "+ TTA F1": "validation_tta.f1", "+ TTA AUC-ROC": "validation_tta.auc_roc"}
RESULTS_TEST = dict(columns=RESULTS_SCORES, threshold_digits=3)


def trained(cell: Measured) -> dict[str, Measured | str]:
    """The README table's "hardware, training time" cell."""
    return {"hardware, training time": cell}


def sweep_row(label: str, run: str) -> TableRow:
    return validation(RESULTS, COURSE_CHOICE, label, "chase_db1/sweep", run, SWEEP_COLUMNS,
                      {"crops/images seen": Measured(images_seen(run), 0),
                         "train s": Measured(result("chase_db1/sweep", run, "train_seconds"), 0)})


def best_sweep_row(run: str, added: str, section: str = BEST_CHOICE) -> TableRow:
    return validation(RESULTS, section, run, "chase_db1/best_sweep", run, BEST_SWEEP_COLUMNS,
                      {"added to `--preset course`": added,
                         "train": Measured(minutes(result("chase_db1/best_sweep", run, "train_seconds")), 0, "{} min")})


TABLE_ROWS = [
    # README, results table
    scores(README, MAIN, "LinkNet, shipped network (best recipe, 80 epochs) + flip TTA", "chase_db1/test_shipped_tta",
           more=trained(SHIPPED_MINUTES)),
    scores(README, MAIN, "LinkNet, shipped network (best recipe, 80 epochs)", "chase_db1/test_shipped",
           more=trained(SHIPPED_MINUTES)),
    scores(README, MAIN, "LinkNet, best recipe + flip TTA", "chase_db1/test_best_cpu_tta", more=trained(BEST_MINUTES)),
    scores(README, MAIN, "LinkNet, best recipe", "chase_db1/test_best_cpu", more=trained(BEST_MINUTES)),
    scores(README, MAIN, "LinkNet, course recipe + flip TTA", "chase_db1/test_course_cpu_tta"),
    scores(README, MAIN, "**LinkNet, course recipe**", "chase_db1/test_course_cpu", more=trained(Measured(
        minutes(result("ablation", "course recipe (CPU)", "train_seconds")), 0, "2-core AMD CPU, {} min"))),
    scores(README, MAIN, "LinkNet, course recipe, rerun", "chase_db1/test_course_cpu_rerun", more=trained(Measured(
        epoch_minutes("chase_db1/course_cpu_rerun_history"), 0, "2-core Intel CPU, {} min"))),
    scores(README, MAIN, "LinkNet, course recipe", "chase_db1/test_course_h200", more=trained(Measured(
        result("ablation", "course recipe (H200)", "train_seconds"), 0, "1x H200, {} s"))),
    scores(README, MAIN, "LinkNet, original recipe", "chase_db1/test_original_h200", more=trained(Measured(
        result("ablation", "original recipe (H200)", "train_seconds"), 0, "1x H200, {} s"))),
    scores(README, MAIN, "second human observer", "chase_db1/test_course_cpu", "second_observer",
           columns=README_SCORES[:5]),
    scores(README, MAIN, "Frangi vesselness (scikit-image)", "chase_db1/test_course_cpu", "frangi"),
    published_row(README, MAIN, "U-Net, published (R2U-Net paper)", "CHASE_DB1", "U-Net (R2U-Net paper)",
                  ("F1 (Dice)", "Acc", "Se", "AUC-ROC")),
    published_row(README, MAIN, "LadderNet, published", "CHASE_DB1", "LadderNet", ("F1 (Dice)", "Acc", "Se", "AUC-ROC")),
    published_row(README, MAIN, "IterNet, published", "CHASE_DB1", "IterNet", ("F1 (Dice)", "Acc", "Se", "AUC-ROC")),
    published_row(README, MAIN, "SA-UNet, published", "CHASE_DB1", "SA-UNet", ("F1 (Dice)", "Se", "AUC-ROC")),
    # README, CPU speed
    TableRow(README, SPEED, "LinkNet, plain (float32, contiguous)",
             {"images/s": Measured(benchmark("results_cpu", "train_img_s", "linknet_plain"), 2)}),
    TableRow(README, SPEED, "LinkNet, fast path (bfloat16 autocast + channels-last, `fit`'s default here)",
             {"images/s": Measured(benchmark("results_cpu", "train_img_s", "linknet_fast"), 2),
              "": Measured(benchmark("results_cpu", "ratios", "linknet fast / plain (batch 4)"), 2, "{}x plain")}),
    TableRow(README, SPEED, "U-Net of the original material, plain",
             {"images/s": Measured(benchmark("results_cpu", "train_img_s", "unet_plain"), 2),
              "": Measured(benchmark("results_cpu", "ratios", "linknet / unet, plain (batch 4)"), 1,
                           "LinkNet is {}x faster")}),
    TableRow(README, SPEED, "U-Net, fast path",
             {"images/s": Measured(benchmark("results_cpu", "train_img_s", "unet_fast"), 2),
              "": Measured(benchmark("results_cpu", "ratios", "linknet / unet, fast (batch 4)"), 1,
                           "LinkNet is {}x faster")}),
    # results/README.md: the sweep that chose the course recipe
    sweep_row("original: 512x512 resize, Dice + IoU, Adam 1e-4, constant, 100 epochs", "original"),
    sweep_row("512 crops at native resolution, BCE + Dice, Adam 1e-3, cosine, 40x100", "crop512_bce_1e-3"),
    sweep_row("same, Dice + IoU loss", "crop512_diceiou_1e-3"),
    sweep_row("512x512 resize, BCE + Dice, Adam 1e-3, cosine, 40x100", "resize512_bce_1e-3"),
    sweep_row("512 crops, BCE + Dice, Adam 1e-3, cosine, 20x100", "crop512_bce_1e-3_short"),
    # results/README.md: the test split, original against course
    scores(RESULTS, TEST_SPLIT, "original (`--preset original`)", "chase_db1/test_original_h200", **RESULTS_TEST,
           more={"hardware": "1x H200",
                 "train wall time": Measured(result("chase_db1/sweep", "original", "train_seconds"), 0, "{} s")}),
    scores(RESULTS, TEST_SPLIT, "course (`--preset course`)", "chase_db1/test_course_h200", **RESULTS_TEST,
           more={"hardware": "1x H200",
                 "train wall time": Measured(result("chase_db1/sweep", "crop512_bce_1e-3", "train_seconds"), 0, "{} s")}),
    scores(RESULTS, TEST_SPLIT, "second human observer", "chase_db1/test_course_h200", "second_observer",
           columns=RESULTS_SCORES[:5],
           more={"AUC-ROC": Measured(result("chase_db1/test_course_h200", "second_observer", "auc_roc"), 3, "({})*")}),
    scores(RESULTS, TEST_SPLIT, "Frangi vesselness (threshold from train)", "chase_db1/test_course_h200", "frangi",
           **RESULTS_TEST),
    # results/README.md: the best recipe
    best_sweep_row("course", "(the course recipe)"),
    best_sweep_row("cldice_e40", "`--loss bce+dice+cldice`"),
    best_sweep_row("cldice_e20", "`--loss bce+dice+cldice --epochs 20`"),
    best_sweep_row("course_e20", "`--epochs 20`"),
    # results/README, the shipped network's sweep (issue 17)
    best_sweep_row("cldice_e40", "`--loss bce+dice+cldice`", SHIPPED_CHOICE),
    best_sweep_row("cldice_e40_seed1", "`--loss bce+dice+cldice`, `--seed 1`", SHIPPED_CHOICE),
    best_sweep_row("cldice_e80", "`--epochs 80 --loss bce+dice+cldice`", SHIPPED_CHOICE),
    best_sweep_row("cldice_e80_seed1", "`--epochs 80 --loss bce+dice+cldice`, `--seed 1`", SHIPPED_CHOICE),
    scores(RESULTS, BEST_TEST, "course", "chase_db1/test_course_cpu", **RESULTS_TEST),
    scores(RESULTS, BEST_TEST, "course + flip TTA", "chase_db1/test_course_cpu_tta", **RESULTS_TEST),
    scores(RESULTS, BEST_TEST, "best", "chase_db1/test_best_cpu", **RESULTS_TEST),
    scores(RESULTS, BEST_TEST, "best + flip TTA", "chase_db1/test_best_cpu_tta", **RESULTS_TEST),
    published_row(RESULTS, BEST_TEST, "IterNet, published", "CHASE_DB1", "IterNet", ("F1", "Acc", "Se", "AUC-ROC")),
    published_row(RESULTS, BEST_TEST, "SA-UNet, published", "CHASE_DB1", "SA-UNet", ("F1", "Acc", "Se", "AUC-ROC")),
    scores(RESULTS, BEST_HRF, "course", "hrf/test_course_cpu_chase_threshold", **RESULTS_TEST),
    scores(RESULTS, BEST_HRF, "best", "hrf/test_best_cpu_chase_threshold", **RESULTS_TEST),
]

TABLE_ROWS += [
    # benchmarks/README.md: the CPU benchmark
    cpu_throughput_row("LinkNet | plain (float32, contiguous)", "linknet", "plain", (2, 4, 8)),
    cpu_throughput_row("LinkNet | fast (bfloat16 + channels-last)", "linknet", "fast", (2, 4, 8)),
    cpu_throughput_row("LinkNet | bfloat16 only", "linknet", "amp only", (4,)),
    cpu_throughput_row("LinkNet | channels-last only", "linknet", "channels_last only", (4,)),
    cpu_throughput_row("U-Net (original, 31M parameters) | plain", "unet", "plain", (4,)),
    cpu_throughput_row("U-Net (original) | fast", "unet", "fast", (4,)),
    *[TableRow(BENCHMARKS, CPU_SPEED, label, {"measured": Measured(
        benchmark("results_cpu", "ratios", key), digits, "{}x"), **({"target": target} if target else {})})
      for label, key, digits, target in (
          ("LinkNet fast / plain, batch 4", "linknet fast / plain (batch 4)", 2, "at least 2x"),
          ("U-Net fast / plain, batch 4", "unet fast / plain (batch 4)", 2, ""),
          ("LinkNet / U-Net, plain, batch 4", "linknet / unet, plain (batch 4)", 1,
           "at least 10x (LinkNet needs ~18x fewer FLOPs)"),
          ("LinkNet / U-Net, fast, batch 4", "linknet / unet, fast (batch 4)", 1, ""))],
    TableRow(BENCHMARKS, CPU_SPEED, "where the 2.67x comes from", {"measured": Figures(
        "bfloat16 alone {}x, channels-last alone {}x",
        (Measured(benchmark("results_cpu", "ratios", "linknet amp only / plain (batch 4)"), 2),
         Measured(benchmark("results_cpu", "ratios", "linknet channels_last only / plain (batch 4)"), 2)))}),
    *[TableRow(BENCHMARKS, CPU_SPEED, label, {
        f"{name} size, {size}": Figures(template, tuple(figures)) for name, size, template, figures in (
            ("DRIVE", "565 x 584", drive_template, drive), ("CHASE_DB1", "999 x 960", chase_template, chase))})
      for label, drive_template, drive, chase_template, chase in (
          ("`predict` (LinkNet)", "{} ms ({} images/s)",
           (Measured(benchmark("results_cpu", "predict_ms", "drive"), 0),
            Measured(benchmark("results_cpu", "predict_img_s", "drive"), 1)),
           "{} ms ({} images/s)",
           (Measured(benchmark("results_cpu", "predict_ms", "chase"), 0),
            Measured(benchmark("results_cpu", "predict_img_s", "chase"), 1))),
          ("Frangi vesselness (numpy)", "{} ms", (Measured(benchmark("results_cpu", "frangi_ms", "drive"), 0),),
           "{} ms", (Measured(benchmark("results_cpu", "frangi_ms", "chase"), 0),)))],
    # benchmarks/README.md: against segmentation_models_pytorch
    peer_row("parameters", scaled(benchmark(*PEER, "parameters", "linknet"), 1e-6),
             scaled(benchmark(*PEER, "parameters", "smp_linknet"), 1e-6),
             benchmark(*PEER, "ratios", "ours / smp, parameters"), 2, "{} M", "{}"),
    peer_row("forward FLOPs per image (counted)", scaled(benchmark(*PEER, "flops", "linknet", "forward"), 1e-9),
             scaled(benchmark(*PEER, "flops", "smp_linknet", "forward"), 1e-9),
             benchmark(*PEER, "ratios", "ours / smp, forward FLOPs"), 1, "{} G", "{}"),
    peer_row("training-step FLOPs per image (forward + backward, counted)",
             scaled(benchmark(*PEER, "flops", "linknet", "training_step"), 1e-9),
             scaled(benchmark(*PEER, "flops", "smp_linknet", "training_step"), 1e-9),
             ratio(benchmark(*PEER, "flops", "linknet", "training_step"),
                   benchmark(*PEER, "flops", "smp_linknet", "training_step")), 1, "{} G", "{}"),
    *[peer_row(f"training, {path_words}, images/s", peer_img_s("linknet", path), peer_img_s("smp_linknet", path),
               benchmark(*PEER, "ratios", f"ours / smp, training img/s, {path}"), 2, "{}", "{}x")
      for path, path_words in (("plain", "plain (float32, contiguous)"),
                               ("fast", "fast (bfloat16 autocast + channels-last, both)"))],
    *[peer_row(f"inference, one image, {path}, ms", peer_ms("linknet", path), peer_ms("smp_linknet", path),
               benchmark(*PEER, "ratios", f"smp / ours, inference ms, {path}"), 1, "{}", "{}x faster")
      for path in ("plain", "fast")],
    # benchmarks/README.md: memory format, one run of memory_format.py per table
    *memory_format_rows("memory_format_cpu_512", MEMORY_512, {"float32": ", float32", "bf16": ", bfloat16"}),
    *memory_format_rows("memory_format_cpu_avx2_512", MEMORY_512_AVX2, {"float32": ""}),
    *memory_format_rows("memory_format_cpu_avx2_1thread_128", MEMORY_128_AVX2, {"float32": ""}),
    # benchmarks/README.md: one thread or two
    threads_row("smoke (64 x 64, batch 2), quiet", "quiet", "smoke"),
    threads_row("smoke, one core busy", "one core busy", "smoke"),
    threads_row("full (512 x 512, batch 4), quiet", "quiet", "full"),
    threads_row("full, one core busy", "one core busy", "full"),
]

#: The tables whose every number must be in TABLE_ROWS.
CHECKED_TABLES = [(README, MAIN), (README, SPEED), (RESULTS, COURSE_CHOICE), (RESULTS, TEST_SPLIT),
                  (RESULTS, BEST_CHOICE), (RESULTS, BEST_TEST), (RESULTS, BEST_HRF), (BENCHMARKS, CPU_SPEED),
                  (BENCHMARKS, PEER_SECTION), (BENCHMARKS, MEMORY_512), (BENCHMARKS, MEMORY_512_AVX2),
                  (BENCHMARKS, MEMORY_128_AVX2), (BENCHMARKS, THREADS)]


# ---- figures in sentences -------------------------------------------------------------------------------------

CPU_TEST, RERUN_TEST = "chase_db1/test_course_cpu", "chase_db1/test_course_cpu_rerun"
CPU_HISTORY, RERUN_HISTORY = "chase_db1/course_cpu_history", "chase_db1/course_cpu_rerun_history"
QUIET_HISTORY = "chase_db1/course_cpu_quiet_history"
ISA = "course_epoch_isa_cpu"
MEMORY, MEMORY_AVX2 = "memory_format_cpu_512", "memory_format_cpu_avx2_512"
ISA_RATIO = benchmark(ISA, "capped_over_native")
ISA_NATIVE = benchmark(ISA, "native", "median_epoch_seconds_after_first")
ISA_CAPPED = benchmark(ISA, "capped_at_avx2", "median_epoch_seconds_after_first")


def jupyterlab(mode: str, notebook: str) -> Value:
    """A notebook's time in JupyterLab (``tools/time_in_jupyterlab.py``), in seconds."""
    return benchmark("notebook_times_jupyterlab", mode, notebook, "seconds")
HRF, HRF_BEST = "hrf/test_course_cpu_chase_threshold", "hrf/test_best_cpu_chase_threshold"
BEST_TTA, BEST_PLAIN = "chase_db1/test_best_cpu_tta", "chase_db1/test_best_cpu"
BEST_SWEEP, SWEEP = "chase_db1/best_sweep", "chase_db1/sweep"
CLDICE_COST = ratio(result(BEST_SWEEP, "cldice_e40", "train_seconds"), result(BEST_SWEEP, "course", "train_seconds"))
MACHINE_SPREAD = difference(result(CPU_TEST, "f1"), result(RERUN_TEST, "f1"))
ORIGINAL_H200, COURSE_H200 = result("ablation", "original recipe (H200)", "train_seconds"), result(
    "ablation", "course recipe (H200)", "train_seconds")


def original_cpu_minutes(sources: Sources) -> float:
    """The original recipe's 100 epochs of 80 images at the CPU benchmark's fast-path rate, without validation."""
    return 100 * 80 / sources.benchmark("results_cpu")["train_img_s"]["linknet_fast"] / 60


COURSE_CPU_MINUTES = minutes(result("ablation", "course recipe (CPU)", "train_seconds"))


def cldice_gain(key: str, run: str, baseline: str) -> Value:
    return difference(result(BEST_SWEEP, run, "validation", key), result(BEST_SWEEP, baseline, "validation", key))


QUOTES = [
    # README
    Quote(README, "net = LinkNet()                      # {}M parameters",
          scaled(benchmark(*PEER, "parameters", "linknet"), 1e-6), 2),
    Quote(README, "It has {} parameters", benchmark(*PEER, "parameters", "linknet"), 0),
    Quote(README, "and needs {}\nGFLOPs", scaled(benchmark(*PEER, "flops", "linknet", "forward"), 1e-9), 1),
    Quote(README, "trains the course recipe: {} minutes of epochs", epoch_minutes(QUIET_HISTORY), 0),
    Quote(README, "about {} times as long without", ISA_RATIO, 1),
    Quote(README, "Notebook 03 resumed the\n{}-minute course-recipe run", epoch_minutes(QUIET_HISTORY), 0),
    Quote(README, "validation Dice\n{}). Each notebook", best_val_dice(QUIET_HISTORY), 3),
    Quote(README, "reached **F1 {}, AUC-ROC", result("chase_db1/test_shipped", "f1"), 4),
    Quote(README, "AUC-ROC {}** on the\ntest split", result("chase_db1/test_shipped", "auc_roc"), 4),
    Quote(README, "with the clDice loss ({}x the training time", CLDICE_COST, 1),
    Quote(README, "misses the targets of\nF1 {} and", published("CHASE_DB1", "SA-UNet", "f1"), 3),
    Quote(README, "AUC-ROC {} that SA-UNet and IterNet", published("CHASE_DB1", "IterNet", "auc_roc"), 3),
    Quote(README, "expect differences of about {} in F1", MACHINE_SPREAD, 3),
    Quote(README, "images 06-15 of each\ngroup, {} with labels", result(HRF, "n_images"), 0),
    Quote(README, "CHASE_DB1's training images: **F1 {},", result(HRF, "f1"), 4),
    Quote(README, "AUC-ROC {}**, accuracy", result(HRF, "auc_roc"), 4),
    Quote(README, "**, accuracy {}, sensitivity", result(HRF, "accuracy"), 4),
    Quote(README, "sensitivity {}, specificity", result(HRF, "sensitivity"), 4),
    Quote(README, "0.7266, specificity {},", result(HRF, "specificity"), 4),
    Quote(README, "AUC-PR {} (healthy", result(HRF, "auc_pr"), 4),
    Quote(README, "(healthy {}, glaucoma", mean_f1_of_group(HRF, "h"), 3),
    Quote(README, "glaucoma {}, diabetic retinopathy", mean_f1_of_group(HRF, "g"), 3),
    Quote(README, "diabetic retinopathy {} mean\nF1 per image", mean_f1_of_group(HRF, "dr"), 3),
    Quote(README, "--skip-incomplete --threshold {} --json retina_lib/course_results/hrf/test_course",
          result(CPU_TEST, "threshold"), 4),
    Quote(README, "final loss {} vs", benchmark("converge_cpu", "results", "fast", "final_loss"), 3),
    Quote(README, "final loss 0.457 vs {} (", benchmark("converge_cpu", "results", "plain", "final_loss"), 3),
    Quote(README, "Inference with `predict`: {} ms", benchmark("results_cpu", "predict_ms", "drive"), 0),
    Quote(README, "photograph, {} ms\n  for a 999x960", benchmark("results_cpu", "predict_ms", "chase"), 0),
    Quote(README, "the Frangi filter takes {} and", benchmark("results_cpu", "frangi_ms", "drive"), 0),
    Quote(README, "the Frangi filter takes 208 and {} ms", benchmark("results_cpu", "frangi_ms", "chase"), 0),
    Quote(README, "a course-recipe epoch took {} s against", ISA_CAPPED, 1),
    Quote(README, "against\n  {} s: **", ISA_NATIVE, 1),
    Quote(README, "**{}x** as long", ISA_RATIO, 1),
    Quote(README, "trains in {} minutes of epochs", epoch_minutes(QUIET_HISTORY), 1),
    Quote(README, "of the same command\n  took {} minutes, on an earlier version", COURSE_CPU_MINUTES, 0),
    Quote(BENCHMARKS, "**{} s** as it is", ISA_NATIVE, 1),
    Quote(BENCHMARKS, "and **{} s** capped at AVX2", ISA_CAPPED, 1),
    Quote(BENCHMARKS, "(float32, contiguous): **{}x**", ISA_RATIO, 1),
    Quote(BENCHMARKS, "would take\nabout {} minutes on 2 such cores", benchmark(ISA, "course_minutes_capped"), 0),
    Quote(RESULTS, "against a median of {} s;", median_epoch_seconds(QUIET_HISTORY), 0),
    Quote(RESULTS, "the slowest\nof which took {} s against", slowest_epoch_seconds(QUIET_HISTORY), 0),
    Quote(RESULTS, "median of 14 s; {} s of epochs", scaled(epoch_minutes(QUIET_HISTORY), 60), 0),
    Quote(RESULTS, "s of epochs, {} min), again", epoch_minutes(QUIET_HISTORY), 1),
    Quote(NOTEBOOK_01, "**smoke mode\n{} s, full mode", jupyterlab("smoke", "01_architecture"), 0),
    Quote(NOTEBOOK_01, "s, full mode {} s** (full mode", jupyterlab("full", "01_architecture"), 0),
    Quote(NOTEBOOK_02, "**smoke mode\n{} s, full mode", jupyterlab("smoke", "02_losses"), 0),
    Quote(NOTEBOOK_02, "s, full mode {} s**.", jupyterlab("full", "02_losses"), 0),
    Quote(NOTEBOOK_04, "small synthetic pictures | {} s |", jupyterlab("smoke", "04_results"), 0),
    Quote(NOTEBOOK_03, "on tiny synthetic pictures | {} s |", jupyterlab("smoke", "03_training"), 0),
    Quote(NOTEBOOK_03, "crops of 512 x 512) | {} min on a 2-core AMD EPYC", minutes(jupyterlab("full", "03_training")), 1),
    Quote(NOTEBOOK_03, "epochs take about {} times as long (section 7)", ISA_RATIO, 1),
    Quote(NOTEBOOK_03, "(40 epochs of 100 crops: {} minutes of epochs", epoch_minutes(QUIET_HISTORY), 0),
    Quote(NOTEBOOK_03, "instructions, about {} times that without", ISA_RATIO, 1),
    Quote(NOTEBOOK_03, "stored in its history is {}, after", result(QUIET_HISTORY, "val_dice", 0), 3),
    Quote(NOTEBOOK_03, "after the second {}, and it", result(QUIET_HISTORY, "val_dice", 1), 2),
    Quote(NOTEBOOK_03, "bfloat16 | {} min of epochs on the quiet machine", epoch_minutes(QUIET_HISTORY), 1),
    Quote(NOTEBOOK_03, "(the run stored here); {} min in an earlier run", epoch_minutes(CPU_HISTORY), 0),
    Quote(NOTEBOOK_03, "shared the machine; {} min on a 2-core Intel Xeon", epoch_minutes(RERUN_HISTORY), 0),
    Quote(NOTEBOOK_03, "also shared | {} min in JupyterLab", minutes(jupyterlab("full", "03_training")), 1),
    Quote(NOTEBOOK_03, "float32 | about {} min: the same", benchmark(ISA, "course_minutes_capped"), 0),
    Quote(NOTEBOOK_03, "capped at AVX2 took {} s per epoch", ISA_CAPPED, 1),
    Quote(NOTEBOOK_03, "s per epoch against {} s, ", ISA_NATIVE, 1),
    Quote(NOTEBOOK_03, "s, {} times as long | not measured", ISA_RATIO, 1),
    Quote(NOTEBOOK_04, "the analyses | {} s on a 2-core AMD EPYC", jupyterlab("full", "04_results"), 0),
    Quote(README, "Reproduce the CPU rows ({} min of epochs", epoch_minutes(CPU_HISTORY), 0),
    Quote(README, "the whole course-recipe command took {} s", COURSE_H200, 0),
    Quote(README, "plus validation) {} s", ORIGINAL_H200, 0),
    Quote(README, "(load average {} at the start", benchmark("results_cpu_peer", "machine", "load_average_start", 0), 1),
    Quote(README, "and {} at the\n  end of the run", benchmark("results_cpu_peer", "machine", "load_average_end", 0), 1),
    Quote(README, "at the fast path's {} images/s above", benchmark("results_cpu", "train_img_s", "linknet_fast"), 2),
    Quote(README, "8,000 training images alone take about {} minutes", original_cpu_minutes, 0),
    Quote(BENCHMARKS, "The fast path's {} images/s above",
          benchmark("results_cpu", "train_img_s", "linknet_fast"), 2),
    Quote(BENCHMARKS, "training images) at about {} minutes", original_cpu_minutes, 0),
    Quote(README, "taking turns): **{}x** in", benchmark(MEMORY, "ratios", "ours / smp, bf16 channels_last"), 2),
    Quote(README, "and **{}x** with the CPU capped at AVX2",
          benchmark(MEMORY_AVX2, "ratios", "ours / smp, float32 contiguous"), 2),
    Quote(BENCHMARKS, "the load average of {} at the start", benchmark(MEMORY, "load_average_start", 0), 1),
    Quote(BENCHMARKS, "at the start and {} at the end is the", benchmark(MEMORY, "load_average_end", 0), 1),
    Quote(BENCHMARKS, "channels-last) ours leads by {}x", benchmark(MEMORY, "ratios", "ours / smp, bf16 channels_last"), 2),
    Quote(BENCHMARKS, "(load average {} at the start, ", benchmark(MEMORY_AVX2, "load_average_start", 0), 1),
    Quote(BENCHMARKS, "at the start, {} at the end)", benchmark(MEMORY_AVX2, "load_average_end", 0), 1),
    Quote(BENCHMARKS, "ours leads\nby {}x, above", benchmark(MEMORY_AVX2, "ratios", "ours / smp, float32 contiguous"), 2),
    Quote(BENCHMARKS, "lead is {}x, below it",
          benchmark(MEMORY_AVX2, "ratios", "ours / smp, float32 channels_last"), 2),
    Quote(BENCHMARKS, "channels-last gained ours\n{}x, where",
          benchmark(MEMORY_AVX2, "ratios", "linknet float32 channels_last / contiguous"), 2),
    Quote(BENCHMARKS, "(load average {} at the start: the 2-thread",
          benchmark("memory_format_cpu_avx2_1thread_128", "load_average_start", 0), 0),
    Quote(BENCHMARKS, "and the lead was only\n{}x",
          benchmark("memory_format_cpu_avx2_1thread_128", "ratios", "ours / smp, float32 contiguous"), 2),
    Quote(README, "trains at **{}x** the", benchmark(*PEER, "ratios", "ours / smp, training img/s, plain"), 2),
    Quote(README, "and **{}x** with bfloat16", benchmark(*PEER, "ratios", "ours / smp, training img/s, fast"), 2),
    Quote(README, "({} against", peer_img_s("linknet", "fast"), 2),
    Quote(README, "against {} images/s at batch 4", peer_img_s("smp_linknet", "fast"), 2),
    Quote(README, "with {}% fewer parameters",
          lambda sources: 100 * (1 - benchmark(*PEER, "ratios", "ours / smp, parameters")(sources)), 0),
    # results/README.md
    Quote(RESULTS, "({} vs 0.743 F1", result(SWEEP, "crop512_bce_1e-3", "validation", "f1"), 3),
    Quote(RESULTS, "vs {} F1 with the same", result(SWEEP, "resize512_bce_1e-3", "validation", "f1"), 3),
    Quote(RESULTS, "on AUC** ({} vs", result(SWEEP, "crop512_bce_1e-3", "validation", "auc_roc"), 3),
    Quote(RESULTS, "on AUC** (0.979 vs {})", result(SWEEP, "crop512_diceiou_1e-3", "validation", "auc_roc"), 3),
    Quote(RESULTS, "4,000 crops: {} F1)", difference(result(SWEEP, "crop512_bce_1e-3", "validation", "f1"),
                                                     result(SWEEP, "crop512_bce_1e-3_short", "validation", "f1")), 3),
    Quote(RESULTS, "40 epochs, best epoch {}, validation Dice", best_epoch(CPU_HISTORY), 0),
    Quote(RESULTS, "best epoch 31, validation Dice {})", best_val_dice(CPU_HISTORY), 3),
    *[Quote(RESULTS, f"{words} {{}}", result(name, key), 4, after=paragraph)
      for name, paragraph in ((CPU_TEST, "## The reference run on a CPU"), (RERUN_TEST, "### A rerun on another CPU"))
      for words, key in (("Test split: F1", "f1"), ("IoU", "iou"), ("accuracy", "accuracy"),
                         ("sensitivity", "sensitivity"), ("specificity", "specificity"), ("AUC-ROC", "auc_roc"),
                         ("AUC-PR", "auc_pr"), ("threshold", "threshold"))],
    *[Quote(RESULTS, f"{words} {{}}", value, digits, after="Generalisation to HRF")
      for words, value, digits in (("F1", result(HRF, "f1"), 4), ("IoU", result(HRF, "iou"), 4),
                                   ("accuracy", result(HRF, "accuracy"), 4), ("sensitivity", result(HRF, "sensitivity"), 4),
                                   ("specificity", result(HRF, "specificity"), 4), ("precision", result(HRF, "precision"), 4),
                                   ("AUC-ROC", result(HRF, "auc_roc"), 4), ("AUC-PR", result(HRF, "auc_pr"), 4),
                                   ("healthy", mean_f1_of_group(HRF, "h"), 3), ("glaucoma", mean_f1_of_group(HRF, "g"), 3),
                                   ("diabetic retinopathy", mean_f1_of_group(HRF, "dr"), 3))],
    Quote(RESULTS, "differed in\nthe third decimal ({} against", result(RERUN_HISTORY, "train_loss", 0), 4),
    Quote(RESULTS, "(1.1750 against {})", result(CPU_HISTORY, "train_loss", 0), 4),
    Quote(RESULTS, "best epoch {} again", best_epoch(RERUN_HISTORY), 0),
    Quote(RESULTS, "validation Dice {} (against", best_val_dice(RERUN_HISTORY), 3),
    Quote(RESULTS, "(against 0.807), {} min of epochs", epoch_minutes(RERUN_HISTORY), 0),
    Quote(RESULTS, "won on validation F1 at both schedule lengths: {} at 40", cldice_gain("f1", "cldice_e40", "course"), 3),
    Quote(RESULTS, "and {} at 20", cldice_gain("f1", "cldice_e20", "course_e20"), 3),
    Quote(RESULTS, "(with {} AUC-ROC)", cldice_gain("auc_roc", "cldice_e20", "course_e20"), 3),
    Quote(RESULTS, "for {}x\n  the training time", CLDICE_COST, 1),
    Quote(RESULTS, "(20 -> 40:\n{} validation F1 for the course recipe",
          difference(result(BEST_SWEEP, "course", "validation", "f1"), result(BEST_SWEEP, "course_e20", "validation", "f1")), 3),
    Quote(RESULTS, "for the course recipe, {} with clDice)", difference(
        result(BEST_SWEEP, "cldice_e40", "validation", "f1"), result(BEST_SWEEP, "cldice_e20", "validation", "f1")), 3),
    Quote(RESULTS, "Flip TTA** added {}-", tta_gain(min), 3),
    Quote(RESULTS, "Flip TTA** added 0.003-{} validation", tta_gain(max), 3),
    Quote(RESULTS, "The best LinkNet reaches F1 {} and", result(BEST_TTA, "f1"), 3),
    Quote(RESULTS, "and AUC-ROC {} with TTA", result(BEST_TTA, "auc_roc"), 3),
    Quote(RESULTS, "with TTA ({} and", result(BEST_PLAIN, "f1"), 3),
    Quote(RESULTS, "(0.806 and\n{} without)", result(BEST_PLAIN, "auc_roc"), 3),
    Quote(RESULTS, "above IterNet's F1 ({})", published("CHASE_DB1", "IterNet", "f1"), 3),
    Quote(RESULTS, "below SA-UNet ({} /", published("CHASE_DB1", "SA-UNet", "f1"), 3),
    Quote(RESULTS, "below SA-UNet (0.815 / {})", published("CHASE_DB1", "SA-UNet", "auc_roc"), 3),
    Quote(RESULTS, "IterNet's AUC-ROC ({})", published("CHASE_DB1", "IterNet", "auc_roc"), 3),
    Quote(RESULTS, "--threshold {} --json retina_lib/course_results/hrf/test_best", result(BEST_PLAIN, "threshold"), 4),
    Quote(RESULTS, "clDice gains more on HRF than on CHASE_DB1: {} F1",
          difference(result(HRF_BEST, "f1"), result(HRF, "f1")), 3),
    Quote(RESULTS, "F1 and {} AUC-ROC,\nmostly", difference(result(HRF_BEST, "auc_roc"), result(HRF, "auc_roc")), 3),
    # results/README, the shipped network (issue 17)
    Quote(RESULTS, "median epoch took {} s", card("median_epoch_seconds"), 0),
    Quote(RESULTS, "moved the validation F1 by {} at 80 epochs", magnitude(difference(
        result("chase_db1/best_sweep", "cldice_e80_seed1", "validation", "f1"),
        result("chase_db1/best_sweep", "cldice_e80", "validation", "f1"))), 4),
    Quote(RESULTS, "at 80 epochs and by {} at 40.", magnitude(difference(
        result("chase_db1/best_sweep", "cldice_e40_seed1", "validation", "f1"),
        result("chase_db1/best_sweep", "cldice_e40", "validation", "f1"))), 4),
    Quote(RESULTS, "with seed 0 and +{} with seed 1", difference(
        result("chase_db1/best_sweep", "cldice_e80_seed1", "validation", "f1"),
        result("chase_db1/best_sweep", "cldice_e40_seed1", "validation", "f1")), 4),
    Quote(RESULTS, "80 epochs against 40**: +{} validation F1 with seed 0", difference(
        result("chase_db1/best_sweep", "cldice_e80", "validation", "f1"),
        result("chase_db1/best_sweep", "cldice_e40", "validation", "f1")), 4),
    Quote(RESULTS, "best weights (epoch {} of 80)", card("best_epoch"), 0),
    Quote(RESULTS, "moved the test F1 by {} (with TTA", magnitude(difference(card("test", "f1"),
                                                                              card("float32_original", "test", "f1"))), 4),
    Quote(RESULTS, "the shipped network reaches F1 {}\nand", result("chase_db1/test_shipped_tta", "f1"), 4),
    Quote(RESULTS, "and AUC-ROC {}, ", result("chase_db1/test_shipped_tta", "auc_roc"), 4),
    Quote(RESULTS, "without TTA {} and", result("chase_db1/test_shipped", "f1"), 4),
    Quote(RESULTS, "HRF (never trained on, CHASE_DB1's threshold, {} labelled",
          result("hrf/test_shipped_chase_threshold", "n_images"), 0),
    Quote(RESULTS, "AUC-ROC\n{} against", result("hrf/test_shipped_chase_threshold", "auc_roc"), 4),
    Quote(RESULTS, "(Se {} against", result("hrf/test_shipped_chase_threshold", "sensitivity"), 3),
    Quote(RESULTS, "its F1 is lower ({}", result("hrf/test_shipped_chase_threshold", "f1"), 4),
    # README, the shipped network
    Quote(README, "misses the targets of\nF1 0.815 and AUC-ROC 0.985 that SA-UNet and IterNet set, by {} and",
          magnitude(difference(result("chase_db1/test_shipped_tta", "f1"), published("CHASE_DB1", "SA-UNet", "f1"))), 4),
    Quote(README, "IterNet set, by 0.0004 and {}.", magnitude(difference(
        result("chase_db1/test_shipped_tta", "auc_roc"), published("CHASE_DB1", "IterNet", "auc_roc"))), 4),
    # notebook 04's Markdown
    Quote(NOTEBOOK_04, "the recipe moves F1 by about {}",
          difference(result("ablation", "course recipe (H200)", "f1"), result("ablation", "original recipe (H200)", "f1")), 2),
    Quote(NOTEBOOK_04, "and AUC-ROC by about {}. The two recipes", difference(result("ablation", "course recipe (H200)", "auc_roc"),
                                                              result("ablation", "original recipe (H200)", "auc_roc")), 2),
    Quote(NOTEBOOK_04, "H200 GPU in {} s", COURSE_H200, 0),
    Quote(NOTEBOOK_04, "2-core CPU in {} minutes", COURSE_CPU_MINUTES, 0),
    Quote(NOTEBOOK_04, "scored F1 {} against this table's", result(RERUN_TEST, "f1"), 3),
    Quote(NOTEBOOK_04, "against this table's {}:", result(CPU_TEST, "f1"), 3),
    Quote(NOTEBOOK_04, "(F1 {} and AUC-ROC 0.952 on HRF", result(HRF, "f1"), 3),
    Quote(NOTEBOOK_04, "and AUC-ROC {} on HRF", result(HRF, "auc_roc"), 3),
    Quote(NOTEBOOK_04, "on HRF, against {} and", result(CPU_TEST, "f1"), 3),
    Quote(NOTEBOOK_04, "against 0.800 and {} on CHASE_DB1's test split", result(CPU_TEST, "auc_roc"), 3),
    Quote(NOTEBOOK_04, "sensitivity falls ({} against", result(HRF, "sensitivity"), 3),
    Quote(NOTEBOOK_04, "sensitivity falls (0.727 against {})", result(CPU_TEST, "sensitivity"), 3),
    Quote(NOTEBOOK_04, "precision rises ({}\nagainst", result(HRF, "precision"), 3),
    Quote(NOTEBOOK_04, "against {}), so it misses", result(CPU_TEST, "precision"), 3),
    Quote(NOTEBOOK_04, "below IterNet (F1 {},", published("CHASE_DB1", "IterNet", "f1"), 3),
    Quote(NOTEBOOK_04, "AUC-ROC\n{}) and SA-UNet", published("CHASE_DB1", "IterNet", "auc_roc"), 3),
    Quote(NOTEBOOK_04, "and SA-UNet ({} /", published("CHASE_DB1", "SA-UNet", "f1"), 3),
    Quote(NOTEBOOK_04, "and SA-UNet (0.815 / {})", published("CHASE_DB1", "SA-UNet", "auc_roc"), 3),
    Quote(NOTEBOOK_04, "adds about {} to F1 at the course's", cldice_gain("f1", "cldice_e40", "course"), 3),
    Quote(NOTEBOOK_04, "40 epochs and {} at 20", cldice_gain("f1", "cldice_e20", "course_e20"), 3),
    Quote(NOTEBOOK_04, "for {} times the training time", CLDICE_COST, 1),
    Quote(NOTEBOOK_04, "about twice the {} that a second run", MACHINE_SPREAD, 3),
    Quote(NOTEBOOK_04, "Flip TTA adds {} to", tta_gain(min), 3),
    Quote(NOTEBOOK_04, "Flip TTA adds 0.003 to {} to the F1 of each of the first four runs", tta_gain(max), 3),
    Quote(NOTEBOOK_04, "clDice adds\n{} to the test F1",
          difference(result(BEST_PLAIN, "f1"), result(CPU_TEST, "f1")), 3),
    Quote(NOTEBOOK_04, "to the test F1 ({} against", result(BEST_PLAIN, "f1"), 3),
    Quote(NOTEBOOK_04, "(0.806 against {}) and", result(CPU_TEST, "f1"), 3),
    Quote(NOTEBOOK_04, "against 0.800) and {} to AUC-ROC",
          difference(result(BEST_PLAIN, "auc_roc"), result(CPU_TEST, "auc_roc")), 3),
    Quote(NOTEBOOK_04, "With both, LinkNet reaches F1 {} and", result(BEST_TTA, "f1"), 3),
    Quote(NOTEBOOK_04, "With both, LinkNet reaches F1 0.810 and AUC-ROC {}:", result(BEST_TTA, "auc_roc"), 3),
    Quote(NOTEBOOK_04, "above IterNet's F1 ({}),", published("CHASE_DB1", "IterNet", "f1"), 3),
    Quote(NOTEBOOK_04, "below SA-UNet's ({})", published("CHASE_DB1", "SA-UNet", "f1"), 3),
    Quote(NOTEBOOK_04, "in AUC-ROC ({} and", published("CHASE_DB1", "IterNet", "auc_roc"), 3),
    Quote(NOTEBOOK_04, "in AUC-ROC (0.985 and {})", published("CHASE_DB1", "SA-UNet", "auc_roc"), 3),
    Quote(NOTEBOOK_04, "F1 rises by {} and", difference(result(HRF_BEST, "f1"), result(HRF, "f1")), 3),
    Quote(NOTEBOOK_04, "AUC-ROC by {}, almost all", difference(result(HRF_BEST, "auc_roc"), result(HRF, "auc_roc")), 3),
    Quote(NOTEBOOK_04, "sensitivity ({} against", result(HRF_BEST, "sensitivity"), 3),
    Quote(NOTEBOOK_04, "(0.797 against {}), at a small cost", result(HRF, "sensitivity"), 3),
    Quote(NOTEBOOK_04, "it reaches F1 {} and AUC-ROC", result(BEST_TTA, "f1"), 3),
    Quote(NOTEBOOK_04, "it reaches F1 0.810 and AUC-ROC {} with flip TTA", result(BEST_TTA, "auc_roc"), 3),
    Quote(NOTEBOOK_04, "it gains more (F1 {})", difference(result(HRF_BEST, "f1"), result(HRF, "f1")), 3),
    # notebook 03's Markdown
    Quote(NOTEBOOK_03, "validation F1 {} with BCE + Dice", result(SWEEP, "crop512_bce_1e-3", "validation", "f1"), 4),
    Quote(NOTEBOOK_03, "against {} with Dice + IoU", result(SWEEP, "crop512_diceiou_1e-3", "validation", "f1"), 4),
    Quote(NOTEBOOK_03, "but AUC-ROC {} against", result(SWEEP, "crop512_bce_1e-3", "validation", "auc_roc"), 4),
    Quote(NOTEBOOK_03, "but AUC-ROC 0.9789 against {}.", result(SWEEP, "crop512_diceiou_1e-3", "validation", "auc_roc"), 4),
]


# ---- the tests --------------------------------------------------------------------------------------------------

def problems(repository: Path) -> list[str]:
    """Every mismatch between the prose of ``repository`` and its measured results."""
    sources = Sources(repository)
    texts = {document: prose(repository / document)
             for document in {entry.document for entry in [*QUOTES, *TABLE_ROWS]}}
    found = [problem for quote in QUOTES for problem in check_quote(quote, texts[quote.document], sources)]
    found += [problem for row in TABLE_ROWS for problem in check_row(row, texts[row.document], sources)]
    found += [problem for document, section in CHECKED_TABLES
              for problem in uncovered_table_cells(document, section, texts[document], TABLE_ROWS)]
    return found


def test_every_quoted_figure_matches_its_source() -> None:
    assert problems(REPOSITORY) == []


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the prose and the measured results that a test may change."""
    for document in (README, RESULTS, NOTEBOOK_01, NOTEBOOK_02, NOTEBOOK_03, NOTEBOOK_04):
        (tmp_path / document).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPOSITORY / document, tmp_path / document)
    shutil.copytree(REPOSITORY / "retina_lib" / "course_results", tmp_path / "retina_lib" / "course_results")
    (tmp_path / "retina_lib" / "pretrained").mkdir()
    shutil.copy(REPOSITORY / "retina_lib" / "pretrained" / "model_card.json", tmp_path / "retina_lib" / "pretrained")
    shutil.copytree(REPOSITORY / "benchmarks", tmp_path / "benchmarks", ignore=shutil.ignore_patterns("*.py", "*.png"))
    return tmp_path


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("document, old, new", [
    (README, "| **0.8146** | 0.6873 |", "| **0.8146** | 0.6874 |"),                  # a table cell
    (README, "AUC-ROC 0.9524**, accuracy", "AUC-ROC 0.9525**, accuracy"),           # a sentence
    (README, "2-core AMD CPU, 31 min | 0.8058", "2-core AMD CPU, 30 min | 0.8058"),  # a time in a cell
    (README, "trains at **1.51x** the", "trains at **1.5x** the"),                  # the right value, too few decimals
    (RESULTS, "(0.797 vs 0.743 F1", "(0.798 vs 0.743 F1"),
    (RESULTS, "| course | 0.7706 |", "| course | 0.7707 |"),
    (NOTEBOOK_04, "0.006 to the test F1", "0.007 to the test F1"),
    (BENCHMARKS, "| 4.79 | **5.15** | 4.84 | 1.5 GiB |", "| 4.79 | **5.15** | 4.84 | 1.4 GiB |"),
    (BENCHMARKS, "bfloat16 alone 2.09x, channels-last alone 1.28x", "bfloat16 alone 2.09x, channels-last alone 1.29x"),
    (BENCHMARKS, "| **53.4** | 59.9 | **1.12x** faster |", "| **53.4** | 59.9 | **1.13x** faster |"),
])
def test_a_figure_changed_in_the_prose_is_caught(checkout: Path, document: str, old: str, new: str) -> None:
    replace_once(checkout / document, old, new)
    found = problems(checkout)
    assert len(found) == 1 and found[0].startswith(document), found


def test_a_value_changed_in_the_json_is_caught(checkout: Path) -> None:
    path = checkout / "retina_lib" / "course_results" / "hrf" / "test_course_cpu_chase_threshold.json"
    stored = json.loads(path.read_text())
    stored["auc_roc"] += 0.001
    path.write_text(json.dumps(stored))
    found = problems(checkout)
    # the README's sentence and table, results/README's paragraph and table, notebook 04's HRF sentences
    assert any("README.md: 'AUC-ROC 0.9524**, accuracy'" in problem for problem in found), found
    assert any(problem.startswith("results/README.md, table under 'HRF, never seen in training'") for problem in found)
    assert any(problem.startswith(NOTEBOOK_04) for problem in found)


def test_a_benchmark_changed_is_caught(checkout: Path) -> None:
    replace_once(checkout / "benchmarks" / "results_cpu.json", '"linknet_plain": 1.929', '"linknet_plain": 1.949')
    assert any("'LinkNet, plain (float32, contiguous)'" in problem for problem in problems(checkout))


def test_a_number_the_registry_does_not_know_is_caught(checkout: Path) -> None:
    row = "| LinkNet, a new recipe | 2-core AMD CPU, 40 min | 0.8200 | - | - | - | - | - | - |\n"
    replace_once(checkout / README, "| second human observer |", row + "| second human observer |")
    replace_once(checkout / README, "| 0.9749 | - | - |", "| 0.9749 | 0.9 | - |")  # second observer's AUC-ROC
    replace_once(checkout / RESULTS, "| 0.8498 | 0.530 |", "| 0.8498 | 0.530 | 7 |")  # a cell beyond the header
    found = problems(checkout)
    assert any("row 'LinkNet, a new recipe' is not in the registry" in problem for problem in found), found
    assert any("'0.9' holds a number the registry does not know" in problem for problem in found), found
    assert any("row 'best': 10 cells under a header of 9" in problem for problem in found), found


def test_changed_words_are_reported_not_skipped(checkout: Path) -> None:
    replace_once(checkout / README, "expect differences of about", "expect changes of about")
    assert problems(checkout) == ["README.md: the words 'expect differences of about {} in F1' are not there "
                                  "(edit the registry with the prose)"]
