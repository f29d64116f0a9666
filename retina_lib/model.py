"""LinkNet, the architecture of Chaurasia & Culurciello (2017), built from scratch.

LinkNet is an encoder-decoder network. The encoder is the body of ResNet-18; the
decoder mirrors it with light blocks (1x1 conv, 3x3 transposed conv, 1x1 conv).
What makes it LinkNet rather than a U-Net is the *link*: the input of every
encoder block is **added** to the output of the matching decoder block. Adding
(instead of concatenating, as U-Net does) keeps the decoder narrow, which is why
LinkNet has 11.5M parameters where the U-Net of the original course material has
31M, and needs about 18x fewer FLOPs.

The network returns **logits**. Turn them into probabilities with
:func:`probabilities`, which uses a sigmoid for one class: a softmax over a single
channel is identically 1, so it can never learn anything (the bug in the code
this course descends from).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: Every stride in the network multiplies up to 32, so inputs are padded to a
#: multiple of this and the output is cropped back to the input size.
SIZE_MULTIPLE = 32


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1) -> nn.Sequential:
    """A convolution followed by batch norm and ReLU (the conv needs no bias: BN adds one)."""
    return nn.Sequential(OrderedDict(
        conv=nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False),
        bn=nn.BatchNorm2d(out_channels),
        relu=nn.ReLU(inplace=True),
    ))


def deconv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """A 3x3 transposed ("full") convolution that upsamples by ``stride``, with BN and ReLU."""
    return nn.Sequential(OrderedDict(
        deconv=nn.ConvTranspose2d(
            in_channels, out_channels, kernel_size=3, stride=stride,
            padding=1, output_padding=stride - 1, bias=False,
        ),
        bn=nn.BatchNorm2d(out_channels),
        relu=nn.ReLU(inplace=True),
    ))


class BasicBlock(nn.Module):
    """The residual block of ResNet-18: two 3x3 convolutions plus a shortcut.

    When the block changes the resolution or the channel count, the shortcut is
    a strided 1x1 convolution so that the two branches can be added.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(OrderedDict(
                conv=nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                bn=nn.BatchNorm2d(out_channels),
            ))

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def encoder_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """One LinkNet encoder block: two BasicBlocks, the first one may downsample."""
    return nn.Sequential(
        BasicBlock(in_channels, out_channels, stride),
        BasicBlock(out_channels, out_channels, 1),
    )


class DecoderBlock(nn.Module):
    """LinkNet decoder block (m -> n): squeeze to m/4, upsample, expand to n.

    Working at a quarter of the channels is what keeps the decoder cheap.
    """

    def __init__(self, in_channels: int, out_channels: int, upsample: bool = True) -> None:
        super().__init__()
        mid = in_channels // 4
        self.reduce = conv_bn_relu(in_channels, mid, kernel_size=1)
        self.upsample = deconv_bn_relu(mid, mid, stride=2 if upsample else 1)
        self.expand = conv_bn_relu(mid, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.expand(self.upsample(self.reduce(x)))


class LinkNet(nn.Module):
    """LinkNet for semantic segmentation, returning logits of shape (N, classes, H, W).

    Args:
        in_channels: channels of the input image (3 for RGB fundus photographs).
        num_classes: output channels; 1 for vessel / background with a sigmoid.

    Any input height and width of at least 32 pixels is accepted: the image is
    zero-padded on the bottom and right to a multiple of 32 and the logits are
    cropped back, so DRIVE's 565x584 and CHASE_DB1's 999x960 work directly.

    Taught in notebook 01, section 1.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 1) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(
                f"in_channels and num_classes must be >= 1, got in_channels={in_channels}, "
                f"num_classes={num_classes}"
            )
        self.in_channels = in_channels
        self.num_classes = num_classes

        # Initial block: 7x7 conv with stride 2, then 3x3 max-pool with stride 2 (1/4 resolution).
        self.initial = conv_bn_relu(in_channels, 64, kernel_size=7, stride=2)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        # Encoder: the four stages of ResNet-18.
        self.encoder1 = encoder_block(64, 64, stride=1)
        self.encoder2 = encoder_block(64, 128, stride=2)
        self.encoder3 = encoder_block(128, 256, stride=2)
        self.encoder4 = encoder_block(256, 512, stride=2)

        # Decoder: each block undoes one encoder stage.
        self.decoder4 = DecoderBlock(512, 256)
        self.decoder3 = DecoderBlock(256, 128)
        self.decoder2 = DecoderBlock(128, 64)
        self.decoder1 = DecoderBlock(64, 64, upsample=False)

        # Final block: back to full resolution, one logit map per class.
        self.final_upsample = deconv_bn_relu(64, 32, stride=2)
        self.final_conv = conv_bn_relu(32, 32, kernel_size=3)
        self.classifier = nn.ConvTranspose2d(32, num_classes, kernel_size=2, stride=2)

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError that says what was expected if ``x`` cannot go through the net."""
        if x.ndim != 4:
            raise ValueError(
                f"LinkNet expects a 4-D batch (N, {self.in_channels}, H, W), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"LinkNet was built for {self.in_channels} input channels, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)})"
            )
        if min(x.shape[2], x.shape[3]) < SIZE_MULTIPLE:
            raise ValueError(
                f"LinkNet needs H and W of at least {SIZE_MULTIPLE} pixels, got {x.shape[2]}x{x.shape[3]}"
            )

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        height, width = x.shape[2], x.shape[3]
        pad_bottom = -height % SIZE_MULTIPLE
        pad_right = -width % SIZE_MULTIPLE
        if pad_bottom or pad_right:
            x = F.pad(x, (0, pad_right, 0, pad_bottom))

        x = self.pool(self.initial(x))
        e1 = self.encoder1(x)
        e2 = self.encoder2(e1)
        e3 = self.encoder3(e2)
        e4 = self.encoder4(e3)

        # The links: each decoder output plus the input of the matching encoder block.
        d4 = self.decoder4(e4) + e3
        d3 = self.decoder3(d4) + e2
        d2 = self.decoder2(d3) + e1
        d1 = self.decoder1(d2) + x

        logits = self.classifier(self.final_conv(self.final_upsample(d1)))
        return logits[:, :, :height, :width]


def probabilities(logits: Tensor) -> Tensor:
    """Turn logits of shape (N, C, H, W) into probabilities.

    One class: a sigmoid gives P(vessel) per pixel. Several classes: a softmax
    over the class channel. A softmax over a single channel would return 1
    everywhere, whatever the input, so it is never used for one class.

    Taught in notebook 01, section 9.
    """
    if logits.ndim != 4:
        raise ValueError(f"expected logits of shape (N, C, H, W), got {tuple(logits.shape)}")
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (the figure papers quote).

    Taught in notebook 01, section 4.
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
