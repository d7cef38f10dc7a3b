"""Residual blocks with mmpose/ResNet attribute names (reference.md §2.1).

Attribute names and registration order (conv1, bn1, conv2, bn2, [conv3, bn3], downsample)
decide the state_dict keys, so they must not change.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """3x3 bias-free convolution with padding 1."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


def downsample(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """Projection shortcut: keys ``downsample.0.weight`` and ``downsample.1.*``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with identity shortcut; expansion 1."""

    expansion = 1

    def __init__(self, in_channels: int, out_channels: int, shortcut: nn.Module | None = None):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> [B, C_out, H, W]."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 with a 4x wider output than the middle ('pytorch' style)."""

    expansion = 4

    def __init__(self, in_channels: int, out_channels: int, shortcut: nn.Module | None = None):
        super().__init__()
        mid = out_channels // self.expansion
        self.conv1 = nn.Conv2d(in_channels, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = conv3x3(mid, mid)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut

    def forward(self, x: Tensor) -> Tensor:
        """[B, C_in, H, W] -> [B, C_out, H, W]."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + identity)


def make_blocks(
    block: type[BasicBlock] | type[Bottleneck], in_channels: int, out_channels: int, count: int
) -> nn.Sequential:
    """``count`` blocks; the first gets a projection shortcut when the width changes."""
    shortcut = downsample(in_channels, out_channels) if in_channels != out_channels else None
    layers: list[nn.Module] = [block(in_channels, out_channels, shortcut)]
    layers += [block(out_channels, out_channels) for _ in range(count - 1)]
    return nn.Sequential(*layers)
