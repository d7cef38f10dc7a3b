"""xtcocotools' keypoint COCOeval (evaluate, accumulate, summarize) computed on arrays.

The arithmetic is xtcocotools 1.14's (reference.md §5.3-5.5), operation for operation where
the order of floating-point operations decides the last bit, so that every metric equals
the library's to the last digit; only the bookkeeping is vectorised:

- OKS of every (detection, person) pair of an image, in chunks of pairs: the same
  expression per joint, ``exp`` and the pairwise sum of NumPy over each pair's labelled
  joints (rows of equal length are summed together, which NumPy does row by row).
- Greedy matching, per OKS threshold and area range at once: detections of all images take
  their turn by rank (at most 20 per image), so one pass per rank replaces xtcocotools'
  loop over images. Only pairs with OKS >= 0.5 (the lowest threshold) can match.
- Accumulation: cumulative sums per threshold over detections sorted by score (a stable
  sort over images in id order, then rank, as xtcocotools concatenates them), and the
  precision envelope as a reversed running maximum.
- CrowdPose's easy/medium/hard: the per-image matching does not depend on which images are
  evaluated, so each subset is one more accumulation over its images, not a new evaluation.

Legend: P people, N detections, K keypoints, T = 10 OKS thresholds, A = 3 area ranges
(all, medium, large), R = 101 recall thresholds, C categories, I images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Detections", "GroundTruth", "score_keypoints"]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

# xtcocotools Params.setKpParams, computed the way it computes them.
IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_THRESHOLDS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = ((0**2, 1e5**2), (32**2, 96**2), (96**2, 1e5**2))
AREA_LABELS = ("all", "medium", "large")
MAX_DETECTIONS = 20
BOX_AREA_FACTOR = 0.53  # use_area=False: a person's OKS scale is 0.53 x bbox w x h
CROWD_INDEX_THRESHOLDS = (0.2, 0.8)

# (name, 1 = precision / 0 = recall, OKS threshold or None = mean over all, area label),
# in COCOeval.stats order.
SUMMARY = (
    ("AP", 1, None, "all"),
    ("AP50", 1, 0.5, "all"),
    ("AP75", 1, 0.75, "all"),
    ("APm", 1, None, "medium"),
    ("APl", 1, None, "large"),
    ("AR", 0, None, "all"),
    ("AR50", 0, 0.5, "all"),
    ("AR75", 0, 0.75, "all"),
    ("ARm", 0, None, "medium"),
    ("ARl", 0, None, "large"),
)
CROWD_SUMMARY = ("AP_easy", "AP_medium", "AP_hard")

_PAIR_CHUNK = 1 << 15  # pairs per OKS chunk: temporaries of 4 MB stay in the cache


@dataclass(frozen=True)
class GroundTruth:
    """The evaluated content of an annotation file, as arrays (checked by the loader).

    Attributes:
        image_ids: [I] the file's image ids (unique).
        crowd_index: [I] CrowdPose's per-image ``crowdIndex``, or None.
        category_ids: [C] the file's category ids.
        image_id, category_id: [P] of each person (annotation), in file order.
        keypoints: [P, K, 3] (x, y, v).
        bbox: [P, 4] (x, y, w, h).
        area: [P] the annotated ``area`` (NaN where absent).
        iscrowd: [P] crowd regions (may match several detections; always ignored).
        labelled: [P] the count whose zero makes a person ignored (see the loader).
    """

    image_ids: I64
    crowd_index: F64 | None
    category_ids: I64
    image_id: I64
    category_id: I64
    keypoints: F64
    bbox: F64
    area: F64
    iscrowd: Bool
    labelled: I64


@dataclass(frozen=True)
class Detections:
    """Result records as arrays: [N] image_id, category_id, score and area (bbox w x h),
    [N, K, 3] keypoints (x, y, score)."""

    image_id: I64
    category_id: I64
    keypoints: F64
    score: F64
    area: F64


def score_keypoints(
    gt: GroundTruth, dt: Detections, sigmas: tuple[float, ...], *, use_area: bool,
    crowd_split: bool,
) -> dict[str, float]:
    """xtcocotools' keypoint statistics (maxDets 20) of ``dt`` against ``gt``.

    Args:
        sigmas: K OKS sigmas.
        use_area: OKS scale and area bucket from each person's annotated ``area``
            (xtcocotools ``use_area=True``); False: 0.53 x bbox w x h.
        crowd_split: add CrowdPose's AP_easy / AP_medium / AP_hard (needs ``crowd_index``).

    Returns:
        ``{name: value}`` for the names of :data:`SUMMARY` (and :data:`CROWD_SUMMARY`); -1.0
        where a bucket holds no person, as COCOeval reports it.
    """
    images = np.unique(gt.image_ids)
    categories = np.unique(gt.category_ids)
    people = _People.of(gt, images, categories, use_area)
    found = _Found.of(dt, images, categories)
    matches = _match(people, found, np.asarray(sigmas, dtype=np.float64))
    precision, recall = _accumulate(people, found, matches, len(images), len(categories), None)
    metrics = {name: float(_summarize(precision, recall, ap, thr, area))
               for name, ap, thr, area in SUMMARY}
    if crowd_split:
        if gt.crowd_index is None:
            raise ValueError("the crowd split needs crowd_index")
        crowd_index = gt.crowd_index[np.argsort(gt.image_ids)]  # in sorted image order
        first, second = CROWD_INDEX_THRESHOLDS
        subsets = (crowd_index < first, (crowd_index >= first) & (crowd_index < second),
                   crowd_index >= second)
        for name, subset in zip(CROWD_SUMMARY, subsets, strict=True):
            # Only the 'all' area range enters the value.
            sub_precision, _ = _accumulate(people, found, matches, len(images),
                                           len(categories), subset, areas=(0,))
            # xtcocotools: round(np.mean(precision[:, :, :, 0, :]), 4), -1 entries kept.
            metrics[name] = float(round(np.mean(sub_precision[:, :, :, 0, :]), 4))
    return metrics


# --------------------------------------------------------------------------------------------
# Inputs in evaluation order


@dataclass(frozen=True)
class _People:
    """Evaluated people in unit order (unit = category rank x I + image rank), file order
    within a unit. Per-person fields are in that order; ``index`` points into the
    :class:`GroundTruth` arrays, whose keypoints are read through it."""

    index: I64  # [P'] row of the GroundTruth arrays
    unit: I64  # [P']
    image: I64  # [P'] image rank
    category: I64  # [P'] category rank
    oks_area: F64  # [P'] the OKS scale
    reach: F64  # [4, P'] x0, y0, x1, y1 of the points OKS measures from (see _near)
    ignored: Bool  # [A, P'] xtcocotools' _ignore per area range
    crowd: Bool  # [P']
    unit_start: I64  # [U + 1] first person of each unit (U = C x I)
    keypoints: F64  # [P, K, 3] GroundTruth.keypoints, file order

    @staticmethod
    def of(gt: GroundTruth, images: I64, categories: I64, use_area: bool) -> _People:
        keep = np.isin(gt.category_id, categories)
        unit = (np.searchsorted(categories, gt.category_id[keep]) * len(images)
                + np.searchsorted(images, gt.image_id[keep]))
        order = np.argsort(unit, kind="stable")
        index = np.flatnonzero(keep)[order]
        unit = unit[order]
        bbox = gt.bbox[index]
        # computeOks: bbox[3] * bbox[2] * 0.53; evaluateImg: bbox[2] * bbox[3] * 0.53 (equal).
        box_area = bbox[:, 3] * bbox[:, 2] * BOX_AREA_FACTOR
        oks_area = gt.area[index] if use_area else box_area
        ignore = gt.iscrowd[index] | (gt.labelled[index] == 0)
        n_units = len(categories) * len(images)
        return _People(
            index=index, unit=unit, image=unit % len(images), category=unit // len(images),
            oks_area=oks_area,
            reach=_reach(gt.keypoints, gt.bbox)[:, index],
            ignored=ignore[None, :] | _out_of_range(oks_area),
            crowd=gt.iscrowd[index],
            unit_start=np.searchsorted(unit, np.arange(n_units + 1)).astype(np.int64),
            keypoints=gt.keypoints)


@dataclass(frozen=True)
class _Found:
    """Evaluated detections (at most 20 per unit), by unit, then score, then file order;
    ``index`` points into the :class:`Detections` arrays."""

    index: I64  # [N'] row of the Detections arrays
    unit: I64  # [N']
    image: I64  # [N']
    category: I64  # [N']
    rank: I64  # [N'] 0..19 within the unit
    box: F64  # [4, N'] x0, y0, x1, y1 of the keypoints
    score: F64  # [N']
    out_of_range: Bool  # [A, N'] detection area outside each area range
    keypoints: F64  # [N, K, 3] Detections.keypoints, file order

    @staticmethod
    def of(dt: Detections, images: I64, categories: I64) -> _Found:
        # xtcocotools drops detections without a positive keypoint score, and evaluates
        # only the ground truth's categories.
        keep = (dt.keypoints[:, :, 2] > 0).any(axis=1) & np.isin(dt.category_id, categories)
        index = np.flatnonzero(keep)
        unit = (np.searchsorted(categories, dt.category_id[index]) * len(images)
                + np.searchsorted(images, dt.image_id[index]))
        # Highest score first (a stable sort keeps file order among equal scores), by unit.
        by_score = np.argsort(-dt.score[index], kind="stable")
        order = by_score[np.argsort(unit[by_score], kind="stable")]
        unit, index = unit[order], index[order]
        first = np.searchsorted(unit, unit)  # first detection of each one's unit
        rank = np.arange(len(unit)) - first
        top = rank < MAX_DETECTIONS
        unit, index, rank = unit[top], index[top], rank[top]
        xs, ys = dt.keypoints[:, :, 0], dt.keypoints[:, :, 1]
        box = np.stack([xs.min(axis=1), ys.min(axis=1), xs.max(axis=1), ys.max(axis=1)])
        return _Found(
            index=index, unit=unit, image=unit % len(images), category=unit // len(images),
            rank=rank, box=box.reshape(4, len(dt.score))[:, index], score=dt.score[index],
            out_of_range=_out_of_range(dt.area[index]), keypoints=dt.keypoints)


def _out_of_range(area: F64) -> Bool:
    """[A, n] area outside each area range (xtcocotools: area < lo or area > hi)."""
    lows = np.array([lo for lo, _ in AREA_RANGES])[:, None]
    highs = np.array([hi for _, hi in AREA_RANGES])[:, None]
    return (area[None, :] < lows) | (area[None, :] > highs)


def _reach(keypoints: F64, bbox: F64) -> F64:
    """[4, P] box of what a person's OKS measures distances to: its labelled keypoints, or,
    without any, its bbox doubled (computeOks' rule for such people)."""
    x, y = keypoints[:, :, 0], keypoints[:, :, 1]
    labelled = keypoints[:, :, 2] > 0
    reach = np.stack([np.minimum.reduce(x, axis=1, where=labelled, initial=np.inf),
                      np.minimum.reduce(y, axis=1, where=labelled, initial=np.inf),
                      np.maximum.reduce(x, axis=1, where=labelled, initial=-np.inf),
                      np.maximum.reduce(y, axis=1, where=labelled, initial=-np.inf)])
    doubled = np.stack([bbox[:, 0] - bbox[:, 2], bbox[:, 1] - bbox[:, 3],
                        bbox[:, 0] + bbox[:, 2] * 2, bbox[:, 1] + bbox[:, 3] * 2])
    return np.where(labelled.any(axis=1), reach, doubled).reshape(4, len(keypoints))


# --------------------------------------------------------------------------------------------
# evaluate(): OKS and greedy matching


@dataclass(frozen=True)
class _Matches:
    """Per detection, for every (area range, threshold)."""

    matched: Bool  # [A, T, N'] detection matched to a person
    dt_ignored: Bool  # [A, T, N'] xtcocotools' dtIgnore


_DET_CHUNK = 4096  # detections per block of pairs: the block's temporaries stay in the cache


def _candidates(people: _People, found: _Found, sigmas: F64) -> tuple[I64, I64, F64]:
    """(detection, person, OKS) of every pair of a unit with OKS >= 0.5 (the lowest
    threshold; no other pair can match), detection-major, people in unit order."""
    # Float32 copies for the coarse distance test of _near (its margin dwarfs the rounding).
    box = found.box.astype(np.float32)
    reach = people.reach.astype(np.float32)
    limit = (16 * np.log(2) * float(np.max(sigmas)) ** 2
             * (people.oks_area + np.spacing(1))).astype(np.float32)
    dets, persons, values = [], [], []
    for lo in range(0, len(found.unit), _DET_CHUNK):
        block = np.arange(lo, min(lo + _DET_CHUNK, len(found.unit)))
        start = people.unit_start[found.unit[block]]
        count = people.unit_start[found.unit[block] + 1] - start
        det = np.repeat(block, count)
        offsets = np.arange(len(det)) - np.repeat(np.cumsum(count) - count, count)
        person = np.repeat(start, count) + offsets
        near = _near(np.repeat(box[:, block], count, axis=1), reach[:, person], limit[person])
        det, person = det[near], person[near]
        oks = _oks(people, found, det, person, sigmas)
        can = oks >= IOU_THRESHOLDS[0]
        dets.append(det[can])
        persons.append(person[can])
        values.append(oks[can])
    if not dets:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(dets), np.concatenate(persons), np.concatenate(values)


def _near(det_box: npt.NDArray[np.float32], reach: npt.NDArray[np.float32],
          limit: npt.NDArray[np.float32]) -> Bool:
    """[pairs] False where the OKS is surely below 0.5, so computing it can be skipped.

    OKS is a mean of exp(-d_k^2 / (8 sigma_k^2 s)) (s: the person's area), so OKS >= 0.5
    needs one joint with d_k^2 <= 8 sigma_k^2 s ln 2. Every d_k is at least the distance
    between the detection's keypoint box and the person's reach box; pairs farther apart
    than twice that bound (``limit``, a margin far above any rounding) are skipped.
    Inputs: [4, pairs] boxes (x0, y0, x1, y1) and [pairs] limits.
    """
    gap_x = np.maximum(np.maximum(reach[0] - det_box[2], det_box[0] - reach[2]), 0)
    gap_y = np.maximum(np.maximum(reach[1] - det_box[3], det_box[1] - reach[3]), 0)
    return gap_x * gap_x + gap_y * gap_y <= limit


def _oks(people: _People, found: _Found, det: I64, person: I64, sigmas: F64) -> F64:
    """xtcocotools computeOks for the given pairs: [len(det)] OKS."""
    variances = (sigmas * 2) ** 2
    k = len(sigmas)
    # Whole [K, 3] rows are gathered (contiguous copies), then read as x, y, v planes.
    g = np.take(people.keypoints, np.take(people.index, person), axis=0)
    d = np.take(found.keypoints, np.take(found.index, det), axis=0)
    xg, yg, vg = g[:, :, 0], g[:, :, 1], g[:, :, 2]
    xd, yd = d[:, :, 0], d[:, :, 1]
    visible = vg > 0
    counts = visible.sum(axis=1)
    dx = xd - xg
    dy = yd - yg
    blind = counts == 0
    if blind.any():
        # No labelled joint: distance to the box doubled around the person's bbox.
        x0, y0, x1, y1 = (np.take(row, person[blind])[:, None] for row in people.reach)
        z = np.zeros((1, k))
        xb, yb = xd[blind], yd[blind]
        dx[blind] = np.maximum(z, x0 - xb) + np.maximum(z, xb - x1)
        dy[blind] = np.maximum(z, y0 - yb) + np.maximum(z, yb - y1)
        visible[blind] = True
        counts[blind] = k
    area = np.take(people.oks_area, person) + np.spacing(1)
    e = (dx**2 + dy**2) / variances / area[:, None] / 2
    oks = np.empty(len(det))
    # NumPy sums a short row pairwise; rows of one length summed together give the same bits.
    for n in np.unique(counts):
        same = counts == n
        values = e[same][visible[same]].reshape(-1, n)
        oks[same] = np.sum(np.exp(-values), axis=1) / n
    return oks


def _match(people: _People, found: _Found, sigmas: F64) -> _Matches:
    """xtcocotools evaluateImg for every image and area range (module docstring)."""
    cand_det, cand_person, cand_oks = _candidates(people, found, sigmas)
    n, t, a = len(found.unit), len(IOU_THRESHOLDS), len(AREA_RANGES)
    thresholds = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)[None, None, :]
    taken = np.zeros((len(people.unit), a, t), dtype=bool)
    matched = np.zeros((a, t, n), dtype=bool)
    dt_ignored = np.repeat(found.out_of_range[:, None, :], t, axis=1)
    ignored = np.ascontiguousarray(people.ignored.T)  # [P', A]
    # A pair whose detection has no other candidate and whose person no other detection
    # wants is decided by its OKS alone; only the rest needs the turn-by-turn scan.
    lone = ((np.bincount(cand_det, minlength=n)[cand_det] == 1)
            & (np.bincount(cand_person, minlength=len(people.unit))[cand_person] == 1))
    d, p = cand_det[lone], cand_person[lone]
    hit = cand_oks[lone][None, :] >= thresholds[0, 0, :, None]  # [T, lone]
    matched[:, :, d] = hit[None]
    dt_ignored[:, :, d] = np.where(hit[None], ignored[p].T[:, None, :], dt_ignored[:, :, d])
    cand_det, cand_person, cand_oks = cand_det[~lone], cand_person[~lone], cand_oks[~lone]

    by_rank = np.argsort(found.rank[cand_det], kind="stable")  # keeps detection-major order
    bounds = np.searchsorted(found.rank[cand_det][by_rank], np.arange(MAX_DETECTIONS + 1))
    for rank in range(MAX_DETECTIONS):
        # One detection per unit takes its turn: no two compete for a person.
        sel = by_rank[bounds[rank] : bounds[rank + 1]]
        if not len(sel):
            continue
        d, p, oks = cand_det[sel], cand_person[sel], cand_oks[sel]
        free = ~taken[p] | people.crowd[p][:, None, None]  # [C, A, T]
        usable = free & (oks[:, None, None] >= thresholds)
        regular = usable & ~ignored[p][:, :, None]
        new_det = np.r_[True, d[1:] != d[:-1]]
        starts = np.flatnonzero(new_det)
        group = np.cumsum(new_det) - 1
        # A person who is not ignored wins over any ignored one (they come first, and the
        # scan stops at the ignored ones once it has a match); then the highest OKS, and
        # among equal OKS the person listed last.
        has_regular = np.logical_or.reduceat(regular, starts, axis=0)
        eligible = np.where(has_regular[group], regular, usable)
        score = np.where(eligible, oks[:, None, None], -1.0)
        best = np.maximum.reduceat(score, starts, axis=0)
        winner = eligible & (score == best[group])
        position = np.where(winner, np.arange(len(sel))[:, None, None], -1)
        chosen = np.maximum.reduceat(position, starts, axis=0)  # [groups, A, T]
        rows, ai, ti = np.nonzero(chosen >= 0)
        winner_person = p[chosen[rows, ai, ti]]
        winner_det = d[starts][rows]
        taken[winner_person, ai, ti] = True
        matched[ai, ti, winner_det] = True
        dt_ignored[ai, ti, winner_det] = ignored[winner_person, ai]
    return _Matches(matched, dt_ignored)


# --------------------------------------------------------------------------------------------
# accumulate() and summarize()


def _accumulate(people: _People, found: _Found, matches: _Matches, n_images: int,
                n_categories: int, subset: Bool | None,
                areas: tuple[int, ...] = (0, 1, 2)) -> tuple[F64, F64]:
    """Precision [T, R, C, A, 1] and recall [T, C, A, 1], -1 where no person counts.

    ``subset``: [I] images to accumulate over (sorted image order), or None for all;
    ``areas``: the area ranges to fill (the others stay -1).
    """
    t, r, a = len(IOU_THRESHOLDS), len(RECALL_THRESHOLDS), len(AREA_RANGES)
    precision = -np.ones((t, r, n_categories, a, 1))
    recall = -np.ones((t, n_categories, a, 1))
    dt_in = np.ones(len(found.unit), bool) if subset is None else subset[found.image]
    gt_in = np.ones(len(people.unit), bool) if subset is None else subset[people.image]
    for k in range(n_categories):
        dts = np.flatnonzero(dt_in & (found.category == k))
        # xtcocotools concatenates images in id order, detections by rank, then sorts.
        sorted_dts = dts[np.argsort(-found.score[dts], kind="mergesort")]
        gts = gt_in & (people.category == k)
        nd = len(sorted_dts)
        for ai in areas:
            npig = int(np.count_nonzero(gts & ~people.ignored[ai]))
            if npig == 0:
                continue
            if nd == 0:
                recall[:, k, ai, 0] = 0
                precision[:, :, k, ai, 0] = 0.0
                continue
            for ti in range(t):
                # One threshold at a time: arrays of nd values, reused from the heap (a whole
                # [T, nd] block is over glibc's mmap threshold: fresh pages every time).
                hit = np.take(matches.matched[ai, ti], sorted_dts)
                counted = ~np.take(matches.dt_ignored[ai, ti], sorted_dts)
                # Counts (exact in int32 and float64), as xtcocotools' cumsum().astype(float).
                tp_sum = np.cumsum(hit & counted, dtype=np.int32).astype(np.float64)
                fp_sum = np.cumsum(~hit & counted, dtype=np.int32).astype(np.float64)
                rc = tp_sum / npig
                pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                recall[ti, k, ai, 0] = rc[-1]
                inds = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
                precision[ti, :, k, ai, 0] = _envelope_at(pr, inds)
    return precision, recall


def _envelope_at(pr: F64, inds: I64) -> F64:
    """[R] max(pr[i:]) at each of the sorted positions ``inds`` (0 at or past the end):
    xtcocotools' precision envelope read at the recall thresholds, from the maxima of the
    stretches between those positions instead of a running maximum over all of ``pr``."""
    q = np.zeros(len(inds))
    inside = inds < len(pr)
    starts, first = np.unique(inds[inside], return_index=True)
    if len(starts):
        stretch = np.maximum.reduceat(pr, starts)  # max of pr[starts[j]:starts[j + 1]]
        suffix = np.maximum.accumulate(stretch[::-1])[::-1]
        q[np.flatnonzero(inside)] = np.repeat(suffix, np.diff(np.r_[first, inside.sum()]))
    return q


def _summarize(precision: F64, recall: F64, ap: int, iou_thr: float | None,
               area: str) -> np.float64:
    """xtcocotools summarize()._summarize with maxDets 20 (the only one)."""
    aind = [i for i, label in enumerate(AREA_LABELS) if label == area]
    mind = [0]
    if ap == 1:
        s = precision
        if iou_thr is not None:
            s = s[np.where(iou_thr == IOU_THRESHOLDS)[0]]
        s = s[:, :, :, aind, mind]
    else:
        s = recall
        if iou_thr is not None:
            s = s[np.where(iou_thr == IOU_THRESHOLDS)[0]]
        s = s[:, :, aind, mind]
    if len(s[s > -1]) == 0:
        return np.float64(-1)
    return np.float64(np.mean(s[s > -1]))
