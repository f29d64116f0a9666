"""The original course material's full training run, timed: about an hour on a Colab T4 then.

    python benchmarks/original_recipe_gpu.py [--device auto] [--data-dir ROOT] [--epochs 100] [--json OUT]
    python benchmarks/original_recipe_gpu.py --device cpu --epochs 1 --size 64 --images 8   # a quick check

The recipe, as the original material ran it: 80 training images of 512 x 512
(20 photographs, each also flipped left-right, flipped top-bottom and turned
half a turn, "offline"), batch 4, Dice loss + IoU loss, Adam at 1e-4, 100
epochs, a validation pass after every epoch. Here it is :func:`retina_lib.fit`
with LinkNet (the original trained a 31M-parameter U-Net), the data resident
on the device and augmented there (:class:`retina_lib.training.resident_batches.ResidentBatches`),
and the trainer's default fast path (bfloat16 autocast + channels-last).

The pictures are synthetic (80 training, 20 validation) unless ``--data-dir``
points at a data root holding CHASEDB1/: then 16 of its training photographs,
resized to 512 x 512 and augmented offline to 64, train, and the last 4
training photographs validate (the test split is never touched).

Timed: ``fit`` from start to end (moving the data to the device, every
training step, every validation pass; no checkpoints unless ``--out``), and
separately preparing the pictures on the CPU (drawing or reading, resizing).
Works on the CPU too: ``--device cpu --epochs 1`` checks the script quickly.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from retina_lib.data import SegmentationDataset, load_dataset, synthetic_dataset  # noqa: E402
from retina_lib.data.sample import Sample  # noqa: E402
from retina_lib.data.transforms import flip_horizontal, flip_vertical, resize, rotate90  # noqa: E402
from retina_lib.system.hardware import pick_device, seed_everything  # noqa: E402
from retina_lib.system.hardware import default_amp, default_channels_last  # noqa: E402
from retina_lib.model import LinkNet  # noqa: E402
from retina_lib.recipes import recipe  # noqa: E402
from retina_lib.training.trainer import fit, split_validation  # noqa: E402
from retina_lib.system.files import write_atomically  # noqa: E402

#: The original material's recipe (TrainConfig's defaults are the course's).
ORIGINAL = recipe("original")
SIZE = 512
#: Synthetic pictures: 80 train (the original's count), a quarter as many validate.
SYNTHETIC_IMAGES = 80


def offline_augmented(samples: list[Sample]) -> list[Sample]:
    """Each picture as it is, flipped left-right, flipped top-bottom and turned half a turn (4x as many)."""
    augmented = []
    for sample in samples:
        arrays = (sample.image, sample.label, sample.fov)
        versions = {"": arrays, "_lr": flip_horizontal(*arrays), "_tb": flip_vertical(*arrays),
                    "_rot180": rotate90(*arrays, quarter_turns=2)}
        for suffix, (image, label, fov) in versions.items():
            augmented.append(Sample(image=image.copy(), label=label.copy(), fov=fov.copy(), name=sample.name + suffix))
    return augmented


def resized(samples: list[Sample], size: int) -> list[Sample]:
    """Whole photographs scaled to size x size, as the original recipe did before anything else."""
    result = []
    for sample in samples:
        image, label, fov = resize(sample.image, sample.label, sample.fov, size)
        result.append(replace(sample, image=image, label=label, fov=fov, second_label=None))
    return result


def prepare_pictures(data_dir: Optional[Path], size: int = SIZE,
                     images: int = SYNTHETIC_IMAGES) -> tuple[list[Sample], list[Sample], str]:
    """(training pictures, validation pictures, a description), all size x size.

    Synthetic: ``images`` training pictures and a quarter as many validating.
    """
    if data_dir is None:
        val_images = max(1, images // 4)
        train = list(synthetic_dataset("train", n=images, size=size))
        val = list(synthetic_dataset("test", n=val_images, size=size))
        return train, val, f"synthetic: {images} training, {val_images} validation pictures"
    fit_part, val_part = split_validation(load_dataset("chase_db1", "train", root=data_dir), 4)
    train = offline_augmented(resized(fit_part, size))
    return train, resized(val_part, size), (f"CHASE_DB1 from {data_dir}: 16 training photographs x 4 offline, "
                                            "the last 4 training photographs validate")


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--data-dir", type=Path, metavar="ROOT", help="data root holding CHASEDB1/ (default: synthetic)")
    parser.add_argument("--epochs", type=int, default=ORIGINAL.epochs, help="default: %(default)s")
    parser.add_argument("--size", type=int, default=SIZE, help="picture side (default: %(default)s, the original's)")
    parser.add_argument("--images", type=int, default=SYNTHETIC_IMAGES,
                        help="synthetic training pictures (default: %(default)s, the original's)")
    parser.add_argument("--resident", choices=["on", "off"], default="on",
                        help="data stored and augmented on the device (default: %(default)s)")
    parser.add_argument("--out", type=Path, metavar="RUN_DIR", help="also write checkpoints there (slower)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the timings as JSON")
    args = parser.parse_args(argv)

    device = pick_device(args.device)
    started = time.perf_counter()
    train_pictures, val_pictures, described = prepare_pictures(args.data_dir, args.size, args.images)
    train_set = SegmentationDataset(train_pictures, mode="resize", size=args.size, augment=True, seed=ORIGINAL.seed)
    val_set = SegmentationDataset(val_pictures, mode="resize", size=args.size, augment=False, seed=ORIGINAL.seed)
    prepare_seconds = time.perf_counter() - started
    print(f"{described}; prepared on the CPU in {prepare_seconds:.1f} s", flush=True)

    seed_everything(ORIGINAL.seed)
    model = LinkNet()
    amp, channels_last = default_amp(device), default_channels_last(device)
    print(f"training on {device}: {args.epochs} epochs, batch {ORIGINAL.batch_size}, {ORIGINAL.loss}, "
          f"Adam lr {ORIGINAL.lr}, amp {amp}, channels_last {channels_last}, resident {args.resident}", flush=True)
    fit_started = time.perf_counter()
    config = replace(ORIGINAL, epochs=args.epochs, size=args.size)
    history = fit(model, train_set, val_set, config, device=device, amp=amp, channels_last=channels_last,
                  resident=args.resident == "on", out_dir=args.out, progress=args.progress)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    fit_seconds = time.perf_counter() - fit_started

    epoch_seconds = history["epoch_seconds"]
    best_epoch = max(range(len(history["val_dice"])), key=history["val_dice"].__getitem__)
    report: dict[str, Any] = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "data": described,
        "train_images": len(train_set), "val_images": len(val_set), "size": args.size,
        "epochs": args.epochs, "batch_size": ORIGINAL.batch_size, "lr": ORIGINAL.lr, "loss": ORIGINAL.loss,
        "amp": amp, "channels_last": channels_last, "resident": args.resident == "on",
        "checkpoints": args.out is not None,
        "prepare_seconds": prepare_seconds,
        "fit_seconds": fit_seconds,
        "total_seconds": prepare_seconds + fit_seconds,
        "first_epoch_seconds": epoch_seconds[0],
        "median_epoch_seconds": statistics.median(epoch_seconds),
        "train_img_s": len(train_set) * len(epoch_seconds) / sum(epoch_seconds),
        "final_train_loss": history["train_loss"][-1],
        "best_val_dice": history["val_dice"][best_epoch],
        "best_epoch": best_epoch + 1,
    }
    if device.type == "cuda":
        report["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    print(f"fit: {fit_seconds:.1f} s for {args.epochs} epochs with validation (first epoch "
          f"{epoch_seconds[0]:.2f} s, median epoch {report['median_epoch_seconds']:.2f} s, "
          f"{report['train_img_s']:.1f} training img/s incl. validation); preparing pictures {prepare_seconds:.1f} s; "
          f"total {report['total_seconds']:.1f} s")
    print(f"final training loss {report['final_train_loss']:.4f}; best validation Dice "
          f"{report['best_val_dice']:.4f} (epoch {report['best_epoch']})")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(args.json, lambda path: path.write_text(json.dumps(report, indent=2)))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
