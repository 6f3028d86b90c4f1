from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from qtsafe.canary import lifecycle
from tests.canary.conftest import REPO_SRC, FakeGate, Root

OPS = Path(__file__).resolve().parents[2] / "ops" / "model_safety"


def _run(root: Root, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
    env.update(root.env())
    env.update({"PYTHONPATH": str(REPO_SRC), "PYTHON": sys.executable})
    # Only the fake systemctl and the system tools: the shims fall back to "$PYTHON -m qtsafe".
    env["PATH"] = f"{root.bin}{os.pathsep}/usr/bin{os.pathsep}/bin"
    return subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=60, cwd=root.path)


def test_shims_pass_exit_codes_through(root: Root, gate: FakeGate) -> None:
    nothing = _run(root, "bash", str(OPS / "qsc_rollback.sh"))
    assert nothing.returncode == 0 and nothing.stdout.startswith("NOTHING TO ROLL BACK"), nothing.stderr
    usage = _run(root, "bash", str(OPS / "canary_activate.sh"), "patchtst")
    assert usage.returncode == 2
    absent = _run(root, "bash", str(OPS / "canary_activate.sh"), "patchtst", "NOT_THERE", "1")
    assert absent.returncode == 2 and "does not occur" in absent.stdout
    last = _run(root, "bash", str(OPS / "rollback_last.sh"), "--yes")
    assert last.returncode == 0 and "NOTHING TO ROLL BACK" in last.stdout
    status = _run(root, sys.executable, str(OPS / "qsc_mode.py"), "--status")
    assert status.returncode == 0 and status.stdout.startswith("NO CANARY")

    assert lifecycle.activate(root.settings(), model="patchtst", gate=gate, open_source=lambda *a: object(),
                              sleep=lambda s: None).status.value == "PASS"
    assert _run(root, sys.executable, str(OPS / "qsc_mode.py"), "--status").returncode == 3
    root.control(restart=["fail"])
    failed = _run(root, "bash", str(OPS / "qsc_rollback.sh"), "operator", "stop")
    assert failed.returncode == 2 and failed.stdout.startswith("ROLLBACK FAILED")
    assert "Manual steps" in failed.stdout
    repaired = _run(root, sys.executable, str(OPS / "qsc_mode.py"), "--rollback")
    assert repaired.returncode == 0 and repaired.stdout.startswith("ROLLBACK VERIFIED"), repaired.stdout
    assert root.records()[-1]["reason"] == "qsc_mode.py --rollback"
    assert [r["reason"] for r in root.records() if r["action"] == "rollback_failed"] == ["operator stop"]
