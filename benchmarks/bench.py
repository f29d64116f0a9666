"""How fast is training, inference and data loading on this machine? One run measures it all.

    python benchmarks/bench.py [--device auto] [--json OUT]

Measured at 512 x 512 on one device, in one run (so ratios compare like with like):

* **training throughput** (images/s) of LinkNet and of the U-Net the original
  course material trained, each in the *plain* path (float32, contiguous
  tensors) and the *fast* path that :func:`retina_lib.fit` uses by default on
  this device (see :func:`retina_lib.epoch_loop.default_amp` and
  :func:`retina_lib.epoch_loop.default_channels_last`), at batch 4 and at the best
  batch size found. A step is exactly the trainer's step:
  :meth:`retina_lib.epoch_loop.Train.run_epoch` on batches already on the device.
* **inference**: :func:`retina_lib.scoring.inference.predict` on one photograph of
  DRIVE's size (565 x 584) and one of CHASE_DB1's (999 x 960), and the Frangi
  filter on the same pictures (always on the CPU: it is numpy code).
* **data loading**: augmented training images per second from
  :class:`~retina_lib.data.SegmentationDataset` in one process (what
  ``fit`` uses with ``num_workers=0``) and from
  :class:`~retina_lib.training.resident_batches.ResidentBatches` (data resident on the device).
* **peak memory** of each measurement: the process's peak resident set size
  (RSS) on the CPU, the peak memory allocated by PyTorch on a GPU.
* **the peer**, when ``segmentation_models_pytorch`` is importable (optional,
  never a dependency of the course): its ``Linknet("resnet18",
  encoder_weights=None, classes=1)``, the LinkNet a user would otherwise pick,
  beside ours: parameters, FLOPs, training images/s in both paths and
  inference latency, with the ratios. Without the package the section is
  skipped with a message saying so. ``--peer-only`` runs this section alone.

Timing uses only the standard library: ``time.perf_counter`` around each
repeat, after warm-up runs, waiting for the GPU to finish (``synchronize``)
before reading the clock; the reported number is the median of the repeats.
Slow measurements stop repeating after ``max_seconds`` (the JSON records how
many repeats each number is the median of). The training paths compared at
one batch size take turns, one repeat each per round, so that other programs
competing for a shared CPU slow all of them alike; the load average is
recorded with every number.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

# Run from a checkout without installing: make the package next to this folder importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retina_lib.baselines import frangi_vesselness  # noqa: E402
from retina_lib.data import SegmentationDataset  # noqa: E402
from retina_lib.data.synthetic import make_fundus  # noqa: E402
from retina_lib.system.hardware import pick_device, seed_everything  # noqa: E402
from retina_lib.epoch_loop import Train  # noqa: E402
from retina_lib.system.hardware import (  # noqa: E402
    autocast_dtype, cpu_supports_bf16, default_amp, default_channels_last,
)
from retina_lib.training.resident_batches import ResidentBatches  # noqa: E402
from retina_lib.scoring.inference import predict  # noqa: E402
from retina_lib.model import LinkNet, count_parameters  # noqa: E402
from retina_lib.unet import UNet  # noqa: E402
from retina_lib.system.files import write_atomically  # noqa: E402

MODELS: dict[str, Callable[[], nn.Module]] = {"linknet": LinkNet, "unet": UNet}

#: The peer: segmentation_models_pytorch's LinkNet with the same ResNet-18 encoder, untrained like ours.
PEER = "smp_linknet"
PEER_DESCRIPTION = 'segmentation_models_pytorch.Linknet("resnet18", encoder_weights=None, classes=1)'

#: Native sizes (height, width) of the photographs predict is timed on.
PHOTO_SIZES = {"drive": (584, 565), "chase": (960, 999)}

#: A larger batch counts as better only if it is at least this much faster.
BATCH_GAIN_NEEDED = 1.05


# --------------------------------------------------------------------------
# Settings per device
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Settings:
    """How much to repeat: a GPU step takes milliseconds, a CPU step of the U-Net most of a minute."""

    warmup: int  # untimed runs first (memory allocation, kernel selection)
    repeats: int  # timed runs; the median is reported
    max_seconds: float  # stop repeating once the timed runs took this long (at least one run)
    train_steps: int  # optimizer steps per timed training run
    batch_sizes: dict[str, tuple[int, ...]]  # candidates for the best batch size, per model
    predict_repeats: int
    data_items: int  # augmented images per timed data-loading run
    device_data_items: int  # the same for ResidentBatches
    peer_repeats: int  # timed rounds of the comparison with segmentation_models_pytorch


CPU_SETTINGS = Settings(warmup=1, repeats=3, max_seconds=30.0, train_steps=1,
                        batch_sizes={"linknet": (2, 4, 8), "unet": (4,)},
                        predict_repeats=5, data_items=24, device_data_items=24, peer_repeats=5)
GPU_SETTINGS = Settings(warmup=3, repeats=5, max_seconds=30.0, train_steps=10,
                        batch_sizes={"linknet": (4, 8, 16, 32, 64, 128), "unet": (4, 8, 16, 32, 64)},
                        predict_repeats=20, data_items=48, device_data_items=1024, peer_repeats=10)
#: ``--quick``: only checks that every part of the script runs (numbers mean nothing).
QUICK_SETTINGS = Settings(warmup=0, repeats=1, max_seconds=0.0, train_steps=1,
                          batch_sizes={"linknet": (1, 2), "unet": (1,)},
                          predict_repeats=1, data_items=4, device_data_items=8, peer_repeats=1)


@dataclass(frozen=True)
class TrainPath:
    """One way to run the same training step."""

    name: str
    amp: str  # as fit's amp argument
    channels_last: bool


def train_paths(device: torch.device) -> list[TrainPath]:
    """The plain float32 path, and the fast path fit uses by default on ``device``."""
    return [TrainPath("plain", amp="off", channels_last=False),
            TrainPath("fast", amp=default_amp(device), channels_last=default_channels_last(device))]


def half_paths(device: torch.device) -> list[TrainPath]:
    """Each half of the fast path alone (mixed precision only, channels-last only): which half helps?"""
    fast = train_paths(device)[1]
    halves = []
    if fast.amp != "off":
        halves.append(TrainPath("amp only", amp=fast.amp, channels_last=False))
    halves.append(TrainPath("channels_last only", amp="off", channels_last=True))
    return halves


def peer_linknet() -> nn.Module:
    """segmentation_models_pytorch's LinkNet; ImportError when the (optional) package is not installed."""
    import segmentation_models_pytorch as smp

    return smp.Linknet("resnet18", encoder_weights=None, classes=1)


def peer_missing() -> Optional[str]:
    """Why the peer comparison cannot run (the package is missing or broken), or None when it can."""
    try:
        import segmentation_models_pytorch  # noqa: F401
    except Exception as error:  # noqa: BLE001 - a broken install fails in many ways; the message says which
        return f"segmentation_models_pytorch cannot be imported ({type(error).__name__}: {error})"
    return None


def build_model(name: str) -> nn.Module:
    """A fresh network by benchmark name: one of :data:`MODELS`, or :data:`PEER`."""
    return peer_linknet() if name == PEER else MODELS[name]()


def count_flops(name: str, size: int) -> dict[str, float]:
    """FLOPs of one ``size`` x ``size`` image through the network ``name``: forward, backward and both.

    Counted by ``torch.utils.flop_counter`` on the meta device (shapes only,
    instant), a multiply-add counting 2. The backward is what training
    computes: gradients of the weights and of every activation except the
    input image, so a training step costs about 3x the forward.
    """
    with torch.device("meta"):
        model = build_model(name)
        image = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as forward:
        logits = model(image)
    with FlopCounterMode(display=False) as backward:
        logits.sum().backward()
    counts = {"forward": forward.get_total_flops(), "backward": backward.get_total_flops()}
    counts["training_step"] = counts["forward"] + counts["backward"]
    return counts


# --------------------------------------------------------------------------
# Timing and memory
# --------------------------------------------------------------------------

def synchronize(device: torch.device) -> None:
    """Wait until the device has finished the queued work (GPUs run asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def timed_run(work: Callable[[], Any], device: torch.device) -> float:
    """Seconds ``work`` takes, until the device has finished it."""
    start = time.perf_counter()
    work()
    synchronize(device)
    return time.perf_counter() - start


def timed_runs(work: Callable[[], Any], device: torch.device, settings: Settings) -> list[float]:
    """Seconds of each timed run of ``work``, after ``settings.warmup`` untimed ones."""
    for _ in range(settings.warmup):
        work()
    synchronize(device)
    return take_turns([work], device, settings.repeats, settings.max_seconds)[0]


def take_turns(works: list[Callable[[], Any]], device: torch.device, repeats: int,
               max_seconds: float) -> list[list[float]]:
    """Seconds of each timed run of each of ``works``, which take turns one run each per round.

    So that a change in the machine's load (other programs) slows them all
    alike and their ratios stay fair. Stops after ``repeats`` rounds, or
    earlier once one of them has taken ``max_seconds`` in all (at least one
    round). Warm-up is the caller's.
    """
    seconds: list[list[float]] = [[] for _ in works]
    while len(seconds[0]) < repeats:
        for work, times in zip(works, seconds):
            times.append(timed_run(work, device))
        if max(sum(times) for times in seconds) >= max_seconds:
            break
    return seconds


def matmul_tflops(device: torch.device, n: int, dtype: torch.dtype = torch.bfloat16, repeats: int = 10) -> float:
    """TFLOP/s of an n x n by n x n matrix product in ``dtype`` on ``device``: the practical ceiling.

    Median of ``repeats`` runs after 3 warm-ups; a matrix product of this
    size is the fastest work the device does, so a training step's TFLOP/s
    divided by this says how much of the achievable speed the step reaches.
    """
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    seconds = take_turns([lambda: a @ b], device, repeats=repeats, max_seconds=30.0)[0]
    return 2 * n**3 / statistics.median(seconds) / 1e12


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory measurement (see :func:`peak_memory_mb`)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    elif Path("/proc/self/clear_refs").exists():
        # Writing 5 resets the kernel's "peak RSS" (VmHWM) to the current RSS (Linux only).
        Path("/proc/self/clear_refs").write_text("5")


def peak_memory_mb(device: torch.device) -> Optional[float]:
    """Peak memory since :func:`reset_peak_memory`, in MiB, or None where it cannot be read.

    On a GPU: the most memory PyTorch had allocated. On the CPU: the process's
    peak resident set size (VmHWM, Linux), which includes Python, PyTorch and
    the data (a few hundred MiB) besides the measured work.
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    status = Path("/proc/self/status")
    if device.type == "cpu" and status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # the value is in kB
    return None


def free_memory(device: torch.device) -> None:
    """Give back what the last measurement left cached, so the next one starts clean."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------
# Training throughput
# --------------------------------------------------------------------------

class TrainingStep:
    """One model, optimizer and batch, set up for one path: :meth:`run` does ``train_steps`` trainer steps.

    ``compile_mode``: None (eager, as ``fit`` trains), or a ``torch.compile``
    mode ("default"; "reduce-overhead" adds CUDA graphs). ``fused_adam``:
    Adam's fused implementation (the same algorithm, fewer kernels) instead
    of the one ``fit`` creates.
    """

    def __init__(self, model_name: str, path: TrainPath, batch_size: int, size: int, device: torch.device,
                 train_steps: int, compile_mode: Optional[str] = None, fused_adam: bool = False) -> None:
        seed_everything(0)
        memory_format = torch.channels_last if path.channels_last else torch.contiguous_format
        self.model = build_model(model_name).to(device, memory_format=memory_format)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4, fused=fused_adam or None)
        if compile_mode is not None:
            self.model = torch.compile(self.model, mode=compile_mode)
        self.train = Train(loss="dice+iou", amp=path.amp, channels_last=path.channels_last)
        image = torch.rand(batch_size, 3, size, size, device=device)
        label = (torch.rand(batch_size, 1, size, size, device=device) < 0.1).float()
        self.batches = [(image, label, torch.ones_like(label))] * train_steps

    def run(self) -> None:
        self.train.run_epoch(self.model, self.batches, self.optimizer)


def compare_paths(model_name: str, paths: list[TrainPath], batch_size: int, size: int, device: torch.device,
                  settings: Settings, compile_model: bool = False) -> list[dict[str, Any]]:
    """Images per second of the trainer's step (forward, loss, backward, Adam) of one model in each path."""
    return compare_steps([(model_name, path) for path in paths], batch_size, size, device, settings,
                         compile_model=compile_model)


def compare_steps(contenders: list[tuple[str, TrainPath]], batch_size: int, size: int, device: torch.device,
                  settings: Settings, repeats: Optional[int] = None,
                  compile_model: bool = False) -> list[dict[str, Any]]:
    """Images per second of the trainer's step (forward, Dice + IoU loss, backward, Adam) of each (model, path).

    The contenders take turns, one timed run each per round (see
    :func:`take_turns`). Each one's peak memory is taken during its own
    warm-up (the models set up before it are still there: tens to hundreds
    of MiB).
    """
    steps, peaks = [], []
    for model_name, path in contenders:
        reset_peak_memory(device)
        step = TrainingStep(model_name, path, batch_size, size, device, settings.train_steps,
                            compile_mode="default" if compile_model else None)
        for _ in range(settings.warmup):
            step.run()
        synchronize(device)
        steps.append(step)
        peaks.append(peak_memory_mb(device))
    seconds = take_turns([step.run for step in steps], device, repeats or settings.repeats, settings.max_seconds)
    results = []
    for (model_name, path), times, peak in zip(contenders, seconds, peaks):
        median = statistics.median(times)
        results.append({
            "model": model_name, "path": path.name, "amp": path.amp, "channels_last": path.channels_last,
            "compiled": compile_model, "batch_size": batch_size,
            "img_s": batch_size * settings.train_steps / median,
            "step_ms": 1000 * median / settings.train_steps,
            "repeats": len(times), "peak_memory_mb": peak, "load_average": load_average(),
        })
    return results


def out_of_memory(error: BaseException) -> bool:
    """True for the errors a too-large batch raises (GPU and CPU allocators)."""
    return isinstance(error, torch.cuda.OutOfMemoryError) or "can't allocate memory" in str(error)


def batch_size_search(model_name: str, paths: list[TrainPath], size: int, device: torch.device,
                      settings: Settings, report: Callable[[dict[str, Any]], None]) -> list[dict[str, Any]]:
    """Measure the paths at growing batch sizes until memory runs out or larger batches stop paying off.

    Batch 4 (the original recipe's) is always measured. LinkNet at batch 4
    also times each half of the fast path alone (:func:`half_paths`).
    """
    results: list[dict[str, Any]] = []
    best: dict[str, float] = {}
    batch_sizes = sorted(set(settings.batch_sizes[model_name]) | {4})
    for batch_size in batch_sizes:
        measured = paths + (half_paths(device) if model_name == "linknet" and batch_size == 4 else [])
        try:
            found = compare_paths(model_name, measured, batch_size, size, device, settings)
        except RuntimeError as error:  # torch.cuda.OutOfMemoryError is one
            if not out_of_memory(error):
                raise
            found = None
        free_memory(device)  # outside the except block: the traceback no longer holds the tensors
        if found is None:
            print(f"  {model_name} batch {batch_size}: out of memory, stopping the search")
            break
        for result in found:
            report(result)
        results += found
        gains = [result["img_s"] >= best.get(result["path"], 0.0) * BATCH_GAIN_NEEDED for result in found
                 if result["path"] in {path.name for path in paths}]
        for result in found:
            best[result["path"]] = max(best.get(result["path"], 0.0), result["img_s"])
        if batch_size >= 4 and not any(gains):
            break  # no longer paying off: larger batches only cost memory
    return results


def compiled_throughput(size: int, device: torch.device, settings: Settings,
                        fast: TrainPath) -> dict[str, Any]:
    """LinkNet's fast path under ``torch.compile``, batch 4; a failure is reported, never hidden."""
    try:
        return compare_paths("linknet", [fast], 4, size, device, settings, compile_model=True)[0]
    except Exception as error:  # noqa: BLE001 - compile can fail in many ways; the message says which
        message = " ".join(str(error).split())[:300]
        print(f"  !!! torch.compile FAILED, no compiled number: {type(error).__name__}: {message}")
        return {"model": "linknet", "path": "fast+compile", "error": f"{type(error).__name__}: {message}"}
    finally:
        free_memory(device)


# --------------------------------------------------------------------------
# Inference and the Frangi baseline
# --------------------------------------------------------------------------

def predict_latency(device: torch.device, settings: Settings) -> dict[str, dict[str, Any]]:
    """Milliseconds per photograph for ``predict`` (LinkNet, float32, one image at a time)."""
    seed_everything(0)
    model = LinkNet().to(device).eval()
    results = {}
    for name, shape in PHOTO_SIZES.items():
        image = make_fundus(shape, seed=1).image
        reset_peak_memory(device)
        repeats = Settings(**{**asdict(settings), "repeats": settings.predict_repeats})
        seconds = timed_runs(lambda: predict(model, image), device, repeats)
        results[name] = {"ms": 1000 * statistics.median(seconds), "repeats": len(seconds),
                         "peak_memory_mb": peak_memory_mb(device), "height": shape[0], "width": shape[1]}
    free_memory(device)
    return results


def frangi_latency(settings: Settings) -> dict[str, dict[str, Any]]:
    """Milliseconds per photograph for the Frangi filter (numpy, on the CPU whatever the device)."""
    cpu = torch.device("cpu")
    results = {}
    for name, shape in PHOTO_SIZES.items():
        sample = make_fundus(shape, seed=1)
        seconds = timed_runs(lambda: frangi_vesselness(sample.image, sample.fov), cpu, settings)
        results[name] = {"ms": 1000 * statistics.median(seconds), "repeats": len(seconds)}
    return results


# --------------------------------------------------------------------------
# The peer: segmentation_models_pytorch's LinkNet beside ours
# --------------------------------------------------------------------------

#: The peer is compared at the course's batch size.
PEER_BATCH_SIZE = 4


class InferenceStep:
    """One network in eval mode and one image, set up for one path: :meth:`run` computes the logits once."""

    def __init__(self, model_name: str, path: TrainPath, size: int, device: torch.device) -> None:
        seed_everything(0)
        memory_format = torch.channels_last if path.channels_last else torch.contiguous_format
        self.model = build_model(model_name).to(device, memory_format=memory_format).eval()
        self.image = torch.rand(1, 3, size, size, device=device).contiguous(memory_format=memory_format)
        self.dtype = autocast_dtype(path.amp, device)
        self.device = device

    @torch.no_grad()
    def run(self) -> None:
        with torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
            self.model(self.image)


def peer_comparison(size: int, device: torch.device, settings: Settings,
                    paths: list[TrainPath]) -> dict[str, Any]:
    """Our LinkNet beside segmentation_models_pytorch's, in one run: size, FLOPs, training and inference speed.

    Training: the trainer's step at batch :data:`PEER_BATCH_SIZE`, each
    network in each path (the same bfloat16 autocast and channels-last for
    both in the fast path); all four take turns. Inference: logits of one
    ``size`` x ``size`` image in eval mode without gradients, likewise.
    Returns ``{"skipped": why}`` when the package is not installed.
    """
    missing = peer_missing()
    if missing is not None:
        print(f"peer comparison skipped: {missing}. It is optional; "
              "`pip install segmentation-models-pytorch` to compare with it.", flush=True)
        return {"skipped": missing}
    import segmentation_models_pytorch as smp

    names = ("linknet", PEER)
    report: dict[str, Any] = {"peer": PEER_DESCRIPTION, "smp_version": smp.__version__,
                              "batch_size": PEER_BATCH_SIZE, "size": size}
    report["parameters"] = {name: count_parameters(build_model(name)) for name in names}
    report["flops"] = {name: count_flops(name, size) for name in names}
    print(f"peer: {PEER_DESCRIPTION}, segmentation_models_pytorch {smp.__version__}", flush=True)
    for name in names:
        flops = report["flops"][name]
        print(f"  {name:12} {report['parameters'][name] / 1e6:6.2f}M parameters, forward "
              f"{flops['forward'] / 1e9:5.1f} GFLOP, training step {flops['training_step'] / 1e9:5.1f} GFLOP "
              f"per {size} x {size} image", flush=True)

    contenders = [(name, path) for path in paths for name in names]
    report["train"] = compare_steps(contenders, PEER_BATCH_SIZE, size, device, settings,
                                    repeats=settings.peer_repeats)
    free_memory(device)
    for result in report["train"]:
        print_training_row(result)

    steps = [InferenceStep(name, path, size, device) for name, path in contenders]
    for step in steps:
        for _ in range(max(1, settings.warmup)):
            step.run()
    synchronize(device)
    seconds = take_turns([step.run for step in steps], device, settings.predict_repeats, settings.max_seconds)
    report["inference"] = [{"model": name, "path": path.name, "ms": 1000 * statistics.median(times),
                            "repeats": len(times), "load_average": load_average()}
                           for (name, path), times in zip(contenders, seconds)]
    del steps
    free_memory(device)
    for result in report["inference"]:
        print(f"  {result['model']} {result['path']}: inference {result['ms']:.1f} ms per {size} x {size} image "
              f"({result['repeats']} repeats)", flush=True)

    def value(kind: str, name: str, path: TrainPath) -> float:
        key = "img_s" if kind == "train" else "ms"
        return next(r[key] for r in report[kind] if r["model"] == name and r["path"] == path.name)

    report["ratios"] = {}
    for path in paths:
        report["ratios"][f"ours / smp, training img/s, {path.name}"] = ratio(
            value("train", "linknet", path), value("train", PEER, path))
        report["ratios"][f"smp / ours, inference ms, {path.name}"] = ratio(
            value("inference", PEER, path), value("inference", "linknet", path))
    report["ratios"]["ours / smp, forward FLOPs"] = ratio(report["flops"]["linknet"]["forward"],
                                                          report["flops"][PEER]["forward"])
    report["ratios"]["ours / smp, parameters"] = ratio(report["parameters"]["linknet"], report["parameters"][PEER])
    for key, value_ in report["ratios"].items():
        print(f"  {key:44} {value_:6.2f}", flush=True)
    return report


# --------------------------------------------------------------------------
# Data loading
# --------------------------------------------------------------------------

def data_throughput(size: int, device: torch.device, settings: Settings) -> dict[str, dict[str, Any]]:
    """Augmented training images per second: CPU dataset (resize and crop modes) and ResidentBatches."""
    drive_like = [make_fundus(PHOTO_SIZES["drive"], seed=seed) for seed in range(4)]
    chase_like = [make_fundus(PHOTO_SIZES["chase"], seed=seed) for seed in range(4)]
    results = {}
    for name, pictures, mode in (("dataset_resize", drive_like, "resize"), ("dataset_crop", chase_like, "crop")):
        dataset = SegmentationDataset(pictures, mode=mode, size=size, augment=True,
                                      samples_per_epoch=settings.data_items)
        loader = DataLoader(dataset, batch_size=4, shuffle=True, num_workers=0)
        seconds = timed_runs(lambda: [batch for batch in loader], torch.device("cpu"), settings)
        results[name] = {"img_s": settings.data_items / statistics.median(seconds), "repeats": len(seconds),
                         "where": "cpu, 1 process", "mode": mode}

    batches = ResidentBatches(drive_like, batch_size=4, mode="resize", size=size, device=device,
                            samples_per_epoch=settings.device_data_items)
    epochs = iter(range(1, 1_000_000))

    def one_epoch() -> None:
        batches.set_epoch(next(epochs))
        for _ in batches:
            pass

    reset_peak_memory(device)
    seconds = timed_runs(one_epoch, device, settings)
    results["device_batches"] = {"img_s": settings.device_data_items / statistics.median(seconds),
                                 "repeats": len(seconds), "where": str(device), "mode": "resize",
                                 "peak_memory_mb": peak_memory_mb(device)}
    del batches
    free_memory(device)
    return results


# --------------------------------------------------------------------------
# The machine
# --------------------------------------------------------------------------

def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform says."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def load_average() -> Optional[list[float]]:
    """The 1, 5 and 15 minute load averages (other programs competing for the CPU), where known."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def describe_machine(device: torch.device) -> dict[str, Any]:
    machine: dict[str, Any] = {
        "device": str(device),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_supports_bf16": cpu_supports_bf16(),
        "load_average_start": load_average(),
    }
    if device.type == "cuda":
        machine["gpu"] = torch.cuda.get_device_name(device)
        machine["cuda"] = torch.version.cuda
        machine["cudnn"] = torch.backends.cudnn.version()
        machine["tf32_convolutions"] = torch.backends.cudnn.allow_tf32
        machine["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    return machine


# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------

def memory_text(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:,.0f} MiB"


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    return numerator / denominator if numerator and denominator else None


def print_training_row(result: dict[str, Any]) -> None:
    label = f"{result['model']} {result['path']} (amp {result['amp']}, channels_last {result['channels_last']})"
    print(f"  {label:52} batch {result['batch_size']:>3}  {result['img_s']:9.2f} img/s  "
          f"{result['step_ms']:9.1f} ms/step  peak {memory_text(result['peak_memory_mb'])}  "
          f"({result['repeats']} repeats, load {result['load_average'][0] if result['load_average'] else 'n/a'})",
          flush=True)


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The final table: one line per number that matters, then the ratios."""
    lines = [f"{'':50}{'value':>14}"]
    for key, value in report.get("train_img_s", {}).items():
        lines.append(f"{'train ' + key + ' (batch 4), img/s':50}{value:14.2f}")
    for key, best in report.get("train_best", {}).items():
        label = f"train {key} best (batch {best['batch_size']}), img/s"
        lines.append(f"{label:50}{best['img_s']:14.2f}")
    for key, value in report.get("predict_ms", {}).items():
        lines.append(f"{'predict ' + key + ', ms/image':50}{value:14.1f}")
    for key, value in report.get("frangi_ms", {}).items():
        lines.append(f"{'frangi ' + key + ', ms/image':50}{value:14.1f}")
    for key, value in report.get("data_img_s", {}).items():
        lines.append(f"{'data ' + key + ', img/s':50}{value:14.1f}")
    peer = report.get("peer", {})
    for result in peer.get("train", []):
        label = f"train {result['model']}_{result['path']} (batch {result['batch_size']}), img/s"
        lines.append(f"{label:50}{result['img_s']:14.2f}")
    for result in peer.get("inference", []):
        label = f"infer {result['model']}_{result['path']} ({peer['size']}^2), ms/image"
        lines.append(f"{label:50}{result['ms']:14.1f}")
    if "skipped" in peer:
        lines.append(f"peer comparison skipped: {peer['skipped']}")
    lines.append("ratios:")
    for key, value in report["ratios"].items():
        lines.append(f"  {key:48}" + (f"{'n/a':>14}" if value is None else f"{value:14.2f}"))
    return lines


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def run(device: torch.device, size: int, settings: Settings, compile_model: bool,
        peer_only: bool = False) -> dict[str, Any]:
    """Every measurement (or, with ``peer_only``, only the comparison with the peer) into one report."""
    report: dict[str, Any] = {"machine": describe_machine(device), "size": size, "settings": asdict(settings)}
    paths = train_paths(device)
    report["paths"] = {path.name: asdict(path) for path in paths}
    print(f"device {device} ({report['machine'].get('gpu', report['machine']['cpu'])}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {report['machine']['load_average_start']}")
    print(f"fast path: amp={paths[1].amp}, channels_last={paths[1].channels_last}")
    if not peer_only:
        measure_course(report, device, size, settings, compile_model, paths)
    print("comparison with the LinkNet of segmentation_models_pytorch:", flush=True)
    report["peer"] = peer_comparison(size, device, settings, paths)
    report.setdefault("ratios", {}).update(report["peer"].get("ratios", {}))
    report["machine"]["load_average_end"] = load_average()
    return report


def measure_course(report: dict[str, Any], device: torch.device, size: int, settings: Settings,
                   compile_model: bool, paths: list[TrainPath]) -> None:
    """Training (LinkNet and U-Net), predict, Frangi and data loading, added to ``report``."""
    print(f"training throughput at {size} x {size}:", flush=True)
    runs: list[dict[str, Any]] = []
    for model_name in MODELS:
        runs += batch_size_search(model_name, paths, size, device, settings, print_training_row)
    report["train_halves"] = [r for r in runs if r["path"] not in {path.name for path in paths}]
    runs = [r for r in runs if r["path"] in {path.name for path in paths}]
    if compile_model:
        compiled = compiled_throughput(size, device, settings, paths[1])
        if "img_s" in compiled:
            print_training_row(compiled)
        report["train_compiled"] = compiled
    report["train_runs"] = runs

    def batch4(model_name: str, path_name: str) -> float:
        return next(r["img_s"] for r in runs if r["model"] == model_name and r["path"] == path_name
                    and r["batch_size"] == 4 and not r["compiled"])

    report["train_img_s"] = {f"{m}_{p.name}": batch4(m, p.name) for m in MODELS for p in paths}
    report["train_best"] = {}
    for model_name in MODELS:
        for path in paths:
            candidates = [r for r in runs if r["model"] == model_name and r["path"] == path.name]
            best = max(candidates, key=lambda r: r["img_s"])
            report["train_best"][f"{model_name}_{path.name}"] = {"batch_size": best["batch_size"],
                                                                 "img_s": best["img_s"]}

    print("inference (predict, float32, one photograph at a time):", flush=True)
    predicted = predict_latency(device, settings)
    for name, result in predicted.items():
        print(f"  {name} {result['width']} x {result['height']}: {result['ms']:.1f} ms "
              f"({1000 / result['ms']:.2f} img/s), peak {memory_text(result['peak_memory_mb'])}", flush=True)
    report["predict"] = predicted
    report["predict_ms"] = {name: result["ms"] for name, result in predicted.items()}
    report["predict_img_s"] = {name: 1000 / result["ms"] for name, result in predicted.items()}

    print("Frangi vesselness (numpy, CPU):", flush=True)
    frangi = frangi_latency(Settings(**{**asdict(settings), "repeats": min(settings.repeats, 3)}))
    for name, result in frangi.items():
        print(f"  {name}: {result['ms']:.1f} ms", flush=True)
    report["frangi_ms"] = {name: result["ms"] for name, result in frangi.items()}

    print("data loading (augmented training images):", flush=True)
    data = data_throughput(size, device, settings)
    for name, result in data.items():
        print(f"  {name} ({result['mode']}, {result['where']}): {result['img_s']:.1f} img/s", flush=True)
    report["data"] = data
    report["data_img_s"] = {name: result["img_s"] for name, result in data.items()}

    train, best = report["train_img_s"], report["train_best"]
    halves = {result["path"]: result["img_s"] for result in report["train_halves"]}
    report["ratios"] = {
        "linknet fast / plain (batch 4)": ratio(train["linknet_fast"], train["linknet_plain"]),
        "linknet amp only / plain (batch 4)": ratio(halves.get("amp only"), train["linknet_plain"]),
        "linknet channels_last only / plain (batch 4)": ratio(halves.get("channels_last only"),
                                                              train["linknet_plain"]),
        "unet fast / plain (batch 4)": ratio(train["unet_fast"], train["unet_plain"]),
        "linknet / unet, plain (batch 4)": ratio(train["linknet_plain"], train["unet_plain"]),
        "linknet / unet, fast (batch 4)": ratio(train["linknet_fast"], train["unet_fast"]),
        "linknet fast, best batch / batch 4": ratio(best["linknet_fast"]["img_s"], train["linknet_fast"]),
        "data (cpu, resize) / linknet fast training": ratio(data["dataset_resize"]["img_s"], train["linknet_fast"]),
        "data (device) / linknet fast training, best": ratio(data["device_batches"]["img_s"],
                                                             best["linknet_fast"]["img_s"]),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every number as JSON")
    parser.add_argument("--compile", action="store_true",
                        help="also time LinkNet's fast path under torch.compile (off by default: compiling "
                             "takes minutes and fails on some setups; a failure is printed, not hidden)")
    parser.add_argument("--quick", action="store_true",
                        help="check that every part runs: one repeat, tiny batch sizes (numbers mean nothing)")
    parser.add_argument("--size", type=int, default=512, help="training image side (default: %(default)s)")
    parser.add_argument("--peer-only", action="store_true",
                        help="only compare with segmentation_models_pytorch's LinkNet (skipped, with a message, "
                             "when that optional package is not installed)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    device = pick_device(args.device)
    settings = QUICK_SETTINGS if args.quick else (GPU_SETTINGS if device.type == "cuda" else CPU_SETTINGS)
    started = time.perf_counter()
    report = run(device, args.size, settings, args.compile, peer_only=args.peer_only)
    report["benchmark_seconds"] = time.perf_counter() - started
    print()
    print("\n".join(summary_lines(report)))
    print(f"benchmark took {report['benchmark_seconds']:.0f} s; load average at the end "
          f"{report['machine']['load_average_end']}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(args.json, lambda path: path.write_text(json.dumps(report, indent=2)))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
