"""Generated people: still crowd scenes in the exact file layout of AIC, CrowdPose and COCO.

No real dataset can be downloaded where this project is built and tested, so tests, the demo
and the benchmarks train and evaluate on scenes drawn here: 1-20 articulated stick-and-blob
people per image on a cluttered background, painted far to near so that nearer people hide
farther ones, written as JPEG images plus the COCO-format JSON of the chosen dataset, in the
folders that ``--data-root`` reads (:data:`aepose.config.DATASET_FILES`).

One module per job, each importing only those before it:

- :mod:`~aepose.synth.figure`: joint angles -> the points of one person (kinematics);
- :mod:`~aepose.synth.render`: figures painted over a background, with a label map;
- :mod:`~aepose.synth.scene`: random scenes (background, people, crowd) from a generator;
- :mod:`~aepose.synth.skeleton`: keypoint sets, the datasets' and custom ones;
- :mod:`~aepose.synth.annotate`: COCO annotations, visibility flags, crowdIndex;
- :mod:`~aepose.synth.write`: dataset folders, deterministic by seed;
- :mod:`~aepose.synth.video`: clips of people walking, with track ids (PoseTrack-like).

Conventions. Points are pixel INDICES, x = column, y = row (the project's convention, see
``aepose.data.transforms``); images are BGR uint8 [H, W, 3].
"""

from aepose.synth.annotate import (
    ImageSample,
    annotate_scene,
    crowd_index,
    generate_image,
    keypoints_for,
)
from aepose.synth.figure import (
    CANONICAL_JOINTS,
    Figure,
    FigureStyle,
    JointAngles,
    build_figure,
)
from aepose.synth.render import (
    CROWD_LABEL,
    RenderedScene,
    Scene,
    figure_bbox,
    figure_mask,
    render_scene,
)
from aepose.synth.scene import SceneParams, sample_scene
from aepose.synth.skeleton import NAMED_SETS, PointSet, custom_points, parse_points
from aepose.synth.video import sequence_truth, write_sequence, write_sequences
from aepose.synth.write import (
    CUSTOM_FILES,
    SplitSummary,
    SynthSummary,
    generate_dataset,
    parse_size,
    split_counts,
)

__all__ = [
    "CANONICAL_JOINTS",
    "CROWD_LABEL",
    "CUSTOM_FILES",
    "NAMED_SETS",
    "Figure",
    "FigureStyle",
    "ImageSample",
    "JointAngles",
    "PointSet",
    "RenderedScene",
    "Scene",
    "SceneParams",
    "SplitSummary",
    "SynthSummary",
    "annotate_scene",
    "build_figure",
    "crowd_index",
    "custom_points",
    "figure_bbox",
    "figure_mask",
    "generate_dataset",
    "generate_image",
    "keypoints_for",
    "parse_points",
    "parse_size",
    "render_scene",
    "sample_scene",
    "sequence_truth",
    "split_counts",
    "write_sequence",
    "write_sequences",
]
