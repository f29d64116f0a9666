"""The U-Net that the original course material trained under the name "LinkNet".

It is kept here only as a point of comparison: the architecture notebook counts
its parameters and FLOPs next to LinkNet's, and the benchmarks time both. It is
the classic U-Net of Ronneberger et al. (2015) with batch norm: four encoder
stages of two 3x3 conv + BN + ReLU (64, 128, 256, 512 channels), a 1024-channel
bottleneck, transposed-convolution upsampling, skips by **concatenation**, and
a 1x1 convolution head. Concatenation doubles the width of every decoder input,
which is where most of its 31M parameters and ~18x LinkNet's FLOPs come from.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from retina_lib.model import conv_bn_relu

#: Four 2x poolings: inputs must be padded to a multiple of this.
UNET_SIZE_MULTIPLE = 16


def double_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv + BN + ReLU, the building block of every U-Net stage."""
    return nn.Sequential(conv_bn_relu(in_channels, out_channels, 3), conv_bn_relu(out_channels, out_channels, 3))


class UNet(nn.Module):
    """U-Net returning logits (N, num_classes, H, W) for H and W divisible by 16."""

    def __init__(self, in_channels: int = 3, num_classes: int = 1, width: int = 64) -> None:
        super().__init__()
        channels = [width, width * 2, width * 4, width * 8]
        self.encoders = nn.ModuleList()
        previous = in_channels
        for c in channels:
            self.encoders.append(double_conv(previous, c))
            previous = c
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = double_conv(channels[-1], channels[-1] * 2)
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        previous = channels[-1] * 2
        for c in reversed(channels):
            self.upsamplers.append(nn.ConvTranspose2d(previous, c, kernel_size=2, stride=2))
            self.decoders.append(double_conv(2 * c, c))  # 2c: upsampled + concatenated skip
            previous = c
        self.head = nn.Conv2d(channels[0], num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[2] % UNET_SIZE_MULTIPLE or x.shape[3] % UNET_SIZE_MULTIPLE:
            raise ValueError(f"UNet expects (N, C, H, W) with H and W divisible by 16, got {tuple(x.shape)}")
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for upsample, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips)):
            x = decoder(torch.cat([upsample(x), skip], dim=1))
        return self.head(x)
