"""Measure a network instead of describing it: shapes, parameters, FLOPs, receptive fields.

The architecture notebook asks the same questions of LinkNet and of the U-Net:
what shape does each stage produce, where are the parameters, how much
computation does one forward pass take, and how much of the photograph can one
position of a feature map see. Answering them with code (rather than typing
numbers into the text) keeps the course honest when the model changes.

Shapes and FLOPs need no real numbers, so they run on PyTorch's ``meta``
device: tensors there have a shape and a dtype but no data, and a "forward
pass" only works out the shape of every result. Build a meta copy with
:func:`on_meta`; it costs nothing even for the 385-GFLOP U-Net.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from retina_lib.model import LinkNet, count_parameters

#: LinkNet's stages in the order the data visits them (the module names of :class:`LinkNet`).
LINKNET_STAGES = (
    "initial", "pool", "encoder1", "encoder2", "encoder3", "encoder4",
    "decoder4", "decoder3", "decoder2", "decoder1",
    "final_upsample", "final_conv", "classifier",
)

#: LinkNet's blocks as the paper names them: {block: the modules it is made of}.
#: The paper's "final block" is the three layers after ``decoder1``; the
#: max-pool has no parameters and belongs to no block of its own.
LINKNET_BLOCKS = {
    "initial": ("initial",),
    "encoder1": ("encoder1",), "encoder2": ("encoder2",), "encoder3": ("encoder3",), "encoder4": ("encoder4",),
    "decoder4": ("decoder4",), "decoder3": ("decoder3",), "decoder2": ("decoder2",), "decoder1": ("decoder1",),
    "final": ("final_upsample", "final_conv", "classifier"),
}

#: The four residual stages of ResNet-18 that form LinkNet's encoder.
ENCODER_BLOCKS = ("encoder1", "encoder2", "encoder3", "encoder4")

#: LinkNet's four decoder blocks.
DECODER_BLOCKS = ("decoder4", "decoder3", "decoder2", "decoder1")

Shape = tuple[int, ...]


def on_meta(network_class: Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    """Build ``network_class(**kwargs)`` on the meta device: shapes only, no memory, no time.

    Taught in notebook 01, section 2.
    """
    with torch.device("meta"):
        return network_class(**kwargs)


def _image_like(model: nn.Module, height: int, width: Optional[int]) -> torch.Tensor:
    """A zero batch of one image of the model's input channels, on the model's device."""
    first = next(model.parameters())
    channels = getattr(model, "in_channels", 3)
    return torch.zeros(1, channels, height, height if width is None else width, device=first.device)


def record_shapes(
    model: nn.Module, names: Sequence[str], height: int, width: Optional[int] = None
) -> dict[str, tuple[Shape, Shape]]:
    """(input shape, output shape) of each named submodule for one ``height`` x ``width`` image.

    ``names`` are paths as in ``model.get_submodule`` ("encoder3", "decoders.0").
    A forward hook, a function PyTorch calls after a module has run, writes the
    shapes down; the hooks are removed again before returning, so they do not
    linger on the model.

    Taught in notebook 01, section 2.
    """
    shapes: dict[str, tuple[Shape, Shape]] = {}

    def recorder(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            shapes[name] = (tuple(inputs[0].shape), tuple(output.shape))
        return hook

    handles = [model.get_submodule(name).register_forward_hook(recorder(name)) for name in names]
    try:
        with torch.no_grad():
            model(_image_like(model, height, width))
    finally:
        for handle in handles:
            handle.remove()
    missing = [name for name in names if name not in shapes]
    if missing:
        raise ValueError(f"the forward pass of {type(model).__name__} never ran {missing}")
    return shapes


def parameters_by_block(model: nn.Module, blocks: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Trainable parameters of each block, a block being one or more named submodules.

    Raises a ValueError if the blocks do not add up to the whole model: a block
    left out or a module counted twice would make every percentage wrong.

    Taught in notebook 01, section 4.
    """
    counts = {block: sum(count_parameters(model.get_submodule(part)) for part in parts)
              for block, parts in blocks.items()}
    total = count_parameters(model)
    if sum(counts.values()) != total:
        raise ValueError(f"the blocks hold {sum(counts.values()):,} parameters but "
                         f"{type(model).__name__} has {total:,}: a module is missing or counted twice")
    return counts


def count_flops(model: nn.Module, height: int, width: Optional[int] = None) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per submodule path) of one forward pass of one image.

    ``torch.utils.flop_counter.FlopCounterMode`` adds up convolutions and
    matrix products, counting one multiply-add as **2** FLOPs; batch norm, ReLU
    and additions are cheap and not counted. Per-module keys are paths as in
    ``get_submodule`` ("encoder1", "decoders.0"); a module's count includes its
    children. Run it on a model from :func:`on_meta` to make it instant.

    Taught in notebook 01, section 5.
    """
    image = _image_like(model, height, width)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(image)
    root = type(model).__name__
    per_module = {}
    for name, by_operation in counter.get_flop_counts().items():
        if name.startswith(root + "."):
            per_module[name[len(root) + 1:]] = int(sum(by_operation.values()))
    return int(counter.get_total_flops()), per_module


def flops_by_block(module_flops: Mapping[str, int], blocks: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Add up :func:`count_flops`'s per-module counts into blocks (a module without FLOPs counts 0).

    Taught in notebook 01, section 5.
    """
    return {block: sum(module_flops.get(part, 0) for part in parts) for block, parts in blocks.items()}


def sides_down(side: int, steps: int = 5) -> list[int]:
    """The side length before and after each of ``steps`` stride-2 layers.

    A stride-2 layer with kernel k and padding k // 2 (every one in LinkNet)
    maps n pixels to ceil(n / 2), so an odd side is rounded *up*; doubling back
    then overshoots. Only multiples of 2 ** steps come back to where they started.

    Taught in notebook 01, section 8.
    """
    if side < 1 or steps < 0:
        raise ValueError(f"need side >= 1 and steps >= 0, got side={side}, steps={steps}")
    sides = [side]
    for _ in range(steps):
        sides.append(-(-sides[-1] // 2))  # ceil(n / 2) in integers
    return sides


# --------------------------------------------------------------------------
# Receptive field: how much of the input one output position can see.
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Layer:
    """A sliding-window layer (convolution or pooling), as far as geometry goes."""

    name: str
    kernel: int
    stride: int


@dataclass(frozen=True)
class ReceptiveField:
    """After a layer: the side of the input window one position sees, and the input
    pixels between two neighbouring positions (the product of the strides so far)."""

    name: str
    size: int
    stride: int


def receptive_fields(layers: Sequence[Layer]) -> list[ReceptiveField]:
    """Receptive field and accumulated stride after each layer of a chain.

    Start from one pixel (size 1, stride 1). A layer with kernel k widens the
    window by (k - 1) steps of the *current* stride, then multiplies the stride
    by its own::

        size   <- size + (kernel - 1) * stride
        stride <- stride * layer stride

    This is the theoretical receptive field: every input pixel that can
    influence the output at all. Padding does not change it.
    """
    size, stride = 1, 1
    fields = []
    for layer in layers:
        if layer.kernel < 1 or layer.stride < 1:
            raise ValueError(f"layer {layer.name!r} has kernel {layer.kernel} and stride {layer.stride}; "
                             "both must be >= 1")
        size += (layer.kernel - 1) * stride
        stride *= layer.stride
        fields.append(ReceptiveField(layer.name, size, stride))
    return fields


def _square(value: int | tuple[int, ...], name: str) -> int:
    """The one side of a square kernel or stride; a rectangular one is refused."""
    if isinstance(value, int):
        return value
    if len(set(value)) != 1:
        raise ValueError(f"{name} is {value}: receptive_fields handles square windows only")
    return value[0]


def linknet_encoder_layers(model: LinkNet) -> list[Layer]:
    """The longest path through LinkNet's encoder, read from the model itself.

    The initial 7x7 convolution, the max-pool, then in each residual BasicBlock
    its two 3x3 convolutions. The shortcut (an identity or a 1x1 convolution)
    is a shorter path, so it never widens the receptive field. Names are
    "initial", "pool" and "encoder2.0.conv1" (stage, block, convolution).
    """
    layers = [
        Layer("initial", _square(model.initial.conv.kernel_size, "initial kernel"),
              _square(model.initial.conv.stride, "initial stride")),
        Layer("pool", _square(model.pool.kernel_size, "pool kernel"), _square(model.pool.stride, "pool stride")),
    ]
    for stage in ENCODER_BLOCKS:
        for index, block in enumerate(model.get_submodule(stage)):
            for conv_name in ("conv1", "conv2"):
                conv = getattr(block, conv_name)
                layers.append(Layer(f"{stage}.{index}.{conv_name}", _square(conv.kernel_size, "kernel"),
                                    _square(conv.stride, "stride")))
    return layers


def linknet_encoder_receptive_fields(model: LinkNet) -> dict[str, ReceptiveField]:
    """Receptive field and stride at the output of the initial block, the pool and each encoder stage.

    Taught in notebook 01, section 3.
    """
    fields = receptive_fields(linknet_encoder_layers(model))
    at_stage_end: dict[str, ReceptiveField] = {}
    for field in fields:
        stage = field.name.split(".")[0]
        at_stage_end[stage] = ReceptiveField(stage, field.size, field.stride)  # the stage's last layer wins
    return at_stage_end
