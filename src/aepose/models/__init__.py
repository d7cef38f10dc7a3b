"""Networks: ``build_model`` turns a preset (or a ModelConfig) into an nn.Module.

The module tree is mmpose 0.x's (``backbone.*``, ``keypoint_head.*``), so a released
mmpose state_dict loads with ``load_state_dict(strict=True)`` unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import Tensor, nn

from aepose.config import Config, ModelConfig, did_you_mean, get_preset
from aepose.errors import AeposeError
from aepose.keypoints import KeypointSpec
from aepose.models.heads import AEHigherResolutionHead, AESimpleHead
from aepose.models.hrnet import HRNET_VARIANTS, HRNet


class AssociativeEmbeddingNet(nn.Module):
    """HRNet backbone + AE head.

    ``forward(images [N, 3, H, W])`` returns one tensor per output resolution, stride 4
    first: [N, K + K_tag, H/4, W/4] (and [N, K, H/2, W/2] for HigherHRNet), heatmap
    channels first, then tag channels. ``config`` records the architecture;
    ``keypoint_spec`` what the K channels mean when the network was trained on or loaded
    with a skeleton (``None``: the one its recipe's dataset names; see
    :func:`aepose.keypoints.spec_of`).
    """

    def __init__(self, config: ModelConfig, backbone: HRNet, head: nn.Module,
                 keypoint_spec: KeypointSpec | None = None):
        super().__init__()
        if keypoint_spec is not None and keypoint_spec.num_keypoints != config.num_keypoints:
            raise AeposeError(f"the {keypoint_spec.name} keypoints are "
                              f"{keypoint_spec.num_keypoints}; the network has "
                              f"{config.num_keypoints} keypoint channels")
        self.config = config
        self.backbone = backbone
        self.keypoint_head = head
        self.keypoint_spec = keypoint_spec

    def forward(self, images: Tensor) -> list[Tensor]:
        """[N, 3, H, W] normalised RGB (H, W multiples of 32) -> list of per-stride outputs."""
        outputs: list[Tensor] = self.keypoint_head(self.backbone(images))
        return outputs


def _simple_head(cfg: ModelConfig, in_channels: int) -> nn.Module:
    return AESimpleHead(in_channels, cfg.num_keypoints, cfg.with_ae[0], cfg.final_conv_kernel)


def _higher_head(cfg: ModelConfig, in_channels: int) -> nn.Module:
    if len(cfg.with_ae) != 2:
        raise AeposeError(f"the HigherHRNet head has 2 outputs; with_ae={cfg.with_ae}")
    return AEHigherResolutionHead(
        in_channels, cfg.num_keypoints, (cfg.with_ae[0], cfg.with_ae[1]),
        deconv_channels=cfg.deconv_channels, deconv_kernel=cfg.deconv_kernel,
        num_basic_blocks=cfg.num_basic_blocks, cat_output=cfg.cat_output,
        kernel=cfg.final_conv_kernel,
    )


HEADS: dict[str, Callable[[ModelConfig, int], nn.Module]] = {
    "simple": _simple_head,
    "higher": _higher_head,
}


def _init_backbone(backbone: HRNet) -> None:
    """mmpose's HRNet init without ImageNet weights: conv ~ N(0, 0.001), BN weight 1 bias 0."""
    for module in backbone.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, std=0.001)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def build_from_config(cfg: ModelConfig, keypoint_spec: KeypointSpec | None = None
                      ) -> AssociativeEmbeddingNet:
    """Network for an explicit ModelConfig, initialised as mmpose does without pretraining;
    ``keypoint_spec`` (K = ``cfg.num_keypoints``) is what its channels mean."""
    if cfg.backbone not in HRNET_VARIANTS:
        raise AeposeError(
            f"unknown backbone {cfg.backbone!r}{did_you_mean(cfg.backbone, HRNET_VARIANTS)}"
        )
    if cfg.head not in HEADS:
        raise AeposeError(f"unknown head {cfg.head!r}{did_you_mean(cfg.head, HEADS)}")
    backbone = HRNet(HRNET_VARIANTS[cfg.backbone])
    _init_backbone(backbone)
    head = HEADS[cfg.head](cfg, HRNET_VARIANTS[cfg.backbone].widths[0])
    return AssociativeEmbeddingNet(cfg, backbone, head, keypoint_spec)


def build_model(name: str | Config, **overrides: object) -> AssociativeEmbeddingNet:
    """Build the network of a preset (random weights), e.g. ``build_model("hrnet_w32_aic_512")``.

    ``overrides`` replace fields of the preset's ModelConfig, e.g. ``num_keypoints=17`` or
    ``backbone="tiny"``; an unknown field name raises with the closest valid names.
    """
    cfg = get_preset(name) if isinstance(name, str) else name
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    for key in overrides:
        if key not in fields:
            raise AeposeError(f"unknown model option {key!r}{did_you_mean(key, fields)}")
    return build_from_config(dataclasses.replace(cfg.model, **overrides))  # type: ignore[arg-type]
