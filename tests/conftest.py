"""Shared test helpers: the real annotation samples beside the checkout."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"

# pytest -n 2 runs two workers on two cores: one intra-op thread each avoids
# oversubscription (tests that time nothing run several times faster).
torch.set_num_threads(1)

# Tests of Ctrl-C handling send SIGINT to this process. Started as a shell's background job
# (`make test &`, nohup) the process inherits SIGINT ignored and Python keeps it so, which
# made those tests fail for how they were started: give SIGINT Python's own handler back.
signal.signal(signal.SIGINT, signal.default_int_handler)

# keyspec.py (the independent key enumerator) is imported by tests as a plain module.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def fixtures() -> Path:
    """``../shared/fixtures`` (real AIC, CrowdPose, COCO samples); skip when absent."""
    if not FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is not present")
    return FIXTURES
