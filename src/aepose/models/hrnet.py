"""HRNet backbone with mmpose 0.x module names (reference.md §2.2).

The module tree (``conv1``, ``layer1``, ``transition{1,2,3}``, ``stage{2,3,4}`` with
``branches`` / ``fuse_layers``) mirrors mmpose so that released checkpoints load unchanged.
Variants are frozen data; the backbone returns one tensor: branch 0 of stage 4 (stride 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from torch import Tensor, nn

from aepose.models.blocks import BasicBlock, Bottleneck, conv3x3, make_blocks


@dataclass(frozen=True)
class HRNetSpec:
    """Widths and depths of an HRNet.

    Stage ``s`` (2..4) has ``s`` parallel branches with widths ``widths[:s]``; every branch
    holds ``blocks_per_branch`` BasicBlocks; ``modules[s - 2]`` HRModules are stacked.
    """

    widths: tuple[int, int, int, int]
    stem_channels: int = 64  # fixed at 64 in mmpose
    stage1_channels: int = 64  # Bottleneck middle width; layer1 outputs 4x this
    stage1_blocks: int = 4
    blocks_per_branch: int = 4
    modules: tuple[int, int, int] = (1, 4, 3)


HRNET_VARIANTS: dict[str, HRNetSpec] = {
    "w32": HRNetSpec(widths=(32, 64, 128, 256)),
    "w48": HRNetSpec(widths=(48, 96, 192, 384)),
    # For tests and the CPU demo: ~0.1 M parameters, every code path of the full model.
    "tiny": HRNetSpec(
        widths=(8, 16, 32, 64), stem_channels=16, stage1_channels=8, stage1_blocks=1,
        blocks_per_branch=1, modules=(1, 1, 1),
    ),
    # The CPU demo's network: the tiny layout at twice the widths, ~0.7 M parameters. It
    # localises keypoints about twice as precisely as tiny in the same minutes (BENCHMARKS.md).
    "small": HRNetSpec(
        widths=(16, 32, 64, 128), stem_channels=32, stage1_channels=16, stage1_blocks=1,
        blocks_per_branch=1, modules=(1, 1, 1),
    ),
}


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        conv3x3(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels), nn.ReLU(True)
    )


def _fuse_layer(widths: tuple[int, ...], i: int, j: int) -> nn.Module:
    """Path from input branch ``j`` to output branch ``i`` inside an HRModule.

    mmpose stores ``None`` where no layer is needed; a parameter-free Identity keeps the
    same indices and state_dict keys without None checks in forward.
    """
    if j == i:
        return nn.Identity()
    if j > i:  # lower resolution: 1x1 conv, BN, nearest upsampling
        return nn.Sequential(
            nn.Conv2d(widths[j], widths[i], 1, bias=False),
            nn.BatchNorm2d(widths[i]),
            nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"),
        )
    # Higher resolution: (i - j) stride-2 convs; width changes and ReLU is absent on the last.
    steps: list[nn.Module] = [_conv_bn_relu(widths[j], widths[j], 2) for _ in range(i - j - 1)]
    steps.append(
        nn.Sequential(conv3x3(widths[j], widths[i], 2), nn.BatchNorm2d(widths[i]))
    )
    return nn.Sequential(*steps)


class HRModule(nn.Module):
    """Parallel branches followed by all-to-all fusion.

    With ``multiscale_output`` False only branch 0 is fused and returned.
    """

    def __init__(self, widths: tuple[int, ...], num_blocks: int, multiscale_output: bool):
        super().__init__()
        self.branches = nn.ModuleList(
            make_blocks(BasicBlock, width, width, num_blocks) for width in widths
        )
        outputs = len(widths) if multiscale_output else 1
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_layer(widths, i, j) for j in range(len(widths)))
            for i in range(outputs)
        ) if len(widths) > 1 else nn.ModuleList()
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        """List of B branches [N, C_b, H / 2^b, W / 2^b] -> fused list (B or 1 entries)."""
        xs = [branch(x) for branch, x in zip(self.branches, xs, strict=True)]
        if not self.fuse_layers:
            return xs
        fused = []
        for paths in self.fuse_layers:
            terms = [path(x) for path, x in zip(cast(nn.ModuleList, paths), xs, strict=True)]
            # Summed in branch order j = 0..B-1 as mmpose does, so float rounding matches.
            fused.append(self.relu(sum(terms[1:], terms[0])))
        return fused


class HRNet(nn.Module):
    """High-resolution network; forward returns ``[features]`` with features [N, C_0, H/4, W/4]."""

    def __init__(self, spec: HRNetSpec):
        super().__init__()
        self.spec = spec
        stem = spec.stem_channels
        self.conv1 = conv3x3(3, stem, stride=2)
        self.bn1 = nn.BatchNorm2d(stem)
        self.conv2 = conv3x3(stem, stem, stride=2)
        self.bn2 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        layer1_out = spec.stage1_channels * Bottleneck.expansion
        self.layer1 = make_blocks(Bottleneck, stem, layer1_out, spec.stage1_blocks)

        widths2, widths3, widths4 = spec.widths[:2], spec.widths[:3], spec.widths
        self.transition1 = _transition((layer1_out,), widths2)
        self.stage2 = _stage(spec, widths2, last=False)
        self.transition2 = _transition(widths2, widths3)
        self.stage3 = _stage(spec, widths3, last=False)
        self.transition3 = _transition(widths3, widths4)
        self.stage4 = _stage(spec, widths4, last=True)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Images [N, 3, H, W] (H, W multiples of 32) -> [[N, C_0, H/4, W/4]]."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        ys = [self.layer1(x)]
        for transition, stage in (
            (self.transition1, self.stage2),
            (self.transition2, self.stage3),
            (self.transition3, self.stage4),
        ):
            # Existing branches pass through (or change width); a new branch is made by
            # striding the lowest-resolution output of the previous stage.
            xs = [t(ys[min(b, len(ys) - 1)]) for b, t in enumerate(transition)]
            ys = stage(xs)
        return [ys[0]]


def _transition(previous: tuple[int, ...], widths: tuple[int, ...]) -> nn.ModuleList:
    """Per-branch adapters between stages (Identity where mmpose stores ``None``)."""
    layers: list[nn.Module] = []
    for b, width in enumerate(widths):
        if b < len(previous):
            layers.append(
                _conv_bn_relu(previous[b], width, 1) if previous[b] != width else nn.Identity()
            )
        else:
            hops = b + 1 - len(previous)
            layers.append(nn.Sequential(*(
                _conv_bn_relu(previous[-1], width if h == hops - 1 else previous[-1], 2)
                for h in range(hops)
            )))
    return nn.ModuleList(layers)


def _stage(spec: HRNetSpec, widths: tuple[int, ...], last: bool) -> nn.Sequential:
    """HRModules of one stage; the last module of stage 4 outputs branch 0 only."""
    count = spec.modules[len(widths) - 2]
    return nn.Sequential(*(
        HRModule(widths, spec.blocks_per_branch, multiscale_output=not (last and m == count - 1))
        for m in range(count)
    ))
