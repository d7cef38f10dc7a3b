"""Associative-embedding heads with mmpose 0.x attribute names (reference.md §2.3-2.4, §2.7).

Each output resolution carries K heatmap channels, followed by K tag channels when that
output has tags (one tag per joint). Heads return tensors only; losses and decoding live
outside the network.
"""

from __future__ import annotations

import typing

import torch
from torch import Tensor, nn

from aepose.models.blocks import BasicBlock

# ConvTranspose2d kernel -> (padding, output_padding) giving exactly 2x upsampling.
_DECONV_PADDING = {4: (1, 0), 3: (1, 1), 2: (0, 0)}


def _final_conv(in_channels: int, out_channels: int, kernel: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, kernel, padding=(kernel - 1) // 2)
    nn.init.normal_(conv.weight, std=0.001)
    nn.init.zeros_(typing.cast(Tensor, conv.bias))
    return conv


class AESimpleHead(nn.Module):
    """One 1x1 conv on the stride-4 features: [N, C, h, w] -> [N, K (+K tags), h, w].

    mmpose's class of the same name with ``num_deconv_layers=0``: its deconv part is an
    Identity without parameters, so only ``final_layer`` appears in the state_dict.
    """

    def __init__(self, in_channels: int, num_keypoints: int, with_ae: bool, kernel: int = 1):
        super().__init__()
        out = num_keypoints * (2 if with_ae else 1)
        self.final_layer = _final_conv(in_channels, out, kernel)

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """[[N, C, h, w]] -> [[N, 2K, h, w]] (heatmaps then tags)."""
        return [self.final_layer(features[0])]


class AEHigherResolutionHead(nn.Module):
    """HigherHRNet head: a stride-4 output, then a deconv branch to a stride-2 output.

    The stride-4 prediction (heatmaps AND tags) is concatenated to the features, features
    first, before the transposed convolution (reference.md §2.4, trap 10).
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        with_ae: tuple[bool, bool],
        deconv_channels: int,
        deconv_kernel: int = 4,
        num_basic_blocks: int = 4,
        cat_output: bool = True,
        kernel: int = 1,
    ):
        super().__init__()
        if deconv_kernel not in _DECONV_PADDING:
            raise ValueError(f"deconv kernel must be one of {sorted(_DECONV_PADDING)}")
        outs = [num_keypoints * (2 if ae else 1) for ae in with_ae]
        self.cat_output = cat_output
        self.final_layers = nn.ModuleList([
            _final_conv(in_channels, outs[0], kernel),
            _final_conv(deconv_channels, outs[1], kernel),
        ])
        padding, output_padding = _DECONV_PADDING[deconv_kernel]
        deconv = nn.ConvTranspose2d(
            in_channels + (outs[0] if cat_output else 0), deconv_channels, deconv_kernel,
            stride=2, padding=padding, output_padding=output_padding, bias=False,
        )
        nn.init.normal_(deconv.weight, std=0.001)
        # Each BasicBlock sits in its own Sequential (hence the ".0" in mmpose's keys); its
        # convs keep PyTorch's default init, as in mmpose (reference.md §2.7).
        self.deconv_layers = nn.ModuleList([nn.Sequential(
            nn.Sequential(deconv, nn.BatchNorm2d(deconv_channels, momentum=0.1), nn.ReLU(True)),
            *(nn.Sequential(BasicBlock(deconv_channels, deconv_channels))
              for _ in range(num_basic_blocks)),
        )])

    def forward(self, features: list[Tensor]) -> list[Tensor]:
        """[[N, C, h, w]] -> [[N, 2K, h, w], [N, K (or 2K), 2h, 2w]]."""
        x = features[0]
        first = self.final_layers[0](x)
        if self.cat_output:
            x = torch.cat([x, first], dim=1)
        x = self.deconv_layers[0](x)
        return [first, self.final_layers[1](x)]
