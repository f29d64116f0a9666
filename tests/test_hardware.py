"""system/hardware.py: amp="auto" picks the precision the hardware computes natively (GPUs are mocked: none is needed)."""
from __future__ import annotations

import pytest
import torch

from retina_lib.system import hardware
from retina_lib.system.hardware import autocast_dtype, cpu_supports_bf16, default_amp


def pretend_gpu(monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int]) -> None:
    """Make torch.cuda describe one GPU of ``capability`` that claims bfloat16 support.

    ``is_bf16_supported`` answers True on every GPU here, as it does on a real
    T4 (it counts emulation), so only the capability can tell them apart.
    """
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)


@pytest.mark.parametrize("gpu, capability, expected", [
    ("Tesla T4 (Colab's free GPU, Turing)", (7, 5), "fp16"),
    ("Tesla V100 (Volta)", (7, 0), "fp16"),
    ("A100 (Ampere)", (8, 0), "bf16"),
    ("RTX 3090 (Ampere)", (8, 6), "bf16"),
    ("H100 (Hopper)", (9, 0), "bf16"),
])
def test_cuda_default_follows_compute_capability(monkeypatch: pytest.MonkeyPatch, gpu: str,
                                                 capability: tuple[int, int], expected: str) -> None:
    pretend_gpu(monkeypatch, capability)
    assert default_amp("cuda") == expected, gpu
    assert default_amp(torch.device("cuda", 0)) == expected, gpu


@pytest.mark.parametrize("native_bf16, expected", [(True, "bf16"), (False, "off")])
def test_cpu_default_follows_native_bfloat16(monkeypatch: pytest.MonkeyPatch, native_bf16: bool,
                                             expected: str) -> None:
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: native_bf16)
    pretend_gpu(monkeypatch, (9, 0))  # a GPU in the machine does not change what the CPU does
    assert default_amp("cpu") == expected


def test_other_devices_have_no_default_mixed_precision() -> None:
    assert default_amp("mps") == "off"
    assert default_amp("meta") == "off"


def test_amp_choices() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype("off", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("fp16", cpu) is torch.float16
    assert default_amp("cpu") == ("bf16" if cpu_supports_bf16() else "off")
    assert default_amp("meta") == "off"
    with pytest.raises(ValueError, match="amp must be one of auto, off, bf16, fp16; got 'float16'"):
        autocast_dtype("float16", cpu)


# --------------------------------------------------------------------------
# Device, seeds, the model's device
# --------------------------------------------------------------------------

def test_pick_device_takes_the_cpu_as_given_and_refuses_a_typo() -> None:
    from retina_lib.errors import UserInputError

    assert hardware.pick_device("cpu") == torch.device("cpu")
    with pytest.raises(UserInputError, match="unknown device 'cpuu'"):
        hardware.pick_device("cpuu")


def test_asking_for_a_missing_gpu_is_the_users_mistake(monkeypatch: pytest.MonkeyPatch) -> None:
    from retina_lib.errors import UserInputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserInputError, match="PyTorch sees no CUDA GPU"):
        hardware.pick_device("cuda")


def test_seed_everything_repeats_python_numpy_and_torch_draws() -> None:
    import random

    import numpy as np

    def draws() -> tuple:
        return random.random(), float(np.random.rand()), torch.rand(1).item()

    hardware.seed_everything(7)
    first = draws()
    hardware.seed_everything(7)
    assert draws() == first
    hardware.seed_everything(8)
    assert draws() != first


def test_model_device_is_where_the_parameters_are() -> None:
    assert hardware.model_device(torch.nn.Linear(2, 1)) == torch.device("cpu")
    assert hardware.model_device(torch.nn.ReLU()) == torch.device("cpu"), "a model without parameters: the CPU"
    assert hardware.model_device(torch.nn.Linear(2, 1).to("meta")) == torch.device("meta")


ZEN4 = frozenset({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_bf16"})
ZEN3 = frozenset({"avx2", "fma"})
SKYLAKE_SP = frozenset({"avx2", "avx512f", "avx512bw", "avx512vl", "avx512dq"})


@pytest.mark.parametrize("flags, isa_cap, avx512, bf16", [
    (ZEN4, None, True, True),
    (ZEN4, "AVX2", False, False),  # oneDNN told to stay on AVX2: neither feature is used
    (ZEN4, "AVX512_CORE", True, False),
    (SKYLAKE_SP, None, True, False),
    (ZEN3, None, False, False),
    (frozenset(), None, False, False),  # no /proc/cpuinfo (macOS, Windows)
])
def test_cpu_features_follow_the_flags_and_onednn_cap(monkeypatch: pytest.MonkeyPatch, flags: frozenset,
                                                      isa_cap: str | None, avx512: bool, bf16: bool) -> None:
    monkeypatch.setattr(hardware, "cpu_flags", lambda: flags)
    if isa_cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa_cap)
    assert hardware.cpu_supports_avx512() is avx512
    assert hardware.cpu_supports_bf16() is bf16


@pytest.mark.parametrize("device, avx512, expected", [
    ("cpu", True, True), ("cpu", False, False), ("cuda", False, True), ("mps", True, False),
])
def test_channels_last_only_where_it_was_measured_to_pay(monkeypatch: pytest.MonkeyPatch, device: str,
                                                         avx512: bool, expected: bool) -> None:
    monkeypatch.setattr(hardware, "cpu_supports_avx512", lambda: avx512)
    assert hardware.default_channels_last(device) is expected
