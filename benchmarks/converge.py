"""Does the fast training path still learn? Train LinkNet both ways on the same batches and compare.

    python benchmarks/converge.py [--device auto] [--steps 300] [--json OUT]

Mixed precision computes the network in bfloat16 (8 bits of mantissa instead
of float32's 23). That is only a free speed-up if training still converges
the same way. This script trains two LinkNets from the same initial weights
on the same sequence of augmented synthetic batches: one in the plain path
(float32, contiguous tensors), one in the fast path that ``fit`` uses by
default on this device. It draws both loss curves into
``benchmarks/converge.png`` and prints the final losses and the validation
Dice of both networks on held-out synthetic pictures.

The batches are 256 x 256 crops (a quarter of the pixels of the benchmark's
512 x 512, so that a few hundred steps take minutes on a laptop CPU) and the
learning rate is 1e-3 (the original 1e-4 needs thousands of steps to show
anything); the loss is the original Dice + IoU.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import matplotlib

matplotlib.use("Agg")  # write the PNG without needing a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retina_lib.data import SegmentationDataset, synthetic_dataset  # noqa: E402
from retina_lib.system.hardware import pick_device, seed_everything  # noqa: E402
from retina_lib.epoch_loop import Evaluate, Train
from retina_lib.system.hardware import default_amp, default_channels_last  # noqa: E402
from retina_lib.model import LinkNet  # noqa: E402
from retina_lib.system.files import write_atomically  # noqa: E402

HERE = Path(__file__).resolve().parent

#: Distinct batches drawn once and then cycled through (drawing augmented
#: crops costs about as much CPU time as a fast training step).
DISTINCT_BATCHES = 60

#: Final loss = mean over this many last steps (single steps are noisy).
FINAL_WINDOW = 30


def make_batches(size: int, batch_size: int, seed: int) -> tuple[list, list]:
    """Augmented training batches (crops of 8 synthetic pictures) and validation batches (4 other pictures)."""
    train_pictures = list(synthetic_dataset("train", n=8, size=512, seed=seed))
    val_pictures = list(synthetic_dataset("test", n=4, size=512, seed=seed))
    train_set = SegmentationDataset(train_pictures, mode="crop", size=size, augment=True,
                                    samples_per_epoch=DISTINCT_BATCHES * batch_size, seed=seed)
    val_set = SegmentationDataset(val_pictures, mode="resize", size=size, augment=False)
    return (list(DataLoader(train_set, batch_size=batch_size, shuffle=False)),
            list(DataLoader(val_set, batch_size=batch_size, shuffle=False)))


def train_one_path(amp: str, channels_last: bool, batches: list, val_batches: list, steps: int, lr: float,
                   device: torch.device, seed: int) -> dict[str, Any]:
    """Train a fresh LinkNet (same initial weights for every path) step by step; return its losses."""
    seed_everything(seed)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = LinkNet().to(device, memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    train = Train(loss="dice+iou", amp=amp, channels_last=channels_last)
    losses = []
    started = time.perf_counter()
    for step in range(steps):
        result = train.run_epoch(model, [batches[step % len(batches)]], optimizer)
        losses.append(result.loss)
    seconds = time.perf_counter() - started
    validation = Evaluate(loss="dice+iou", amp=amp, channels_last=channels_last).run_epoch(model, val_batches)
    return {"amp": amp, "channels_last": channels_last, "losses": losses, "seconds": seconds,
            "final_loss": float(np.mean(losses[-FINAL_WINDOW:])), "val_dice": validation.dice,
            "val_loss": validation.loss}


def plot(results: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    figure, axes = plt.subplots(figsize=(7, 4))
    for name, result in results.items():
        losses = np.asarray(result["losses"])
        smooth = np.convolve(losses, np.ones(10) / 10, mode="valid")
        line, = axes.plot(losses, alpha=0.25)
        axes.plot(np.arange(len(smooth)) + 9, smooth, color=line.get_color(),
                  label=f"{name} (amp {result['amp']}, channels_last {result['channels_last']}): "
                        f"final {result['final_loss']:.3f}, val Dice {result['val_dice']:.3f}")
    axes.set_xlabel("step")
    axes.set_ylabel("Dice loss + IoU loss")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, dpi=120, format="png"))
    plt.close(figure)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per path (default: %(default)s)")
    parser.add_argument("--size", type=int, default=256, help="crop side in pixels (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=4, help="default: %(default)s")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", type=Path, default=HERE / "converge.png", help="default: %(default)s")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the losses as JSON")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    paths = {"plain": ("off", False), "fast": (default_amp(device), default_channels_last(device))}
    batches, val_batches = make_batches(args.size, args.batch_size, args.seed)
    results = {}
    for name, (amp, channels_last) in paths.items():
        print(f"{name}: amp={amp}, channels_last={channels_last}, {args.steps} steps ...", flush=True)
        results[name] = train_one_path(amp, channels_last, batches, val_batches, args.steps, args.lr, device,
                                       args.seed)
        result = results[name]
        print(f"  {result['seconds']:.0f} s; loss: first {result['losses'][0]:.4f}, final (mean of the last "
              f"{FINAL_WINDOW}) {result['final_loss']:.4f}; validation Dice {result['val_dice']:.4f}", flush=True)

    title = (f"LinkNet on {device}, {args.size}x{args.size} crops, batch {args.batch_size}, lr {args.lr},\n"
             f"same initial weights and batches, torch {torch.__version__}")
    plot(results, args.png, title)
    print(f"final loss fast - plain: {results['fast']['final_loss'] - results['plain']['final_loss']:+.4f}; "
          f"validation Dice fast - plain: {results['fast']['val_dice'] - results['plain']['val_dice']:+.4f}")
    print(f"speed: fast took {results['fast']['seconds'] / results['plain']['seconds']:.2f} x the plain time")
    print(f"wrote {args.png}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"device": str(device), "torch": torch.__version__, **vars(args),
                           "png": str(args.png), "json": str(args.json), "results": results}, indent=1, default=str)
        write_atomically(args.json, lambda path: path.write_text(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
