"""Training losses of associative embedding, exactly as mmpose 0.x computes them.

Masked heatmap MSE and the AE pull/push terms (reference.md §3.9-3.11), vectorised over the
batch and the people of each image: no Python loop per person.

Legend: B batch, K keypoints, H x W output map, M max people per image.
"""

from __future__ import annotations

import torch
from torch import Tensor

from aepose.config import Config, get_preset


def heatmap_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Per-image masked MSE: pred, target [B, K, H, W], mask [B, H, W] -> [B].

    The mean divides by all K*H*W elements, masked or not (reference trap 7).
    """
    if pred.shape != target.shape:
        raise ValueError(f"heatmap shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    return ((pred - target) ** 2 * mask[:, None]).mean(dim=(1, 2, 3))


def ae_loss(tags: Tensor, joints: Tensor, loss_type: str = "exp") -> tuple[Tensor, Tensor]:
    """Per-image push and pull of associative embedding: -> (push [B], pull [B]).

    Args:
        tags: [B, K, H, W] tag maps (one tag per joint, flattened channel-major so that the
            flat index of reference §3.7 addresses them).
        joints: integer [B, M, K, 2]: (flat index k*H*W + y*W + x, valid flag) packed per
            person; rows without a valid entry are absent people.
        loss_type: ``"exp"`` (push exp(-d^2)) or ``"max"`` (push max(0, 1 - |d|)).

    A person's reference tag is the mean of its joints' tags; pull is the mean squared
    deviation from it, averaged over people. Push sums the kernel over ordered pairs of
    distinct people and divides by P(P-1) * 2 (reference §3.10); it is 0 below 2 people.
    """
    if loss_type not in ("exp", "max"):
        raise ValueError(f"unknown AE loss type {loss_type!r}; use 'exp' or 'max'")
    batch = tags.shape[0]
    flat = tags.reshape(batch, -1)
    index = joints[..., 0].long().reshape(batch, -1)
    valid = (joints[..., 1] > 0).to(tags.dtype)  # [B, M, K]
    picked = flat.gather(1, index).reshape(valid.shape)  # [B, M, K]
    count = valid.sum(dim=2)  # joints per person [B, M]
    present = (count > 0).to(tags.dtype)
    safe = count.clamp(min=1)
    reference = (picked * valid).sum(dim=2) / safe  # [B, M]
    spread = ((picked - reference[..., None]) ** 2 * valid).sum(dim=2) / safe
    people = present.sum(dim=1)  # P' [B]
    pull = (spread * present).sum(dim=1) / people.clamp(min=1)

    diff = reference[:, :, None] - reference[:, None, :]  # [B, M, M]
    kernel = torch.exp(-diff**2) if loss_type == "exp" else torch.relu(1 - diff.abs())
    pair = present[:, :, None] * present[:, None, :]
    # Sum over all ordered pairs minus the diagonal (which contributes exactly 1 per person).
    off_diagonal = (kernel * pair).sum(dim=(1, 2)) - people
    push = torch.where(
        people > 1, off_diagonal / ((people - 1) * people).clamp(min=1) * 0.5,
        torch.zeros_like(people),
    )
    return push, pull


def compute_loss(
    preset: str | Config,
    outputs: list[Tensor],
    heatmaps: list[Tensor],
    masks: list[Tensor],
    joints: list[Tensor],
) -> dict[str, Tensor]:
    """Loss terms of one batch, batch-averaged with the preset's factors applied.

    Args:
        preset: preset name or Config (gives K, which outputs carry tags, the factors).
        outputs: network outputs, one per resolution: [B, K (+K tags), H_s, W_s].
        heatmaps: targets [B, K, H_s, W_s]; masks: [B, H_s, W_s] (1 = supervised);
        joints: [B, M, K, 2] AE indices (used for the outputs that carry tags).

    Returns ``{"heatmap_loss", "push_loss", "pull_loss"}`` (scalars, summed over outputs);
    the optimised total is their sum (reference §3.11).
    """
    cfg = get_preset(preset) if isinstance(preset, str) else preset
    k, train = cfg.model.num_keypoints, cfg.train
    terms = {"heatmap_loss": outputs[0].new_zeros(()), "push_loss": outputs[0].new_zeros(()),
             "pull_loss": outputs[0].new_zeros(())}
    for s, output in enumerate(outputs):
        hm = heatmap_loss(output[:, :k], heatmaps[s], masks[s]) * train.heatmap_loss_factor[s]
        terms["heatmap_loss"] = terms["heatmap_loss"] + hm.mean()
        if cfg.model.with_ae[s]:
            push, pull = ae_loss(output[:, k:], joints[s], train.ae_loss_type)
            terms["push_loss"] = terms["push_loss"] + (push * train.push_loss_factor[s]).mean()
            terms["pull_loss"] = terms["pull_loss"] + (pull * train.pull_loss_factor[s]).mean()
    return terms
