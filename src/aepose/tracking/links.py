"""Offline tracking's two steps over a whole video: linking tracklets across gaps, and
filling gaps by interpolation.

A *tracklet* is what the online tracker gave one ID. Its person may have been given a
new ID after a gap the online tracker could not bridge (hidden longer than ``max_age``, or
back where its prediction no longer reached): seeing the whole video, a tracklet's end can
be compared with a later one's start from both sides, each pose carried across the gap by
its tracklet's body velocity, and the two joined under one ID.

Shapes: N detections of the whole video (flattened over frames), K keypoints, T
tracklets. Coordinates are image pixels; velocities pixels per frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from aepose.tracking.similarity import paired_similarity


@dataclass(frozen=True)
class Tracklets:
    """Each ID's first and last detection, and its body velocity at both ends.

    ids [T]; first, last [T] frames; rows_first, rows_last [T]: the detections (rows of the
    video's flattened arrays) at those frames; v_first, v_last [T, 2]: pixels per frame.
    """

    ids: np.ndarray
    first: np.ndarray
    last: np.ndarray
    rows_first: np.ndarray
    rows_last: np.ndarray
    v_first: np.ndarray
    v_last: np.ndarray


def body_velocity(xy: np.ndarray, valid: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """[2] the mean velocity of the keypoints valid in both of two detections of one person
    (xy [2, K, 2], valid [2, K], frames [2], in order); 0 if they share none or coincide."""
    both = valid[0] & valid[1]
    steps = frames[1] - frames[0]
    if not both.any() or steps <= 0:
        return np.zeros(2)
    return np.asarray((xy[1, both] - xy[0, both]).mean(axis=0) / steps)


def tracklets(ids: np.ndarray, frames: np.ndarray, xy: np.ndarray, valid: np.ndarray,
              window: int) -> Tracklets:
    """The tracklets of the detections with ``ids`` [N] >= 0 (frames [N], xy [N, K, 2],
    valid [N, K]); velocities measured over the ``window`` frames at each end."""
    tracked = np.flatnonzero(ids >= 0)
    order = tracked[np.lexsort((frames[tracked], ids[tracked]))]
    starts = np.flatnonzero(np.r_[True, np.diff(ids[order]) != 0])
    groups = np.split(order, starts[1:]) if len(order) else []
    v_first, v_last = np.zeros((len(groups), 2)), np.zeros((len(groups), 2))
    for t, rows in enumerate(groups):
        f = frames[rows]
        head = rows[[0, int(np.searchsorted(f, f[0] + window, side="right")) - 1]]
        tail = rows[[int(np.searchsorted(f, f[-1] - window)), -1]]
        v_first[t] = body_velocity(xy[head], valid[head], frames[head])
        v_last[t] = body_velocity(xy[tail], valid[tail], frames[tail])
    return Tracklets(
        ids=np.array([ids[g[0]] for g in groups], np.int64),
        first=np.array([frames[g[0]] for g in groups], np.int64),
        last=np.array([frames[g[-1]] for g in groups], np.int64),
        rows_first=np.array([g[0] for g in groups], np.int64),
        rows_last=np.array([g[-1] for g in groups], np.int64),
        v_first=v_first, v_last=v_last)


# Candidate pairs scored at a time: bounds link()'s working memory (about 2 kB a pair with
# COCO's 17 keypoints) whatever the number of tracklets.
_PAIRS_AT_A_TIME = 8192


def link(t: Tracklets, xy: np.ndarray, valid: np.ndarray, sigmas: np.ndarray,
         max_gap: int, min_similarity: float, oks_weight: float) -> dict[int, int]:
    """Which tracklet continues which: {later ID: earlier ID}, each ID at most once on each
    side.

    A pair is a candidate when the later one starts 1 to ``max_gap`` frames after the earlier
    one's last detection; its similarity is the mean of two: the earlier end carried forward
    to the later start, and the later start carried back to the earlier end, each by its
    own body velocity (:func:`~aepose.tracking.similarity.paired_similarity`). Pairs under
    ``min_similarity`` are never linked. The most similar pair is linked first, then the
    most similar of those left, and so on. Candidates are scored a block at a time and only
    those above the gate kept: memory never grows with the square of the tracklets (a long
    video can have thousands).
    """
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for ends, starts in _candidates(t.last, t.first, max_gap):
        steps = (t.first[starts] - t.last[ends])[:, None, None].astype(np.float64)
        end_xy, start_xy = xy[t.rows_last[ends]], xy[t.rows_first[starts]]
        end_valid, start_valid = valid[t.rows_last[ends]], valid[t.rows_first[starts]]
        forward = paired_similarity(end_xy + t.v_last[ends][:, None] * steps, end_valid,
                                    start_xy, start_valid, sigmas, oks_weight)
        backward = paired_similarity(end_xy, end_valid,
                                     start_xy - t.v_first[starts][:, None] * steps,
                                     start_valid, sigmas, oks_weight)
        similarity = (forward + backward) / 2
        above = similarity >= min_similarity
        kept.append((ends[above], starts[above], similarity[above]))
    if not kept:
        return {}
    ends, starts, similarity = (np.concatenate(c) for c in zip(*kept, strict=True))
    links: dict[int, int] = {}
    linked_ends: set[int] = set()
    for c in np.argsort(-similarity, kind="stable"):
        end, later = int(ends[c]), int(t.ids[starts[c]])
        if end not in linked_ends and later not in links:
            links[later] = int(t.ids[end])
            linked_ends.add(end)
    return links


def _candidates(last: np.ndarray, first: np.ndarray, max_gap: int
                ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Blocks of (ends [C], starts [C]): the pairs of tracklets (indices) where one starts 1
    to ``max_gap`` frames after the other's last frame, about ``_PAIRS_AT_A_TIME`` a block
    (more only when one end alone has more)."""
    order = np.argsort(first, kind="stable")
    low = np.searchsorted(first[order], last + 1, side="left")
    counts = np.searchsorted(first[order], last + max_gap, side="right") - low
    block = 0
    while block < len(last):
        total = np.cumsum(counts[block:])
        stop = block + max(int(np.searchsorted(total, _PAIRS_AT_A_TIME, side="right")), 1)
        n = counts[block:stop]
        ends = np.repeat(np.arange(block, stop), n)
        offsets = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        if len(ends):
            yield ends, order[np.repeat(low[block:stop], n) + offsets]
        block = stop


def without_short(ids: np.ndarray, min_length: int) -> np.ndarray:
    """[N] ``ids`` with those of fewer than ``min_length`` detections replaced by -1."""
    tracked = ids >= 0
    values, counts = np.unique(ids[tracked], return_counts=True)
    return np.where(np.isin(ids, values[counts < min_length]), -1, ids)


def chain_ids(ids: np.ndarray, links: dict[int, int]) -> np.ndarray:
    """[N] ``ids`` with each linked ID replaced by the first ID of its chain, then all
    renumbered 0, 1, ... in order of first appearance (-1 stays -1)."""
    root: dict[int, int] = {}
    for later in sorted(links):  # earlier IDs first: each chain's root is known in time
        earlier = links[later]
        root[later] = root.get(earlier, earlier)
    joined = np.array([root.get(int(i), int(i)) for i in ids], np.int64)
    tracked = joined >= 0
    _, first, inverse = np.unique(joined[tracked], return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))  # IDs by their first row: rows are in frame order
    out = np.full(len(ids), -1, np.int64)
    out[tracked] = rank[inverse]
    return out


@dataclass(frozen=True)
class Filled:
    """Poses interpolated in the gaps of tracks, M of them: frames [M], track_ids [M],
    keypoints [M, K, 3] (x, y, score; score 0 for keypoints not detected at both ends of
    the gap), scores [M]."""

    frames: np.ndarray
    track_ids: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray


def fill_gaps(ids: np.ndarray, frames: np.ndarray, keypoints: np.ndarray,
              valid: np.ndarray, scores: np.ndarray, max_gap: int) -> Filled:
    """Poses for the frames a track misses, when it misses at most ``max_gap`` in a row and
    was detected in two frames in a row on at least one side of the gap: x, y linear in
    time between the detections on either side (the constant velocity the online tracker
    predicts with). A track seen only now and then, never twice in a row (false people the
    tracker strung together, mostly), is not filled in.

    Their own score: the two detections' lower person score (and, per keypoint, lower
    keypoint score), times ``1 - d / (max_gap + 1)`` for the d frames to the nearer one,
    so that the middle of a long gap scores least. Keypoints not detected at both ends get
    score 0 (undetected).

    Args:
        ids [N], frames [N], keypoints [N, K, 3], valid [N, K], scores [N]: the video's
        detections with their final IDs (-1: untracked, never filled).
    """
    tracked = np.flatnonzero(ids >= 0)
    order = tracked[np.lexsort((frames[tracked], ids[tracked]))]
    a, b = order[:-1], order[1:]
    steps = frames[b] - frames[a]
    # A detection whose track is also detected in the frame before it / after it.
    run_before = np.r_[False, (ids[a] == ids[b]) & (steps == 1)]  # per position in order
    run_after = np.r_[(ids[a] == ids[b]) & (steps == 1), False]
    gaps = np.flatnonzero((ids[a] == ids[b]) & (steps > 1) & (steps <= max_gap + 1)
                          & (run_before[:-1] | run_after[1:]))
    k = keypoints.shape[1]
    parts: list[tuple[np.ndarray, ...]] = []
    for g in gaps:
        first, second, n = a[g], b[g], int(steps[g])
        w = (np.arange(1, n) / n)[:, None, None]  # [n - 1, 1, 1]
        xy = (1 - w) * keypoints[first, :, :2] + w * keypoints[second, :, :2]
        near = np.minimum(np.arange(1, n), n - np.arange(1, n))
        factor = 1 - near / (max_gap + 1)
        both = valid[first] & valid[second]
        point = np.where(both, np.minimum(keypoints[first, :, 2], keypoints[second, :, 2]), 0)
        parts.append((frames[first] + np.arange(1, n), np.full(n - 1, ids[first]),
                      np.concatenate([xy, (factor[:, None] * point)[..., None]], axis=2),
                      factor * min(scores[first], scores[second])))
    if not parts:
        return Filled(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, k, 3)),
                      np.zeros(0))
    columns = list(zip(*parts, strict=True))
    return Filled(*(np.concatenate(c) for c in columns))
