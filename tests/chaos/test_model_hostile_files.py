"""Hostile model files through the real CLI: a joblib object array under every dtype spelling, a wrapper made
by copyreg, and zip bombs (declared, lying and real-size). Each is refused with exit 2, nothing in it runs,
and ``model scan`` goes on with the other models."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest
import xgboost as xgb

from qtsafe.models import ziplimits
from tests.chaos.conftest import FAULT_KINDS, Faults, no_traceback, qtsafe_env
from tests.models.hostile import SPELLINGS, torch_zip_bomb, write_object_array, write_reconstructed_wrapper

# Registered here rather than in conftest's table, so this file stands alone.
FAULT_KINDS.setdefault("hostile-model", "a model file built to run code on load or to exhaust memory when read")

CASES = [*SPELLINGS, "copyreg-built wrapper"]
NAME = "xgboost_v20260101_000000.pkl"
FEATURES = "f0,f1,f2"


def _write(case: str, directory: Path, marker: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    if case == "copyreg-built wrapper":
        return write_reconstructed_wrapper(directory / NAME, marker)
    return write_object_array(directory / NAME, case, marker)


@pytest.mark.fault("hostile-model")
@pytest.mark.parametrize("case", CASES)
def test_every_model_command_refuses_the_file_and_nothing_runs(tmp_path: Path, run_cli, case: str,
                                                              faults: Faults) -> None:
    marker = tmp_path / "PWNED"
    path = _write(case, tmp_path / "models", marker)
    runs = {
        "inspect": run_cli("model", "inspect", str(path)),
        "scan": run_cli("model", "scan", str(path.parent), "--features", FEATURES),
        "manifest": run_cli("model", "manifest", str(path), "--features", FEATURES),
        "verify": run_cli("model", "verify", str(path), "--features", FEATURES),
    }
    faults.add(len(runs))
    for command, result in runs.items():
        assert result.exit_code == 2, f"model {command}: {result.output}"
        assert result.stdout.startswith("FAIL: "), f"model {command}: {result.output}"
        assert "Traceback" not in result.output
    assert not (path.parent / f"{NAME}.manifest.json").exists()
    assert not marker.exists()


@pytest.mark.fault("hostile-model")
def test_the_fixtures_are_real_joblib_load_runs_every_payload(tmp_path: Path, faults: Faults) -> None:
    # The proof the refusals above matter: joblib itself runs each payload. In a child process, so the test
    # process never unpickles anything.
    markers = {}
    for i, case in enumerate(CASES):
        marker = tmp_path / f"ran-{i}"
        markers[case] = (_write(case, tmp_path / f"m{i}", marker), marker)
    script = "import sys, joblib\nfor p in sys.argv[1:]:\n    joblib.load(p)\n"
    proc = subprocess.run([sys.executable, "-c", script, *(str(p) for p, _ in markers.values())],
                          capture_output=True, text=True, timeout=120)
    faults.add(len(CASES))
    assert proc.returncode == 0, proc.stderr
    assert [case for case, (_, marker) in markers.items() if not marker.exists()] == []


@pytest.mark.fault("hostile-model")
@pytest.mark.parametrize("declared", [None, 1024], ids=["honest-header", "lying-header"])
def test_scan_fails_the_bomb_and_judges_the_other_models(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch,
                                                         declared: int | None) -> None:
    cap = 1 << 20
    monkeypatch.setattr(ziplimits, "MAX_ARCHIVE_MEMBER_BYTES", cap)
    models = tmp_path / "models"
    models.mkdir()
    torch_zip_bomb(models / "patchtst_v20260101_000000.pth", 2 * cap, declared=declared)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] > 0).astype(int)
    names = FEATURES.split(",")
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 2, "nthread": 1},
                        xgb.DMatrix(x, label=y, feature_names=names), 3)
    booster.save_model(models / "xgb_v20260101_000000.json")
    lgb.train({"objective": "binary", "verbose": -1, "num_threads": 1, "min_data_in_leaf": 5},
              lgb.Dataset(x, label=y, feature_name=names), 3).save_model(models / "lightgbm_v20260101_000000.txt")
    started = time.monotonic()
    result = run_cli("model", "scan", str(models), "--features", FEATURES, "--json")
    assert time.monotonic() - started < 10
    assert result.exit_code == 2, result.output
    rows = {row["model"]: row for row in json.loads(result.stdout)["rows"]}
    assert rows["patchtst"]["status"] == "FAIL"
    assert "archive/data.pkl" in rows["patchtst"]["message"]
    assert rows["lightgbm"]["status"] == "PASS" and rows["xgb"]["status"] == "PASS"


@pytest.mark.fault("hostile-model")
@pytest.mark.parametrize("declared", [None, 2048], ids=["honest-header", "lying-header"])
def test_a_real_size_bomb_is_refused_quickly_in_little_memory(tmp_path: Path, declared: int | None) -> None:
    # The file: an archive of a few MB whose data.pkl inflates to 8 GiB, read by the real CLI at the
    # real cap (the child reports its own peak memory).
    models = tmp_path / "models"
    models.mkdir()
    bomb = torch_zip_bomb(models / "patchtst_v20260101_000000.pth", 8 << 30, declared=declared)
    assert bomb.stat().st_size < 16 << 20
    # VmHWM is this process's own peak (ru_maxrss would carry the forking pytest's size across exec).
    script = ("import sys\nfrom qtsafe.cli import cli\n"
              "code = cli.main(sys.argv[1:], standalone_mode=False)\n"
              "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
              "print(peak, file=sys.stderr)\nsys.exit(code)\n")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script, "model", "scan", str(models)], capture_output=True,
                          text=True, timeout=120, env=qtsafe_env(tmp_path))
    elapsed = time.monotonic() - started
    no_traceback(proc)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.startswith("FAIL: "), proc.stdout
    assert "archive/data.pkl" in proc.stdout
    peak_mib = int(proc.stderr.strip().splitlines()[-1]) // 1024
    assert peak_mib < 400, f"peak RSS {peak_mib} MiB"
    assert elapsed < 30
