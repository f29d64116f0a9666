"""LinkNet's best training throughput on one GPU, and how close it comes to the hardware's peak.

    python benchmarks/gpu_throughput.py [--device auto] [--budget-s 240] [--json OUT] [--tiny]

The trainer's step (:meth:`retina_lib.epoch_loop.Train.run_epoch`: forward, Dice
+ IoU loss, backward, Adam) at 512 x 512 in bfloat16 autocast + channels-last,
on batches already on the GPU, with Adam's fused implementation:

1. **eager, growing batch sizes** until memory runs out or a larger batch
   gains less than 5%: the best batch;
2. eager at the original recipe's batch 4, for reference;
3. at the best batch, the model under ``torch.compile`` (Inductor fuses
   batch norm, ReLU and the additions into generated kernels);
4. ``torch.compile(mode="reduce-overhead")`` (CUDA graphs: the kernels of a
   step are replayed with one launch) at the best batch and at batch 4,
   where launching kernels costs more than computing them.

Each number comes with the FLOPs it represents: the FLOPs of one training
step per image are counted from the model (``torch.utils.flop_counter``,
forward + backward, convolutions only), not assumed, and the achieved TFLOP/s
is given as a fraction of the GPU's dense bfloat16 peak from its datasheet
(989 TFLOP/s for an H100 or H200 SXM) and of a large bfloat16 matrix product
measured in the same run (the practical ceiling).

Compiling takes a minute or more; the script keeps to ``--budget-s``: a step
that would not fit in what is left is skipped and says so. The JSON is
rewritten after every measurement, so a run cut short still leaves its
numbers. ``--tiny`` checks the script on a CPU in a minute or two: 64 x 64
images, batches of 1 and 2 (the numbers mean nothing).
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retina_lib.system.hardware import pick_device  # noqa: E402
from retina_lib.system.files import write_atomically  # noqa: E402

from bench import (TrainingStep, TrainPath, count_flops, free_memory, load_average, matmul_tflops,  # noqa: E402
                   out_of_memory, peak_memory_mb, reset_peak_memory, synchronize, take_turns)

#: Dense bfloat16 tensor-core peak by GPU name, TFLOP/s, from the vendors' datasheets (SXM parts).
PEAK_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}

#: A larger batch counts as better only if it is at least this much faster.
BATCH_GAIN_NEEDED = 1.05

#: Seconds a compiled variant is expected to need before its first step (a guess, to stay in budget).
COMPILE_SECONDS = 60.0

#: Each timed run covers at least this many images (a GPU step at a small batch takes milliseconds).
IMAGES_PER_RUN = 512

FAST = TrainPath("fast", amp="bf16", channels_last=True)


def datasheet_peak(device: torch.device) -> Optional[float]:
    """The dense bf16 peak of ``device`` in TFLOP/s if its name is in :data:`PEAK_BF16_TFLOPS`, else None."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


class Session:
    """The measurements so far, the time budget, and the JSON they are written to."""

    def __init__(self, device: torch.device, size: int, budget_s: float, json_path: Optional[Path],
                 tiny: bool) -> None:
        self.device, self.size, self.tiny = device, size, tiny
        self.started = time.perf_counter()
        self.budget_s = budget_s
        self.json_path = json_path
        self.step_flops = count_flops("linknet", size)["training_step"]
        self.report: dict[str, Any] = {
            "device": str(device), "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "python": platform.python_version(), "size": size, "tiny": tiny,
            "path": "bf16 autocast + channels-last, fused Adam, trainer's step (Dice + IoU)",
            "training_step_gflop_per_image": self.step_flops / 1e9,
            "peak_bf16_tflop_s_datasheet": datasheet_peak(device), "results": [], "skipped": [],
        }

    def seconds_left(self) -> float:
        return self.budget_s - (time.perf_counter() - self.started)

    def save(self) -> None:
        self.report["elapsed_s"] = time.perf_counter() - self.started
        if self.json_path is not None:
            self.json_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.json_path, lambda path: path.write_text(json.dumps(self.report, indent=2)))

    def skip(self, what: str, why: str) -> None:
        print(f"  skipped {what}: {why}", flush=True)
        self.report["skipped"].append({"what": what, "why": why})
        self.save()

    def measure(self, batch_size: int, compile_mode: Optional[str]) -> Optional[dict[str, Any]]:
        """Images/s of the trainer's step at ``batch_size``; None when it runs out of memory or fails."""
        label = f"batch {batch_size}, {compile_mode or 'eager'}"
        steps_per_run = 1 if self.tiny else max(1, math.ceil(IMAGES_PER_RUN / batch_size))
        reset_peak_memory(self.device)
        failure = None
        try:
            step = TrainingStep("linknet", FAST, batch_size, self.size, self.device, steps_per_run,
                                compile_mode=compile_mode, fused_adam=True)
            warmup_started = time.perf_counter()
            step.run()  # compiles, when compiling
            synchronize(self.device)
            first_run_s = time.perf_counter() - warmup_started
            step.run()
            synchronize(self.device)
            seconds = take_turns([step.run], self.device, repeats=1 if self.tiny else 5, max_seconds=20.0)[0]
        except Exception as error:  # noqa: BLE001 - out of memory, or compile failing: reported, never hidden
            failure = error
        finally:
            step = None  # let the memory go before the next measurement
            free_memory(self.device)
        if failure is not None:
            kind = "out of memory" if out_of_memory(failure) else "failed"
            message = " ".join(str(failure).split())[:300]
            print(f"  {label}: {kind}: {type(failure).__name__}: {message}", flush=True)
            self.report["results"].append({"batch_size": batch_size, "compile": compile_mode, "error": kind,
                                           "message": f"{type(failure).__name__}: {message}"})
            self.save()
            return None
        median = statistics.median(seconds)
        img_s = batch_size * steps_per_run / median
        tflop_s = img_s * self.step_flops / 1e12
        result = {"batch_size": batch_size, "compile": compile_mode, "img_s": img_s,
                  "step_ms": 1000 * median / steps_per_run, "tflop_s": tflop_s,
                  "first_run_s": first_run_s, "repeats": len(seconds),
                  "peak_memory_mb": peak_memory_mb(self.device), "load_average": load_average()}
        peak, ceiling = self.report["peak_bf16_tflop_s_datasheet"], self.report.get("matmul_bf16_tflop_s")
        result["fraction_of_datasheet_peak"] = tflop_s / peak if peak else None
        result["fraction_of_matmul"] = tflop_s / ceiling if ceiling else None
        print(f"  {label:34} {img_s:9.1f} img/s  {result['step_ms']:8.2f} ms/step  {tflop_s:7.2f} TFLOP/s"
              + (f"  {100 * result['fraction_of_datasheet_peak']:5.1f}% of peak" if peak else "")
              + (f"  {100 * result['fraction_of_matmul']:5.1f}% of the matmul" if ceiling else "")
              + f"  (first run {first_run_s:.1f} s, peak memory {result['peak_memory_mb'] or 0:,.0f} MiB)",
              flush=True)
        self.report["results"].append(result)
        self.save()
        return result


def best_eager_batch(session: Session, batch_sizes: list[int]) -> Optional[dict[str, Any]]:
    """Measure eager at growing batch sizes until memory runs out or a larger batch stops paying off."""
    best: Optional[dict[str, Any]] = None
    for batch_size in batch_sizes:
        if session.seconds_left() < 15:
            session.skip(f"eager batch {batch_size}", "time budget spent")
            break
        result = session.measure(batch_size, compile_mode=None)
        if result is None:
            break
        if best is not None and result["img_s"] < best["img_s"] * BATCH_GAIN_NEEDED:
            best = max(best, result, key=lambda r: r["img_s"])
            break
        best = result if best is None or result["img_s"] > best["img_s"] else best
    return best


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-sizes", default="32,64,128,256,512", help="eager candidates, ascending")
    parser.add_argument("--budget-s", type=float, default=240.0, help="stop starting new steps after this")
    parser.add_argument("--no-compile", action="store_true", help="eager only")
    parser.add_argument("--json", type=Path, metavar="OUT")
    parser.add_argument("--tiny", action="store_true", help="a quick check on any device: 64 x 64, batches 1 and 2")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    size = 64 if args.tiny else args.size
    batch_sizes = [1, 2] if args.tiny else [int(b) for b in args.batch_sizes.split(",")]
    recipe_batch = 2 if args.tiny else 4
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # pick the fastest convolution algorithm per shape
    session = Session(device, size, args.budget_s, args.json, args.tiny)
    if device.type == "cuda":
        session.report["matmul_bf16_tflop_s"] = matmul_tflops(device, 8192)
    peak = session.report["peak_bf16_tflop_s_datasheet"]
    print(f"{session.report['gpu'] or device}, torch {torch.__version__}; training step "
          f"{session.step_flops / 1e9:.1f} GFLOP per {size} x {size} image (counted); dense bf16 peak "
          f"{peak or 'unknown'} TFLOP/s (datasheet), bf16 matmul "
          f"{session.report.get('matmul_bf16_tflop_s') or float('nan'):.0f} TFLOP/s (measured)", flush=True)
    session.save()

    print("eager, growing batch sizes:", flush=True)
    best = best_eager_batch(session, batch_sizes)
    session.report["best_eager"] = best
    best_batch = best["batch_size"] if best else recipe_batch
    # Cheapest first. The second compile at the best batch may reuse the first one's kernels (Inductor's cache).
    variants: list[tuple[int, Optional[str]]] = [(recipe_batch, None)]
    if not args.no_compile:
        variants.append((best_batch, "default"))
        if device.type == "cuda":
            variants += [(best_batch, "reduce-overhead"), (recipe_batch, "reduce-overhead")]
        else:
            session.skip("reduce-overhead (CUDA graphs)", f"no CUDA graphs on {device.type}")
    for batch_size, mode in variants:
        needed = COMPILE_SECONDS if mode else 15.0
        if session.seconds_left() < needed:
            session.skip(f"batch {batch_size}, {mode or 'eager'}",
                         f"{session.seconds_left():.0f} s of budget left, about {needed:.0f} s needed")
            continue
        session.measure(batch_size, mode)

    measured = [r for r in session.report["results"] if "img_s" in r]
    if measured:
        top = max(measured, key=lambda r: r["img_s"])
        session.report["best"] = top
        print(f"best: {top['img_s']:.1f} img/s at batch {top['batch_size']}, {top['compile'] or 'eager'}: "
              f"{top['tflop_s']:.1f} TFLOP/s"
              + (f" = {100 * top['fraction_of_datasheet_peak']:.1f}% of the datasheet peak" if peak else ""),
              flush=True)
    session.save()
    print(f"took {session.report['elapsed_s']:.0f} s" + (f"; wrote {args.json}" if args.json else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
