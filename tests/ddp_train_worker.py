"""Run under torchrun by tests/test_train.py: train a few steps, save this rank's weights.

Usage: torchrun --standalone --nproc-per-node 2 tests/ddp_train_worker.py DATA_ROOT OUT_DIR
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from aepose.config import apply_overrides, get_preset
from aepose.engine.train import TrainOptions, train


def main() -> None:
    data_root, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    cfg = apply_overrides(get_preset("higherhrnet_tiny_crowdpose_128"),
                          ["train.epochs=1", "train.batch_size=2"])
    captured = {}

    def keep(model: torch.nn.Module, epoch: int) -> dict[str, float]:
        captured["state"] = {k: v.clone() for k, v in model.state_dict().items()}
        return {}

    result = train(cfg, TrainOptions(data_root=data_root, out=out, device="cpu", log_interval=2,
                                     deterministic=True, progress=False), validate=keep)
    rank = int(os.environ["RANK"])
    torch.save({"state": captured["state"], "iteration": result.iteration},
               out / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
