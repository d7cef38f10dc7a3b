"""Configuration: frozen dataclasses and the literal table of presets.

A preset is a complete, named :class:`Config` (model, data, training and test settings)
named after the mmpose 0.x config it reproduces (reference.md §1). Nothing here is
looked up by string anywhere else: code receives a ``Config`` (or one of its parts).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aepose.choices import STAGE_AVERAGES
from aepose.errors import AeposeError
from aepose.validate import (
    integer_in,
    integers_in,
    number_in,
    numbers_in,
    one_of,
    refuse,
    require,
)

T = TypeVar("T")


@dataclass(frozen=True)
class ModelConfig:
    """Network: an HRNet backbone variant and an associative-embedding head.

    ``with_ae`` has one entry per output resolution (stride 4 first); an output with tags
    carries ``num_keypoints`` heatmap channels followed by ``num_keypoints`` tag channels.
    """

    backbone: str  # key of aepose.models.hrnet.HRNET_VARIANTS
    head: str  # key of aepose.models.HEADS: "simple" or "higher"
    num_keypoints: int
    with_ae: tuple[bool, ...] = (True,)
    deconv_channels: int = 32  # HigherHRNet: width of the stride-2 branch
    deconv_kernel: int = 4
    num_basic_blocks: int = 4
    cat_output: bool = True  # HigherHRNet: concatenate the stride-4 output to the features
    final_conv_kernel: int = 1

    def __post_init__(self) -> None:
        require(self, "model", head=one_of(self.head, ("simple", "higher")))
        require(self, "model", num_keypoints=integer_in(self.num_keypoints, 1, 1000))
        if not self.with_ae or not all(isinstance(v, bool) for v in self.with_ae):
            refuse("model", "with_ae", self.with_ae, "one true/false per output")
        require(self, "model", deconv_channels=integer_in(self.deconv_channels, 1, 4096))
        require(self, "model", deconv_kernel=one_of(self.deconv_kernel, (2, 3, 4)))
        require(self, "model", num_basic_blocks=integer_in(self.num_basic_blocks, 0, 64))
        require(self, "model", final_conv_kernel=one_of(self.final_conv_kernel, (1, 3, 5, 7)))


@dataclass(frozen=True)
class DataConfig:
    """Dataset files, input/output geometry and training augmentation (reference.md §1.3-1.4)."""

    # KeypointSpec name: "aic", "crowdpose", "coco", or CUSTOM_DATASET for a skeleton read
    # from the data, whose spec travels with the network (aepose.keypoints.spec_of).
    dataset: str
    input_size: int = 512
    heatmap_sizes: tuple[int, ...] = (128,)
    sigma: float = 2.0
    max_people: int = 30
    train_ann: str = ""
    train_images: str = ""
    val_ann: str = ""
    val_images: str = ""
    rotation_deg: float = 30.0
    scale_range: tuple[float, float] = (0.75, 1.5)
    translation: float = 40.0
    flip_prob: float = 0.5

    def __post_init__(self) -> None:
        require(self, "data", dataset=one_of(self.dataset, (*_KEYPOINTS, CUSTOM_DATASET)))
        require(self, "data", input_size=integer_in(self.input_size, 32, MAX_INPUT_SIZE))
        if self.input_size % 32:
            refuse("data", "input_size", self.input_size, "a multiple of 32 (HRNet's stride)")
        require(self, "data", heatmap_sizes=integers_in(self.heatmap_sizes, 1, self.input_size))
        require(self, "data", sigma=number_in(self.sigma, 0, 64, low_open=True))
        require(self, "data", max_people=integer_in(self.max_people, 1, MAX_PEOPLE))
        require(self, "data", rotation_deg=number_in(self.rotation_deg, 0, 180))
        require(self, "data", scale_range=numbers_in(self.scale_range, 0, 10, low_open=True))
        if self.scale_range[0] > self.scale_range[1]:
            refuse("data", "scale_range", self.scale_range, "(low, high) with low <= high")
        require(self, "data", translation=number_in(self.translation, 0, self.input_size))
        require(self, "data", flip_prob=number_in(self.flip_prob, 0, 1))


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and loss weights (reference.md §1.6, §1.8, §3.11); one entry per output."""

    lr: float = 1.5e-3
    warmup_iters: int = 500
    warmup_ratio: float = 1e-3
    lr_steps: tuple[int, ...] = (200, 260)
    lr_gamma: float = 0.1
    epochs: int = 300
    batch_size: int = 24  # per GPU
    workers: int = 2
    ae_loss_type: str = "exp"
    heatmap_loss_factor: tuple[float, ...] = (1.0,)
    push_loss_factor: tuple[float, ...] = (0.001,)
    pull_loss_factor: tuple[float, ...] = (0.001,)
    checkpoint_interval: int = 50
    val_interval: int = 50
    # Fine-tuning: the backbone's weights stay as loaded for this many first epochs (its
    # learning rate is 0; BatchNorm statistics still follow the new data).
    freeze_backbone_epochs: int = 0

    def __post_init__(self) -> None:
        # lr 0 is allowed: it freezes the weights (tests).
        require(self, "train", lr=number_in(self.lr, 0, 10))
        require(self, "train", warmup_iters=integer_in(self.warmup_iters, 0, 10**9))
        require(self, "train", warmup_ratio=number_in(self.warmup_ratio, 0, 1))
        if self.lr_steps:
            require(self, "train", lr_steps=integers_in(self.lr_steps, 0, 10**6))
        require(self, "train", lr_gamma=number_in(self.lr_gamma, 0, 1, low_open=True))
        require(self, "train", epochs=integer_in(self.epochs, 1, 10**6))
        require(self, "train", batch_size=integer_in(self.batch_size, 1, 4096))
        require(self, "train", workers=integer_in(self.workers, 0, 256))
        require(self, "train", ae_loss_type=one_of(self.ae_loss_type, ("exp", "max")))
        require(self, "train", heatmap_loss_factor=numbers_in(self.heatmap_loss_factor, 0, 1e6))
        require(self, "train", push_loss_factor=numbers_in(self.push_loss_factor, 0, 1e6))
        require(self, "train", pull_loss_factor=numbers_in(self.pull_loss_factor, 0, 1e6))
        if not len(self.heatmap_loss_factor) == len(self.push_loss_factor) == len(
                self.pull_loss_factor):
            refuse("train", "push_loss_factor", self.push_loss_factor,
                   "as many values as train.heatmap_loss_factor and train.pull_loss_factor")
        require(self, "train", checkpoint_interval=integer_in(self.checkpoint_interval, 1, 10**6))
        require(self, "train", val_interval=integer_in(self.val_interval, 1, 10**6))
        require(self, "train",
                freeze_backbone_epochs=integer_in(self.freeze_backbone_epochs, 0, 10**6))


@dataclass(frozen=True)
class TestConfig:
    """Test-time settings of mmpose's ``test_cfg`` and test pipeline (reference.md §1.5, §1.7)."""

    scales: tuple[float, ...] = (1.0,)
    flip: bool = True
    max_people: int = 30
    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    nms_kernel: int = 5
    adjust: bool = True
    refine: bool = True
    project2image: bool = True
    # How HigherHRNet's outputs are combined: "v0.29" (mmpose >= 0.19, the published
    # numbers) or "legacy" (mmpose < 0.19); see aepose.choices.STAGE_AVERAGES.
    stage_average: str = "v0.29"

    def __post_init__(self) -> None:
        # The one place test settings are checked: every override goes through here.
        require(self, "test", scales=numbers_in(self.scales, MIN_TEST_SCALE, MAX_TEST_SCALE))
        # A tuple of floats whatever was given (a list, ints): hashable, and written the
        # same way into every output's header.
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if len(set(self.scales)) != len(self.scales):
            refuse("test", "scales", self.scales, "distinct values")
        if len(self.scales) > 1 and 1 not in self.scales:
            refuse("test", "scales", self.scales, "1 among several scales (the base size)")
        require(self, "test", max_people=integer_in(self.max_people, 1, MAX_PEOPLE))
        require(self, "test", detection_threshold=number_in(self.detection_threshold, 0, 1))
        require(self, "test", tag_threshold=number_in(self.tag_threshold, 0, 1e6, low_open=True))
        require(self, "test", nms_kernel=integer_in(self.nms_kernel, 1, 99))
        if self.nms_kernel % 2 == 0:
            refuse("test", "nms_kernel", self.nms_kernel, "an odd integer in [1, 99]")
        require(self, "test", stage_average=one_of(self.stage_average, STAGE_AVERAGES))


@dataclass(frozen=True)
class Config:
    """One complete recipe: what a preset name stands for."""

    name: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    checkpoint: str = ""  # file name of mmpose's released weights, if any
    reported: str = ""  # mmpose's published result for those weights

    def __post_init__(self) -> None:
        # A custom skeleton's count is its spec's, checked where network and spec meet.
        expected = _KEYPOINTS.get(self.data.dataset, self.model.num_keypoints)
        if self.model.num_keypoints != expected:
            refuse("model", "num_keypoints", self.model.num_keypoints,
                   f"{expected}, the keypoint count of data.dataset {self.data.dataset!r}")
        outputs = len(self.data.heatmap_sizes)
        if len(self.model.with_ae) != outputs:
            refuse("model", "with_ae", self.model.with_ae,
                   f"{outputs} value(s), one per data.heatmap_sizes entry")
        if len(self.train.heatmap_loss_factor) != outputs:
            refuse("train", "heatmap_loss_factor", self.train.heatmap_loss_factor,
                   f"{outputs} value(s), one per data.heatmap_sizes entry")


# Input limits (README, "Failure behaviour"): a network input side, people per image and
# test scale beyond these are refused where they enter, before any memory is spent on them.
MAX_INPUT_SIZE = 4096
MAX_PEOPLE = 1000
MIN_TEST_SCALE = 0.125  # below it an image shrinks to a few heatmap pixels
MAX_TEST_SCALE = 8.0


# (train annotations, train images, val annotations, val images) under --data-root.
DATASET_FILES: dict[str, tuple[str, str, str, str]] = {
    "aic": (
        "annotations/aic_train.json",
        "ai_challenger_keypoint_train_20170902/keypoint_train_images_20170902",
        "annotations/aic_val.json",
        "ai_challenger_keypoint_validation_20170911/keypoint_validation_images_20170911",
    ),
    "crowdpose": (
        "annotations/mmpose_crowdpose_trainval.json", "images",
        "annotations/mmpose_crowdpose_test.json", "images",
    ),
    "coco": (
        "annotations/person_keypoints_train2017.json", "train2017",
        "annotations/person_keypoints_val2017.json", "val2017",
    ),
}
_KEYPOINTS = {"aic": 14, "crowdpose": 14, "coco": 17}
CUSTOM_DATASET = "custom"
# AIC's push factor is ten times everyone else's (reference.md §1.6, trap 9).
_PUSH = {"aic": 0.01, "crowdpose": 0.001, "coco": 0.001}


def _preset(
    name: str,
    *,
    backbone: str,
    higher: bool,
    dataset: str,
    input_size: int = 512,
    checkpoint: str = "",
    reported: str = "",
    batch_size: int = 24,
    train: TrainConfig | None = None,
) -> Config:
    """Build the Config of one mmpose AE recipe; HigherHRNet adds a stride-2 heatmap output."""
    width = {"w32": 32, "w48": 48, "tiny": 8, "small": 16}[backbone]
    outputs = 2 if higher else 1
    quarter = input_size // 4
    train_ann, train_images, val_ann, val_images = DATASET_FILES[dataset]
    train = train or TrainConfig(batch_size=batch_size)
    return Config(
        name=name,
        model=ModelConfig(
            backbone=backbone,
            head="higher" if higher else "simple",
            num_keypoints=_KEYPOINTS[dataset],
            with_ae=(True, False) if higher else (True,),
            deconv_channels=width,
            num_basic_blocks=1 if backbone in ("tiny", "small") else 4,
        ),
        data=DataConfig(
            dataset=dataset,
            input_size=input_size,
            heatmap_sizes=(quarter, 2 * quarter) if higher else (quarter,),
            train_ann=train_ann, train_images=train_images, val_ann=val_ann,
            val_images=val_images,
        ),
        train=dataclasses.replace(
            train,
            heatmap_loss_factor=(1.0,) * outputs,
            push_loss_factor=(_PUSH[dataset],) * outputs,
            pull_loss_factor=(0.001,) * outputs,
        ),
        checkpoint=checkpoint,
        reported=reported,
    )


# Small, fast recipes for tests and the CPU demo: 128 px input, narrow widths, short schedule.
_TINY_TRAIN = TrainConfig(
    lr=1.5e-3, warmup_iters=50, lr_steps=(40, 55), epochs=60, batch_size=8, workers=0,
    checkpoint_interval=10, val_interval=10,
)

PRESETS: dict[str, Config] = {
    cfg.name: cfg
    for cfg in (
        _preset(
            "hrnet_w32_aic_512", backbone="w32", higher=False, dataset="aic",
            checkpoint="hrnet_w32_aic_512x512-77e2a98a_20210131.pth",
            reported="AIC val AP 0.303 (flip); 0.318 with scales 2,1,0.5",
        ),
        _preset(
            "higherhrnet_w32_crowdpose_512", backbone="w32", higher=True, dataset="crowdpose",
            checkpoint="higher_hrnet32_crowdpose_512x512-1aa4a132_20201017.pth",
            reported="CrowdPose test AP 0.655 (flip); 0.661 with scales 2,1",
        ),
        _preset(
            "higherhrnet_w32_aic_512", backbone="w32", higher=True, dataset="aic",
            checkpoint="higher_hrnet32_aic_512x512-9a674c33_20210130.pth",
            reported="AIC val AP 0.315 (flip)",
        ),
        _preset(
            "hrnet_w32_coco_512", backbone="w32", higher=False, dataset="coco",
            checkpoint="hrnet_w32_coco_512x512-bcb8c247_20200816.pth",
            reported="COCO val AP 0.654 (flip)",
        ),
        _preset(
            "hrnet_w48_coco_512", backbone="w48", higher=False, dataset="coco", batch_size=16,
            checkpoint="hrnet_w48_coco_512x512-cf72fcdf_20200816.pth",
            reported="COCO val AP 0.665 (flip)",
        ),
        _preset(
            "higherhrnet_w32_coco_512", backbone="w32", higher=True, dataset="coco",
            checkpoint="higher_hrnet32_coco_512x512-8ae85183_20200713.pth",
            reported="COCO val AP 0.677 (flip)",
        ),
        _preset(
            "higherhrnet_w32_coco_640", backbone="w32", higher=True, dataset="coco",
            input_size=640, batch_size=16,
            checkpoint="higher_hrnet32_coco_640x640-a22fe938_20200712.pth",
            reported="COCO val AP 0.686 (flip)",
        ),
        _preset(
            "higherhrnet_w48_coco_512", backbone="w48", higher=True, dataset="coco", batch_size=16,
            checkpoint="higher_hrnet48_coco_512x512-60fedcbc_20200712.pth",
            reported="COCO val AP 0.686 (flip)",
        ),
        _preset(
            "hrnet_tiny_aic_128", backbone="tiny", higher=False, dataset="aic",
            input_size=128, train=_TINY_TRAIN,
        ),
        _preset(
            "higherhrnet_tiny_crowdpose_128", backbone="tiny", higher=True, dataset="crowdpose",
            input_size=128, train=_TINY_TRAIN,
        ),
        _preset(
            "higherhrnet_tiny_coco_128", backbone="tiny", higher=True, dataset="coco",
            input_size=128, train=_TINY_TRAIN,
        ),
        _preset(
            "higherhrnet_small_crowdpose_128", backbone="small", higher=True,
            dataset="crowdpose", input_size=128, train=_TINY_TRAIN,
        ),
    )
}

# Where mmpose 0.x publishes each preset's released weights (its model zoo pages,
# configs/body/2d_kpt_sview_rgb_img/associative_embedding/{aic,coco,crowdpose}/*.md). Every
# URL's file name is the preset's ``checkpoint`` and ends in ``-XXXXXXXX_date.pth``, the first
# 8 hex digits of the file's SHA-256, which aepose.hub verifies. AEPOSE_WEIGHTS_MIRROR
# replaces WEIGHTS_BASE.
WEIGHTS_BASE = "https://download.openmmlab.com/mmpose"
WEIGHTS_URLS: dict[str, str] = {
    "hrnet_w32_aic_512": "https://download.openmmlab.com/mmpose/bottom_up/"
    "hrnet_w32_aic_512x512-77e2a98a_20210131.pth",
    "higherhrnet_w32_crowdpose_512": "https://download.openmmlab.com/mmpose/bottom_up/"
    "higher_hrnet32_crowdpose_512x512-1aa4a132_20201017.pth",
    "higherhrnet_w32_aic_512": "https://download.openmmlab.com/mmpose/bottom_up/"
    "higher_hrnet32_aic_512x512-9a674c33_20210130.pth",
    "hrnet_w32_coco_512": "https://download.openmmlab.com/mmpose/bottom_up/"
    "hrnet_w32_coco_512x512-bcb8c247_20200816.pth",
    "hrnet_w48_coco_512": "https://download.openmmlab.com/mmpose/bottom_up/"
    "hrnet_w48_coco_512x512-cf72fcdf_20200816.pth",
    "higherhrnet_w32_coco_512": "https://download.openmmlab.com/mmpose/bottom_up/"
    "higher_hrnet32_coco_512x512-8ae85183_20200713.pth",
    "higherhrnet_w32_coco_640": "https://download.openmmlab.com/mmpose/bottom_up/"
    "higher_hrnet32_coco_640x640-a22fe938_20200712.pth",
    "higherhrnet_w48_coco_512": "https://download.openmmlab.com/mmpose/bottom_up/"
    "higher_hrnet48_coco_512x512-60fedcbc_20200712.pth",
}


def list_presets() -> list[str]:
    """Names of every preset, seeds first, in table order."""
    return list(PRESETS)


def get_preset(name: str) -> Config:
    """The preset called ``name``; an unknown name raises with the closest valid names."""
    if name in PRESETS:
        return PRESETS[name]
    raise AeposeError(f"unknown preset {name!r}{did_you_mean(name, PRESETS)}")


def did_you_mean(word: str, choices: typing.Iterable[str]) -> str:
    """A ``"; did you mean X?"`` suffix naming the closest choice, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=2, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"


def with_test_settings(config: Config, test: TestConfig | None = None,
                       **overrides: Any) -> Config:
    """``config`` with its ``test`` section replaced by ``test`` (when given) and then the
    named fields overridden (None values are ignored): how every API keyword and command
    line option reaches the test settings, checked once by :class:`TestConfig`."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = [k for k in given if k not in TestConfig.__dataclass_fields__]
    if unknown:
        raise AeposeError(f"unknown test setting {unknown[0]!r}"
                          f"{did_you_mean(unknown[0], TestConfig.__dataclass_fields__)}")
    return dataclasses.replace(config, test=dataclasses.replace(test or config.test, **given))


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a :class:`Config` from ``dataclasses.asdict`` output (e.g. stored in a checkpoint).

    Lists become tuples; unknown keys raise, so a checkpoint from a newer version is refused
    explicitly rather than silently misread.
    """
    return _build(Config, data, "config")


def _build(cls: type[T], data: Any, where: str) -> T:
    if not isinstance(data, dict):
        raise AeposeError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise AeposeError(f"{where}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], names)}")
    kwargs = {key: _coerce(hints[key], value, f"{where}.{key}") for key, value in data.items()}
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)  # type: ignore[arg-type]
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise AeposeError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def apply_overrides(cfg: Config, overrides: typing.Sequence[str]) -> Config:
    """``cfg`` with ``section.field=value`` assignments applied, e.g. ``train.epochs=3``.

    Values are read for the field's type: numbers, ``true``/``false``, and tuples written as
    ``200,260`` or ``[200, 260]``. An unknown key raises with the closest valid key. All
    assignments are applied at once and the result is validated once, so values that must
    change together (the loss factors of a different number of outputs) can.
    """
    changes: dict[str, dict[str, Any]] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise AeposeError(f"override {item!r} is not of the form section.field=value")
        section, name, value = _parse_field(cfg, key.strip(), text.strip())
        changes.setdefault(section, {})[name] = value
    top = changes.pop("", {})
    parts = {section: dataclasses.replace(getattr(cfg, section), **fields)
             for section, fields in changes.items()}
    return dataclasses.replace(cfg, **top, **parts)


def override_keys(cfg: Config) -> list[str]:
    """Every key ``apply_overrides`` accepts, e.g. ``train.lr``."""
    keys = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            keys += [f"{f.name}.{g.name}" for g in dataclasses.fields(value)]
        else:
            keys.append(f.name)
    return keys


def _parse_field(cfg: Config, key: str, text: str) -> tuple[str, str, Any]:
    """(section or "", field name, value read for the field's type) of one assignment."""
    if key not in override_keys(cfg):
        raise AeposeError(f"unknown config key {key!r}{did_you_mean(key, override_keys(cfg))}")
    section, _, name = key.rpartition(".")
    owner = type(getattr(cfg, section)) if section else Config
    return section, name, _parse_value(typing.get_type_hints(owner)[name], text, key)


def _parse_value(hint: Any, text: str, key: str) -> Any:
    """``text`` read as a value of type ``hint`` (str, int, float, bool or a tuple of them)."""
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        items = [s.strip() for s in text.strip("[]() ").split(",") if s.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_value(args[0], s, key) for s in items)
        if len(items) != len(args):
            raise AeposeError(f"{key}: expected {len(args)} comma-separated values, got {text!r}")
        return tuple(_parse_value(a, s, key) for a, s in zip(args, items, strict=True))
    readers: dict[Any, typing.Callable[[str], Any]] = {
        int: int, float: float, str: str, bool: _parse_bool}
    try:
        return readers[hint](text)
    except ValueError:
        kind = {int: "an integer", float: "a number", bool: "true or false"}[hint]
        raise AeposeError(f"{key}: expected {kind}, got {text!r}") from None


def _parse_bool(text: str) -> bool:
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if text.lower() not in words:
        raise ValueError(text)
    return words[text.lower()]
