"""``aepose test --results``: score a saved results file, without a network and without torch.

The metrics go to ``--out``'s ``metrics.json``, as ``aepose test``'s do; without ``--out``
to ``metrics-<results file's stem>.json`` beside the results file, so re-scoring never
replaces an evaluation's own ``metrics.json`` and the results files of one folder re-score
side by side.

The keypoint spec is ``--spec``, else the preset's, else what the files decide: the first
record's keypoint count names it when one built-in spec has that many (17: COCO); when
several do (14: AIC and CrowdPose), the keypoint names in the annotation file's
``categories`` decide; when none does, the annotation file's own skeleton is the spec (a
custom dataset's, :mod:`aepose.skeleton_file`). ``--spec FILE`` applies a spec file over
that skeleton, as ``aepose train --spec FILE`` does. Also here: the report that
``aepose test`` prints and writes the same way (:func:`finish_test`) and the refusal of an
earlier run's file.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aepose.config import get_preset
from aepose.engine.eval_inputs import annotation_keypoint_names, results_keypoint_count
from aepose.engine.evaluation import evaluate_keypoints, format_table
from aepose.errors import AeposeError
from aepose.io import check_writable, write_text
from aepose.keypoints import KEYPOINT_SPECS, KeypointSpec
from aepose.skeleton_file import spec_from_annotations

__all__ = ["RescoreOptions", "finish_test", "infer_spec", "refuse_existing", "rescore"]


@dataclass(frozen=True)
class RescoreOptions:
    """What ``aepose test --results`` scores and where the metrics go.

    results: the results file (COCO keypoint records). ann: the annotation file, or
    ``data_root`` with ``preset`` (the preset's val annotation file under it). spec: the
    keypoints: a built-in name or a spec file (default: the preset's, else inferred, see the
    module docstring). out: folder
    for ``metrics.json`` (default: ``metrics-<results stem>.json`` beside the results file);
    overwrite: replace an earlier such file.
    """

    results: Path
    ann: Path | None = None
    data_root: Path | None = None
    preset: str | None = None
    spec: str | None = None
    out: Path | None = None
    overwrite: bool = False


def rescore(options: RescoreOptions) -> Path:
    """Score ``options.results``: print the AP table, write the metrics file; returns its
    path."""
    cfg = get_preset(options.preset) if options.preset else None
    if options.ann is not None:
        ann = options.ann
    elif cfg is not None and options.data_root is not None:
        ann = options.data_root / cfg.data.val_ann
    else:
        raise AeposeError("--results needs --ann FILE, or --data-root with --preset")
    target = options.out / "metrics.json" if options.out is not None else \
        options.results.parent / f"metrics-{options.results.stem}.json"
    refuse_existing(target, options.overwrite)
    check_writable(target.parent)
    spec = _given_spec(options.spec, ann) or (cfg.data.dataset if cfg else None) or \
        infer_spec(options.results, ann)
    metrics = evaluate_keypoints(ann, options.results, spec)
    report = {"ann": str(ann), "results": str(options.results),
              "spec": spec if isinstance(spec, str) else spec.to_dict(), "metrics": metrics}
    finish_test(report, spec, target)
    return target


def _given_spec(spec: str | None, ann: Path) -> KeypointSpec | str | None:
    """``--spec``: a built-in name as it is, anything else a spec file over ``ann``'s own
    skeleton."""
    if spec is None or spec in KEYPOINT_SPECS:
        return spec
    if not Path(spec).is_file():
        raise AeposeError(f"--spec {spec}: neither a built-in keypoint spec "
                          f"({', '.join(sorted(KEYPOINT_SPECS))}) nor a spec file")
    return spec_from_annotations(ann, spec)


def infer_spec(results: Path, ann: Path) -> KeypointSpec | str:
    """The built-in spec that the results' keypoint count, then the annotation file's
    keypoint names, decide; with a count no built-in has, ``ann``'s own skeleton (module
    docstring); else one line asking for ``--spec``."""
    k = results_keypoint_count(results)
    if k is None:
        raise AeposeError(f"{results} has no record with a keypoint list to tell its keypoints "
                          f"by: pass --spec ({_choices(KEYPOINT_SPECS.values())})")
    fits = [spec for spec in KEYPOINT_SPECS.values() if spec.num_keypoints == k]
    if not fits:
        return _own_skeleton(results, k, ann)
    if len(fits) == 1:
        return fits[0].name
    named = [spec for spec in fits if _named_by(annotation_keypoint_names(ann), spec)]
    if len(named) == 1:
        return named[0].name
    both = " and ".join(spec.name for spec in fits)
    either = " or ".join(f"--spec {spec.name}" for spec in fits)
    raise AeposeError(f"{results} has {k} keypoints per record, as {both} have, and the "
                      f"categories of {ann} do not name them: pass {either}")


def _own_skeleton(results: Path, k: int, ann: Path) -> KeypointSpec:
    """``ann``'s own skeleton for results of ``k`` keypoints no built-in spec has."""
    try:
        spec = spec_from_annotations(ann)
    except AeposeError as error:
        raise AeposeError(f"{results} has {k} keypoints per record, which no keypoint spec "
                          f"has ({_choices(KEYPOINT_SPECS.values())}), and the annotation "
                          f"file gives no skeleton of its own ({error})") from None
    if spec.num_keypoints != k:
        raise AeposeError(f"{results} has {k} keypoints per record but the categories of {ann} "
                          f"name {spec.num_keypoints}")
    return spec


def _named_by(names: list[tuple[str, ...]], spec: KeypointSpec) -> bool:
    """Some category lists ``spec``'s keypoints: the same count, and more than half of them
    equal position by position (datasets spell a name differently now and then: CrowdPose's
    own files say 'head' where aepose says 'top_head')."""
    k = spec.num_keypoints
    return any(len(listed) == k
               and 2 * sum(a == b for a, b in zip(listed, spec.keypoint_names, strict=True)) > k
               for listed in names)


def _choices(specs: Any) -> str:
    return ", ".join(f"{spec.name} {spec.num_keypoints}" for spec in specs)


def refuse_existing(path: Path, overwrite: bool) -> None:
    """An earlier run's file at ``path`` is replaced only when asked."""
    if path.exists() and not overwrite:
        raise AeposeError(f"{path} exists (an earlier run's); choose another --out or pass "
                          "--overwrite")


def finish_test(report: dict[str, Any], spec: KeypointSpec | str, target: Path) -> None:
    """Print the table first (a failed write then costs no result), then save the report."""
    print(format_table(report["metrics"], spec), flush=True)
    for problem in report.get("skipped", []):
        print(f"skipped: {problem}", file=sys.stderr)
    if "seconds" in report and report["seconds"] > 0:
        print(f"{report['images']} images in {report['seconds']:.1f} s "
              f"({report['images'] / report['seconds']:.1f} images/s on rank 0's share)")
    write_text(target, json.dumps(report, indent=2) + "\n", what="metrics")
    print(f"metrics: {target}")
