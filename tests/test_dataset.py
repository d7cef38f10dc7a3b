"""Training dataset, collation and evaluation listing (reference.md §1.4, §3.3-3.8).

Items are rebuilt independently from the documented pieces (item_rng draws, bottom_up_affine,
flip_bottom_up, encode_targets) and compared exactly; the DataLoader tests run real worker
processes, with bad images mixed in, and check the items do not depend on worker or rank.
"""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from aepose.config import DataConfig, get_preset
from aepose.data.coco import CocoKeypoints, load_annotations, load_split, read_image
from aepose.data.dataset import (
    Batch,
    BottomUpDataset,
    TrainSample,
    collate,
    eval_images,
    item_rng,
    normalize_image,
)
from aepose.data.transforms import (
    bottom_up_affine,
    draw_affine_params,
    draw_flip,
    flip_bottom_up,
)
from aepose.errors import AeposeError
from aepose.keypoints import get_spec

TINY = get_preset("higherhrnet_tiny_crowdpose_128").data
FIXTURE_JSON = {"aic": "aic/test_aic.json", "crowdpose": "crowdpose/test_crowdpose.json",
                "coco": "coco/test_coco.json"}  # fmt: skip


def fixture_annotations(fixtures: Path, dataset: str) -> CocoKeypoints:
    return load_annotations(fixtures / FIXTURE_JSON[dataset], get_spec(dataset))


def same(a: TrainSample | None, b: TrainSample | None) -> bool:
    assert a is not None and b is not None
    pairs = [
        (a.image, b.image),
        *zip(a.heatmaps + a.masks + a.joints, b.heatmaps + b.masks + b.joints, strict=True),
    ]
    return all(torch.equal(x, y) for x, y in pairs)


def test_item_layout_tiny_preset(fixtures: Path) -> None:
    sample = BottomUpDataset(fixture_annotations(fixtures, "crowdpose"), TINY)[1]
    assert sample is not None
    assert sample.image.shape == (3, 128, 128) and sample.image.dtype == torch.float32
    assert [h.shape for h in sample.heatmaps] == [(14, 32, 32), (14, 64, 64)]
    assert [m.shape for m in sample.masks] == [(32, 32), (64, 64)]
    assert [j.shape for j in sample.joints] == [(30, 14, 2), (30, 14, 2)]
    assert all(h.dtype == torch.float32 and h.max() == 1.0 for h in sample.heatmaps)
    assert all(
        m.dtype == torch.float32 and set(m.unique().tolist()) <= {0.0, 1.0} for m in sample.masks
    )
    assert all(j.dtype == torch.int32 for j in sample.joints)


def test_item_layout_seed_preset(fixtures: Path) -> None:
    data = get_preset("hrnet_w32_aic_512").data
    sample = BottomUpDataset(fixture_annotations(fixtures, "aic"), data)[0]
    assert sample is not None
    assert sample.image.shape == (3, 512, 512)
    assert [h.shape for h in sample.heatmaps] == [(14, 128, 128)]
    assert [m.shape for m in sample.masks] == [(128, 128)]
    assert [j.shape for j in sample.joints] == [(30, 14, 2)]


Warped = tuple[
    npt.NDArray[np.generic],
    tuple[npt.NDArray[np.float32], ...],
    tuple[npt.NDArray[np.float32], ...],
]


def rebuild(ds: BottomUpDataset, index: int, image: npt.NDArray[np.uint8]) -> Warped:
    """Item ``index`` from the documented pieces: (input image, masks, joints per resolution)."""
    record, d = ds.annotations.images[index], ds.data
    rng = item_rng(ds.seed, ds.epoch, index)
    params = draw_affine_params(
        rng, record.width, record.height, min_scale=d.scale_range[0], max_scale=d.scale_range[1],
        max_rotation=d.rotation_deg, trans_factor=d.translation,
    )  # fmt: skip
    warped = bottom_up_affine(
        image, ds.annotations.valid_mask(record), record.joints, scale=params.scale,
        rotation_deg=params.rotation_deg, shift=params.shift, input_size=d.input_size,
        output_sizes=d.heatmap_sizes,
    )  # fmt: skip
    result: Warped = (warped.image, warped.masks, warped.joints)
    if draw_flip(rng, d.flip_prob):
        result = flip_bottom_up(*result, ds.annotations.spec.flip_index)
    return result


@pytest.mark.parametrize(
    ("dataset", "preset"),
    [("crowdpose", "higherhrnet_tiny_crowdpose_128"), ("coco", "higherhrnet_tiny_coco_128")],
)
@pytest.mark.parametrize("epoch", [0, 3])
def test_item_equals_documented_pipeline(
    fixtures: Path, dataset: str, preset: str, epoch: int
) -> None:
    """Image, masks (COCO: with unlabelled-people regions) and targets equal the pipeline
    rebuilt by hand; every heatmap peaks at 1 where its warped, in-map joints land."""
    ann = fixture_annotations(fixtures, dataset)
    ds = BottomUpDataset(ann, get_preset(preset).data, seed=5)
    ds.set_epoch(epoch)
    peaks = 0
    for index, record in enumerate(ann.images):
        sample = ds[index]
        assert sample is not None
        image = read_image(ann.image_path(record))
        img, masks, joints = rebuild(ds, index, image)
        assert torch.equal(sample.image, normalize_image(img))
        for r, o in enumerate(ds.data.heatmap_sizes):
            assert torch.equal(sample.masks[r], torch.from_numpy(masks[r]))
            x, y, v = joints[r][..., 0], joints[r][..., 1], joints[r][..., 2]
            inside = (v > 0) & (x > -1) & (x < o) & (y > -1) & (y < o)
            for p, k in zip(*np.nonzero(inside), strict=True):
                assert sample.heatmaps[r][k, int(y[p, k]), int(x[p, k])] == 1.0
                peaks += 1
            first = sample.joints[r][:, 0]  # each person's first packed joint
            flat = first[first[:, 1] > 0, 0].long()
            assert (sample.heatmaps[r].reshape(-1)[flat] == 1.0).all()
    assert peaks > 20


def test_determinism_per_seed_epoch_index(fixtures: Path) -> None:
    ann = fixture_annotations(fixtures, "crowdpose")
    ds = BottomUpDataset(ann, TINY, seed=1)
    assert same(ds[0], ds[0])
    assert same(ds[0], BottomUpDataset(ann, TINY, seed=1)[0])
    assert same(ds[0], pickle.loads(pickle.dumps(ds))[0])
    assert not same(ds[0], BottomUpDataset(ann, TINY, seed=2)[0])
    before = ds[0]
    ds.set_epoch(1)
    assert ds.epoch == 1 and not same(before, ds[0])
    ds.set_epoch(0)
    assert same(before, ds[0])


def bad_image_dataset(fixtures: Path, tmp_path: Path) -> BottomUpDataset:
    """The CrowdPose sample plus a missing, a truncated and a non-image file (indices 2-4)."""
    data = json.loads((fixtures / FIXTURE_JSON["crowdpose"]).read_text())
    for name in ("103319.jpg", "106848.jpg"):
        shutil.copy(fixtures / "crowdpose" / name, tmp_path / name)
    jpeg = (tmp_path / "106848.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    for i, name in enumerate(("missing.jpg", "cut.jpg", "text.jpg")):
        image = dict(data["images"][0], id=i + 1, file_name=name)
        data["images"].append(image)
        data["annotations"].append(dict(data["annotations"][0], id=1000 + i, image_id=i + 1))
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return BottomUpDataset(load_annotations(path, get_spec("crowdpose")), TINY, seed=3)


def test_bad_items_are_skipped_counted_and_named_once(fixtures: Path, tmp_path: Path) -> None:
    ds = bad_image_dataset(fixtures, tmp_path)
    with pytest.warns(RuntimeWarning) as caught:
        assert [ds[i] is None for i in range(5)] == [False, False, True, True, True]
        assert ds[2] is None
    messages = [str(w.message) for w in caught]
    assert len(messages) == 3 and ds.skipped == 4
    for message, name in zip(messages, ("missing.jpg", "cut.jpg", "text.jpg"), strict=True):
        assert "\n" not in message and str(tmp_path / name) in message


def test_dataloader_with_workers_skips_bad_items(fixtures: Path, tmp_path: Path) -> None:
    ds = bad_image_dataset(fixtures, tmp_path)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        batches = list(loader)
        expected = [ds[0], ds[1]]
    assert [(b.size, b.skipped) for b in batches] == [(2, 0), (0, 2), (0, 1)]
    first = batches[0]
    assert first.images.shape == (2, 3, 128, 128)
    assert [t.shape for t in first.heatmaps] == [(2, 14, 32, 32), (2, 14, 64, 64)]
    assert [t.shape for t in first.masks] == [(2, 32, 32), (2, 64, 64)]
    assert [t.shape for t in first.joints] == [(2, 30, 14, 2), (2, 30, 14, 2)]
    assert first.joints[0].dtype == torch.int32
    for i, sample in enumerate(expected):
        assert sample is not None
        assert torch.equal(first.images[i], sample.image)
        assert torch.equal(first.joints[1][i], sample.joints[1])
    assert batches[1].images.shape == (0, 3, 0, 0) and batches[1].heatmaps == ()


def test_persistent_workers_follow_set_epoch(fixtures: Path) -> None:
    ds = BottomUpDataset(fixture_annotations(fixtures, "crowdpose"), TINY, seed=4)
    loader = DataLoader(
        ds, batch_size=2, num_workers=2, persistent_workers=True, collate_fn=collate
    )
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        (batch,) = list(loader)
        for i in range(len(ds)):
            sample = ds[i]
            assert sample is not None and torch.equal(batch.images[i], sample.image)


def test_distributed_sampler_items_do_not_depend_on_rank(fixtures: Path) -> None:
    ds = BottomUpDataset(
        fixture_annotations(fixtures, "aic"), get_preset("hrnet_tiny_aic_128").data
    )
    seen = []
    for rank in (0, 1):
        sampler: DistributedSampler[int] = DistributedSampler(
            ds, num_replicas=2, rank=rank, shuffle=True, seed=7
        )
        sampler.set_epoch(2)
        ds.set_epoch(2)
        indices = list(sampler)
        loader = DataLoader(ds, batch_size=2, sampler=sampler, collate_fn=collate)
        (batch,) = list(loader)
        for i, index in enumerate(indices):
            sample = ds[index]
            assert sample is not None and torch.equal(batch.heatmaps[0][i], sample.heatmaps[0])
        seen += indices
    assert sorted(set(seen)) == [0, 1, 2]


def test_collate_and_move(fixtures: Path) -> None:
    ds = BottomUpDataset(fixture_annotations(fixtures, "crowdpose"), TINY)
    batch = collate([ds[0], None, ds[1]])
    assert (batch.size, batch.skipped) == (2, 1)
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and moved.skipped == 1
    assert torch.equal(moved.joints[0], batch.joints[0])
    empty = collate([None, None])
    assert (empty.size, empty.skipped) == (0, 2)


def test_normalize_image() -> None:
    image = np.zeros((2, 3, 3), np.uint8)
    image[0, 0] = (255, 128, 0)
    t = normalize_image(image)
    assert t.shape == (3, 2, 3) and t.dtype == torch.float32
    mean = torch.tensor([0.485, 0.456, 0.406])
    std = torch.tensor([0.229, 0.224, 0.225])
    assert torch.equal(t[:, 1, 1], (0 - mean) / std)  # black padding
    expected = (torch.tensor([255, 128, 0], dtype=torch.float32) / 255 - mean) / std
    assert torch.equal(t[:, 0, 0], expected)
    with pytest.raises(ValueError, match="RGB uint8"):
        normalize_image(image.astype(np.float32))


def test_image_size_disagreeing_with_the_file(fixtures: Path, tmp_path: Path) -> None:
    """A record narrower than its image: the reference's mask is the record-sized one warped
    with a zero border, so the extra columns are ignored by the loss."""
    data = json.loads((fixtures / FIXTURE_JSON["crowdpose"]).read_text())
    data["images"][1]["width"] = 320  # 103319.jpg is 640 wide
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    ann = load_annotations(path, get_spec("crowdpose"), image_dir=fixtures / "crowdpose")
    full = BottomUpDataset(fixture_annotations(fixtures, "crowdpose"), TINY)[1]
    narrow = BottomUpDataset(ann, TINY)[1]
    assert full is not None and narrow is not None
    assert torch.equal(full.image, narrow.image)
    assert narrow.masks[1].sum() < full.masks[1].sum()


def test_dataset_from_data_root_and_eval_images(fixtures: Path, tmp_path: Path) -> None:
    root = tmp_path / "crowdpose"
    (root / "annotations").mkdir(parents=True)
    for name in ("mmpose_crowdpose_trainval.json", "mmpose_crowdpose_test.json"):
        shutil.copy(fixtures / FIXTURE_JSON["crowdpose"], root / "annotations" / name)
    (root / "images").symlink_to(fixtures / "crowdpose", target_is_directory=True)
    ds = BottomUpDataset.from_data_root(root, TINY, seed=0)
    assert len(ds) == 2 and ds[0] is not None
    images = eval_images(load_split(root, TINY, "val"))
    assert [(e.image_id, e.path.name, e.width, e.height) for e in images] == [
        (106848, "106848.jpg", 640, 425),
        (103319, "103319.jpg", 640, 480),
    ]
    assert all(e.path.is_file() for e in images)
    with pytest.raises(AeposeError, match="annotation file"):
        BottomUpDataset.from_data_root(tmp_path, TINY)


def test_config_must_match_the_annotations(fixtures: Path) -> None:
    with pytest.raises(ValueError, match="crowdpose keypoints but the data config is for aic"):
        BottomUpDataset(
            fixture_annotations(fixtures, "crowdpose"), get_preset("hrnet_tiny_aic_128").data
        )
    half = DataConfig(dataset="crowdpose", sigma=2.5)
    with pytest.raises(AeposeError, match="sigma"):
        BottomUpDataset(fixture_annotations(fixtures, "crowdpose"), half)
