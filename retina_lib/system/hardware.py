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

#: Values of oneDNN's ``ONEDNN_MAX_CPU_ISA`` that forbid its AVX-512 kernels, and those that also forbid bfloat16.
ISA_CAPS_WITHOUT_AVX512 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")
ISA_CAPS_WITHOUT_BF16 = ISA_CAPS_WITHOUT_AVX512 + ("AVX512_CORE", "AVX512_CORE_VNNI")

#: The AVX-512 subsets ("AVX512_CORE") that oneDNN's fast channels-last convolution kernels need.
AVX512_CORE_FLAGS = frozenset({"avx512f", "avx512bw", "avx512vl", "avx512dq"})


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags from ``/proc/cpuinfo`` (Linux); empty elsewhere."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return frozenset()
    flags: set[str] = set()
    for line in cpuinfo.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return frozenset(flags)


def onednn_isa_cap() -> str:
    """The instruction-set ceiling set for oneDNN (PyTorch's CPU convolutions) by ``ONEDNN_MAX_CPU_ISA``.

    A CPU feature oneDNN is told not to use gains nothing, so the policy
    below follows this cap; ``ONEDNN_MAX_CPU_ISA=AVX2`` also lets a benchmark
    behave like a CPU without AVX-512 (``benchmarks/memory_format.py``).
    """
    return os.environ.get("ONEDNN_MAX_CPU_ISA", "ALL").strip().upper() or "ALL"


def cpu_supports_bf16() -> bool:
    """True when the CPU computes in bfloat16 natively (AVX512-BF16 or AMX).

    Older CPUs emulate bfloat16, which makes mixed precision slower than plain
    float32. The flags are read from ``/proc/cpuinfo``, so this is Linux-only;
    elsewhere it answers False (use ``amp="bf16"`` to force it).
    """
    if onednn_isa_cap() in ISA_CAPS_WITHOUT_BF16:
        return False
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_supports_avx512() -> bool:
    """True when oneDNN can use AVX-512 (the AVX512_CORE subsets) on this CPU: Intel since Skylake-SP, AMD since Zen 4."""
    if onednn_isa_cap() in ISA_CAPS_WITHOUT_AVX512:
        return False
    return AVX512_CORE_FLAGS <= cpu_flags()


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
    (N, H, W, C in memory), the layout fast convolution kernels want. Whether
    it pays depends on the device kind, so it is chosen by what it gained in
    LinkNet's training step (``benchmarks/bench.py`` and
    ``benchmarks/memory_format.py``; numbers in benchmarks/README.md):

    * CUDA GPUs: yes (tensor cores read channels-last; see benchmarks/README.md).
    * CPUs with AVX-512: yes. oneDNN's AVX-512 kernels work on channels-last
      directly; on a 2-core AMD EPYC (Zen 4) it made the float32 step faster,
      and the bfloat16 step too.
    * CPUs without AVX-512 (AMD before Zen 4, many laptops): no. There the
      step did not gain from channels-last (reported: 0.88x on a 2-core
      AMD EPYC without AVX-512, and 1.00x in a second run; emulated here with
      ``ONEDNN_MAX_CPU_ISA=AVX2`` on a loaded machine: 1.04x for ours and
      1.05x for segmentation_models_pytorch's). Nothing in LinkNet's
      forward or in the training step leaves channels-last (checked op by op, and oneDNN
      reorders no activation), but PyTorch still copies every convolution's
      weight gradient into its weight's channels-last layout.
    * Apple's MPS: no (not measured).

    This is the single place where that default is decided.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return True
    if device.type == "cpu":
        return cpu_supports_avx512()
    return False


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
