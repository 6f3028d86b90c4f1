"""A core install (no `models` extra): model commands exit 2 with one line naming the package and the pip command.

The libraries are made unimportable in a subprocess (``sys.modules[name] = None``, which makes ``import name``
raise ImportError exactly as on a machine that never installed them); the real CLI runs on real model files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.models.conftest import Artifacts

RUN_WITHOUT = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from qtsafe.cli import cli
sys.exit(cli.main(args=sys.argv[2:], standalone_mode=False))
"""


def _run_without(missing: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", RUN_WITHOUT, missing, *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("attr", "package"), [
    ("xgb_json", "xgboost"),
    ("lgbm_txt", "lightgbm"),
    ("torchscript", "torch"),
])
def test_model_gate_without_its_library_names_the_install(artifacts: Artifacts, heldout_npz: Path, tmp_path: Path,
                                                           attr: str, package: str) -> None:
    done = _run_without("torch,xgboost,lightgbm", "model", "gate", str(getattr(artifacts, attr)),
                        "--dataset", str(heldout_npz), "--base-dir", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"{package} is not installed" in lines[0] and "pip install 'qtsafe[models]'" in lines[0]
    assert not list((tmp_path / "reports").glob("**/model_gate_*")), "no report claims a verdict it could not reach"


def test_the_gates_run_without_the_models_extra(tmp_path: Path) -> None:
    events = tmp_path / "healthy.jsonl"
    subprocess.run([sys.executable, "-m", "qtsafe", "simulate", "--scenario", "healthy", "--events", "600",
                    "--end", "2026-01-10T06:00:00Z", "--out", str(events)], check=True, capture_output=True)
    done = _run_without("torch,xgboost,lightgbm", "quality-gate", "--mode", "canary", "--after",
                        "2026-01-10T05:00:00Z", "--events", str(events), "--base-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr


def test_build_dataset_without_pandas_names_the_dataset_extra(tmp_path: Path) -> None:
    done = _run_without("pandas,pyarrow", "build-dataset", "--base-dir", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pandas is not installed" in lines[0] and "pip install 'qtsafe[dataset]'" in lines[0]


def test_build_dataset_help_needs_no_extra() -> None:
    done = _run_without("pandas,pyarrow,torch,xgboost,lightgbm", "build-dataset", "--help")
    assert done.returncode == 0 and "--label-rule" in done.stdout


def test_inspect_of_a_torch_archive_without_torch_is_refused(artifacts: Artifacts, tmp_path: Path) -> None:
    """The opcode scan alone never calls a torch file safe: torch's own weights-only loader must agree."""
    done = _run_without("torch", "model", "inspect", str(artifacts.torch_state_dict))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "torch is not installed" in done.stderr and "qtsafe[models]" in done.stderr
