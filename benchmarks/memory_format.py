"""Does channels-last pay on this CPU? LinkNet (and the peer's, when installed) in each memory format, in one run.

    python benchmarks/memory_format.py [--size 512] [--json OUT]
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/memory_format.py ...

The second line makes PyTorch's CPU kernels (ATen and oneDNN) use AVX2 only,
as on a CPU without AVX-512; :func:`retina_lib.system.hardware.cpu_supports_bf16`
and ``cpu_supports_avx512`` follow ``ONEDNN_MAX_CPU_ISA``, so the policy
answers as it would on such a CPU (mixed precision off).

Each contender is the trainer's step (``benchmarks/bench.py``'s
:class:`TrainingStep`: forward, Dice + IoU loss, backward, Adam) at batch 4:
float32 in the contiguous layout and in channels-last, plus bfloat16 in both
layouts where the CPU computes bfloat16 natively. They take turns, one step
each per round, so other programs slow them alike. The ratios printed are
channels-last / contiguous (above 1: channels-last is faster) and ours /
segmentation_models_pytorch's Linknet in each path.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import PEER, TrainPath, compare_steps, load_average, peer_missing, Settings  # noqa: E402
from retina_lib.system.hardware import (  # noqa: E402
    cpu_supports_avx512, cpu_supports_bf16, default_amp, default_channels_last, onednn_isa_cap,
)
from retina_lib.system.files import write_atomically  # noqa: E402


def contenders(with_peer: bool) -> list[tuple[str, TrainPath]]:
    """Every (model, path) to time: float32 in both layouts, and bfloat16 in both where it is native."""
    paths = [TrainPath("float32 contiguous", "off", False), TrainPath("float32 channels_last", "off", True)]
    if cpu_supports_bf16():
        paths += [TrainPath("bf16 contiguous", "bf16", False), TrainPath("bf16 channels_last", "bf16", True)]
    models = ["linknet"] + ([PEER] if with_peer else [])
    return [(model, path) for path in paths for model in models]


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512, help="picture side (default: %(default)s)")
    parser.add_argument("--rounds", type=int, default=5, help="timed steps per contender (default: %(default)s)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write every number as JSON")
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    missing = peer_missing()
    report: dict[str, Any] = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "size": args.size, "batch_size": 4,
        "onednn_max_cpu_isa": onednn_isa_cap(), "aten_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_supports_avx512": cpu_supports_avx512(), "cpu_supports_bf16": cpu_supports_bf16(),
        "policy": {"amp": default_amp(device), "channels_last": default_channels_last(device)},
        "peer": missing or "segmentation_models_pytorch", "load_average_start": load_average(),
    }
    print(json.dumps({key: value for key, value in report.items()}), flush=True)
    settings = Settings(warmup=1, repeats=args.rounds, max_seconds=600.0, train_steps=1, batch_sizes={},
                        predict_repeats=0, data_items=0, device_data_items=0, peer_repeats=args.rounds)
    results = compare_steps(contenders(missing is None), 4, args.size, device, settings)
    report["train"] = results
    img_s = {(r["model"], r["path"]): r["img_s"] for r in results}
    ratios: dict[str, float] = {}
    for (model, path), value in img_s.items():
        print(f"  {model:12} {path:24} {value:6.2f} img/s", flush=True)
        if path.endswith("channels_last"):
            contiguous = img_s[(model, path.replace("channels_last", "contiguous"))]
            ratios[f"{model} {path} / contiguous"] = value / contiguous
        if model == PEER:
            ratios[f"ours / smp, {path}"] = img_s[("linknet", path)] / value
    report["ratios"] = ratios
    report["load_average_end"] = load_average()
    for key, value in ratios.items():
        print(f"  {key:50} {value:5.2f}", flush=True)
    if args.json is not None:
        write_atomically(args.json, lambda path: path.write_text(json.dumps(report, indent=2)))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
