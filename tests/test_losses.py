"""Losses against the reference's unit values and a slow per-person oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aepose.config import get_preset
from aepose.engine.losses import ae_loss, compute_loss, heatmap_loss


def _oracle_ae(tags: torch.Tensor, joints: np.ndarray, loss_type: str) -> tuple[float, float]:
    """mmpose 0.x AELoss.singleTagLoss, person by person (reference.md §3.10), in float64."""
    flat = tags.reshape(-1).double()
    refs, pull = [], 0.0
    for person in joints:
        picked = [flat[int(i)] for i, v in person if v > 0]
        if not picked:
            continue
        values = torch.stack(picked)
        refs.append(values.mean())
        pull += float(((values - refs[-1]) ** 2).mean())
    n = len(refs)
    if n == 0:
        return 0.0, 0.0
    if n == 1:
        return 0.0, pull
    total = 0.0
    for a in refs:
        for b in refs:
            d = float(a - b)
            total += math.exp(-d * d) if loss_type == "exp" else max(0.0, 1 - abs(d))
    return (total - n) / ((n - 1) * n) * 0.5, pull / n


def _person_rows(groups: list[list[tuple[int, float]]], k: int, m: int = 30) -> np.ndarray:
    """Pack (flat index, tag) pairs per person into [M, K, 2] and return the joints array."""
    rows = np.zeros((m, k, 2), dtype=np.int32)
    for p, group in enumerate(groups):
        for slot, (index, _) in enumerate(group):
            rows[p, slot] = (index, 1)
    return rows


def _ae_case(person_tags: list[list[float]], k: int = 18) -> tuple[torch.Tensor, torch.Tensor]:
    tags = torch.zeros(1, k, 1, 1)
    groups, cursor = [], 0
    for values in person_tags:
        group = []
        for value in values:
            tags.view(-1)[cursor] = value
            group.append((cursor, value))
            cursor += 1
        groups.append(group)
    return tags, torch.from_numpy(_person_rows(groups, k))[None]


def test_reference_unit_values() -> None:
    """reference.md §3.12 / mmpose tests/test_losses/test_bottom_up_losses.py."""
    push, pull = ae_loss(*_ae_case([[1.0, 0.0]]))
    assert (push.item(), pull.item()) == (0.0, 0.25)
    push, pull = ae_loss(*_ae_case([[0.0, 0.0], [1.0, 1.0]]))
    assert push.item() == pytest.approx((2 + 2 * math.exp(-1) - 2) / 2 * 0.5, abs=1e-7)
    assert push.item() == pytest.approx(0.183940, abs=1e-6) and pull.item() == 0.0
    push, _ = ae_loss(*_ae_case([[0.0, 0.0], [1.0, 1.0]]), loss_type="max")
    assert push.item() == 0.0
    push, _ = ae_loss(*_ae_case([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]]))
    assert push.item() == pytest.approx(0.064386, abs=1e-6)
    push, pull = ae_loss(torch.zeros(1, 18, 1, 1), torch.zeros(1, 30, 18, 2, dtype=torch.int32))
    assert (push.item(), pull.item()) == (0.0, 0.0)
    with pytest.raises(ValueError, match="unknown AE loss type"):
        ae_loss(torch.zeros(1, 18, 1, 1), torch.zeros(1, 30, 18, 2), loss_type="sum")


def test_heatmap_loss_reference_cases() -> None:
    pred, gt = torch.ones(2, 3, 4, 4), torch.zeros(2, 3, 4, 4)
    assert torch.equal(heatmap_loss(pred, gt, torch.zeros(2, 4, 4)), torch.zeros(2))
    assert torch.equal(heatmap_loss(pred, gt, torch.ones(2, 4, 4)), torch.ones(2))
    # Masking half the pixels halves the loss: the mean still divides by all K*H*W.
    half = torch.ones(2, 4, 4)
    half[:, :2] = 0
    assert torch.equal(heatmap_loss(pred, gt, half), torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="shapes differ"):
        heatmap_loss(pred, gt[:, :2], half)


@st.composite
def _batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    b, k, h, w, m = draw(st.integers(1, 3)), draw(st.integers(1, 5)), 4, 5, 6
    seed = draw(st.integers(0, 2**31))
    g = torch.Generator().manual_seed(seed)
    tags = torch.randn(b, k, h, w, generator=g) * draw(st.sampled_from([0.1, 1.0, 3.0]))
    joints = torch.zeros(b, m, k, 2, dtype=torch.int32)
    rng = np.random.default_rng(seed)
    for i in range(b):
        for p in range(int(rng.integers(0, m + 1))):
            visible = int(rng.integers(0, k + 1))  # 0 = an absent person's all-zero row
            for slot in range(visible):
                joints[i, p, slot] = torch.tensor([int(rng.integers(0, k * h * w)), 1])
    return tags, joints


@settings(max_examples=60, deadline=None)
@given(_batches(), st.sampled_from(["exp", "max"]))
def test_vectorised_ae_loss_equals_per_person_oracle(
    case: tuple[torch.Tensor, torch.Tensor], loss_type: str
) -> None:
    tags, joints = case
    push, pull = ae_loss(tags, joints, loss_type)
    for i in range(tags.shape[0]):
        want_push, want_pull = _oracle_ae(tags[i], joints[i].numpy(), loss_type)
        assert push[i].item() == pytest.approx(want_push, rel=1e-5, abs=1e-6)
        assert pull[i].item() == pytest.approx(want_pull, rel=1e-5, abs=1e-6)


def test_gradients_flow_through_reference_tags() -> None:
    tags, joints = _ae_case([[0.2, 0.4], [0.3, 1.5]])
    tags.requires_grad_(True)
    push, pull = ae_loss(tags, joints)
    (push + pull).sum().backward()
    assert tags.grad is not None and torch.count_nonzero(tags.grad) == 4


def test_compute_loss_factors_and_outputs() -> None:
    """AIC: heatmap + 0.01 push + 0.001 pull; HigherHRNet: tags only on the 1/4 output."""
    g = torch.Generator().manual_seed(0)
    k, b = 14, 2
    tags, joints = _ae_case([[0.0, 0.5], [0.2, 0.9]], k=k * 4 * 4)
    out4 = torch.randn(b, 2 * k, 4, 4, generator=g)
    out4[:, k:] = tags.reshape(1, k, 4, 4)
    target4, mask4 = torch.rand(b, k, 4, 4, generator=g), torch.ones(b, 4, 4)
    joints4 = joints.repeat(b, 1, 1, 1)[:, :, :k]
    push, pull = ae_loss(out4[:, k:], joints4)
    hm = heatmap_loss(out4[:, :k], target4, mask4)
    aic = compute_loss("hrnet_w32_aic_512", [out4], [target4], [mask4], [joints4])
    assert aic["heatmap_loss"].item() == pytest.approx(hm.mean().item())
    assert aic["push_loss"].item() == pytest.approx(0.01 * push.mean().item())
    assert aic["pull_loss"].item() == pytest.approx(0.001 * pull.mean().item())

    out2 = torch.randn(b, k, 8, 8, generator=g)
    target2, mask2 = torch.rand(b, k, 8, 8, generator=g), torch.ones(b, 8, 8)
    crowd = compute_loss(get_preset("higherhrnet_w32_crowdpose_512"), [out4, out2],
                         [target4, target2], [mask4, mask2], [joints4, joints4])
    hm2 = heatmap_loss(out2, target2, mask2)
    assert crowd["heatmap_loss"].item() == pytest.approx((hm.mean() + hm2.mean()).item())
    assert crowd["push_loss"].item() == pytest.approx(0.001 * push.mean().item())
    assert crowd["pull_loss"].item() == pytest.approx(0.001 * pull.mean().item())
