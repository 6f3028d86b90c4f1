"""The drop-in qtsafe writes is a valid systemd drop-in: systemd-analyze verify loads it with the unit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from qtsafe.canary.dropin import render_dropin
from qtsafe.canary.weights import canary_weights
from qtsafe.config import load_settings

BASELINE = {"xgb": 0.25, "lgbm": 0.25, "nhits": 0.30, "patchtst": 0.20}


def verify(unit_dir: Path, unit: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}
    return subprocess.run(["systemd-analyze", "verify", str(unit_dir / unit)], capture_output=True, text=True,
                          env=env)


def test_rendered_dropin_passes_systemd_analyze(tmp_path: Path) -> None:
    unit = "quantum-ai-engine.service"
    (tmp_path / unit).write_text("[Unit]\nDescription=engine\n[Service]\nExecStart=/bin/true\n")
    dropins = tmp_path / f"{unit}.d"
    dropins.mkdir()
    settings = load_settings(env={})
    text = render_dropin(settings, "canary-1", canary_weights(BASELINE, "patchtst", 0.10), "patchtst", 0.10)
    (dropins / "qsc_canary.conf").write_text(text)
    done = verify(tmp_path, unit)
    # systemd-analyze exits 0 on a drop-in it half-ignores; its warnings name the file, so none may appear.
    assert done.returncode == 0 and "qsc_canary.conf" not in done.stderr, done.stderr
    # The check can fail: a broken drop-in is reported.
    (dropins / "qsc_canary.conf").write_text(text + "Environment=\"unterminated\n[Service\n")
    broken = verify(tmp_path, unit)
    assert "qsc_canary.conf" in broken.stderr
