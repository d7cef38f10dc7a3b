"""Matching by tag: the reference's joint-by-joint grouping of one image's candidates.

It keeps the reference's order (each joint depends on the groups left by the previous
one) and its group order, but keeps group tag means as running sums instead of
re-averaging lists, and takes the assignment solver as an argument
(:mod:`aepose.codec.munkres`). All on the host, in NumPy.

Legend: K keypoints, L tag dims, M candidates per joint, A candidates of one joint above
the detection threshold, G groups so far.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# A minimum-cost assignment: cost [A, N], A <= N -> the column of each row [A].
Solver = Callable[[np.ndarray], np.ndarray]


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
