"""Which further changes make LinkNet's CPU training step faster? Each measured as a ratio, in one run.

    python benchmarks/cpu_gains.py [--size 512] [--batch-size 4] [--rounds 6] [--no-compile] [--json OUT]

Every variant trains its own copy of LinkNet from the same initial weights on
the same batch, in the fast path :func:`retina_lib.fit` uses on this CPU
(bfloat16 autocast + channels-last), with the trainer's own step
(:meth:`retina_lib.epoch_loop.Train.run_epoch`). They differ only in what the
issue suggested trying:

* **baseline**: ``torch.optim.Adam(params, lr)``, what ``fit`` creates
  (on the CPU, PyTorch then updates the parameters one tensor at a time);
* **Adam foreach**: the same algorithm on lists of tensors (fewer calls);
* **Adam fused**: the same algorithm in one fused kernel per parameter group;
* **compiled + Adam fused**: the model under ``torch.compile`` (Inductor
  generates C++ that fuses batch norm, ReLU and the additions; oneDNN still
  does the convolutions). Compiling happens in the warm-up and its seconds
  are reported apart: they are paid once per run (Inductor caches on disk).

The variants take turns, one step each per round, so other programs slow
them alike. A whole step varies by a few percent from one round to the next,
more than the optimizer's share, so the three Adam implementations are also
timed alone (``optimizer.step()`` on LinkNet's parameters with random
gradients, taking turns likewise). Training stays the same algorithm: the script also prints how far
each variant's losses drift from the baseline's over the measured steps
(bfloat16 and a different summation order are the only differences).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retina_lib.system.hardware import seed_everything  # noqa: E402
from retina_lib.epoch_loop import Train  # noqa: E402
from retina_lib.model import LinkNet  # noqa: E402
from retina_lib.system.files import write_atomically  # noqa: E402


@dataclass(frozen=True)
class Variant:
    """One way to run the same training step."""

    name: str
    adam: str  # "default", "foreach" or "fused"
    compiled: bool = False


VARIANTS = (Variant("baseline (fit today)", "default"), Variant("Adam foreach", "foreach"),
            Variant("Adam fused", "fused"), Variant("compiled + Adam fused", "fused", compiled=True))


def adam(model: nn.Module, kind: str) -> torch.optim.Adam:
    """Adam with lr 1e-4, implemented as ``kind`` says (the algorithm is the same for all three)."""
    options = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[kind]
    return torch.optim.Adam(model.parameters(), lr=1e-4, **options)


class Runner:
    """One variant's model, optimizer and trainer; :meth:`step` runs one trainer step and returns its loss."""

    def __init__(self, variant: Variant, batches: list) -> None:
        seed_everything(0)
        self.variant = variant
        self.model = LinkNet().to(memory_format=torch.channels_last)
        self.optimizer = adam(self.model, variant.adam)
        self.network = torch.compile(self.model) if variant.compiled else self.model
        self.train = Train(loss="dice+iou", amp="bf16", channels_last=True)
        self.batches = batches
        self.losses: list[float] = []
        self.seconds: list[float] = []

    def step(self, timed: bool) -> None:
        start = time.perf_counter()
        result = self.train.run_epoch(self.network, self.batches, self.optimizer)
        elapsed = time.perf_counter() - start
        self.losses.append(result.loss)
        if timed:
            self.seconds.append(elapsed)


def optimizer_step_ms(repeats: int) -> dict[str, float]:
    """Median ms of one ``optimizer.step()`` over LinkNet's parameters, per Adam implementation."""
    optimizers = {}
    for kind in ("default", "foreach", "fused"):
        seed_everything(0)
        model = LinkNet().to(memory_format=torch.channels_last)
        for parameter in model.parameters():
            parameter.grad = torch.randn_like(parameter)
        optimizers[kind] = adam(model, kind)
        optimizers[kind].step()  # creates the state (moments), not timed
    seconds: dict[str, list[float]] = {kind: [] for kind in optimizers}
    for _ in range(repeats):
        for kind, optimizer in optimizers.items():
            start = time.perf_counter()
            optimizer.step()
            seconds[kind].append(time.perf_counter() - start)
    return {kind: 1000 * statistics.median(times) for kind, times in seconds.items()}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6, help="timed steps per variant (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile variant")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args(argv)

    variants = [v for v in VARIANTS if not (v.compiled and args.no_compile)]
    seed_everything(1)
    image = torch.rand(args.batch_size, 3, args.size, args.size)
    label = (torch.rand(args.batch_size, 1, args.size, args.size) < 0.1).float()
    batches = [(image, label, torch.ones_like(label))]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size} at "
          f"{args.size} x {args.size}, bf16 autocast + channels-last; load average {os.getloadavg()}", flush=True)

    runners, warmup_seconds = [], {}
    for variant in variants:
        runner = Runner(variant, batches)
        start = time.perf_counter()
        for _ in range(args.warmup):
            runner.step(timed=False)
        warmup_seconds[variant.name] = time.perf_counter() - start
        print(f"  warm-up of {variant.name}: {warmup_seconds[variant.name]:.1f} s "
              f"({args.warmup} steps{', compiling included' if variant.compiled else ''})", flush=True)
        runners.append(runner)
    for _ in range(args.rounds):
        for runner in runners:
            runner.step(timed=True)

    baseline = runners[0]
    base_ms = 1000 * statistics.median(baseline.seconds)
    rows = []
    print(f"{'variant':28}{'ms/step':>10}{'img/s':>9}{'vs baseline':>13}{'max loss drift':>16}")
    for runner in runners:
        ms = 1000 * statistics.median(runner.seconds)
        drift = max(abs(a - b) / abs(b) for a, b in zip(runner.losses, baseline.losses))
        row = {"variant": runner.variant.name, "adam": runner.variant.adam, "compiled": runner.variant.compiled,
               "step_ms": ms, "img_s": args.batch_size * 1000 / ms, "speedup": base_ms / ms,
               "step_ms_all": [1000 * s for s in runner.seconds], "warmup_seconds": warmup_seconds[runner.variant.name],
               "losses": runner.losses, "max_relative_loss_drift": drift}
        rows.append(row)
        print(f"{row['variant']:28}{ms:10.1f}{row['img_s']:9.2f}{row['speedup']:12.2f}x{100 * drift:15.2f}%")
    optimizer_ms = optimizer_step_ms(repeats=20)
    print("Adam's step alone (LinkNet's 11.5M parameters), ms: " + ", ".join(
        f"{kind} {ms:.1f}" for kind, ms in optimizer_ms.items())
        + f"; fused saves {optimizer_ms['default'] - optimizer_ms['fused']:.1f} ms per step "
        f"({100 * (optimizer_ms['default'] - optimizer_ms['fused']) / base_ms:.1f}% of the baseline step)")
    report: dict[str, Any] = {"torch": torch.__version__, "threads": torch.get_num_threads(), "size": args.size,
                              "batch_size": args.batch_size, "rounds": args.rounds, "warmup": args.warmup,
                              "variants": rows, "optimizer_step_ms": optimizer_ms,
                              "load_average_end": list(os.getloadavg())}
    print(f"load average at the end {report['load_average_end']}")
    if args.json is not None:
        write_atomically(args.json, lambda path: path.write_text(json.dumps(report, indent=2)))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
