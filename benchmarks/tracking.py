"""Tracking quality and speed: aepose PoseTracker, online and offline, versus mmpose 0.x's
greedy matcher and the ceiling the detections allow (every detection with its true ID).

Ground truth: generated video sequences of 1-12 walking people who cross, occlude each
other, enter and leave (``aepose.synth.video.sequence_truth`` when it exists, otherwise the
stand-in generator of ``tracking_sim.py``; ``--truth`` chooses). Detections are the ground
truth made realistic: Gaussian keypoint jitter scaled by person size and the spec's sigmas, missed
joints, missed people (single frames and bursts of several frames) and false positives.
Every tracker sees the same detections.

Metrics (``motmetrics``): MOTA, IDF1 and ID switches, ground truth matched to tracker
output by OKS (distance 1 - OKS, no match beyond 0.5). Speed: wall and CPU time per frame
(``update``; offline, the whole video's tracking divided by its frames). Offline rows
also give how often interpolated poses match a person (OKS >= 0.5) against detected ones.

    .venv/bin/python benchmarks/tracking.py [--people 1 2 4 8 12] [--frames 300] [--seeds 3]

``--breakdown`` classes PoseTracker's detections by the ID they got (right, another
person's, a spare one of their own, none) and scores perfect re-linking of new tracks to
lost ones; ``--timing`` times 12 people in every frame.

Part (b) of issue 15, end to end (``--end-to-end``): the sequences are rendered to MP4
(``aepose.synth.video.write_sequence``), every frame read back and run through a trained
model's ``Predictor``, and its poses (people scoring >= ``--min-score``) are what the
trackers see, in place of :func:`simulate_detections`' output::

    .venv/bin/python -m aepose demo --minutes 6 --out /tmp/demo15   # if no model is at hand
    .venv/bin/python benchmarks/tracking.py --end-to-end --weights /tmp/demo15/train/last.pth \
        --people 2 4 --seeds 2 --frames 100
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment
from tracking_sim import GreedyTracker, NoiseModel, load_truth, simulate_detections

from aepose.keypoints import COCO, KeypointSpec, get_spec
from aepose.oks import pairwise_oks
from aepose.tracking.offline import OfflineConfig, track_offline
from aepose.tracking.tracker import PoseTracker, TrackerConfig

__all__ = ["GreedyTracker", "NoiseModel", "evaluate_tracking", "id_breakdown", "load_truth",
           "make_offline", "make_oracle", "make_ours", "make_relinked", "simulate_detections"]

# ---------------------------------------------------------------------------------------
# Evaluation


class Tracker(Protocol):
    """One frame's [P, K, 3] poses and [P] person scores in; (track IDs, -1 for none; the
    poses to score, smoothed or not) out: P of each, in input order, then the frame's
    interpolated poses, if any (offline tracking)."""

    def __call__(self, keypoints: np.ndarray, scores: np.ndarray, timestamp_ms: float
                 ) -> tuple[list[int], np.ndarray]: ...


def make_ours(spec: KeypointSpec, config: TrackerConfig) -> Tracker:
    tracker = PoseTracker(spec, config)

    def run(keypoints: np.ndarray, scores: np.ndarray, timestamp_ms: float
            ) -> tuple[list[int], np.ndarray]:
        tracked = tracker.update(keypoints, scores, timestamp_ms=timestamp_ms)
        out = np.stack([t.keypoints for t in tracked]) if tracked else keypoints
        return [t.track_id for t in tracked], out

    return run


def make_offline(spec: KeypointSpec, config: OfflineConfig, detections: Sequence[np.ndarray],
                 timestamps_ms: Sequence[float],
                 interpolated: list[bool] | None = None) -> Tracker:
    """Offline tracking of the whole sequence, done at the first frame's call (so that the
    time of the first call is the whole video's). ``interpolated``, if given, receives per
    output pose whether it was interpolated, frame after frame."""
    frames: list[Any] = []

    def run(keypoints: np.ndarray, scores: np.ndarray, timestamp_ms: float
            ) -> tuple[list[int], np.ndarray]:
        if not frames:
            frames.extend(reversed(track_offline(detections, None, spec, config,
                                                 timestamps_ms)))
        frame = frames.pop()
        ids = frame.track_ids + [i for i, _, _ in frame.filled]
        out = np.concatenate([frame.keypoints, *[p[None] for _, p, _ in frame.filled]])
        if interpolated is not None:
            interpolated.extend([False] * len(frame.track_ids) + [True] * len(frame.filled))
        return ids, out

    return run


def make_greedy(spec: KeypointSpec, use_oks: bool) -> Tracker:
    tracker = GreedyTracker(spec.sigmas, use_oks)

    def run(keypoints: np.ndarray, scores: np.ndarray, timestamp_ms: float
            ) -> tuple[list[int], np.ndarray]:
        return tracker.update(keypoints), keypoints

    return run


def make_oracle(sources: Sequence[np.ndarray]) -> Tracker:
    """The ceiling: every detection gets its true ID (false positives new ones), so only
    missed and false detections and keypoint noise remain."""
    frames = iter(sources)
    next_id = [10**6]

    def run(keypoints: np.ndarray, scores: np.ndarray, timestamp_ms: float
            ) -> tuple[list[int], np.ndarray]:
        ids = next(frames).tolist()
        for i, t in enumerate(ids):
            if t < 0:
                ids[i], next_id[0] = next_id[0], next_id[0] + 1
        return ids, keypoints

    return run


def make_relinked(spec: KeypointSpec, sources: Sequence[np.ndarray]) -> Tracker:
    """PoseTracker, except that an ID it gives a person who had another one before is
    replaced by that earlier ID for good: the best any re-linking of new tracks to lost
    ones could do (it knows each detection's true source)."""
    tracker, frames = make_ours(spec, TrackerConfig()), iter(sources)
    renamed: dict[int, int] = {}
    last_id: dict[int, int] = {}  # true person -> the ID last reported for them
    known: set[int] = set()

    def run(keypoints: np.ndarray, scores: np.ndarray, timestamp_ms: float
            ) -> tuple[list[int], np.ndarray]:
        ids, out = tracker(keypoints, scores, timestamp_ms)
        true = next(frames).tolist()
        for p, i in enumerate(ids):
            if i >= 0 and i not in known:
                known.add(i)
                if true[p] in last_id:
                    renamed[i] = last_id[true[p]]
            ids[p] = renamed.get(i, i)
            if ids[p] >= 0 and true[p] >= 0:
                last_id[true[p]] = ids[p]
        return ids, out

    return run


BREAKDOWN = ("right ID", "another person's ID", "a spare ID of their own", "no ID")


def id_breakdown(ids: Sequence[Sequence[int]], sources: Sequence[np.ndarray]) -> Counter[str]:
    """The real people's detections of one sequence by the ID they were given, under a
    one-to-one map of IDs to people that maximises the detections it gets right (IDF1's
    map, counted on detections instead of OKS matches): the ``BREAKDOWN`` keys. An ID that
    maps elsewhere or nowhere is "another person's" when someone else carries it most
    often, else "a spare ID of their own".

    ids: per frame, the P IDs given (-1: none); sources: per frame, the [P] true IDs.
    """
    pairs = [(i, t) for frame_ids, true in zip(ids, sources, strict=True)
             for i, t in zip(frame_ids, true.tolist(), strict=True) if t >= 0]
    counts = Counter((i, t) for i, t in pairs if i >= 0)
    hyp, people = sorted({i for i, _ in counts}), sorted({t for _, t in counts})
    table = np.zeros((len(hyp), len(people)))
    for (i, t), n in counts.items():
        table[hyp.index(i), people.index(t)] = n
    rows, cols = linear_sum_assignment(-table)
    mapped = {hyp[r]: people[c] for r, c in zip(rows, cols, strict=True)}
    owner = {i: people[int(np.argmax(table[r]))] for r, i in enumerate(hyp)}
    out: Counter[str] = Counter()
    for i, t in pairs:
        if i < 0:
            out["no ID"] += 1
        elif mapped.get(i) == t:
            out["right ID"] += 1
        else:
            out["another person's ID" if owner[i] != t else "a spare ID of their own"] += 1
    return out


def _gt_distances(people: list[dict[str, Any]], hyp: np.ndarray, sigmas: Sequence[float]
                  ) -> np.ndarray:
    """[G, H] 1 - OKS (COCO's: ground truth's labelled joints, area 0.53 w h), NaN > 0.5."""
    dist = np.full((len(people), len(hyp)), np.nan)
    for g, person in enumerate(people):
        kpts = np.asarray(person["keypoints"]).reshape(-1, 3)
        labelled = kpts[:, 2] > 0
        # COCO scales by the ground truth's area alone: both areas of each pair are its.
        area = 0.53 * person["bbox"][2] * person["bbox"][3]
        oks = pairwise_oks(kpts[None, :, :2], hyp[:, :, :2], sigmas, np.array([area]),
                           np.full(len(hyp), area), valid_a=labelled[None])[0]  # [H]
        dist[g] = np.where(1 - oks <= 0.5, 1 - oks, np.nan)
    return dist


def evaluate_tracking(
    truth: dict[str, Any],
    detections: Sequence[np.ndarray],
    tracker: Tracker,
    spec: KeypointSpec,
    gt: str = "labelled",
    scores: Sequence[np.ndarray] | None = None,
) -> tuple[mm.MOTAccumulator, float, float]:
    """Run a tracker over a sequence's detections and match its output to the truth.

    gt: which people count as ground truth in a frame: ``labelled``, those with at least 3
    labelled joints (v > 0), hidden ones included; ``visible``, those with at least 3
    visible joints (v = 2), the people a detector can see (PoseTrack labels only those).
    scores: per frame, [P] person scores of the detections (default all 1.0).

    Returns (accumulator, (wall, CPU) seconds spent in the tracker, mean pixel error of
    visible joints of matched people).
    """
    least = 2 if gt == "visible" else 1
    acc = mm.MOTAccumulator(auto_id=True)
    wall, cpu, errors = 0.0, 0.0, []
    for f, (record, dets) in enumerate(zip(truth["frames"], detections, strict=True)):
        frame_scores = np.ones(len(dets)) if scores is None else scores[f]
        start, start_cpu = time.perf_counter(), time.process_time()
        ids, keypoints = tracker(dets, frame_scores, record["timestamp_ms"])
        wall += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
        keep = [i for i, t in enumerate(ids) if t >= 0]
        hyp = keypoints[keep] if keep else np.zeros((0, spec.num_keypoints, 3))
        people = [p for p in record["people"]
                  if (np.asarray(p["keypoints"])[2::3] >= least).sum() >= 3]
        dist = _gt_distances(people, hyp, spec.sigmas)
        acc.update([p["track_id"] for p in people], [ids[i] for i in keep], dist)
        errors.extend(_pixel_errors(people, hyp, dist))
    return acc, (wall, cpu), float(np.mean(errors)) if errors else float("nan")


def _pixel_errors(people: list[dict[str, Any]], hyp: np.ndarray, dist: np.ndarray
                  ) -> list[float]:
    """Per visible joint, distance to the closest hypothesis (by OKS) of each person."""
    out: list[float] = []
    for g, person in enumerate(people):
        if np.isnan(dist[g]).all():
            continue
        h = int(np.nanargmin(dist[g]))
        kpts = np.asarray(person["keypoints"]).reshape(-1, 3)
        visible = kpts[:, 2] == 2
        d = np.linalg.norm(hyp[h, visible, :2] - kpts[visible, :2], axis=1)
        out.extend(d.tolist())
    return out


# ---------------------------------------------------------------------------------------
# Table


Sequence_ = tuple[dict[str, Any], list[np.ndarray], list[np.ndarray]]  # truth, detections, sources


def _timestamps(truth: dict[str, Any]) -> list[float]:
    return [record["timestamp_ms"] for record in truth["frames"]]


def trackers(spec: KeypointSpec) -> dict[str, tuple[str, Callable[[Sequence_], Tracker]]]:
    """The rows of the table: --trackers name -> (row label, factory of a sequence's
    tracker)."""
    return {
        "greedy-iou": ("greedy IoU (mmpose default)", lambda _: make_greedy(spec, False)),
        "greedy-oks": ("greedy OKS (mmpose --use-oks)", lambda _: make_greedy(spec, True)),
        "online": ("PoseTracker", lambda _: make_ours(spec, TrackerConfig())),
        "online-smooth": ("PoseTracker smooth=True",
                          lambda _: make_ours(spec, TrackerConfig(smooth=True))),
        "offline": ("PoseTracker offline", lambda seq: make_offline(
            spec, OfflineConfig(), seq[1], _timestamps(seq[0]))),
        "ceiling": ("true IDs (ceiling)", lambda seq: make_oracle(seq[2])),
    }


def run_all(args: argparse.Namespace) -> None:
    spec = get_spec(args.spec)
    noise = dataclasses.replace(NoiseModel(), false_positives=args.false_positives)
    rows = trackers(spec)
    kinds = set()
    print("| people | detections/frame | tracker | MOTA | IDF1 | ID switches "
          "| joint error px | ms/frame | CPU ms/frame |")
    print("|---|---|---|---|---|---|---|---|---|")
    rates = []
    for people in args.people:
        sequences: list[Sequence_] = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            kind, truth = load_truth(args.truth, spec, args.frames, people, seed)
            kinds.add(kind)
            sequences.append((truth, *simulate_detections(truth, spec, noise, seed)))
        per_frame = np.mean([len(d) for _, dets, _ in sequences for d in dets])
        frames = sum(len(dets) for _, dets, _ in sequences)
        for key in args.trackers:
            name, factory = rows[key]
            accs, errors = [], []
            wall, cpu = 0.0, 0.0
            for sequence in sequences:
                acc, (seconds, cpu_seconds), error = evaluate_tracking(
                    sequence[0], sequence[1], factory(sequence), spec, args.gt)
                accs.append(acc)
                wall, cpu = wall + seconds, cpu + cpu_seconds
                errors.append(error)
            summary = mm.metrics.create().compute_many(
                accs, metrics=["mota", "idf1", "num_switches"], generate_overall=True)
            row = summary.loc["OVERALL"]
            ms = cpu_ms = ""
            if key != "ceiling":  # best of 3 passes: the machine is shared
                passes = [_time_pass(sequences, factory) for _ in range(2)]
                ms = f"{1000 * min(wall, *(p[0] for p in passes)) / frames:.3f}"
                cpu_ms = f"{1000 * min(cpu, *(p[1] for p in passes)) / frames:.3f}"
            print(f"| {people} | {per_frame:.1f} | {name} | {row['mota']:.3f} | "
                  f"{row['idf1']:.3f} | {int(row['num_switches'])} | "
                  f"{np.nanmean(errors):.2f} | {ms} | {cpu_ms} |")
        if "offline" in args.trackers:
            rates.append((people, sum((match_counts(*sequence, spec, args.gt)
                                       for sequence in sequences), Counter())))
    print(f"\nground truth: {', '.join(sorted(kinds))}, {args.gt} people; {args.seeds} "
          f"sequences (seeds from {args.first_seed}) of {args.frames} frames per row; "
          f"spec {spec.name}")
    if rates:
        print("\nOffline: poses matching a person of the truth (OKS >= 0.5)\n\n| people | "
              "detected poses | matched | interpolated poses | matched |\n|---|---|---|---|---|")
        for people, n in rates:
            print(f"| {people} | {n['detected']} | {_share(n['detected matched'], n['detected'])}"
                  f" | {n['interpolated']} | "
                  f"{_share(n['interpolated matched'], n['interpolated'])} |")


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def match_counts(truth: dict[str, Any], detections: list[np.ndarray], sources: list[np.ndarray],
                 spec: KeypointSpec, gt: str) -> Counter[str]:
    """Offline tracking's tracked poses of one sequence, detected and interpolated, and how
    many of each lie within OKS 0.5 of a person of the truth."""
    least = 2 if gt == "visible" else 1
    flags: list[bool] = []
    tracker = make_offline(spec, OfflineConfig(), detections, _timestamps(truth), flags)
    out: Counter[str] = Counter()
    for record, dets in zip(truth["frames"], detections, strict=True):
        start = len(flags)
        ids, keypoints = tracker(dets, np.ones(len(dets)), record["timestamp_ms"])
        people = [p for p in record["people"]
                  if (np.asarray(p["keypoints"])[2::3] >= least).sum() >= 3]
        dist = _gt_distances(people, keypoints, spec.sigmas)
        for h, track_id in enumerate(ids):
            if track_id < 0:
                continue
            kind = "interpolated" if flags[start + h] else "detected"
            out[kind] += 1
            out[f"{kind} matched"] += int(bool(len(people)) and not np.isnan(dist[:, h]).all())
    return out


def run_breakdown(args: argparse.Namespace) -> None:
    """Where PoseTracker's IDs go wrong, and what perfect re-linking would gain."""
    spec = get_spec(args.spec)
    noise = dataclasses.replace(NoiseModel(), false_positives=args.false_positives)
    print("| people | PoseTracker IDF1 / switches | perfect re-linking IDF1 / switches | "
          + " | ".join(BREAKDOWN) + " |")
    print("|---" * (3 + len(BREAKDOWN)) + "|")
    for people in args.people:
        cells: dict[str, list[mm.MOTAccumulator]] = {"ours": [], "relinked": []}
        shares: Counter[str] = Counter()
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            _, truth = load_truth(args.truth, spec, args.frames, people, seed)
            dets, sources = simulate_detections(truth, spec, noise, seed)
            given: list[list[int]] = []
            ours = make_ours(spec, TrackerConfig())

            def recorded(keypoints: np.ndarray, scores: np.ndarray, timestamp_ms: float,
                         ours: Tracker = ours, given: list[list[int]] = given
                         ) -> tuple[list[int], np.ndarray]:
                ids, out = ours(keypoints, scores, timestamp_ms)
                given.append(ids)
                return ids, out

            cells["ours"].append(evaluate_tracking(truth, dets, recorded, spec, args.gt)[0])
            cells["relinked"].append(evaluate_tracking(
                truth, dets, make_relinked(spec, sources), spec, args.gt)[0])
            shares += id_breakdown(given, sources)
        scored = []
        for accs in cells.values():
            row = mm.metrics.create().compute_many(
                accs, metrics=["idf1", "num_switches"], generate_overall=True).loc["OVERALL"]
            scored.append(f"{row['idf1']:.3f} / {int(row['num_switches'])}")
        total = sum(shares.values())
        print(f"| {people} | {' | '.join(scored)} | "
              + " | ".join(f"{100 * shares[k] / total:.1f} %" for k in BREAKDOWN) + " |")
    print(f"\nseeds {args.first_seed}-{args.first_seed + args.seeds - 1}, {args.frames} "
          f"frames, {args.false_positives} false people per frame, {args.gt} people")


def _time_pass(sequences: Sequence[Sequence_], factory: Callable[[Sequence_], Tracker]
               ) -> tuple[float, float]:
    """(wall, CPU) seconds a fresh tracker spends on all sequences' frames."""
    wall, cpu = 0.0, 0.0
    for sequence in sequences:
        tracker = factory(sequence)
        start, start_cpu = time.perf_counter(), time.process_time()
        for record, frame_dets in zip(sequence[0]["frames"], sequence[1], strict=True):
            tracker(frame_dets, np.ones(len(frame_dets)), record["timestamp_ms"])
        wall += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
    return wall, cpu


def time_full_crowd(spec: KeypointSpec, people: int, frames: int, smooth: bool) -> float:
    """Milliseconds per frame of PoseTracker.update with exactly ``people`` detections in
    every frame (walkers on a grid, 1-2 px per frame, jittered joints), best of 3 passes."""
    rng = np.random.default_rng(0)
    k = spec.num_keypoints
    template = np.stack([rng.uniform(0, 60, k), rng.uniform(0, 160, k)], axis=1)
    grid = np.stack([np.arange(people) % 4 * 150.0 + 20, np.arange(people) // 4 * 170.0 + 10],
                    axis=1)
    velocity = rng.uniform(-2, 2, (people, 2))
    poses = []
    for f in range(frames):
        xy = grid[:, None] + velocity[:, None] * f + template[None]
        xy = xy + rng.normal(0, 1.5, xy.shape)
        poses.append(np.concatenate([xy, np.full((people, k, 1), 0.9)], axis=2))
    best = float("inf")
    for _ in range(3):
        tracker = PoseTracker(spec, TrackerConfig(smooth=smooth))
        start = time.perf_counter()
        for f, frame in enumerate(poses):
            tracker.update(frame, timestamp_ms=f * 40.0)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / frames


def run_timing(args: argparse.Namespace) -> None:
    spec = get_spec(args.spec)
    print("| detections/frame | smooth | ms/frame |")
    print("|---|---|---|")
    for people in args.people:
        for smooth in (False, True):
            ms = time_full_crowd(spec, people, args.frames, smooth)
            print(f"| {people} | {'yes' if smooth else 'no'} | {ms:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--people", type=int, nargs="+", default=[1, 2, 4, 8, 12])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3, help="sequences per row (default 3)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seed of the first sequence (default 0); e.g. --first-seed 6 "
                        "scores sequences the defaults were not chosen on")
    parser.add_argument("--spec", default=COCO.name)
    parser.add_argument("--truth", choices=["auto", "synth", "standin"], default="auto")
    parser.add_argument("--end-to-end", action="store_true",
                        help="part (b): a trained model's poses on rendered sequences")
    parser.add_argument("--weights", default="runs/demo/train/last.pth",
                        help="checkpoint for --end-to-end (default runs/demo/train/last.pth)")
    parser.add_argument("--min-score", type=float, default=0.0,
                        help="--end-to-end: people scoring below it are dropped before any "
                        "tracker sees them (default 0: all, as 'aepose predict' tracks "
                        "them; PoseTracker's own min_score then decides)")
    parser.add_argument("--false-positives", type=float, default=NoiseModel.false_positives,
                        help="spurious people per frame in the simulated detections "
                        f"(default {NoiseModel.false_positives})")
    parser.add_argument("--gt", choices=["labelled", "visible"], default="labelled",
                        help="people scored in each frame: 'labelled' (>= 3 labelled joints, "
                        "hidden people included, the default) or 'visible' (>= 3 visible "
                        "joints: the people a detector can see, as PoseTrack labels them)")
    parser.add_argument("--trackers", nargs="+", choices=list(trackers(COCO)),
                        default=list(trackers(COCO)),
                        help="the table's rows (default all): " + ", ".join(
                            f"{key} = {name}" for key, (name, _) in trackers(COCO).items()))
    parser.add_argument("--timing", action="store_true",
                        help="only time the tracker with exactly --people detections per frame")
    parser.add_argument("--breakdown", action="store_true",
                        help="only PoseTracker: its detections by the ID they got, and the "
                        "IDF1 that perfect re-linking of new tracks to lost ones would give")
    args = parser.parse_args()
    if args.timing:
        run_timing(args)
    elif args.breakdown:
        run_breakdown(args)
    else:
        if args.end_to_end:
            from tracking_e2e import run_end_to_end  # imports this module: not at the top

            run_end_to_end(args)
        else:
            run_all(args)


if __name__ == "__main__":
    main()
