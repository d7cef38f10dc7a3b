"""The command line starts without torch: ``--help`` and ``models`` import only the config,
and the parser's copies of choices owned by heavy modules equal the originals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Runs ``aepose ARGV`` through cli.main in a fresh interpreter and prints, as JSON, the exit
# status and which heavy modules the run imported.
_PROBE = """
import json, sys
from aepose.apps.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code or 0
heavy = sorted(m for m in ("torch", "cv2", "numpy", "scipy", "starlette", "uvicorn")
               if m in sys.modules)
print(json.dumps({"code": code, "heavy": heavy}), file=sys.stderr)
"""


def _probe(*argv: str) -> dict[str, object]:
    done = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(SRC), "PATH": ""})
    return json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [("--help",), ("predict", "--help"), ("test", "--help"),
                                  ("train", "--help"), ("benchmark", "--help"), ("models",),
                                  ("serve", "--help"), ("--version",)])
def test_help_and_models_do_not_import_torch(argv: tuple[str, ...]) -> None:
    result = _probe(*argv)
    assert result["code"] == 0
    assert "torch" not in result["heavy"], result
    assert not {"starlette", "uvicorn"} & set(result["heavy"]), result  # nor aepose serve's


def test_python_dash_m_help_answers() -> None:
    done = subprocess.run([sys.executable, "-m", "aepose", "--help"], capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(SRC), "PATH": ""})
    assert done.returncode == 0 and "examples:" in done.stdout


def test_import_aepose_is_lazy_and_names_still_work() -> None:
    code = ("import sys, aepose; before = 'torch' in sys.modules; "
            "p = aepose.Predictor; m = aepose.load_model; c = aepose.get_preset; "
            "import os; print(before, 'torch' in sys.modules, "
            "os.environ.get('OMP_WAIT_POLICY', 'unset'), "
            "p.__name__, m.__name__, 'Predictor' in dir(aepose))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(SRC), "PATH": ""})
    # A library import leaves the environment alone.
    assert done.stdout.split() == ["False", "True", "unset", "Predictor", "load_model",
                                   "True"], done.stderr


@pytest.mark.parametrize(("command", "policy"), [("predict", "PASSIVE"), ("train", "unset"),
                                                 ("benchmark", "PASSIVE")])
def test_streaming_commands_let_openmp_wait_passively(
    command: str, policy: str, tmp_path: Path
) -> None:
    """predict and test run decode workers beside the network: OpenMP must not spin on the
    cores they need; training has no such workers and keeps OpenMP's default. benchmark
    times predict's pipeline, and its forward stage in the same process the same way (with
    spinning OpenMP threads on a busy machine, a forward pass at 128 px measured 0.35 s, at
    16 times the time of a passive wait)."""
    argv = {"predict": ["predict", "missing.jpg", "--weights", "missing.pth"],
            "train": ["train", "--preset", "missing", "--data-root", "."],
            "benchmark": ["benchmark", "--preset", "missing"]}[command]
    code = ("import os, sys; from aepose.apps.cli import main; main(sys.argv[1:]); "
            "print(os.environ.get('OMP_WAIT_POLICY', 'unset'))")
    # In tmp_path: predict makes its default output folder (runs/predict-TIMESTAMP) there.
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(SRC), "PATH": ""}, cwd=tmp_path)
    assert done.stdout.split()[-1:] == [policy], done.stderr


def test_unknown_attribute_is_an_attribute_error() -> None:
    import aepose

    with pytest.raises(AttributeError, match="no attribute 'Predicter'"):
        _ = aepose.Predicter  # type: ignore[attr-defined]


def test_benchmark_stages_shown_are_the_stages_it_runs() -> None:
    from aepose.apps.bench import STAGES
    from aepose.choices import BENCHMARK_STAGES

    assert tuple(sorted(STAGES)) == BENCHMARK_STAGES
