"""Networks: mmpose's key names and shapes, parameter counts, output shapes, init rules."""

from __future__ import annotations

import pytest
import torch
from keyspec import LISTINGS, SEEDS, backbone_keys, format_listing, head_keys
from torch import nn

from aepose import build_model, list_presets
from aepose.config import PRESETS
from aepose.errors import AeposeError
from aepose.models.hrnet import HRNET_VARIANTS


def _listing(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(k, tuple(v.shape)) for k, v in model.state_dict().items()]


@pytest.mark.parametrize(
    ("name", "entries", "params"),
    [("hrnet_w32_aic_512", 1754, 28_536_476), ("higherhrnet_w32_crowdpose_512", 1810, 28_641_962)],
)
def test_seed_counts_and_checked_in_listing(name: str, entries: int, params: int) -> None:
    model = build_model(name)
    assert len(model.state_dict()) == entries
    assert sum(p.numel() for p in model.parameters()) == params
    # The listing in tests/data/keys was generated from reference.md §2.5 by keyspec.py,
    # independently of aepose.models; order included (registration order).
    listing = (LISTINGS / f"{name}.txt").read_text()
    assert format_listing(_listing(model)) == listing
    assert format_listing(SEEDS[name]) == listing


def test_reference_breakdown_of_backbone_and_heads() -> None:
    """reference.md §2.6: backbone 28,535,552; heads 924 and 106,410 parameters."""
    simple = build_model("hrnet_w32_aic_512")
    higher = build_model("higherhrnet_w32_crowdpose_512")
    assert sum(p.numel() for p in simple.backbone.parameters()) == 28_535_552
    assert sum(p.numel() for p in simple.keypoint_head.parameters()) == 924
    assert sum(p.numel() for p in higher.keypoint_head.parameters()) == 106_410
    bns = [m for m in higher.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 301


@pytest.mark.parametrize("name", [n for n in PRESETS if n not in SEEDS])
def test_every_preset_matches_the_key_enumerator(name: str) -> None:
    cfg = PRESETS[name].model
    spec = HRNET_VARIANTS[cfg.backbone]
    expected = backbone_keys(
        spec.widths, spec.stem_channels, spec.stage1_channels, spec.stage1_blocks,
        spec.blocks_per_branch, spec.modules,
    ) + head_keys(spec.widths[0], cfg.num_keypoints, cfg.head == "higher", cfg.num_basic_blocks)
    with torch.device("meta"):
        model = build_model(name)
    assert _listing(model) == expected


def test_coco_counts_quoted_by_reference() -> None:
    """reference.md §2.6: for K = 17 the same code gives 28,536,674 and 28,645,331."""
    for name, params in (("hrnet_w32_coco_512", 28_536_674),
                         ("higherhrnet_w32_coco_512", 28_645_331)):
        with torch.device("meta"):
            model = build_model(name)
        assert sum(p.numel() for p in model.parameters()) == params


def test_seed_output_shapes_at_512() -> None:
    x = torch.randn(1, 3, 512, 512)
    with torch.inference_mode():
        simple = build_model("hrnet_w32_aic_512").eval()(x)
        higher = build_model("higherhrnet_w32_crowdpose_512").eval()(x)
    assert [tuple(o.shape) for o in simple] == [(1, 28, 128, 128)]
    assert [tuple(o.shape) for o in higher] == [(1, 28, 128, 128), (1, 14, 256, 256)]
    assert all(torch.isfinite(o).all() for o in simple + higher)


@pytest.mark.parametrize("size", [(64, 64), (128, 192), (192, 64)])
def test_tiny_output_shapes_follow_input(size: tuple[int, int]) -> None:
    h, w = size
    model = build_model("higherhrnet_tiny_coco_128").eval()
    with torch.inference_mode():
        out = model(torch.randn(2, 3, h, w))
    assert isinstance(out, list)
    assert [tuple(o.shape) for o in out] == [(2, 34, h // 4, w // 4), (2, 17, h // 2, w // 2)]


def test_forward_takes_only_images() -> None:
    model = build_model("hrnet_tiny_aic_128")
    with pytest.raises(TypeError):
        model(torch.randn(1, 3, 64, 64), mode="test")  # type: ignore[call-arg]


def test_deconv_input_is_features_then_full_first_output() -> None:
    """The 28 channels of output 0 (heatmaps AND tags) enter the deconv after the features."""
    model = build_model("higherhrnet_tiny_crowdpose_128").eval()
    head = model.keypoint_head
    deconv = head.deconv_layers[0][0][0]
    assert deconv.in_channels == 8 + 28
    seen: list[torch.Tensor] = []
    deconv.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0]))
    features = torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        first, _ = head([features])
    assert torch.equal(seen[0], torch.cat([features, first], dim=1))


def _std_is(weight: torch.Tensor, expected: float) -> bool:
    """Sample std within 4 standard errors (std error of a std is about std / sqrt(2n))."""
    return abs(weight.std().item() - expected) < 4 * expected / (2 * weight.numel()) ** 0.5


def test_init_rules_of_reference() -> None:
    """reference.md §2.7: N(0, 0.001) convs and zero biases, default init in head blocks."""
    torch.manual_seed(0)
    model = build_model("higherhrnet_w32_crowdpose_512")
    head = model.keypoint_head
    for conv in head.final_layers:
        assert _std_is(conv.weight, 0.001)
        assert torch.count_nonzero(conv.bias) == 0
    deconv = head.deconv_layers[0][0][0]
    assert _std_is(deconv.weight, 0.001)
    block_conv = head.deconv_layers[0][1][0].conv1
    # kaiming_uniform(a=sqrt(5)) on fan_in 288: U(-1/sqrt(288), 1/sqrt(288)), std = 1/sqrt(864)
    assert _std_is(block_conv.weight, 864 ** -0.5)
    assert _std_is(model.backbone.stage4[0].branches[3][0].conv1.weight, 0.001)
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
        assert bn.eps == 1e-5 and bn.momentum == 0.1


def test_build_model_overrides_and_errors() -> None:
    with torch.device("meta"):
        model = build_model("hrnet_w32_aic_512", num_keypoints=17)
    assert model.keypoint_head.final_layer.weight.shape == (34, 32, 1, 1)
    with pytest.raises(AeposeError, match="did you mean 'num_keypoints'"):
        build_model("hrnet_w32_aic_512", num_keypoint=17)
    with pytest.raises(AeposeError, match="did you mean 'hrnet_w32_aic_512'"):
        build_model("hrnet_w32_aic512")


def test_required_presets_exist() -> None:
    required = {
        "hrnet_w32_aic_512", "higherhrnet_w32_crowdpose_512", "higherhrnet_w32_aic_512",
        "hrnet_w32_coco_512", "hrnet_w48_coco_512", "higherhrnet_w32_coco_512",
        "higherhrnet_w32_coco_640", "higherhrnet_w48_coco_512",
    }
    assert required <= set(list_presets())
    assert list_presets()[:2] == ["hrnet_w32_aic_512", "higherhrnet_w32_crowdpose_512"]
