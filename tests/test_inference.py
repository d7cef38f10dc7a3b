"""Test-time pipeline: flip / stage / scale aggregation against a literal oracle, geometry of
the output with painted maps, batching, pose NMS, COCO records, checkpoints and errors."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import lively
from torch import Tensor, nn

from aepose import AeposeError, build_model, get_preset
from aepose.codec.aggregate import aggregate_maps
from aepose.codec.decode import decode_poses
from aepose.config import ModelConfig, with_test_settings
from aepose.data.dataset import normalize_image
from aepose.data.transforms import apply_affine, resize_align, resize_matrix
from aepose.data.transforms import test_sizes as sizes_of
from aepose.keypoints import get_spec
from aepose.pipeline.pose import Pose
from aepose.pipeline.predictor import Predictor, predict_images

HIGHER = "higherhrnet_tiny_crowdpose_128"
SIMPLE = "hrnet_tiny_aic_128"


def _image(seed: int, width: int, height: int) -> np.ndarray:
    """Smooth random RGB uint8 image (blobs rather than noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(height // 16, 2), max(width // 16, 2), 3), dtype=np.uint8)
    big = torch.from_numpy(small).permute(2, 0, 1)[None].float()
    big = F.interpolate(big, size=(height, width), mode="bilinear", align_corners=False)
    return big[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


# ---------------------------------------------------------------------------------------
# The oracle: reference §4.2-4.4 step by step, one image, one pass per scale and per flip


def _resize_to(maps: Tensor, height: int, width: int) -> Tensor:
    if maps.shape[-2:] == (height, width):
        return maps
    return F.interpolate(maps, size=(height, width), mode="bilinear", align_corners=False)


def _oracle_set(
    outputs: Sequence[Tensor], k: int, with_ae: Sequence[bool], height: int, width: int
) -> tuple[Tensor, list[Tensor]]:
    """aggregate_stage 'average' for heatmaps, 'concat' for tags, both projected to base."""
    average: Tensor | int = 0
    for out in outputs:
        average = average + _resize_to(out[:, :k], height, width)
    tags = [_resize_to(out[:, k:], height, width)
            for out, ae in zip(outputs, with_ae, strict=True) if ae]
    return average / len(outputs), tags  # type: ignore[return-value]


def _oracle_maps(
    model: nn.Module,
    inputs: Sequence[Tensor],
    scales: Sequence[float],
    base: tuple[int, int],
    layout: ModelConfig,
    flip_index: Sequence[int] | None,
) -> tuple[Tensor, Tensor]:
    k, with_ae = layout.num_keypoints, layout.with_ae
    width, height = base
    per_scale: list[Tensor] = []
    final_tags: list[Tensor] = []
    for scale, x in zip(scales, inputs, strict=True):
        with torch.inference_mode():
            outputs = list(model(x))
            flipped = list(model(torch.flip(x, [3]))) if flip_index is not None else []
        heatmaps, tags = _oracle_set(outputs, k, with_ae, height, width)
        if flip_index is not None:
            back = []
            for out in flipped:
                out = torch.flip(out, [3])
                parts = [out[:, :k][:, list(flip_index)]]
                if out.shape[1] == 2 * k:
                    parts.append(out[:, k:][:, list(flip_index)])
                back.append(torch.cat(parts, dim=1))
            heatmaps_f, tags_f = _oracle_set(back, k, with_ae, height, width)
            heatmaps = (heatmaps + heatmaps_f) / 2.0
            tags = tags + tags_f
        per_scale.append(heatmaps)
        if scale == 1 or len(scales) == 1:
            final_tags = tags
    total: Tensor | int = 0
    for h in per_scale:
        total = total + h
    return total / len(per_scale), torch.stack(final_tags, dim=4)  # type: ignore[return-value]


def _inputs(images: Sequence[np.ndarray], scales: Sequence[float], input_size: int
            ) -> tuple[list[Tensor], tuple[int, int], tuple[float, ...]]:
    sizes = [sizes_of(im.shape[1], im.shape[0], input_size, scales) for im in images]
    inputs = [
        torch.stack([normalize_image(resize_align(im, s, i)) for im, s in zip(images, sizes,
                                                                              strict=True)])
        for i in range(len(scales))
    ]
    return inputs, sizes[0].base_size, sizes[0].scales


@pytest.mark.parametrize(("preset", "width", "height"), [(HIGHER, 150, 100), (SIMPLE, 100, 150)])
@pytest.mark.parametrize("scales", [(1,), (2, 1), (2, 1, 0.5)])
@pytest.mark.parametrize("flip", [True, False])
def test_aggregation_equals_the_literal_oracle(
    preset: str, width: int, height: int, scales: tuple[float, ...], flip: bool
) -> None:
    model = lively(preset).eval()
    cfg = get_preset(preset)
    flip_index = get_spec(cfg.data.dataset).flip_index if flip else None
    images = [_image(1, width, height), _image(2, width, height)]
    inputs, base, ordered = _inputs(images, scales, 128)
    with torch.inference_mode():
        heatmaps, tags = aggregate_maps(model, inputs, ordered, base, cfg.model,
                                        flip_index=flip_index)
    assert heatmaps.shape == (2, 14, base[1], base[0])
    assert tags.shape == (2, 14, base[1], base[0], 2 if flip else 1)
    for b in range(2):
        expected_h, expected_t = _oracle_maps(
            model, [x[b : b + 1] for x in inputs], ordered, base, cfg.model, flip_index)
        torch.testing.assert_close(heatmaps[b : b + 1], expected_h, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(tags[b : b + 1], expected_t, rtol=1e-5, atol=1e-5)
    assert heatmaps.abs().max() > 0.1  # the maps are far from flat: the check has teeth


def test_predict_images_is_oracle_maps_then_decode_then_back_projection() -> None:
    model = lively(HIGHER, seed=3).eval()
    cfg = get_preset(HIGHER)
    image = _image(4, 120, 90)
    (poses, scores), = predict_images(model, cfg, [image], scales=(2, 1), flip=True,
                                      channel_order="rgb")
    inputs, base, ordered = _inputs([image], (2, 1), 128)
    heatmaps, tags = _oracle_maps(model, inputs, ordered, base, cfg.model,
                                  get_spec("crowdpose").flip_index)
    expected, expected_scores = decode_poses(heatmaps[0], tags[0])
    # §4.6 for 120x90 at input 128: base 192x128, centre (60, 45), S = (135, 90) px.
    assert base == (192, 128)
    expected[..., 0] = expected[..., 0] * (135 / 192) + 60 - 135 / 2
    expected[..., 1] = expected[..., 1] * (90 / 128) + 45 - 90 / 2
    assert len(poses) > 0
    np.testing.assert_allclose(poses, expected, rtol=0, atol=1e-4)
    np.testing.assert_allclose(scores, expected_scores, rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------
# Flip by hand


class _ColumnNet(nn.Module):
    """K = 2 heatmaps and tags as known functions of channel 0 of the input and the column:
    heatmap_k = x + 10 k col, tag_k = 100 (k + 1) + x."""

    def forward(self, images: Tensor) -> list[Tensor]:
        x = images[:, :1]
        col = torch.arange(images.shape[3], dtype=x.dtype).view(1, 1, 1, -1)
        heat = [x + 10 * k * col for k in range(2)]
        tags = [100 * (k + 1) + x for k in range(2)]
        return [torch.cat(heat + tags, dim=1)]


_TWO_JOINTS = ModelConfig(backbone="tiny", head="simple", num_keypoints=2, with_ae=(True,))


def test_flip_back_and_channel_swap_by_hand() -> None:
    image = torch.zeros(1, 3, 1, 4)
    image[0, 0, 0] = torch.tensor([1.0, 2, 3, 4])
    heatmaps, tags = aggregate_maps(_ColumnNet(), [image], (1,), (4, 1), _TWO_JOINTS,
                                    flip_index=(1, 0))
    # Original: h0 = [1, 2, 3, 4], h1 = [1, 12, 23, 34]. Mirrored input [4, 3, 2, 1] gives
    # h0' = [4, 3, 2, 1], h1' = [4, 13, 22, 31]; mirrored back and swapped: joint 0 takes
    # [31, 22, 13, 4], joint 1 takes [1, 2, 3, 4].
    assert heatmaps[0, :, 0].tolist() == [[16, 12, 8, 4], [1, 7, 13, 19]]
    # Tags are not averaged: component 0 is the original, component 1 the swapped flip.
    assert tags[0, 0, 0].tolist() == [[101, 201], [102, 202], [103, 203], [104, 204]]
    assert tags[0, 1, 0].tolist() == [[201, 101], [202, 102], [203, 103], [204, 104]]
    plain, plain_tags = aggregate_maps(_ColumnNet(), [image], (1,), (4, 1), _TWO_JOINTS,
                                       flip_index=None)
    assert plain[0, :, 0].tolist() == [[1, 2, 3, 4], [1, 12, 23, 34]]
    assert plain_tags.shape == (1, 2, 1, 4, 1)


# ---------------------------------------------------------------------------------------
# v0.29 vs legacy stage aggregation


class _FixedOutputs(nn.Module):
    """Returns the first n rows of fixed tensors, whatever the input (n = batch size)."""

    def __init__(self, outputs: Sequence[Tensor]):
        super().__init__()
        self.outputs = list(outputs)

    def forward(self, images: Tensor) -> list[Tensor]:
        return [out[: len(images)] for out in self.outputs]


def _up(maps: Tensor, height: int, width: int) -> Tensor:
    return F.interpolate(maps[None], size=(height, width), mode="bilinear",
                         align_corners=False)[0]


def test_legacy_and_v029_each_follow_their_formula_and_differ() -> None:
    g = torch.Generator().manual_seed(0)
    quarter = torch.rand(2, 4, 4, 6, generator=g)  # K = 2 heatmaps + 2 tags at 1/4
    half = torch.rand(2, 2, 8, 12, generator=g)  # 2 heatmaps at 1/2
    net = _FixedOutputs([quarter, half])
    layout = dataclasses.replace(_TWO_JOINTS, head="higher", with_ae=(True, False))
    image = torch.zeros(1, 3, 16, 24)
    got = {
        mode: aggregate_maps(net, [image], (1,), (24, 16), layout, flip_index=(1, 0),
                             stage_average=mode)
        for mode in ("v0.29", "legacy")
    }
    # Row 1 is the flipped pass: mirror back, swap the two joints (heatmaps and tags).
    q_f = quarter[1].flip(-1)[[1, 0, 3, 2]]
    h_f = half[1].flip(-1)[[1, 0]]
    v029 = ((_up(quarter[0, :2], 16, 24) + _up(half[0], 16, 24)) / 2
            + (_up(q_f[:2], 16, 24) + _up(h_f, 16, 24)) / 2) / 2
    v029_tags = torch.stack([_up(quarter[0, 2:], 16, 24), _up(q_f[2:], 16, 24)], dim=-1)
    legacy = (_up((_up(quarter[0, :2], 8, 12) + half[0]) / 2, 16, 24)
              + _up((_up(q_f[:2], 8, 12) + h_f) / 2, 16, 24)) / 2
    legacy_tags = torch.stack([_up(_up(quarter[0, 2:], 8, 12), 16, 24),
                               _up(_up(q_f[2:], 8, 12), 16, 24)], dim=-1)
    torch.testing.assert_close(got["v0.29"][0][0], v029, rtol=0, atol=1e-6)
    torch.testing.assert_close(got["v0.29"][1][0], v029_tags, rtol=0, atol=1e-6)
    torch.testing.assert_close(got["legacy"][0][0], legacy, rtol=0, atol=1e-6)
    torch.testing.assert_close(got["legacy"][1][0], legacy_tags, rtol=0, atol=1e-6)
    assert (v029 - legacy).abs().max() > 1e-2
    assert (v029_tags - legacy_tags).abs().max() > 1e-2


def test_single_output_head_is_the_same_under_both_aggregations() -> None:
    net = _FixedOutputs([torch.rand(2, 4, 4, 6, generator=torch.Generator().manual_seed(1))])
    image = torch.zeros(1, 3, 16, 24)
    a = aggregate_maps(net, [image], (1,), (24, 16), _TWO_JOINTS, flip_index=(1, 0))
    b = aggregate_maps(net, [image], (1,), (24, 16), _TWO_JOINTS, flip_index=(1, 0),
                       stage_average="legacy")
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ---------------------------------------------------------------------------------------
# Geometry: painted peaks land where reference §4.6 says


class _Painted(nn.Module):
    """Maps at the input resolution, zero except for the given pixels; ignores the image.

    pixels: (joint, x, y, heatmap value, tag). ``heatmaps_only_output`` adds a second
    output with the heatmaps alone (HigherHRNet's layout)."""

    def __init__(self, k: int, pixels: Sequence[tuple[int, int, int, float, float]],
                 heatmaps_only_output: bool = False):
        super().__init__()
        self.k, self.pixels, self.second = k, list(pixels), heatmaps_only_output

    def forward(self, images: Tensor) -> list[Tensor]:
        out = torch.zeros(len(images), 2 * self.k, images.shape[2], images.shape[3])
        for joint, x, y, value, tag in self.pixels:
            out[:, joint, y, x] = value
            out[:, self.k + joint, y, x] = tag
        return [out, out[:, : self.k].clone()] if self.second else [out]


def _input_points(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """Image points -> scale-1 input frame through the forward resize matrix."""
    return apply_affine(points, resize_matrix(sizes_of(width, height, 128, (1,))))


@pytest.mark.parametrize(
    ("width", "height", "first_input_point"),
    [(600, 256, (20.0, 10.0)), (256, 600, (10.0, 23.0))],
)
def test_painted_peaks_back_project_with_the_adjust_offsets(
    width: int, height: int, first_input_point: tuple[float, float]
) -> None:
    # Landscape 600x256: input 320x128, 2 image px per input px, 20 px padding left and
    # right, so x_in = (x + 20) / 2, y_in = y / 2; portrait 256x600 is the transpose.
    image_points = np.array([(20 + 16 * k, 20 + 14 * k) for k in range(14)], dtype=np.float64)
    if height > width:
        image_points = image_points[:, ::-1] + np.array([0, 6])
    on_input = _input_points(image_points, width, height)
    np.testing.assert_allclose(on_input[0], first_input_point, atol=1e-6)
    np.testing.assert_allclose(on_input, np.round(on_input), atol=1e-6)  # whole pixels
    pixels = []
    for k, (x, y) in enumerate(np.round(on_input).astype(int)):
        # Right neighbour higher than left -> x + 0.25; equal up/down -> y - 0.25 (tie).
        pixels += [(k, x, y, 1.0, 0.0), (k, x + 1, y, 0.5, 0.0), (k, x - 1, y, 0.2, 0.0),
                   (k, x, y - 1, 0.3, 0.0), (k, x, y + 1, 0.3, 0.0)]
    predictor = Predictor(_Painted(14, pixels), get_preset(SIMPLE), flip=False)
    poses = predictor(np.zeros((height, width, 3), np.uint8))
    assert len(poses) == 1 and poses[0].score == pytest.approx(1.0)
    # Decoded at (x_in + 0.25 + 0.5, y_in - 0.25 + 0.5), times 2 image px per input px.
    np.testing.assert_allclose(poses[0].keypoints[:, :2], image_points + np.array([1.5, 0.5]),
                               atol=1e-4)
    np.testing.assert_array_equal(poses[0].keypoints[:, 2], 1.0)


# ---------------------------------------------------------------------------------------
# Batching


class _Recording(nn.Module):
    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, images: Tensor) -> list[Tensor]:
        self.shapes.append(tuple(images.shape))
        return list(self.inner(images))


def test_predict_batch_buckets_by_input_size_and_equals_one_by_one() -> None:
    net = _Recording(lively(HIGHER, seed=5).eval())
    predictor = Predictor(net, get_preset(HIGHER))
    # 150x100 and 140x100 both become 192x128 inputs; 100x150 becomes 128x192.
    images = [_image(6, 150, 100), _image(7, 100, 150), _image(8, 140, 100),
              _image(9, 150, 100)]
    batched = predictor.predict_batch(images)
    assert net.shapes == [(6, 3, 128, 192), (2, 3, 192, 128)]  # flip doubles each batch
    singles = [predictor(image) for image in images]
    assert all(len(poses) > 0 for poses in singles)
    for together, alone in zip(batched, singles, strict=True):
        _assert_same_people(together, alone)
    net.shapes.clear()
    capped = predict_images(net, get_preset(HIGHER), images, max_batch=2)
    # A full batch of the first size runs at once; then the oldest waiting image's batch
    # (image 1, portrait) before the rest of the first size: results stream in input order.
    assert net.shapes == [(4, 3, 128, 192), (2, 3, 192, 128), (2, 3, 128, 192)]
    for (poses, scores), alone in zip(capped, singles, strict=True):
        _assert_same_people([Pose(p[:, :3], float(s)) for p, s in zip(poses, scores,
                                                                      strict=True)], alone)


def _assert_same_people(got: Sequence[Pose], expected: Sequence[Pose]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a.keypoints, b.keypoints, rtol=0, atol=1e-5)
        assert a.score == pytest.approx(b.score, abs=1e-6)


# ---------------------------------------------------------------------------------------
# Pose NMS


@pytest.mark.parametrize(("shift", "kept"), [(3, 1), (60, 2)])
def test_predictor_pose_nms_drops_a_near_duplicate(shift: int, kept: int) -> None:
    pixels = []
    for k in range(14):
        x, y = 10 + 14 * k, 10 + 8 * k
        pixels += [(k, x, y, 1.0, 0.0), (k, x + shift, y, 0.8, 5.0)]
    net = _Painted(14, pixels, heatmaps_only_output=True)
    image = np.zeros((256, 600, 3), np.uint8)  # input 320x128
    plain = Predictor(net, get_preset(HIGHER), flip=False)(image)
    assert [round(p.score, 6) for p in plain] == [1.0, 0.8]
    nms = Predictor(net, get_preset(HIGHER), flip=False, pose_nms=0.9)(image)
    assert len(nms) == kept and nms[0].score == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------
# Records, errors, checkpoints


def test_pose_to_coco_record() -> None:
    keypoints = np.array([[10.5, 20, 0.9], [30, 5.25, 0.8], [0, 0, 0]], dtype=np.float32)
    record = Pose(keypoints, 0.5).to_coco(image_id=7)
    assert record["image_id"] == 7 and record["category_id"] == 1 and record["score"] == 0.5
    assert record["keypoints"] == [10.5, 20.0, float(np.float32(0.9)), 30.0, 5.25,
                                   float(np.float32(0.8)), 0.0, 0.0, 0.0]
    # bbox over ALL keypoints, the unfilled (0, 0) one included (reference §5.2).
    assert record["bbox"] == [0.0, 0.0, 30.0, 20.0]
    assert all(type(v) is float for v in record["keypoints"] + record["bbox"])


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((8, 8, 3), np.float32),
        np.zeros((8, 8), np.uint8),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((0, 8, 3), np.uint8),
        [[0, 0, 0]],
    ],
)
@pytest.mark.parametrize("order", ["bgr", "rgb"])
def test_bad_images_raise_one_line(image: object, order: str) -> None:
    predictor = Predictor(_ColumnNet(), get_preset(SIMPLE), channel_order=order)
    pattern = rf"^image 0: expected an image path or a {order.upper()} uint8 array \[H, W, 3\]"
    with pytest.raises(AeposeError, match=pattern) as info:
        predictor(image)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("scales", "message"), [
    ((2, 0.5), "1 among several"), ((1, 1), "distinct"),
    ((1, -1), r"finite numbers in \[0\.125, 8\]")])
def test_bad_scales_raise(scales: tuple[float, ...], message: str) -> None:
    with pytest.raises(AeposeError, match=message):
        Predictor(_ColumnNet(), get_preset(SIMPLE), scales=scales)


def test_network_that_does_not_fit_the_config_raises() -> None:
    predictor = Predictor(lively(SIMPLE).eval(), get_preset(HIGHER), flip=False)
    with pytest.raises(AeposeError, match="network returned 1 outputs"):
        predictor(np.zeros((64, 64, 3), np.uint8))


def test_from_checkpoint_aepose_file_uses_its_own_config(tmp_path: Path) -> None:
    model = lively(HIGHER, seed=11).eval()
    base = get_preset(HIGHER)
    cfg = dataclasses.replace(base, name="my_run",
                              test=dataclasses.replace(base.test, detection_threshold=0.2,
                                                       scales=(2.0, 1.0), flip=False))
    path = tmp_path / "run.pth"
    torch.save({"model": model.state_dict(), "config": dataclasses.asdict(cfg),
                "version": "0.1.0"}, path)
    loaded = Predictor.from_checkpoint(path, device="cpu")
    # The file's own test settings apply (scales and flip included).
    assert loaded.config == cfg and not loaded.flip and loaded.scales == (2.0, 1.0)
    image = _image(12, 120, 90)
    expected = Predictor(model, cfg)(image)
    got = loaded(image)
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)


def test_from_checkpoint_mmpose_file_with_preset(tmp_path: Path) -> None:
    model = lively(SIMPLE, seed=13).eval()
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": model.state_dict(), "meta": {}}, path)
    loaded = Predictor.from_checkpoint(path, preset=SIMPLE, device="cpu", scales=(2, 1))
    # Overrides are applied to the Config once: it is the preset's with those test scales.
    assert loaded.config == with_test_settings(get_preset(SIMPLE), scales=(2, 1))
    assert loaded.scales == loaded.config.test.scales == (2.0, 1.0)
    image = _image(14, 90, 120)
    expected = Predictor(model, get_preset(SIMPLE), scales=(2, 1))(image)
    got = loaded(image)
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        assert a.tags is not None and a.tags.shape == (14, 2)


def test_fast_network_keeps_the_pipeline_within_dtype_tolerance() -> None:
    from aepose.pipeline.network import FastNetwork

    cfg = get_preset("higherhrnet_tiny_crowdpose_128")
    torch.manual_seed(3)
    model = build_model(cfg).eval()
    images = torch.randn(2, 3, 128, 192)
    with torch.inference_mode():
        reference = model(images)
        nhwc = FastNetwork(model, channels_last=True).eval()(images)
        bf16 = FastNetwork(model, dtype="bf16")(images)
    for ref, out in zip(reference, nhwc, strict=True):
        assert out.dtype == torch.float32 and out.is_contiguous()
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for ref, out in zip(reference, bf16, strict=True):
        assert out.dtype == torch.float32
        assert 0 < float((out - ref).norm() / ref.norm()) < 5e-2  # bf16 rounding, no more
    with pytest.raises(AeposeError, match="unknown dtype 'int8'"):
        FastNetwork(model, dtype="int8")
