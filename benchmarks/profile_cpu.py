"""Where does a LinkNet training step spend its time, and how far is it from the machine's limit?

    python benchmarks/profile_cpu.py [--size 512] [--batch-size 4] [--steps 3] [--json OUT]

Three measurements, in one run, of the trainer's step in the fast path
(bfloat16 autocast + channels-last, :meth:`retina_lib.epoch_loop.Train.run_epoch`):

* **the ceiling**: a large bfloat16 matrix product (``torch.matmul``), the
  fastest thing PyTorch does on this machine, in TFLOP/s. On a CPU with AMX
  this is the practical limit for convolutions too (oneDNN runs them on the
  same tiles); the theoretical peak (2,048 bfloat16 FLOP per cycle and core
  for AMX) is printed next to it.
* **by operation type**: ``torch.profiler`` over a few steps, each aten
  operation's own ("self") CPU time, grouped into convolutions, their
  backward, batch norm, element-wise work, dtype/layout conversions, the
  optimizer and the rest.
* **by layer**: each top-level block of LinkNet (``initial``, ``encoder1``..)
  timed alone, forward and backward, on inputs of the shapes it sees in the
  network, with its FLOPs counted by ``torch.utils.flop_counter``: the
  achieved TFLOP/s per block, against the ceiling.

The FLOPs of a whole training step are counted the same way (forward and
backward), not assumed to be 3x the forward.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Optional

import torch
from torch import Tensor, nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retina_lib.system.hardware import seed_everything  # noqa: E402
from retina_lib.epoch_loop import Train  # noqa: E402
from retina_lib.model import LinkNet  # noqa: E402
from retina_lib.system.files import write_atomically  # noqa: E402

from bench import count_flops, matmul_tflops  # noqa: E402  (benchmarks/bench.py, next to this file)

CPU = torch.device("cpu")  # what this profile measures

#: AMX multiplies 16x32 by 32x16 bfloat16 tiles: 1,024 multiply-adds (2,048 FLOP) per cycle and core.
AMX_BF16_FLOP_PER_CYCLE = 2048

#: Operation types, matched in this order against the aten operation's name (operations
#: that run inside ``Optimizer.step`` count as the optimizer's, whatever their name).
OP_GROUPS = (
    ("convolution backward", ("convolution_backward", "mkldnn_convolution_backward")),
    ("convolution", ("convolution", "conv2d", "conv_transpose")),
    ("batch norm", ("batch_norm",)),
    ("dtype/layout conversion", ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::contiguous",
                                 "aten::empty_strided", "reorder")),
    ("element-wise (ReLU, adds, max-pool)", ("relu", "clamp_min", "threshold_backward", "aten::add",
                                            "max_pool")),
    ("loss and metrics", ("sigmoid", "aten::sum", "aten::mean", "aten::ge", "aten::stack", "binary_cross")),
)


OPTIMIZER_GROUP = "optimizer (Adam)"


def inside_optimizer(event: Any) -> bool:
    """Whether a profiler event ran inside ``Optimizer.step`` (or is that call)."""
    while event is not None:
        if event.name.startswith("Optimizer.step"):
            return True
        event = event.cpu_parent
    return False


def op_group(name: str) -> str:
    """The group of :data:`OP_GROUPS` an aten operation belongs to ("other" if none)."""
    for group, patterns in OP_GROUPS:
        if any(pattern in name for pattern in patterns):
            return group
    return "other"


# --------------------------------------------------------------------------
# The ceiling
# --------------------------------------------------------------------------

def cpu_mhz() -> Optional[float]:
    """The nominal clock (from the model name or /proc/cpuinfo's "cpu MHz"); None where unknown."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        return None
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("cpu MHz"):
            return float(line.partition(":")[2])
    return None


# --------------------------------------------------------------------------
# One training step
# --------------------------------------------------------------------------

def training_setup(size: int, batch_size: int) -> tuple[nn.Module, torch.optim.Optimizer, Train, list]:
    """LinkNet, Adam and one batch on the CPU in the fast path (bf16 autocast + channels-last)."""
    seed_everything(0)
    model = LinkNet().to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    train = Train(loss="dice+iou", amp="bf16", channels_last=True)
    image = torch.rand(batch_size, 3, size, size)
    label = (torch.rand(batch_size, 1, size, size) < 0.1).float()
    return model, optimizer, train, [(image, label, torch.ones_like(label))]


def profile_ops(size: int, batch_size: int, steps: int) -> tuple[float, dict[str, float], list[dict[str, Any]]]:
    """(ms per step, ms per operation group per step, the top operations) from torch.profiler."""
    model, optimizer, train, batches = training_setup(size, batch_size)
    train.run_epoch(model, batches, optimizer)  # warm-up: oneDNN picks its kernels, Adam creates its state
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(steps):
            train.run_epoch(model, batches, optimizer)
    step_ms = 1000 * (time.perf_counter() - start) / steps
    groups: dict[str, float] = defaultdict(float)
    by_op: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for event in profiler.events():
        group = OPTIMIZER_GROUP if inside_optimizer(event) else op_group(event.name)
        self_ms = event.self_cpu_time_total / 1000 / steps
        groups[group] += self_ms
        by_op[(event.name, group)][0] += self_ms
        by_op[(event.name, group)][1] += 1
    operations = [{"op": name, "group": group, "self_ms_per_step": self_ms, "calls_per_step": calls / steps}
                  for (name, group), (self_ms, calls) in by_op.items()]
    operations.sort(key=lambda op: -op["self_ms_per_step"])
    return step_ms, dict(groups), operations


# --------------------------------------------------------------------------
# Per layer
# --------------------------------------------------------------------------

def block_inputs(model: LinkNet, image: Tensor) -> dict[str, Tensor]:
    """The input each top-level block of ``model`` receives in a forward pass of ``image``."""
    inputs: dict[str, Tensor] = {}
    hooks = [module.register_forward_pre_hook(lambda m, args, name=name: inputs.__setitem__(name, args[0].detach()))
             for name, module in model.named_children()]
    with torch.no_grad():
        model(image)
    for hook in hooks:
        hook.remove()
    return inputs


def time_block(block: nn.Module, x: Tensor, repeats: int, input_gradient: bool) -> tuple[float, float, float, float]:
    """(forward ms, backward ms, forward FLOPs, backward FLOPs) of ``block`` on ``x`` in bf16 autocast.

    ``input_gradient``: whether the backward also computes the gradient of
    ``x`` (every block but the first: training needs no gradient of the image).
    """
    x = x.clone().requires_grad_(input_gradient)

    def forward() -> Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return block(x)

    out = forward()
    grad = torch.ones_like(out)
    with FlopCounterMode(display=False) as forward_counter:
        out = forward()
    with FlopCounterMode(display=False) as backward_counter:
        out.backward(grad)
    forward_ms, backward_ms = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        out = forward()
        middle = time.perf_counter()
        out.backward(grad)
        end = time.perf_counter()
        forward_ms.append(1000 * (middle - start))
        backward_ms.append(1000 * (end - middle))
    return (statistics.median(forward_ms), statistics.median(backward_ms),
            forward_counter.get_total_flops(), backward_counter.get_total_flops())


def profile_blocks(size: int, batch_size: int, repeats: int) -> list[dict[str, Any]]:
    """Forward and backward time and FLOPs of each top-level block of LinkNet, in the fast path."""
    seed_everything(0)
    model = LinkNet().to(memory_format=torch.channels_last).train()
    image = torch.rand(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inputs = block_inputs(model, image)
    rows = []
    for name, block in model.named_children():
        forward_ms, backward_ms, forward_flops, backward_flops = time_block(block, inputs[name], repeats,
                                                                           input_gradient=name != "initial")
        rows.append({"block": name, "input_shape": list(inputs[name].shape),
                     "forward_ms": forward_ms, "backward_ms": backward_ms,
                     "forward_gflop": forward_flops / 1e9, "backward_gflop": backward_flops / 1e9,
                     "tflop_s": (forward_flops + backward_flops) / (forward_ms + backward_ms) / 1e9})
    return rows


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="profiled training steps (default: %(default)s)")
    parser.add_argument("--matmul-size", type=int, default=4096,
                        help="side of the ceiling's largest matrices (half of it is measured too)")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args(argv)

    report: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(),
                              "cpu_count": os.cpu_count(), "load_average_start": list(os.getloadavg()),
                              "size": args.size, "batch_size": args.batch_size}
    mhz = cpu_mhz()
    report["cpu_mhz"] = mhz
    cores = torch.get_num_threads()
    report["amx_peak_tflop_s"] = AMX_BF16_FLOP_PER_CYCLE * mhz * 1e6 * cores / 1e12 if mhz else None
    sides = (args.matmul_size // 2, args.matmul_size)
    report["matmul_bf16_tflop_s"] = {n: matmul_tflops(CPU, n, torch.bfloat16, repeats=5) for n in sides}
    report["matmul_fp32_tflop_s"] = {n: matmul_tflops(CPU, n, torch.float32, repeats=3) for n in sides}
    ceiling = max(report["matmul_bf16_tflop_s"].values())  # the practical ceiling: the best we saw
    report["ceiling_tflop_s"] = ceiling
    print(f"torch {torch.__version__}, {cores} threads, load average {report['load_average_start']}")
    print("ceiling: matrix products " + ", ".join(
        f"{n}^3 {report['matmul_bf16_tflop_s'][n]:.2f} TFLOP/s bf16 / {report['matmul_fp32_tflop_s'][n]:.2f} fp32"
        for n in sides) + "; AMX theoretical "
          f"{report['amx_peak_tflop_s'] or float('nan'):.1f} TFLOP/s ({AMX_BF16_FLOP_PER_CYCLE} FLOP/cycle/core "
          f"x {mhz} MHz x {cores} cores)", flush=True)

    flops = {key: value * args.batch_size for key, value in count_flops("linknet", args.size).items()}
    flops["step"] = flops.pop("training_step")
    report["flops"] = flops
    step_ms, groups, operations = profile_ops(args.size, args.batch_size, args.steps)
    achieved = flops["step"] / (step_ms / 1000) / 1e12
    report.update(step_ms=step_ms, step_tflop_s=achieved, fraction_of_matmul=achieved / ceiling,
                  groups_ms=groups, top_ops=operations[:25])
    print(f"training step, batch {args.batch_size} at {args.size}: {step_ms:.0f} ms, "
          f"{flops['step'] / 1e9:.1f} GFLOP (forward {flops['forward'] / 1e9:.1f}) -> {achieved:.3f} TFLOP/s, "
          f"{100 * achieved / ceiling:.0f}% of the bf16 matmul", flush=True)
    print("self CPU time by operation type, ms per step:")
    for group, ms in sorted(groups.items(), key=lambda item: -item[1]):
        print(f"  {group:40} {ms:8.1f}  {100 * ms / step_ms:5.1f}%")
    print("top operations (self ms per step, calls per step):")
    for op in operations[:15]:
        print(f"  {op['op']:45} {op['self_ms_per_step']:8.1f}  {op['calls_per_step']:6.0f}  [{op['group']}]")

    blocks = profile_blocks(args.size, args.batch_size, repeats=max(2, args.steps))
    report["blocks"] = blocks
    print("by block (bf16 autocast + channels-last, each alone):")
    print(f"  {'block':16}{'fwd ms':>9}{'bwd ms':>9}{'GFLOP':>9}{'TFLOP/s':>9}{'of ceiling':>12}")
    for row in blocks:
        gflop = row["forward_gflop"] + row["backward_gflop"]
        print(f"  {row['block']:16}{row['forward_ms']:9.1f}{row['backward_ms']:9.1f}{gflop:9.1f}"
              f"{row['tflop_s']:9.2f}{100 * row['tflop_s'] / ceiling:11.0f}%")
    total = sum(row["forward_ms"] + row["backward_ms"] for row in blocks)
    print(f"  blocks together {total:.0f} ms of the {step_ms:.0f} ms step")
    report["load_average_end"] = list(os.getloadavg())
    if args.json is not None:
        write_atomically(args.json, lambda path: path.write_text(json.dumps(report, indent=2)))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
