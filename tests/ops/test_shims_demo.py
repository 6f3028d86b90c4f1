"""scripts/demo_canary.sh (make demo-canary) walks the whole loop end to end inside its sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_canary_walks_the_whole_loop_inside_its_sandbox(tmp_path: Path) -> None:
    # A "real" systemctl that must never be reached: the demo puts its stand-in first and names it explicitly.
    trap = tmp_path / "trap-bin"
    trap.mkdir()
    for name in ("systemctl", "journalctl"):
        (trap / name).write_text(f"#!/bin/sh\necho \"$0 $*\" >> {tmp_path}/REAL_SYSTEMD_REACHED\nexit 1\n")
        (trap / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
    env.update(PYTHON=sys.executable, PYTHONPATH=str(REPO / "src"), DEMO_DIR=str(tmp_path / "demo"),
               PATH=f"{trap}{os.pathsep}{env.get('PATH', '')}", QTSAFE_BASE_DIR="/nonexistent-must-be-unset")
    before = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True,
                            text=True).stdout
    proc = subprocess.run(["bash", str(REPO / "scripts" / "demo_canary.sh")], capture_output=True, text=True,
                          env=env, timeout=120, cwd=tmp_path)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert "demo-canary: every exit code was the one the contract gives" in out
    for step, code in (("1. quality gate", 0), ("2. canary activate", 0), ("3. canary status", 3),
                       ("4. monitor", 2), ("5. canary status", 0), ("6. journal verify", 0)):
        block = out.split(f"== {step}", 1)[1].split("\n== ", 1)[0]
        assert block.splitlines()[1].startswith("$ qtsafe "), block
        assert f"-> exit {code} (expected {code})  report: " in block, block
    assert "CANARY ACTIVATED" in out or "ACTIVATED" in out
    assert "FAIL: canary patchtst rolled back at check" in out
    assert "NO CANARY: quantum-ai-engine.service runs its baseline" in out and "JOURNAL OK: 3 record(s)" in out

    sandbox = tmp_path / "demo" / "canary-sandbox"
    records = [json.loads(line) for line in (sandbox / "base/logs/qsc_canary.jsonl").read_text().splitlines()]
    assert [r["action"] for r in records] == ["canary_activated", "monitoring_started", "rollback_executed"]
    assert records[-1]["trigger"] == "qsc_monitor_violation" and records[-1]["violations"][0].startswith("patchtst")
    assert not (sandbox / "etc/systemd/system/quantum-ai-engine.service.d/qsc_canary.conf").exists()
    assert list((sandbox / "base/reports/safety").glob("qsc_monitor_final_*.md"))
    assert list((sandbox / "backups").glob("ai-engine.env.*.bak"))
    calls = (sandbox / "systemd-stand-in/calls.log").read_text()
    assert calls.count("systemctl daemon-reload") == 2 and calls.count("systemctl restart") == 2
    assert not (tmp_path / "REAL_SYSTEMD_REACHED").exists()
    # Nothing outside the sandbox: the temp dir holds only the sandbox and the trap; the repo is unchanged.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo", "trap-bin"]
    assert sorted(p.name for p in (tmp_path / "demo").iterdir()) == ["canary-sandbox"]
    after = subprocess.run(["git", "status", "--porcelain", "--ignored"], cwd=REPO, capture_output=True,
                           text=True).stdout
    assert after == before
