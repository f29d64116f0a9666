"""The hardware policy: where to compute, in which precision and memory format, and repeatable seeds.

Every choice that depends on the machine (CPU or GPU, native bfloat16 or not)
is made here, so the epoch loop and the trainer stay the same everywhere.
"""
from __future__ import annotations

import os
import random
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import nn

from retina_lib.errors import UserInputError

#: Mixed-precision settings: "auto" picks with :func:`default_amp`.
AMP_CHOICES = ("auto", "off", "bf16", "fp16")

#: The first CUDA compute capability (major, minor) with bfloat16 in hardware: Ampere.
BF16_COMPUTE_CAPABILITY = (8, 0)


def pick_device(name: str = "auto") -> torch.device:
    """Return the device to compute on.

    ``"auto"`` takes a CUDA GPU when there is one (Colab, a workstation), then
    Apple's MPS, else the CPU. Any other name (``"cpu"``, ``"cuda"``,
    ``"cuda:1"``, ``"mps"``) is taken as given, after checking it exists, so a
    typo fails here rather than deep inside the first forward pass.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserInputError(f"unknown device {name!r}: use 'auto', 'cpu', 'cuda' or 'mps'") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserInputError(f"device {name!r} was asked for, but PyTorch sees no CUDA GPU")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserInputError(f"device {name!r} was asked for, but Apple MPS is not available")
    return device


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (CPU and all GPUs) in one call.

    Taught in notebook 03, section 2.
    """
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's parameters (the CPU for a model without any)."""
    parameter = next(model.parameters(), None)
    return torch.device("cpu") if parameter is None else parameter.device


# --------------------------------------------------------------------------
# Mixed precision
# --------------------------------------------------------------------------

@lru_cache(maxsize=1)
def cpu_supports_bf16() -> bool:
    """True when the CPU computes in bfloat16 natively (AVX512-BF16 or AMX).

    Older CPUs emulate bfloat16, which makes mixed precision slower than plain
    float32. The flags are read from ``/proc/cpuinfo``, so this is Linux-only;
    elsewhere it answers False (use ``amp="bf16"`` to force it).
    """
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return False
    flags = set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def default_amp(device: torch.device | str) -> str:
    """The mixed precision that ``amp="auto"`` means on ``device``: "bf16", "fp16" or "off".

    * CUDA: bfloat16 on GPUs of compute capability 8.0 or newer (Ampere:
      A100, RTX 30xx; Hopper: H100), which compute it in hardware. Older
      GPUs get float16, which needs a gradient scaler: a Colab T4 (Turing,
      7.5) has float16 tensor cores but no bfloat16 units. The capability
      is asked for, not ``torch.cuda.is_bf16_supported()``, because that
      also answers True on a T4, where bfloat16 only runs emulated (slowly).
    * CPU: bfloat16 only on CPUs that compute it natively (see
      :func:`cpu_supports_bf16`).
    * Anything else (Apple MPS): off.

    This is the single place where that default is decided.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.get_device_capability(device) >= BF16_COMPUTE_CAPABILITY else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_supports_bf16() else "off"
    return "off"


def default_channels_last(device: torch.device | str) -> bool:
    """Whether :func:`~retina_lib.training.trainer.fit` uses the channels-last memory format by default on ``device``.

    Channels-last stores the channels of a pixel next to each other
    (N, H, W, C in memory), the layout fast convolution kernels want: tensor
    cores on CUDA GPUs, oneDNN on CPUs. Measured with ``benchmarks/bench.py``
    on a 2-core AMD EPYC (LinkNet, batch 4, 512 x 512): channels-last alone
    trains 1.28x faster than the contiguous layout, bfloat16 alone 2.1x, both
    together 2.7x (see benchmarks/README.md). Not measured on Apple's MPS,
    which keeps the plain layout.

    This is the single place where that default is decided.
    """
    return torch.device(device).type in ("cuda", "cpu")


def check_amp(amp: str) -> str:
    """Return ``amp`` if it is one of :data:`AMP_CHOICES`, else raise a ValueError saying which are."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"amp must be one of {', '.join(AMP_CHOICES)}; got {amp!r}")
    return amp


def autocast_dtype(amp: str, device: torch.device) -> Optional[torch.dtype]:
    """The dtype to autocast to for ``amp`` on ``device``, or None for plain float32."""
    if check_amp(amp) == "auto":
        amp = default_amp(device)
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
