"""Decoding one image's heatmaps and tag maps into poses, exactly as mmpose 0.x does.

:func:`decode_poses` equals ``HeatmapParser.parse(heatmaps, tags, adjust=True,
refine=True)`` of mmpose v0.29 bit for bit (reference.md §4.5, traps 15-20, §10), including
the tie-breaking of its Munkres solver, but is fast:

* NMS, top-k, tag gathering and the adjust comparisons run in torch on the tensor's device,
  vectorised over joints (one transfer of [K, M] candidates to the host).
* Matching keeps the reference's joint-by-joint order (each joint depends on the groups
  left by the previous one) but replaces ``munkres.Munkres().compute`` by
  :func:`munkres_assignment`, a NumPy re-implementation of the same step sequence of
  ``munkres`` 1.1.4 (so exact ties break identically), and keeps group tag means as running
  sums instead of re-averaging lists.
* Refine, which the reference runs over the whole map for every person and joint, is a
  branch and bound for all missing (person, joint) pairs at once: the tag range of a tile
  bounds ``heatmap - round(tag distance)`` from above, so tiles whose bound is below a
  score already reached cannot hold the argmax; only the rest is evaluated, with the
  reference's float32 operations and its first-occurrence tie rule.

Legend: K keypoints, H x W map, L tag dims (2 with flip test), M = max_people candidates
per joint, P people. Coordinates are map pixels (x = column); at the reference's input
resolution the map is the network input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from aepose.config import TestConfig
from aepose.errors import AeposeError
from aepose.keypoints import COCO, KeypointSpec

ArrayLike = np.ndarray | Tensor
Solver = Callable[[np.ndarray], np.ndarray]

# Refine's coarse tiles hold SUB x SUB fine tiles; it probes the _PROBES best-bounded
# coarse tiles of each pair first; its (pair, tile) work list is cut into chunks of at most
# _CHUNK_PIXELS pixels to bound memory on large maps.
SUB = 4
_PROBES = 8
_CHUNK_PIXELS = 1 << 21
# The refine distance is summed over L sequentially, as NumPy does for fewer than 8 terms.
MAX_TAG_DIMS = 7


@dataclass(frozen=True)
class Decoder:
    """The grouping settings bound once, like a codec: ``decoder(heatmaps, tags)`` is
    :func:`decode_poses` with these settings (see it for the arguments and results).

    Build it from a preset's test settings with :meth:`from_config`; it is picklable, so
    decoding can run in worker processes.
    """

    detection_threshold: float = 0.1
    tag_threshold: float = 1.0
    max_people: int = 30
    nms_kernel: int = 5
    adjust: bool = True
    refine: bool = True
    joint_order: tuple[int, ...] | None = None
    mode: str = "exact"

    def __post_init__(self) -> None:
        if self.mode not in _SOLVERS:
            raise AeposeError(f"unknown decode mode {self.mode!r} "
                              f"(choices: {', '.join(_SOLVERS)})")
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise AeposeError(f"nms_kernel must be odd and positive, got {self.nms_kernel}")
        if self.max_people < 1:
            raise AeposeError(f"max_people must be at least 1, got {self.max_people}")

    @classmethod
    def from_config(cls, test: TestConfig, spec: KeypointSpec, mode: str = "exact") -> Decoder:
        """The decoder of ``test``'s thresholds with ``spec``'s grouping order."""
        return cls(
            detection_threshold=test.detection_threshold, tag_threshold=test.tag_threshold,
            max_people=test.max_people, nms_kernel=test.nms_kernel, adjust=test.adjust,
            refine=test.refine, joint_order=tuple(spec.grouping_order), mode=mode,
        )

    def __call__(self, heatmaps: ArrayLike, tags: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """poses [P, K, 3 + L] and scores [P] of heatmaps [K, H, W], tags [K, H, W, L]."""
        h, t = _as_maps(heatmaps, tags)
        order = _joint_order(h.shape[0], self.joint_order)
        cand = top_candidates(h, t, min(self.max_people, h.shape[1] * h.shape[2]),
                              self.nms_kernel)
        slots = match_by_tag(cand.val, cand.tags, order, self.detection_threshold,
                             self.tag_threshold, _SOLVERS[self.mode])
        poses = _assemble(cand, slots, self.adjust)
        scores = poses[:, :, 2].mean(axis=1)
        if self.refine and len(poses):
            refine_poses(h, t, poses, cand.y * h.shape[2] + cand.x)
        return poses, scores.astype(np.float32)


def decode_poses(
    heatmaps: ArrayLike,
    tags: ArrayLike,
    *,
    detection_threshold: float = 0.1,
    tag_threshold: float = 1.0,
    max_people: int = 30,
    nms_kernel: int = 5,
    adjust: bool = True,
    refine: bool = True,
    joint_order: Sequence[int] | None = None,
    mode: str = "exact",
) -> tuple[np.ndarray, np.ndarray]:
    """Group one image's detections into people (reference HeatmapParser.parse).

    Args:
        heatmaps: [K, H, W] float32 (torch tensor on any device, or NumPy), un-suppressed.
        tags: [K, H, W, L] float32 on the same device.
        detection_threshold: candidates need value > this (compared in float64).
        tag_threshold: a candidate joins a group only if its tag distance is < this.
        max_people: M, candidates per joint (torch.topk of the NMS'd map).
        nms_kernel: odd max-pool window of the NMS.
        adjust: move detected joints a quarter pixel towards the higher neighbour, +0.5.
        refine: fill each person's missing joints from the maps.
        joint_order: order in which joints are matched; default 0..K-1, or mmpose's COCO
            order when K == 17.
        mode: ``"exact"`` (Munkres 1.1.4 tie-breaking, identical to the reference) or
            ``"fast"`` (SciPy's assignment solver: the same result unless the assignment
            has exact cost ties, where the chosen optimum may differ).

    Returns:
        poses [P, K, 3 + L] float32 (x, y, value, tag_1..tag_L) in map pixels, people in
        the reference's group order, missing joints all zero (refined joints have zero
        tags); scores [P] float32, the mean value over all K joints before refine.
    """
    decoder = Decoder(
        detection_threshold=detection_threshold, tag_threshold=tag_threshold,
        max_people=max_people, nms_kernel=nms_kernel, adjust=adjust, refine=refine,
        joint_order=None if joint_order is None else tuple(joint_order), mode=mode,
    )
    return decoder(heatmaps, tags)


def _as_maps(heatmaps: ArrayLike, tags: ArrayLike) -> tuple[Tensor, Tensor]:
    """Validate shapes and return float32 tensors [K, H, W] and [K, H, W, L]."""
    # Detached: decoding needs no gradient, and callers may pass maps that carry one.
    h = torch.as_tensor(heatmaps).detach().float()
    t = torch.as_tensor(tags).detach().float()
    if h.dim() != 3 or t.dim() != 4 or t.shape[:3] != h.shape:
        raise AeposeError(
            f"decode_poses needs heatmaps [K, H, W] and tags [K, H, W, L]; got "
            f"{tuple(h.shape)} and {tuple(t.shape)}"
        )
    if not 1 <= t.shape[3] <= MAX_TAG_DIMS:
        raise AeposeError(f"tags need 1 to {MAX_TAG_DIMS} dimensions, got {t.shape[3]}")
    return h.contiguous(), t.to(h.device).contiguous()


def _joint_order(num_joints: int, joint_order: Sequence[int] | None) -> list[int]:
    """The visiting order: given, mmpose's COCO order for K == 17, else 0..K-1."""
    if joint_order is None:
        return list(COCO.grouping_order) if num_joints == 17 else list(range(num_joints))
    order = [int(k) for k in joint_order]
    if sorted(order) != list(range(num_joints)):
        raise AeposeError(f"joint_order must be a permutation of 0..{num_joints - 1}")
    return order


# ---------------------------------------------------------------------------------------
# NMS and top-k (device)


def nms_heatmaps(heatmaps: Tensor, kernel: int = 5) -> Tensor:
    """Heatmaps [K, H, W] with every value that is not the maximum of its kernel x kernel
    window (clipped at the border) set to 0; equal maxima of a plateau all survive.

    Equal to the reference's ``h * (max_pool2d(h, kernel, 1, kernel // 2) == h).float()``
    but computed as a separable running maximum in place, several times faster than
    torch's CPU max-pool.
    """
    window_max = _running_max(_running_max(heatmaps, kernel, 2), kernel, 1)
    return window_max.eq_(heatmaps).mul_(heatmaps)


def _running_max(x: Tensor, kernel: int, dim: int) -> Tensor:
    """Centred running maximum of odd width ``kernel`` along ``dim``, clipped at the border
    (a new tensor; maxima are taken in place to avoid allocating)."""
    size = x.shape[dim]
    out = x.clone()
    for shift in range(1, min(kernel // 2, size - 1) + 1):
        ahead = out.narrow(dim, 0, size - shift)
        torch.maximum(ahead, x.narrow(dim, shift, size - shift), out=ahead)
        behind = out.narrow(dim, shift, size - shift)
        torch.maximum(behind, x.narrow(dim, 0, size - shift), out=behind)
    return out


@dataclass(frozen=True)
class Candidates:
    """The top-M NMS peaks of every joint, on the host.

    val [K, M] float32 (descending per joint, torch.topk order); x, y [K, M] int64 map
    pixels; tags [K, M, L] float32; adj_x, adj_y [K, M] float32: the adjusted coordinates
    (pixel + 0.5 +- 0.25 towards the higher neighbour of the un-suppressed map).
    """

    val: np.ndarray
    x: np.ndarray
    y: np.ndarray
    tags: np.ndarray
    adj_x: np.ndarray
    adj_y: np.ndarray


def top_candidates(heatmaps: Tensor, tags: Tensor, max_people: int, nms_kernel: int) -> Candidates:
    """NMS, per-joint top-k and tag gathering on the maps' device, all joints at once.

    torch.topk runs on the flattened [1, K, H*W] NMS'd map exactly as the reference calls
    it, because its order among equal values decides the grouping (reference §10).
    """
    num_joints, height, width = heatmaps.shape
    nms = nms_heatmaps(heatmaps, nms_kernel)
    val, ind = nms.view(1, num_joints, -1).topk(max_people, dim=2)
    val, ind = val[0], ind[0]
    flat_tags = tags.view(num_joints, height * width, -1)
    tag_k = torch.gather(flat_tags, 1, ind[..., None].expand(-1, -1, flat_tags.shape[2]))
    x, y = ind % width, ind // width
    joint = torch.arange(num_joints, device=heatmaps.device)[:, None]
    step_x, step_y = _quarter_steps(heatmaps, joint, x, y)
    adj_x = x.float() + step_x + 0.5
    adj_y = y.float() + step_y + 0.5
    host = [a.cpu().numpy() for a in (val, x, y, tag_k, adj_x, adj_y)]
    return Candidates(*host)


def _quarter_steps(heatmaps: Tensor, joint: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """+0.25 where the right (lower) neighbour in heatmaps[joint] is higher than the left
    (upper) one, else -0.25 (ties, flat or border, included), as the reference's adjust
    and refine; neighbours are clamped to the map. Float32, shaped like x."""
    _, height, width = heatmaps.shape
    maps = heatmaps.reshape(len(heatmaps), -1)

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        return maps[joint, yy * width + xx]

    right, left = at(y, (x + 1).clamp(max=width - 1)), at(y, (x - 1).clamp(min=0))
    down, up = at((y + 1).clamp(max=height - 1), x), at((y - 1).clamp(min=0), x)
    return torch.where(right > left, 0.25, -0.25), torch.where(down > up, 0.25, -0.25)


# ---------------------------------------------------------------------------------------
# Matching (host)


class _Groups:
    """Groups in creation order (= the reference's dict insertion order), keyed by the tag_0
    float of the candidate that created them.

    slots [G, K]: top-k rank of the candidate in each joint slot (-1 empty). Tag lists are
    kept as history [G, K + 1, L] with counts, plus running float32 sums: for L >= 2 NumPy's
    mean over a list of tags adds them in order, so the sum can be carried along.
    """

    def __init__(self, capacity: int, num_joints: int, tag_dims: int) -> None:
        self.index: dict[float, int] = {}
        self.slots = np.full((capacity, num_joints), -1, dtype=np.int64)
        self.history = np.zeros((capacity, num_joints + 1, tag_dims), dtype=np.float32)
        self.sums = np.zeros((capacity, tag_dims), dtype=np.float32)
        self.counts = np.zeros(capacity, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.index)

    def fresh(self, keys: list[float]) -> bool:
        """Whether the keys are distinct and none of them names an existing group."""
        return len(set(keys)) == len(keys) and self.index.keys().isdisjoint(keys)

    def start(self, joint: int, ranks: np.ndarray, tags: np.ndarray) -> None:
        """Candidates that open groups, in order; a key that exists already reuses that
        group, overwriting the joint slot and resetting its tag list (reference
        ``setdefault``)."""
        keys = tags[:, 0].tolist()
        if self.fresh(keys):
            new = np.arange(len(self), len(self) + len(keys))
            self.index.update(zip(keys, new.tolist(), strict=True))
            self._reset(new, joint, ranks, tags)
            return
        for key, rank, tag in zip(keys, ranks, tags, strict=True):
            g = self.index.setdefault(key, len(self))
            self._reset(np.array([g]), joint, rank[None], tag[None])

    def _reset(self, groups: np.ndarray, joint: int, ranks: np.ndarray, tags: np.ndarray) -> None:
        self.slots[groups, joint] = ranks
        self.history[groups, 0] = tags
        self.sums[groups] = tags
        self.counts[groups] = 1

    def join(self, groups: np.ndarray, joint: int, ranks: np.ndarray, tags: np.ndarray) -> None:
        """Add candidates to distinct existing groups."""
        self.slots[groups, joint] = ranks
        self.history[groups, self.counts[groups]] = tags
        self.sums[groups] += tags
        self.counts[groups] += 1

    def mean_tags(self) -> np.ndarray:
        """[G, L] float32 tag means, bit-equal to np.mean(tag_list, axis=0)."""
        n = len(self)
        if self.sums.shape[1] > 1:
            # np.mean divides the float32 sum by an intp count in float64, then casts.
            return (self.sums[:n] / self.counts[:n, None].astype(np.float64)).astype(np.float32)
        # For L == 1 NumPy sums the list pairwise; reproduce it by calling it.
        return np.array([np.mean(self.history[g, : self.counts[g]], axis=0) for g in range(n)])


def match_by_tag(
    val: np.ndarray,
    tags: np.ndarray,
    order: Sequence[int],
    detection_threshold: float,
    tag_threshold: float,
    solver: Solver,
) -> np.ndarray:
    """The reference's _match_by_tag on the candidates of one image.

    val [K, M] float32, tags [K, M, L] float32 -> slots [P, K] int64: for each group in
    creation order, the top-k rank of its candidate of each joint (-1 when none).
    """
    num_joints, num_cand = val.shape
    # The reference compares rows of a float64 array: float32(0.1) passes (§10).
    keep = val.astype(np.float64) > detection_threshold
    groups = _Groups(num_joints * num_cand, num_joints, tags.shape[2])
    for joint in order:
        ranks = np.flatnonzero(keep[joint])
        if ranks.size == 0:
            continue
        cand_tags = tags[joint, ranks]
        if len(groups) == 0:
            groups.start(joint, ranks, cand_tags)
            continue
        cols, matched = _assign(
            groups.mean_tags(), cand_tags, val[joint, ranks], tag_threshold, solver
        )
        _apply(groups, joint, ranks, cand_tags, cols, matched)
    return groups.slots[: len(groups)]


def _assign(
    means: np.ndarray,
    cand_tags: np.ndarray,
    cand_val: np.ndarray,
    tag_threshold: float,
    solver: Solver,
) -> tuple[np.ndarray, np.ndarray]:
    """Column chosen for each of the A candidates, and whether it joins that group.

    Cost = round(distance) * 100 - value in float64 (NumPy rounds half to even); when there
    are more candidates than groups, columns of 1e10 let the surplus open new groups. A
    candidate joins only a real group (column < G) closer than tag_threshold, compared on
    the un-rounded distance.
    """
    diff = cand_tags.astype(np.float64)[:, None, :] - means[None, :, :]
    dist = np.linalg.norm(diff, ord=2, axis=2)
    cost = np.round(dist) * 100 - cand_val.astype(np.float64)[:, None]
    num_added, num_grouped = dist.shape
    if num_added > num_grouped:
        cost = np.concatenate((cost, np.full((num_added, num_added - num_grouped), 1e10)), axis=1)
    cols = solver(cost)
    real = cols < num_grouped
    picked = dist[np.arange(num_added), np.where(real, cols, 0)]
    return cols, real & (picked < tag_threshold)


def _apply(
    groups: _Groups,
    joint: int,
    ranks: np.ndarray,
    cand_tags: np.ndarray,
    cols: np.ndarray,
    matched: np.ndarray,
) -> None:
    """Apply the assignment row by row as the reference does: a matched row (bool [A])
    joins its group, any other row opens a group.

    Rows act in order, and a row that opens a group can hit the key of an existing group;
    only when no key collides can the joins and the openings be done in two batches.
    """
    opening = np.flatnonzero(~matched)
    if groups.fresh(cand_tags[opening, 0].tolist()):
        groups.join(cols[matched], joint, ranks[matched], cand_tags[matched])
        groups.start(joint, ranks[opening], cand_tags[opening])
        return
    for row in range(len(ranks)):
        if matched[row]:
            groups.join(cols[row : row + 1], joint, ranks[row : row + 1], cand_tags[row : row + 1])
        else:
            groups.start(joint, ranks[row : row + 1], cand_tags[row : row + 1])


def _assemble(cand: Candidates, slots: np.ndarray, adjust: bool) -> np.ndarray:
    """poses [P, K, 3 + L] float32 from the group slots; empty slots stay zero."""
    num_people, num_joints = slots.shape
    poses = np.zeros((num_people, num_joints, 3 + cand.tags.shape[2]), dtype=np.float32)
    person, joint = np.nonzero(slots >= 0)
    rank = slots[person, joint]
    if adjust:
        # The reference adjusts only joints with value > 0 (all of them unless the
        # detection threshold is negative).
        xs = np.where(cand.val > 0, cand.adj_x, cand.x)
        ys = np.where(cand.val > 0, cand.adj_y, cand.y)
    else:
        xs, ys = cand.x, cand.y
    poses[person, joint, 0] = xs[joint, rank]
    poses[person, joint, 1] = ys[joint, rank]
    poses[person, joint, 2] = cand.val[joint, rank]
    poses[person, joint, 3:] = cand.tags[joint, rank]
    return poses


# ---------------------------------------------------------------------------------------
# Assignment solvers (host)


def munkres_assignment(cost: np.ndarray) -> np.ndarray:
    """Column of each row chosen by ``munkres.Munkres().compute(cost)`` (package version
    1.1.4, the reference's solver), for float64 cost [A, N] with A <= N: -> [A] int64.

    The same step sequence on NumPy arrays, so that among several optimal assignments the
    same one is returned: rows are padded to a square with zeros; step 1 subtracts row
    minima; step 2 stars, row by row, the first zero in a column without a star; then
    columns with stars are covered and, until all are, uncovered zeros are primed (steps 4
    and 6) and an alternating path of primes and stars is flipped (step 5).
    """
    num_rows, n = cost.shape
    if num_rows > n:
        raise ValueError(f"cost needs at least as many columns as rows, got {cost.shape}")
    c = np.zeros((n, n))
    c[:num_rows] = cost
    c -= c.min(axis=1, keepdims=True)
    star_col, star_row = _greedy_stars(c == 0, num_rows)
    while (star_row >= 0).sum() < n:
        row, col, prime_col = _prime_zeros(c, star_col, star_row)
        _flip_path(row, col, prime_col, star_col, star_row)
    return star_col[:num_rows]


def _greedy_stars(zero: np.ndarray, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Step 2: per row in order, star the first zero whose column has no star yet.

    zero [n, n] bool, rows from num_rows on are padding (all zero after step 1), which the
    rule gives the free columns in increasing order. Returns star_col [n] (column of each
    row's star, -1 none) and star_row [n].
    """
    n = len(zero)
    star_col = np.full(n, -1, dtype=np.int64)
    star_row = np.full(n, -1, dtype=np.int64)
    rows, cols = np.nonzero(zero[:num_rows])
    for i, j in zip(rows.tolist(), cols.tolist(), strict=True):
        if star_col[i] < 0 and star_row[j] < 0:
            star_col[i], star_row[j] = j, i
    free = np.flatnonzero(star_row < 0)[: n - num_rows]
    star_col[num_rows:] = free
    star_row[free] = np.arange(num_rows, n)
    return star_col, star_row


def _prime_zeros(
    c: np.ndarray, star_col: np.ndarray, star_row: np.ndarray
) -> tuple[int, int, np.ndarray]:
    """Steps 4 and 6 from a fresh step 3 (columns with stars covered, no primes).

    Primes uncovered zeros until one has no star in its row; when none is left, step 6
    adds the smallest uncovered value to covered rows and subtracts it from uncovered
    columns (in that order per element, as the package does, for identical rounding).
    Returns that prime's (row, col) and the prime column of every row (-1 none).
    """
    n = len(c)
    row_cov = np.zeros(n, dtype=bool)
    col_cov = star_row >= 0
    prime_col = np.full(n, -1, dtype=np.int64)
    zero = c == 0
    free = zero & ~col_cov  # uncovered zeros, kept up to date as covers change
    start_row = start_col = 0
    while True:
        row, col = _find_zero(free, start_row, start_col)
        if row < 0:
            smallest = c[np.ix_(~row_cov, ~col_cov)].min()
            c[row_cov] += smallest
            c[:, ~col_cov] -= smallest
            zero = c == 0
            free = zero & ~row_cov[:, None] & ~col_cov
            start_row = start_col = 0
            continue
        prime_col[row] = col
        star = star_col[row]
        if star < 0:
            return row, col, prime_col
        row_cov[row] = True
        col_cov[star] = False
        free[row] = False
        free[:, star] = zero[:, star] & ~row_cov
        start_row, start_col = row, int(star)


def _find_zero(free: np.ndarray, start_row: int, start_col: int) -> tuple[int, int]:
    """The package's search for an uncovered zero (free [n, n] bool): the first row with one,
    scanning rows cyclically from start_row; within it the *last* one met scanning columns
    cyclically from start_col (its loop keeps overwriting the hit). (-1, -1) if none."""
    rows = np.flatnonzero(free.any(axis=1))
    if rows.size == 0:
        return -1, -1
    later = np.searchsorted(rows, start_row)
    row = int(rows[later] if later < rows.size else rows[0])
    cols = free[row].nonzero()[0]
    col = int(cols[((cols - start_col) % len(free)).argmax()])
    return row, col


def _flip_path(
    row: int, col: int, prime_col: np.ndarray, star_col: np.ndarray, star_row: np.ndarray
) -> None:
    """Step 5: from the prime (row, col) follow star in its column, prime in that star's
    row, ...; unstar the path's stars and star its primes (in place)."""
    primes = [(row, col)]
    stars = []
    while star_row[col] >= 0:
        star = int(star_row[col])
        stars.append((star, col))
        col = int(prime_col[star])
        primes.append((star, col))
    for r, c in stars:
        star_col[r], star_row[c] = -1, -1
    for r, c in primes:
        star_col[r], star_row[c] = c, r


def scipy_assignment(cost: np.ndarray) -> np.ndarray:
    """A minimum-cost assignment of cost [A, N], A <= N, by SciPy: -> column per row [A].

    Optimal like Munkres, but may pick another optimum when costs tie exactly.
    """
    return linear_sum_assignment(cost)[1]


_SOLVERS: dict[str, Solver] = {"exact": munkres_assignment, "fast": scipy_assignment}


# ---------------------------------------------------------------------------------------
# Refine (device)


def refine_poses(heatmaps: Tensor, tags: Tensor, poses: np.ndarray, seeds: np.ndarray) -> None:
    """The reference's refine for all people at once, in place on poses [P, K, 3 + L].

    For each person, p = mean tag of its joints with value > 0 (the reference reads the
    tag map at the integer part of their coordinates, which is where the stored tags were
    gathered). Each joint with value == 0 then takes the first (row-major) argmax of
    heatmap[k] - round(||tags[k] - p||), moved by +0.5 and +-0.25 towards the higher
    neighbour, if the heatmap there is > 0; its tag columns stay 0.

    seeds [K, S]: flat pixel indices per joint where the search starts (any pixels; the
    detection candidates are good ones); they change the speed, never the result.
    """
    detected = poses[:, :, 2] > 0
    # A person without a joint > 0 (only possible below a zero threshold) has no tag.
    has_tag = np.asarray(detected.any(axis=1))
    person, joint = np.nonzero((poses[:, :, 2] == 0) & has_tag[:, None])
    if person.size == 0:
        return
    device = heatmaps.device
    person_tags = _person_tags(poses[has_tag], detected[has_tag])
    tag_row = np.cumsum(has_tag) - 1
    pair_tags = torch.from_numpy(person_tags[tag_row[person]]).to(device)
    pair_joint = torch.from_numpy(joint).to(device)
    seed = torch.from_numpy(seeds).to(device)
    flat = _refine_argmax(heatmaps, tags, pair_joint, pair_tags, seed)
    x, y, val = _refined_points(heatmaps, pair_joint, flat)
    fill = val > 0
    poses[person[fill], joint[fill], 0] = x[fill]
    poses[person[fill], joint[fill], 1] = y[fill]
    poses[person[fill], joint[fill], 2] = val[fill]


def _person_tags(poses: np.ndarray, detected: np.ndarray) -> np.ndarray:
    """[P, L] float32: each person's mean tag over its detected joints in joint order,
    bit-equal to the reference's np.mean(list_of_tags, axis=0)."""
    tag = poses[:, :, 3:]
    if tag.shape[2] == 1:
        # NumPy sums an [n, 1] stack pairwise; reproduce it by calling it.
        return np.array([np.mean(t[d], axis=0) for t, d in zip(tag, detected, strict=True)])
    # For L >= 2 NumPy adds the rows in order; -0.0 is the neutral start of that sum.
    total = np.full((len(poses), tag.shape[2]), -0.0, dtype=np.float32)
    for k in range(tag.shape[1]):
        total = np.where(detected[:, k, None], total + tag[:, k], total)
    return (total / detected.sum(axis=1, keepdims=True).astype(np.float64)).astype(np.float32)


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


def _refine_argmax(
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


def _refined_points(
    heatmaps: Tensor, joint: Tensor, flat: Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y (pixel + 0.5 +- 0.25 towards the higher neighbour) and heatmap value [Q] at
    the refined flat indices, as float64 on the host (the reference's types)."""
    width = heatmaps.shape[2]
    x, y = flat % width, flat // width
    step_x, step_y = _quarter_steps(heatmaps, joint, x, y)
    val = heatmaps.reshape(len(heatmaps), -1)[joint, flat]
    out = torch.stack([x + 0.5 + step_x, y + 0.5 + step_y, val]).double().cpu().numpy()
    return out[0], out[1], out[2]
