"""Outcomes in the gate and scoreboard reports: per-model hit rates from the stream's own later prices, the canary
paired against the others when the gate judges one model; informational (the verdict is the rules'), and a
--prices that cannot be read is one line, exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

AFTER = "2026-01-10T00:00:00Z"


@pytest.fixture(scope="module")
def backwards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("outcomes") / "backwards.jsonl"
    subprocess.run([sys.executable, "-m", "qtsafe", "simulate", "--scenario", "backwards", "--market", "regimes",
                    "--count", "3000", "--spacing", "2s", "--end", "2026-01-10T06:00:00Z", "--out", str(path)],
                   check=True, capture_output=True)
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "qtsafe", *args], capture_output=True, text=True, timeout=120)


def test_the_gate_reports_what_prices_did_next(backwards: Path, tmp_path: Path) -> None:
    done = _run("quality-gate", "--mode", "canary", "--after", AFTER, "--events", str(backwards), "--model",
                "patchtst", "--base-dir", str(tmp_path), "--json")
    data = json.loads(done.stdout)
    outcomes = data["outcomes"]
    assert outcomes["prices"] == "stream" and outcomes["horizon_seconds"] == 300
    rate = outcomes["models"]["patchtst"]["hit_rate"]
    assert outcomes["models"]["patchtst"]["hit_high"] < 0.5 < rate + 0.2  # backwards: clearly below a coin
    assert outcomes["canary"] == "patchtst" and outcomes["verdict"]["status"] == "FAIL"
    markdown = Path(data["report_path"]).read_text()
    assert "## What prices did next (informational)" in markdown and "| patchtst |" in markdown


def test_the_scoreboard_scores_every_model_without_pairing(backwards: Path, tmp_path: Path) -> None:
    data = json.loads(_run("scoreboard", "--after", AFTER, "--events", str(backwards), "--base-dir", str(tmp_path),
                           "--json").stdout)
    outcomes = data["outcomes"]
    assert set(outcomes["models"]) == {"lgbm", "nhits", "patchtst", "xgb"} and outcomes["verdict"] is None
    for name in ("lgbm", "nhits", "xgb"):
        assert outcomes["models"][name]["hit_low"] > 0.5, name  # healthy models read the signal


def test_prices_that_cannot_be_read_are_one_line(backwards: Path, tmp_path: Path) -> None:
    done = _run("quality-gate", "--mode", "canary", "--after", AFTER, "--events", str(backwards), "--prices",
                f"csv:{tmp_path / 'nowhere'}", "--base-dir", str(tmp_path))
    assert done.returncode == 2 and done.stderr.startswith("qtsafe: error: ") and len(done.stderr.splitlines()) == 1
    assert "Traceback" not in done.stderr
