"""The exact argmax of refine, by branch and bound over tiles of the maps.

For Q (joint k, person tag p) pairs it finds the first (row-major) maximum of
heatmap[k] - round(||tags[k] - p||), equal to the reference's full-map argmax. The tag
range of a tile bounds that score from above, so tiles whose bound is below a score
already reached cannot hold the maximum; only the rest is evaluated, with the reference's
float32 operations and its first-occurrence tie rule. Runs in torch on the maps' device.

Legend: K keypoints, H x W map, L tag dims, Q pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

# Coarse tiles hold SUB x SUB fine tiles; the search probes the _PROBES best-bounded
# coarse tiles of each pair first; its (pair, tile) work list is cut into chunks of at most
# _CHUNK_PIXELS pixels to bound memory on large maps.
SUB = 4
_PROBES = 8
_CHUNK_PIXELS = 1 << 21
# The distance is summed over L sequentially, as NumPy does for fewer than 8 terms.
MAX_TAG_DIMS = 7


def _tag_distance(tags: Tensor, person_tag: Tensor) -> Tensor:
    """||tags - person_tag|| over the last axis with the reference's float32 operations
    (difference, square, sum in order, square root): [..., L] -> [...]."""
    d = tags - person_tag
    sq = d * d
    total = sq[..., 0]
    for i in range(1, sq.shape[-1]):
        total = total + sq[..., i]
    return torch.sqrt(total)


def _round_bound(hmax: Tensor, low: Tensor, high: Tensor, person_tag: Tensor) -> Tensor:
    """Upper bound of heatmap - round(||tag - p||) over a tile with heatmap maximum hmax
    [...] and per-dimension tag range low, high [..., L]: the rounded distance from p
    [..., L] to the nearest point of that box is a lower bound of every pixel's rounded
    distance, because each float32 step (difference, square, sum, sqrt, round) is
    monotone."""
    near = torch.maximum(torch.minimum(person_tag, high), low)
    return hmax - torch.round(_tag_distance(near, person_tag))


@dataclass(frozen=True)
class _Tiles:
    """The maps cut into fine tiles of ``size`` x ``size`` pixels, grouped SUB x SUB into
    coarse tiles; heatmaps [K, H', W'] and tags [K, H', W', L] are the maps extended to
    whole coarse tiles by repeating edge pixels (views of the maps when none is needed).

    Per joint, fine tile f = coarse c * SUB**2 + s (s row-major inside c):
    hmax [K, C, SUB**2] heatmap maxima, low / high [K, C, SUB**2, L] tag ranges; coarse_*
    the same reduced over the fine tiles [K, C] and [K, C, L]; cols: coarse tiles per row.
    """

    size: int
    cols: int
    heatmaps: Tensor
    tags: Tensor
    hmax: Tensor
    low: Tensor
    high: Tensor
    coarse_hmax: Tensor
    coarse_low: Tensor
    coarse_high: Tensor


def _build_tiles(heatmaps: Tensor, tags: Tensor) -> _Tiles:
    """Tile statistics of heatmaps [K, H, W] and tags [K, H, W, L]: 4-pixel fine tiles, or
    8-pixel ones above 256 x 256 (fewer tiles to bound, measured faster there)."""
    num_joints, height, width = heatmaps.shape
    size = 8 if height * width > 256 * 256 else 4
    span = size * SUB
    rows, cols = -(-height // span), -(-width // span)
    h, t = heatmaps[..., None], tags
    if rows * span != height or cols * span != width:
        ys = torch.arange(rows * span, device=h.device).clamp(max=height - 1)
        xs = torch.arange(cols * span, device=h.device).clamp(max=width - 1)
        h = h.index_select(1, ys).index_select(2, xs)
        t = t.index_select(1, ys).index_select(2, xs)

    def fine(x: Tensor, reduce: Callable[..., Tensor], pair: Callable[..., Tensor]) -> Tensor:
        # Rows of each tile by one reduction over an outer axis; its columns (interleaved
        # with the channels) by pairwise maxima or minima of strided slices, which torch
        # runs several times faster than a reduction over that inner axis.
        x = reduce(x.reshape(num_joints, rows * SUB, size, -1), dim=2)
        x = x.reshape(num_joints, rows * SUB, cols * SUB, size, -1)
        out = x[:, :, :, 0].clone()
        for i in range(1, size):
            pair(out, x[:, :, :, i], out=out)
        out = out.reshape(num_joints, rows, SUB, cols, SUB, -1).permute(0, 1, 3, 2, 4, 5)
        return out.reshape(num_joints, rows * cols, SUB * SUB, -1)

    hmax = fine(h, torch.amax, torch.maximum)[..., 0]
    low = fine(t, torch.amin, torch.minimum)
    high = fine(t, torch.amax, torch.maximum)
    coarse = hmax.amax(dim=2), low.amin(dim=2), high.amax(dim=2)
    return _Tiles(size, cols, h[..., 0], t, hmax, low, high, *coarse)


def refine_argmax(
    heatmaps: Tensor, tags: Tensor, pair_joint: Tensor, pair_tags: Tensor, seeds: Tensor
) -> Tensor:
    """Flat pixel index [Q] of the first maximum of heatmap[k] - round(||tags[k] - p||) for
    Q (joint k, person tag p) pairs, equal to the reference's full-map argmax.

    Branch and bound over tiles (see _round_bound). A first best score per pair comes from
    seed pixels (flat indices [K, S] per joint, e.g. the detection candidates) and from the
    best-bounded fine tile in each of its _PROBES best-bounded coarse tiles; then, under
    every coarse tile whose bound reaches that score, every fine tile whose bound reaches
    it is evaluated. All pixels that can equal the maximum are thus evaluated, and the
    smallest flat index among the maxima is the reference's first occurrence.
    """
    tiles = _build_tiles(heatmaps, tags)
    search = _TileSearch(heatmaps, tags, tiles, pair_joint, pair_tags)
    search.seed(seeds[pair_joint])
    coarse = _round_bound(
        tiles.coarse_hmax[pair_joint],
        tiles.coarse_low[pair_joint],
        tiles.coarse_high[pair_joint],
        pair_tags[:, None, :],
    )
    probes = coarse.topk(min(_PROBES, coarse.shape[1]), dim=1).indices
    pair = torch.arange(len(pair_joint), device=heatmaps.device)[:, None].expand_as(probes)
    pair, probes = pair.reshape(-1), probes.reshape(-1)
    search.visit(pair, probes * SUB**2 + search.fine_bounds(pair, probes).argmax(dim=1))
    pair, tile = torch.nonzero(coarse >= search.best[:, None], as_tuple=True)
    fine = search.fine_bounds(pair, tile)
    row, sub = torch.nonzero(fine >= search.best[pair][:, None], as_tuple=True)
    search.visit(pair[row], tile[row] * SUB**2 + sub)
    return search.first_best()


class _TileSearch:
    """Exact evaluation of (pair, fine tile) combinations: keeps each pair's best score [Q]
    and the visited (pair, tile, tile maximum) for the final tie-break."""

    def __init__(
        self, heatmaps: Tensor, tags: Tensor, tiles: _Tiles, pair_joint: Tensor, pair_tags: Tensor
    ) -> None:
        self.heatmaps, self.tags, self.tiles = heatmaps, tags, tiles
        self.pair_joint, self.pair_tags = pair_joint, pair_tags
        self.best = torch.full_like(pair_tags[:, 0], float("-inf"))
        self.visited: list[tuple[Tensor, Tensor, Tensor]] = []

    def fine_bounds(self, pair: Tensor, coarse: Tensor) -> Tensor:
        """[V, SUB**2] bounds of the fine tiles of coarse tile coarse[v] for pair[v]."""
        joint, tiles = self.pair_joint[pair], self.tiles
        return _round_bound(
            tiles.hmax[joint, coarse],
            tiles.low[joint, coarse],
            tiles.high[joint, coarse],
            self.pair_tags[pair][:, None, :],
        )

    def seed(self, flat: Tensor) -> None:
        """Raise each pair's best score to its maximum over seed pixels flat [Q, S]."""
        _, height, width = self.heatmaps.shape
        where = self.pair_joint[:, None] * (height * width) + flat
        h = self.heatmaps.reshape(-1)[where]
        t = self.tags.reshape(-1, self.tags.shape[3])[where]
        score = h - torch.round(_tag_distance(t, self.pair_tags[:, None, :]))
        self.best = torch.maximum(self.best, score.amax(dim=1))

    def visit(self, pair: Tensor, tile: Tensor) -> None:
        per_chunk = max(1, _CHUNK_PIXELS // self.tiles.size**2)
        for i in range(0, len(pair), per_chunk):
            p, t = pair[i : i + per_chunk], tile[i : i + per_chunk]
            best = self._scores(p, t)[0].amax(dim=1)
            self.visited.append((p, t, best))
            self.best = self.best.scatter_reduce(0, p, best, "amax")

    def first_best(self) -> Tensor:
        """Per pair, the smallest flat index whose score equals its best; only the visited
        tiles whose maximum reached it are evaluated again, for their indices."""
        pair, tile, best = (torch.cat(parts) for parts in zip(*self.visited, strict=True))
        reached = best == self.best[pair]
        pair, tile = pair[reached], tile[reached]
        score, flat = self._scores(pair, tile)
        big = torch.iinfo(torch.int64).max
        candidate = torch.where(score == self.best[pair][:, None], flat, big).amin(dim=1)
        first = torch.full_like(self.best, big, dtype=torch.int64)
        return first.scatter_reduce(0, pair, candidate, "amin")

    def _scores(self, pair: Tensor, tile: Tensor) -> tuple[Tensor, Tensor]:
        """Scores heatmap - round(tag distance) with the reference's float32 operations in
        fine tile tile[v] of pair[v]'s joint, and their flat indices in the map: [V, size**2].
        """
        _, height, width = self.heatmaps.shape
        tiles, size = self.tiles, self.tiles.size
        coarse, sub = tile // SUB**2, tile % SUB**2
        top = ((coarse // tiles.cols) * SUB + sub // SUB) * size
        left = (coarse % tiles.cols) * SUB + sub % SUB
        # A tile's rows are contiguous segments of the (extended) maps: gathering whole
        # segments is far cheaper than gathering pixels.
        _, ext_height, ext_width = tiles.heatmaps.shape
        ys = top[:, None] + torch.arange(size, device=tile.device)
        segment = (self.pair_joint[pair][:, None] * ext_height + ys) * (ext_width // size)
        segment = (segment + left[:, None]).reshape(-1)
        h = tiles.heatmaps.reshape(-1, size).index_select(0, segment).reshape(len(tile), -1)
        t = tiles.tags.reshape(-1, size * tiles.tags.shape[3]).index_select(0, segment)
        t = t.reshape(len(tile), size * size, -1)
        score = h - torch.round(_tag_distance(t, self.pair_tags[pair][:, None, :]))
        # Flat indices in the original map (extension pixels repeat an edge pixel).
        xs = (left[:, None] * size + torch.arange(size, device=tile.device)).clamp(max=width - 1)
        flat = ys.clamp(max=height - 1)[:, :, None] * width + xs[:, None, :]
        return score, flat.reshape(len(tile), -1)
