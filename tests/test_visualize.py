"""Pose drawing, heatmap overlays and atomic image saving (aepose.pipeline.draw).

Drawn pixels are checked by value at known places: keypoint centres carry the spec's keypoint
colour, link midpoints the person's colour, and pixels of hidden joints and far background keep
the background value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from aepose.data.coco import read_image
from aepose.errors import AeposeError
from aepose.keypoints import CROWDPOSE
from aepose.pipeline.draw import draw_poses, heatmap_overlay, person_color, save_image

BACKGROUND = 40

# An upright CrowdPose figure (x, y) in image pixels, bounding box x 60..140, y 30..210.
FIGURE = np.array(
    [
        (120, 70), (80, 70), (135, 105), (65, 105), (140, 140), (60, 140), (115, 140),
        (85, 140), (115, 175), (85, 175), (115, 210), (85, 210), (100, 30), (100, 60),
    ],
    dtype=np.float64,
)  # fmt: skip
L_ELBOW, L_WRIST, L_HIP, R_HIP = 2, 4, 6, 7


def blank(height: int = 240, width: int = 200) -> npt.NDArray[np.uint8]:
    return np.full((height, width, 3), BACKGROUND, dtype=np.uint8)


def person(offset_x: float = 0.0, score: float = 0.9) -> npt.NDArray[np.float64]:
    """[K, 3] keypoints of FIGURE shifted right by ``offset_x``, every score ``score``."""
    xy = FIGURE + np.array([offset_x, 0.0])
    return np.concatenate([xy, np.full((len(xy), 1), score)], axis=1)


def pixel(image: npt.NDArray[np.uint8], xy: tuple[float, float]) -> tuple[int, ...]:
    return tuple(int(v) for v in image[round(xy[1]), round(xy[0])])


def test_keypoints_above_threshold_are_drawn_in_spec_colours_and_low_ones_are_not() -> None:
    pose = person()
    pose[L_WRIST, 2] = 0.1  # below the 0.3 default: the wrist and the elbow-wrist link vanish
    pose[L_HIP, 2] = 0.3  # exactly at the threshold: still drawn
    out = draw_poses(blank(), pose[None], np.array([0.8]), CROWDPOSE, show_scores=False)

    for k, xy in enumerate(FIGURE):
        if k != L_WRIST:
            assert pixel(out, xy) == CROWDPOSE.keypoint_colors[k], CROWDPOSE.keypoint_names[k]
    background = (BACKGROUND,) * 3
    assert pixel(out, FIGURE[L_WRIST]) == background
    elbow_wrist_middle = (FIGURE[L_ELBOW] + FIGURE[L_WRIST]) / 2
    assert pixel(out, elbow_wrist_middle) == background
    assert pixel(out, (190, 5)) == background  # far from the figure


def test_links_take_the_person_colour_and_people_differ() -> None:
    image = blank(width=400)
    poses = np.stack([person(), person(offset_x=200)])
    out = draw_poses(image, poses, np.array([0.9, 0.8]), CROWDPOSE, thickness=3, show_scores=False)

    hips_middle = (FIGURE[L_HIP] + FIGURE[R_HIP]) / 2
    assert pixel(out, hips_middle) == person_color(0)
    assert pixel(out, hips_middle + np.array([200, 0])) == person_color(1)
    assert person_color(0) != person_color(1)


def test_person_palette_is_distinct_for_a_crowd() -> None:
    colors = [person_color(i) for i in range(30)]
    assert len(set(colors)) == 30
    assert all(0 <= c <= 255 for color in colors for c in color)
    assert person_color(7) == colors[7]  # fixed, not random


def test_input_image_is_left_untouched() -> None:
    image = blank()
    before = image.copy()
    out = draw_poses(image, person()[None], np.array([0.9]), CROWDPOSE)
    np.testing.assert_array_equal(image, before)
    assert not np.shares_memory(out, image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out != before).any()


def test_score_label_sits_above_the_persons_top_left() -> None:
    pose = person()[None]
    with_label = draw_poses(blank(), pose, np.array([0.87]), CROWDPOSE, show_scores=True)
    without = draw_poses(blank(), pose, np.array([0.87]), CROWDPOSE, show_scores=False)
    rows, cols = np.nonzero((with_label != without).any(axis=2))
    assert rows.size > 20
    left, top = FIGURE.min(axis=0)  # (60, 30)
    assert rows.max() < top and cols.min() >= left
    assert cols.max() < left + 60  # a short "0.87", not a banner across the image


def test_label_of_a_person_at_the_top_edge_stays_inside_the_image() -> None:
    pose = person()
    pose[:, 1] -= 29  # top of head at y = 1
    out = draw_poses(blank(), pose[None], np.array([0.5]), CROWDPOSE, show_scores=True)
    quiet = draw_poses(blank(), pose[None], np.array([0.5]), CROWDPOSE, show_scores=False)
    rows, _ = np.nonzero((out != quiet).any(axis=2))
    assert rows.size > 20 and rows.min() == 0


def test_default_sizes_grow_with_the_image() -> None:
    def drawn_pixels(height: int, width: int) -> int:
        pose = np.zeros((1, CROWDPOSE.num_keypoints, 3))
        pose[0, 0] = (width / 2, height / 2, 1.0)  # one lone keypoint, no links
        image = blank(height, width)
        out = draw_poses(image, pose, np.array([1.0]), CROWDPOSE, show_scores=False)
        return int((out != image).any(axis=2).sum())

    small, large = drawn_pixels(240, 320), drawn_pixels(1440, 1920)
    assert small > 0
    assert large > 10 * small  # radius 2 -> 12 pixels: area about 36 times


def test_no_people_gives_an_identical_copy() -> None:
    image = blank()
    out = draw_poses(image, np.zeros((0, CROWDPOSE.num_keypoints, 3)), np.zeros(0), CROWDPOSE)
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize(
    ("image", "keypoints", "scores", "message"),
    [
        (blank()[..., 0], person()[None], [0.5], "RGB uint8 array"),
        (blank().astype(np.float32), person()[None], [0.5], "RGB uint8 array"),
        (blank(), person()[None, :5], [0.5], "keypoints must be [P, 14, 3] for crowdpose"),
        (blank(), person()[None], [0.5, 0.4], "1 people but 2 person scores"),
    ],
)
def test_bad_inputs_raise_one_line_errors(
    image: npt.NDArray[np.uint8], keypoints: npt.ArrayLike, scores: list[float], message: str
) -> None:
    with pytest.raises(AeposeError, match=message.replace("[", r"\[")) as info:
        draw_poses(image, keypoints, np.array(scores), CROWDPOSE)
    assert "\n" not in str(info.value)


def test_heatmap_overlay_puts_each_joints_peak_where_it_belongs() -> None:
    image = blank(64, 64)
    heatmaps = np.zeros((2, 16, 16), dtype=np.float32)
    heatmaps[0, 4, 4] = 1.0  # -> image pixels around (17.5, 17.5)
    heatmaps[1, 12, 10] = 1.0  # -> around x 41.5, y 49.5
    out = heatmap_overlay(image, heatmaps, alpha=1.0)
    assert out.shape == image.shape and out.dtype == np.uint8

    # The jet colour map runs from dark blue (0) to dark red (1).
    for x, y in ((17, 17), (41, 49)):
        red, _, blue = out[y, x].astype(int)
        assert red > 100 and blue < 50
    red, _, blue = out[2, 60].astype(int)
    assert blue > 100 and red < 50


def test_heatmap_overlay_blends_and_clips() -> None:
    image = np.full((32, 48, 3), 200, dtype=np.uint8)
    flat = np.full((3, 8, 12), -5.0, dtype=np.float32)  # clipped to 0: jet's dark blue
    hidden = heatmap_overlay(image, flat, alpha=0.0)
    np.testing.assert_array_equal(hidden, image)
    half = heatmap_overlay(image, flat, alpha=0.5)
    np.testing.assert_allclose(half[5, 5], (100, 100, 164), atol=1)  # (200 + (0, 0, 128)) / 2
    with pytest.raises(AeposeError, match="heatmaps must be"):
        heatmap_overlay(image, np.zeros((8, 12)))


def test_save_image_png_round_trips_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(30, 41, 3), dtype=np.uint8)
    target = tmp_path / "deep" / "er" / "pose.png"
    save_image(target, image)
    np.testing.assert_array_equal(read_image(target), image)
    assert sorted(p.name for p in target.parent.iterdir()) == ["pose.png"]  # no temp left


def test_save_image_jpeg_is_close_and_replaces_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "pose.JPG"
    save_image(target, np.zeros((32, 32, 3), dtype=np.uint8))
    image = np.zeros((32, 32, 3), dtype=np.uint8)
    image[:, :16] = (200, 30, 60)  # RGB order must survive the BGR encoder
    save_image(target, image)
    back = read_image(target).astype(int)
    assert np.abs(back - image).mean() < 4
    np.testing.assert_allclose(back[16, 4], (200, 30, 60), atol=8)
    assert [p.name for p in tmp_path.iterdir()] == ["pose.JPG"]


def test_save_image_errors_name_the_file(tmp_path: Path) -> None:
    image = blank(8, 8)
    with pytest.raises(AeposeError, match=r"out\.gif: use a \.png, \.jpg or \.jpeg name"):
        save_image(tmp_path / "out.gif", image)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(AeposeError, match=r"cannot write image .*file/x\.png"):
        save_image(blocker / "x.png", image)
    with pytest.raises(AeposeError, match="RGB uint8 array"):
        save_image(tmp_path / "gray.png", image[..., 0])
