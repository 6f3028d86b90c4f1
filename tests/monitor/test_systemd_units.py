"""The shipped units, as `make install-systemd` renders them, pass systemd-analyze verify."""

from __future__ import annotations

import configparser
import os
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNITS = ("quantum-qsc-monitor.service", "quantum-qsc-watchdog.service", "quantum-qsc-watchdog.timer")


def test_install_script_renders_verifies_and_reloads(tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "systemctl"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    fake.chmod(0o755)
    python = os.path.realpath(sys.executable)
    done = subprocess.run(["bash", str(ROOT / "scripts" / "install_systemd.sh"), python, str(tmp_path),
                           str(unit_dir), str(fake)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr  # includes systemd-analyze verify of all three
    assert "quantum-qsc" not in done.stderr, done.stderr  # verify warns (exit 0) about keys it ignores
    assert calls.read_text().splitlines() == ["daemon-reload", "enable --now quantum-qsc-watchdog.timer"]
    monitor = (unit_dir / "quantum-qsc-monitor.service").read_text()
    assert f"ExecStart={python} -m qtsafe monitor" in monitor
    assert f"QTSAFE_BASE_DIR={tmp_path}" in monitor
    watchdog = (unit_dir / "quantum-qsc-watchdog.service").read_text()
    assert f"ExecStart={python} -m qtsafe monitor watchdog\n" in watchdog


def test_the_watchdog_units_command_runs_the_watchdog(tmp_path: Path) -> None:
    """The unit's ExecStart as systemd would run it (its Environment= lines, no QTSAFE_* from elsewhere)."""
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment]
    parser.read(ROOT / "systemd" / "quantum-qsc-watchdog.service")
    argv = shlex.split(parser["Service"]["ExecStart"])
    assert argv[1:] == ["-m", "qtsafe", "monitor", "watchdog"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("QTSAFE_")}
    env.update(QTSAFE_BASE_DIR=str(tmp_path), PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run([sys.executable, *argv[1:]], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "OK: no active canary; nothing to watch\n", "")


def test_verify_fails_on_a_broken_unit(tmp_path: Path) -> None:
    # The check above can fail: a unit pointing at a missing interpreter is refused.
    broken = tmp_path / "quantum-qsc-monitor.service"
    broken.write_text((ROOT / "systemd" / "quantum-qsc-monitor.service").read_text())
    done = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True)
    assert done.returncode != 0 and "is not executable" in done.stderr


def test_monitor_unit_policy() -> None:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment]
    parser.read(ROOT / "systemd" / "quantum-qsc-monitor.service")
    service = parser["Service"]
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2 3"  # a rollback or a stop is final, never a restart loop
    assert 6 * 3600 < int(service["RuntimeMaxSec"]) <= 6 * 3600 + 1800
    timer = configparser.ConfigParser(strict=False, interpolation=None)
    timer.read(ROOT / "systemd" / "quantum-qsc-watchdog.timer")
    assert timer["Timer"]["Unit"] == "quantum-qsc-watchdog.service"


def test_install_refuses_units_that_do_not_verify(tmp_path: Path) -> None:
    unit_dir = tmp_path / "units"
    done = subprocess.run(["bash", str(ROOT / "scripts" / "install_systemd.sh"), "/nonexistent/python",
                           str(tmp_path), str(unit_dir), "true"], capture_output=True, text=True)
    assert done.returncode == 2
    assert "nothing installed" in done.stderr and not unit_dir.exists()
