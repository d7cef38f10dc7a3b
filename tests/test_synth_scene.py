"""Random scenes (aepose.synth.scene): people kept in view, crowds from easy to hard."""

from __future__ import annotations

from typing import Any

import numpy as np

from aepose.synth.annotate import generate_image
from aepose.synth.render import figure_mask
from aepose.synth.scene import SceneParams


def sample(spec: str, index: int, params: SceneParams | None = None, side: int = 160) -> Any:
    rng = np.random.default_rng(np.random.SeedSequence(11, spawn_key=(index,)))
    return generate_image(rng, spec, side, side, params or SceneParams())


def test_in_view_keeps_whole_people_inside_the_image() -> None:
    """With ``in_view`` every figure that fits is drawn whole: its pixel mask does not touch
    the border and every labelled joint lies inside; the same seed without it cuts people."""
    side = 128
    cut = 0
    for index in range(12):
        params = SceneParams(people=(1, 4), height=(0.4, 0.7), crowd_region_prob=0.0)
        free = sample("crowdpose", index, params, side=side)
        kept = sample(
            "crowdpose", index, SceneParams(**{**vars(params), "in_view": True}), side=side
        )
        assert len(free.scene.people) == len(kept.scene.people)
        for before, fig in zip(free.scene.people, kept.scene.people, strict=True):
            shift = fig.points - before.points  # one translation of the whole figure
            assert np.allclose(shift, shift[0])
            rows, cols = np.nonzero(figure_mask(fig, side, side))
            assert rows.min() > 0 and cols.min() > 0
            assert rows.max() < side - 1 and cols.max() < side - 1
            assert np.all((fig.points >= 0) & (fig.points <= side - 1))
            mask = figure_mask(before, side, side)
            cut += bool(mask[0].any() | mask[-1].any() | mask[:, 0].any() | mask[:, -1].any())
    assert cut >= 3


def test_scenes_span_easy_to_hard_with_one_to_twenty_people() -> None:
    indices: list[float] = []
    counts: list[int] = []
    for index in range(40):
        s = sample("crowdpose", 100 + index, side=128)
        indices.append(s.crowd_index)
        counts.append(len(s.scene.people))
        assert 1 <= len([a for a in s.annotations if not a["iscrowd"]]) <= 20
    ci = np.array(indices)
    easy, hard = int(np.sum(ci < 0.2)), int(np.sum(ci >= 0.8))
    assert min(easy, len(ci) - easy - hard, hard) >= 4, (easy, hard)
    assert min(counts) == 1 and max(counts) >= 10
    assert max(counts) <= 20
