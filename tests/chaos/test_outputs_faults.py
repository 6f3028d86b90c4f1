"""Outputs under faults (issue 10, items 5 and 11): a real read-only reports directory, and a metrics file on
a full disk after the report was written. Every command is the real ``python -m qtsafe``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chaos.conftest import no_traceback, qtsafe, qtsafe_env, tree
from tests.chaos.test_disk_faults import injecting
from tests.conftest import healthy_events_file

AFTER = "2000-01-01T00:00:00Z"


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return healthy_events_file(tmp_path_factory, 600)


def _read_only_mount_works(probe: Path) -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([unshare, "--mount", "sh", "-c", 'mount -t tmpfs -o ro,size=1m tmpfs "$0" && ! touch "$0/x"',
                           str(probe)], capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.mark.fault("disk-full")
def test_read_only_mounted_reports_directory(tmp_path: Path, events: Path) -> None:
    """A real read-only file system (a ro tmpfs in a private mount namespace; root ignores chmod 0o555)."""
    if not _read_only_mount_works(tmp_path / "probe"):
        # CI runs as root on the project's machines, where this works: there a missing mount is a failure.
        if os.environ.get("CI"):
            pytest.fail("cannot mount a read-only tmpfs (needs root and util-linux's unshare/mount)")
        pytest.skip("cannot mount a read-only tmpfs here (needs CAP_SYS_ADMIN); "
                    "tests/unit/test_outputs_files.py covers EROFS at the OS boundary")
    base = tmp_path / "base"
    reports = base / "reports" / "safety"
    reports.mkdir(parents=True)
    env = qtsafe_env(base)
    script = 'mount -t tmpfs -o ro,size=1m tmpfs "$0" && exec "$@"'
    proc = subprocess.run(["unshare", "--mount", "sh", "-c", script, str(reports), sys.executable, "-m", "qtsafe",
                           "quality-gate", "--mode", "canary", "--after", AFTER, "--events", str(events)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"qtsafe: error: cannot write {reports}/quality_gate_"), proc.stderr
    assert proc.stderr.endswith(": Read-only file system\n") and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert list(reports.iterdir()) == []  # the mount was private: nothing leaked below it either


READERS = {
    "quality-gate": (("quality-gate", "--mode", "canary", "--after", AFTER), "PASS"),
    "feature-sanity": (("feature-sanity", "--after", AFTER), "PASS"),
    "scoreboard": (("scoreboard", "--after", AFTER), "GO"),
}


def _reports(base: Path) -> dict[str, Path]:
    directory = base / "reports" / "safety"
    return {p.suffix: p for p in directory.iterdir()} if directory.exists() else {}


@pytest.mark.fault("disk-full")
@pytest.mark.parametrize("command", sorted(READERS))
def test_metrics_on_a_full_disk_leaves_no_passing_report(tmp_path: Path, events: Path, command: str) -> None:
    """The report is written, then the metrics file hits ENOSPC: the run exits 2, so its report must say so."""
    base = tmp_path / "base"
    args, verdict = READERS[command]
    prom = tmp_path / "metrics" / "qtsafe.prom"
    env = injecting(qtsafe_env(base), "replace:*.prom")
    proc = qtsafe("--metrics-file", str(prom), *args, "--events", str(events), env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stdout == ""  # no PASS line printed for a run that exits 2
    assert proc.stderr == (f"qtsafe: error: cannot write {prom}: No space left on device\n"), proc.stderr
    written = _reports(base)
    assert sorted(written) == [".json", ".md"]
    data = json.loads(written[".json"].read_text())
    assert data["status"] == "ERROR" and data["exit_code"] == 2
    assert data["status_before_error"] == verdict and "No space left on device" in data["error"]
    markdown = written[".md"].read_text()
    first = markdown.splitlines()[0]
    assert first.startswith("# ERROR: this run exited 2 - cannot write ") and first.endswith("No space left on device")
    assert f"**{verdict}** (exit 0)" not in markdown and "**ERROR** (exit 2;" in markdown
    assert not prom.exists()


@pytest.mark.fault("disk-full")
def test_report_that_cannot_be_rewritten_is_removed(tmp_path: Path, events: Path) -> None:
    """Metrics fail, and the disk will not take the corrected report either: no report beats a false PASS."""
    base = tmp_path / "base"
    base.mkdir()
    (base / "keep.txt").write_text("an earlier file\n")
    before = tree(base)
    prom = tmp_path / "qtsafe.prom"
    # New reports are created with link() and may appear; any replace (the metrics, the rewrite) fails.
    env = injecting(qtsafe_env(base), "replace:*")
    proc = qtsafe("--metrics-file", str(prom), *READERS["quality-gate"][0], "--events", str(events), env=env)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stderr.startswith(f"qtsafe: error: cannot write {prom}: No space left on device"), proc.stderr
    assert tree(base) == before  # the PASS report is gone again, everything else untouched
