"""aepose.device: the one default-device rule, and an unavailable device in one line; the
run-folder claim every rank agrees on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import run_cli

from aepose.device import default_device, resolve_device
from aepose.engine.distributed import DistInfo, claim_run_folder_on_all_ranks, init_distributed
from aepose.errors import AeposeError


def test_default_is_cuda_when_available_else_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == resolve_device("").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


def test_default_device_follows_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert default_device() == resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_device() == torch.device("cuda")


@pytest.mark.parametrize(("name", "message"), [
    ("gpu", r"device 'gpu' is not a device name; use cpu, cuda or cuda:N"),
    ("cuda:x", r"device 'cuda:x' is not a device name"),
    ("meta", r"device 'meta' is not available here; use cpu or cuda"),
])
def test_malformed_or_foreign_devices_are_one_line(name: str, message: str) -> None:
    with pytest.raises(AeposeError, match=message) as error:
        resolve_device(name)
    assert "\n" not in str(error.value)


def test_cuda_without_cuda_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(AeposeError, match=r"device 'cuda': CUDA is not available on this "
                       r"machine \(torch .*\); use --device cpu"):
        init_distributed("cuda")
    code, _, err = run_cli(capsys, "train", "--preset", "hrnet_tiny_aic_128", "--data-root",
                           str(tmp_path), "--out", str(tmp_path / "run"), "--device", "cuda")
    assert code == 1 and err.count("\n") == 1 and "CUDA is not available" in err
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_a_missing_gpu_index_names_the_ones_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(AeposeError, match=r"'cuda:7': this machine has 2 CUDA device\(s\), "
                       r"cuda:0 to cuda:1"):
        resolve_device("cuda:7")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


def test_one_rank_claims_the_run_folder_and_holds_it(tmp_path: Path) -> None:
    info = DistInfo(0, 1, 0, torch.device("cpu"))
    with claim_run_folder_on_all_ranks(tmp_path / "run", info) as folder:
        assert folder == tmp_path / "run"
        with pytest.raises(AeposeError, match="in use by another aepose run"), \
                claim_run_folder_on_all_ranks(folder, info):
            pass
    assert not any(folder.iterdir())  # released, lock file and all

    def refuse(folder: Path) -> None:
        raise AeposeError(f"{folder} holds an earlier run")

    with pytest.raises(AeposeError, match="run holds an earlier run"), \
            claim_run_folder_on_all_ranks(folder, info, refuse):
        pass
