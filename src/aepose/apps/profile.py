"""Static cost of a network: parameters and FLOPs, without allocating real weights."""

from __future__ import annotations

from aepose.config import PRESETS, Config

# torch and the model builders are imported inside model_cost: 'aepose models' reads only the
# stored numbers below and should not pay ~1.5 s for importing torch.

# (parameters, FLOPs of one image at the preset's input size) per preset, measured once with
# model_cost so that 'aepose models' needs no model build (counting all of them takes ~20 s
# on a CPU). tests/test_hub.py recounts them and fails when a network changes.
PRESET_COSTS: dict[str, tuple[int, int]] = {
    "hrnet_w32_aic_512": (28_536_476, 81_558_241_280),
    "higherhrnet_w32_crowdpose_512": (28_641_962, 92_287_270_912),
    "higherhrnet_w32_aic_512": (28_641_962, 92_287_270_912),
    "hrnet_w32_coco_512": (28_536_674, 81_564_532_736),
    "hrnet_w48_coco_512": (63_596_578, 167_406_206_976),
    "higherhrnet_w32_coco_512": (28_645_331, 92_406_808_576),
    "higherhrnet_w32_coco_640": (28_645_331, 144_385_638_400),
    "higherhrnet_w48_coco_512": (63_827_139, 191_320_031_232),
    "hrnet_tiny_aic_128": (175_596, 43_925_504),
    "higherhrnet_tiny_crowdpose_128": (181_530, 63_717_376),
    "higherhrnet_tiny_coco_128": (182_379, 65_585_152),
    "higherhrnet_small_crowdpose_128": (713_994, 230_359_040),
}


def model_cost(cfg: Config, input_size: int | None = None) -> tuple[int, float]:
    """``(parameters, GFLOPs)`` of one image at ``input_size`` (default: the preset's).

    FLOPs count a multiply-add as 2 (torch's FlopCounterMode convention), measured on the
    meta device so that no memory is allocated and no arithmetic is done.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from aepose.models import build_model

    size = input_size or cfg.data.input_size
    with torch.device("meta"):
        model = build_model(cfg)
        image = torch.empty(1, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        model(image)
    return sum(p.numel() for p in model.parameters()), counter.get_total_flops() / 1e9


def preset_cost(cfg: Config) -> tuple[int, float]:
    """:func:`model_cost` at the preset's input size: the stored numbers for a preset whose
    network is unchanged, else counted now (a modified or unknown config)."""
    stored = PRESET_COSTS.get(cfg.name)
    if stored is None or PRESETS.get(cfg.name) != cfg:
        return model_cost(cfg)
    params, flops = stored
    return params, flops / 1e9
