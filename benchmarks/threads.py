"""One thread or two? LinkNet's training step at the course's sizes, on a quiet and on a busy CPU, in one run.

    python benchmarks/threads.py [--rounds 7] [--json OUT]

Why this exists: notebook 03 in smoke mode took 72 s in JupyterLab with
PyTorch's default two threads, against 38 s with one thread, on the same busy
2-core machine. :func:`retina_lib.course.setup` now picks the thread count
from these numbers.

Each workload is the trainer's own step (:meth:`retina_lib.epoch_loop.Train.run_epoch`:
forward, loss, backward, Adam) of a fresh LinkNet on one fixed batch, in the
path ``fit`` takes on this CPU by default (``amp="auto"``, channels-last as
:func:`~retina_lib.system.hardware.default_channels_last` decides):

* **smoke**: 64 x 64 pictures, batch 2, what the smoke-mode notebooks and the
  tests train;
* **full**: 512 x 512 crops, batch 4, the course recipe.

Each is timed with 1 thread and with every core (``torch.set_num_threads``;
the two settings take turns, one step each per round), first on a quiet
machine, then while one other process keeps one core busy (a Python loop that
never sleeps, as JupyterLab, a browser or a second notebook would). The
reported number is the median step time; the JSON keeps every step, and the
ratio "threads=N / threads=1" above 1 means more threads are slower.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retina_lib.epoch_loop import Train  # noqa: E402
from retina_lib.model import LinkNet  # noqa: E402
from retina_lib.system.hardware import default_amp, default_channels_last, seed_everything  # noqa: E402
from retina_lib.system.files import write_atomically  # noqa: E402

#: (picture side, batch size) of each workload.
WORKLOADS = {"smoke": (64, 2), "full": (512, 4)}


def busy_loop(stop_after: float) -> None:
    """Keep one core busy for ``stop_after`` seconds (the competing program)."""
    end = time.perf_counter() + stop_after
    counter = 0
    while time.perf_counter() < end:
        counter += 1


class Step:
    """A LinkNet, its optimizer and one batch: :meth:`run` is one training step of ``fit``'s default path."""

    def __init__(self, size: int, batch_size: int) -> None:
        seed_everything(0)
        device = torch.device("cpu")
        channels_last = default_channels_last(device)
        self.model = LinkNet().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        self.train = Train(loss="bce+dice", amp="auto", channels_last=channels_last)
        image = torch.rand(batch_size, 3, size, size)
        label = (torch.rand(batch_size, 1, size, size) < 0.1).float()
        self.batches = [(image, label, torch.ones_like(label))]

    def run(self) -> None:
        self.train.run_epoch(self.model, self.batches, self.optimizer)


def time_threads(step: Step, thread_counts: list[int], rounds: int) -> dict[int, list[float]]:
    """Seconds of each step per thread count; the counts take turns, after one warm-up step each."""
    seconds: dict[int, list[float]] = {threads: [] for threads in thread_counts}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        step.run()
    for _ in range(rounds):
        for threads in thread_counts:
            torch.set_num_threads(threads)
            start = time.perf_counter()
            step.run()
            seconds[threads].append(time.perf_counter() - start)
    return seconds


def measure(rounds: int, thread_counts: list[int], busy: bool) -> dict[str, Any]:
    """Every workload at every thread count, with or without one competing busy process."""
    competitor: Optional[multiprocessing.Process] = None
    if busy:
        competitor = multiprocessing.Process(target=busy_loop, args=(3600.0,), daemon=True)
        competitor.start()
        time.sleep(0.5)
    results: dict[str, Any] = {}
    try:
        for name, (size, batch_size) in WORKLOADS.items():
            # The full workload takes seconds per step: fewer rounds give a stable median.
            workload_rounds = rounds if name == "smoke" else max(3, rounds // 2)
            seconds = time_threads(Step(size, batch_size), thread_counts, workload_rounds)
            medians = {threads: statistics.median(times) for threads, times in seconds.items()}
            results[name] = {
                "size": size, "batch_size": batch_size,
                "median_step_s": {str(threads): medians[threads] for threads in thread_counts},
                "steps_s": {str(threads): times for threads, times in seconds.items()},
                "ratio_vs_1_thread": {str(threads): medians[threads] / medians[1] for threads in thread_counts},
                "load_average": [round(value, 2) for value in os.getloadavg()],
            }
            summary = ", ".join(f"{threads} thread(s) {1000 * medians[threads]:.0f} ms"
                                for threads in thread_counts)
            print(f"  {name:6} {size}x{size} batch {batch_size}: {summary}; "
                  f"ratio {thread_counts[-1]} / 1 thread = {medians[thread_counts[-1]] / medians[1]:.2f}",
                  flush=True)
    finally:
        if competitor is not None:
            competitor.terminate()
            competitor.join()
    return results


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed steps per thread count (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every number as JSON")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    thread_counts = sorted({1, cores})
    report: dict[str, Any] = {
        "cpu_count": cores, "torch": torch.__version__, "default_amp": default_amp("cpu"),
        "channels_last": default_channels_last("cpu"), "rounds": args.rounds,
        "load_average_start": [round(value, 2) for value in os.getloadavg()],
    }
    print(f"torch {torch.__version__}, {cores} cores, amp {report['default_amp']}, "
          f"channels_last {report['channels_last']}, load average {report['load_average_start']}")
    for condition, busy in (("quiet", False), ("one core busy", True)):
        print(f"{condition}:", flush=True)
        report[condition] = measure(args.rounds, thread_counts, busy)
    report["load_average_end"] = [round(value, 2) for value in os.getloadavg()]
    if args.json is not None:
        write_atomically(args.json, lambda path: path.write_text(json.dumps(report, indent=2)))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
