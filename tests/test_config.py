"""Presets carry the reference's settings (reference.md §1) and survive a dict round trip."""

from __future__ import annotations

import dataclasses

import pytest

from aepose.config import PRESETS, apply_overrides, config_from_dict, get_preset
from aepose.errors import AeposeError


def test_seed_recipes_match_reference_section_1() -> None:
    aic, crowd = get_preset("hrnet_w32_aic_512"), get_preset("higherhrnet_w32_crowdpose_512")
    for cfg in (aic, crowd):
        assert cfg.data.input_size == 512 and cfg.data.sigma == 2 and cfg.data.max_people == 30
        assert (cfg.data.rotation_deg, cfg.data.scale_range, cfg.data.translation) == (
            30, (0.75, 1.5), 40)
        assert cfg.data.flip_prob == 0.5
        t = cfg.train
        assert (t.lr, t.warmup_iters, t.warmup_ratio, t.lr_steps, t.lr_gamma, t.epochs) == (
            1.5e-3, 500, 1e-3, (200, 260), 0.1, 300)
        assert (t.batch_size, t.ae_loss_type) == (24, "exp")
        s = cfg.test
        assert (s.scales, s.flip, s.max_people, s.detection_threshold, s.tag_threshold,
                s.nms_kernel, s.adjust, s.refine, s.project2image) == (
            (1.0,), True, 30, 0.1, 1.0, 5, True, True, True)
    assert aic.data.heatmap_sizes == (128,) and crowd.data.heatmap_sizes == (128, 256)
    assert aic.model.with_ae == (True,) and crowd.model.with_ae == (True, False)
    # Trap 9: AIC pushes ten times harder.
    assert (aic.train.push_loss_factor, aic.train.pull_loss_factor) == ((0.01,), (0.001,))
    assert crowd.train.push_loss_factor == (0.001, 0.001)
    assert crowd.train.heatmap_loss_factor == (1.0, 1.0)
    assert aic.data.val_ann == "annotations/aic_val.json"
    assert crowd.data.train_ann == "annotations/mmpose_crowdpose_trainval.json"
    assert crowd.data.val_ann == "annotations/mmpose_crowdpose_test.json"


def test_zoo_relatives() -> None:
    assert get_preset("higherhrnet_w32_coco_640").data.heatmap_sizes == (160, 320)
    assert get_preset("higherhrnet_w32_aic_512").train.push_loss_factor == (0.01, 0.01)
    assert get_preset("hrnet_w48_coco_512").model.backbone == "w48"
    assert get_preset("higherhrnet_w48_coco_512").model.deconv_channels == 48
    assert get_preset("hrnet_w48_coco_512").train.batch_size == 16


@pytest.mark.parametrize("name", list(PRESETS))
def test_dict_round_trip(name: str) -> None:
    cfg = PRESETS[name]
    assert config_from_dict(dataclasses.asdict(cfg)) == cfg


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(AeposeError, match="did you mean 'higherhrnet_w32_crowdpose_512'"):
        get_preset("higherhrnet_w32_crowdpose")
    data = dataclasses.asdict(get_preset("hrnet_w32_aic_512"))
    data["train"]["lerning_rate"] = data["train"].pop("lr")
    with pytest.raises(AeposeError, match=r"config\.train: unknown key 'lerning_rate'"):
        config_from_dict(data)


def test_overrides_parse_each_field_type() -> None:
    cfg = apply_overrides(get_preset("higherhrnet_w32_crowdpose_512"), [
        "train.epochs=3", "train.lr=1e-3", "train.lr_steps=[1, 2]", "data.flip_prob=0",
        "test.flip=false", "data.scale_range=0.5,2", "test.scales=2,1", "name=mine",
    ])
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.lr_steps) == (3, 1e-3, (1, 2))
    assert isinstance(cfg.train.lr, float) and isinstance(cfg.data.flip_prob, float)
    assert (cfg.test.flip, cfg.data.scale_range, cfg.test.scales, cfg.name) == (
        False, (0.5, 2.0), (2.0, 1.0), "mine")
    # Untouched fields keep the preset's values.
    assert cfg.train.batch_size == 24 and cfg.model == get_preset(
        "higherhrnet_w32_crowdpose_512").model


@pytest.mark.parametrize(("item", "message"), [
    ("train.epoch=3", r"unknown config key 'train.epoch'; did you mean 'train.epochs'"),
    ("train.epochs=three", r"train.epochs: expected an integer, got 'three'"),
    ("test.flip=maybe", r"test.flip: expected true or false"),
    ("data.scale_range=1", r"data.scale_range: expected 2 comma-separated values"),
    ("train.epochs", r"not of the form section.field=value"),
])
def test_bad_overrides_name_the_problem(item: str, message: str) -> None:
    with pytest.raises(AeposeError, match=message):
        apply_overrides(get_preset("hrnet_tiny_aic_128"), [item])


# --------------------------------------------------------------------------------------------
# Range checks where values enter: one line naming the key and what is allowed


@pytest.mark.parametrize(("item", "message"), [
    ("train.lr=-1", r"train\.lr = -1\.0: expected a finite number in \[0, 10\]"),
    ("train.lr=nan", r"train\.lr = nan: expected a finite number"),
    ("train.batch_size=0", r"train\.batch_size = 0: expected an integer in \[1, 4096\]"),
    ("train.workers=-1", r"train\.workers = -1: expected an integer in \[0, 256\]"),
    ("train.epochs=0", r"train\.epochs = 0: expected an integer in \[1, "),
    ("model.num_keypoints=99",
     r"model\.num_keypoints = 99: expected 14, the keypoint count of data\.dataset 'crowdpose'"),
    ("test.scales=inf", r"test\.scales = \(inf,\): expected one or more finite numbers in "
     r"\[0\.125, 8\]"),
    ("test.scales=0.0001,1", r"test\.scales = \(0\.0001, 1\.0\)"),
    ("test.scales=100", r"test\.scales = \(100\.0,\)"),
    ("test.scales=2,0.5", r"test\.scales = \(2\.0, 0\.5\): expected 1 among several"),
    ("test.scales=1,1", r"expected distinct values"),
    ("test.nms_kernel=4", r"test\.nms_kernel = 4: expected an odd integer"),
    ("test.stage_average=new", r"test\.stage_average = 'new': expected one of 'v0\.29', 'legacy'"),
    ("test.detection_threshold=1.5", r"test\.detection_threshold = 1\.5"),
    ("data.input_size=100", r"data\.input_size = 100: expected a multiple of 32"),
    ("data.flip_prob=2", r"data\.flip_prob = 2\.0: expected a finite number in \[0, 1\]"),
    ("data.scale_range=1.5,0.75", r"data\.scale_range = \(1\.5, 0\.75\): expected \(low, high\)"),
    ("data.dataset=mpii", r"data\.dataset = 'mpii': expected one of 'aic', 'crowdpose', 'coco'"),
    ("train.push_loss_factor=0.1", r"train\.push_loss_factor = \(0\.1,\): expected as many"),
])
def test_out_of_range_values_are_refused_naming_the_key(item: str, message: str) -> None:
    with pytest.raises(AeposeError, match=message) as error:
        apply_overrides(get_preset("higherhrnet_tiny_crowdpose_128"), [item])
    assert "\n" not in str(error.value)


def test_values_that_change_together_are_applied_at_once() -> None:
    # One output instead of two: four keys, each invalid without the others.
    cfg = apply_overrides(get_preset("higherhrnet_tiny_crowdpose_128"), [
        "model.with_ae=true", "data.heatmap_sizes=32", "train.heatmap_loss_factor=1",
        "train.push_loss_factor=0.001", "train.pull_loss_factor=0.001", "model.head=simple"])
    assert cfg.model.with_ae == (True,) and cfg.data.heatmap_sizes == (32,)


def test_a_checkpoint_config_with_bad_values_is_refused() -> None:
    from dataclasses import asdict

    data = asdict(get_preset("hrnet_tiny_aic_128"))
    data["train"]["lr_steps"] = 5
    with pytest.raises(AeposeError, match=r"config\.train\.lr_steps: expected a list, got int"):
        config_from_dict(data)
    data["train"]["lr_steps"] = [5]
    data["test"]["scales"] = [float("nan")]
    with pytest.raises(AeposeError, match=r"test\.scales = \(nan,\)"):
        config_from_dict(data)
