"""The disk says no: reports directory blocked by a file, a file-size limit (EFBIG, as a full quota),
ENOSPC on a rename or on a journal append (injected into the real command by tests/chaos/inject).

Running as root, chmod proves nothing; these faults fail the write itself. Every command is the real
``python -m qtsafe``; the contract is exit 2 with one line on stderr, and what was on disk before is
still there, byte for byte, with no temp file left behind.
"""

from __future__ import annotations

import json
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from qtsafe.canary import lifecycle
from qtsafe.simulate import generate
from qtsafe.status import Status
from tests.canary.conftest import Root
from tests.chaos.conftest import no_traceback, qtsafe, qtsafe_env, tree

INJECT = Path(__file__).resolve().parent / "inject"
AFTER = "2000-01-01T00:00:00Z"
AFTER2 = "2000-01-02T00:00:00Z"


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("events") / "healthy.jsonl"
    path.write_text("".join(e.to_json() + "\n" for e in generate("healthy", 600)))
    return path


def injecting(env: dict[str, str], fail: str, errno_name: str = "ENOSPC") -> dict[str, str]:
    return {**env, "PYTHONPATH": f"{INJECT}:{env['PYTHONPATH']}", "CHAOS_FAIL": fail, "CHAOS_ERRNO": errno_name}


def file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child, before exec: a quota the first big write runs into (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


READERS = {
    "quality-gate": ("quality-gate", "--mode", "canary", "--after", AFTER),
    "scoreboard": ("scoreboard", "--after", AFTER),
    "feature-sanity": ("feature-sanity", "--after", AFTER),
}


def _with_previous_reports(tmp_path: Path, command: str, events: Path, run_cli: Callable[..., Result]
                           ) -> tuple[Path, dict[str, str]]:
    base = tmp_path / "base"
    first = run_cli(*READERS[command], "--events", str(events), "--base-dir", str(base))
    assert first.exit_code == 0, first.output
    assert len(list((base / "reports" / "safety").iterdir())) == 2
    return base, qtsafe_env(base)


def _refused_intact(proc: subprocess.CompletedProcess[str], base: Path, before: dict[str, bytes], cause: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stderr.startswith("qtsafe: error: cannot write "), proc.stderr
    assert proc.stderr.rstrip().endswith(cause) and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert tree(base) == before  # previous reports byte-identical; no new report, no temp file


@pytest.mark.fault("disk-full")
@pytest.mark.parametrize("command", ["quality-gate"])
def test_file_size_limit_on_reports_keeps_the_previous_ones(tmp_path: Path, events: Path, command: str,
                                                            run_cli: Callable[..., Result]) -> None:
    base, env = _with_previous_reports(tmp_path, command, events, run_cli)
    before = tree(base)
    proc = qtsafe(*READERS[command], "--events", str(events), env=env, preexec_fn=file_size_limit(1024))
    _refused_intact(proc, base, before, "File too large")


@pytest.mark.fault("disk-full")
@pytest.mark.parametrize("command", ["scoreboard"])
def test_enospc_on_the_first_report_rename_keeps_the_previous_ones(tmp_path: Path, events: Path, command: str,
                                                                   run_cli: Callable[..., Result]) -> None:
    base, env = _with_previous_reports(tmp_path, command, events, run_cli)
    before = tree(base)
    proc = qtsafe(*READERS[command], "--events", str(events), env=injecting(env, "replace:*.json"))
    _refused_intact(proc, base, before, "No space left on device")


@pytest.mark.fault("disk-full")
@pytest.mark.parametrize("command", ["quality-gate", "scoreboard"])
def test_enospc_on_the_second_report_file_keeps_the_previous_pair(tmp_path: Path, events: Path, command: str,
                                                                  run_cli: Callable[..., Result]) -> None:
    base, env = _with_previous_reports(tmp_path, command, events, run_cli)
    before = tree(base)
    # Another cutover, so the new JSON differs from the old even when both runs fall in the same second.
    args = [AFTER2 if arg == AFTER else arg for arg in READERS[command]]
    # A new timestamped report is created with link() (it never replaces one); scoreboard_latest is replaced.
    proc = qtsafe(*args, "--events", str(events), env=injecting(env, "replace:*.md,link:*.md"))
    assert proc.returncode == 2 and proc.stderr.startswith("qtsafe: error: cannot write "), proc.stderr
    left = {name: data for name, data in tree(base).items() if name not in before or before[name] != data}
    assert left == {}, f"{sorted(left)} written by a run that exited 2"


@pytest.mark.fault("disk-full")
@pytest.mark.parametrize(("command", "blocker"), [("quality-gate", "reports/safety"), ("feature-sanity", "reports")])
def test_a_file_where_the_reports_directory_must_be(tmp_path: Path, events: Path, command: str,
                                                     blocker: str) -> None:
    base = tmp_path / "base"
    (base / blocker).parent.mkdir(parents=True, exist_ok=True)
    (base / blocker).write_bytes(b"not a directory\n")
    before = tree(base)
    proc = qtsafe(*READERS[command], "--events", str(events), env=qtsafe_env(base))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stderr.startswith(f"qtsafe: error: cannot create directory {base / 'reports' / 'safety'}: ")
    assert len(proc.stderr.splitlines()) == 1
    assert tree(base) == before


# ---- canary activate on a full disk ------------------------------------------------------------------

def _files(root: Root) -> dict[str, bytes]:
    """Every file (an empty directory left behind changes nothing)."""
    return {k: v for k, v in root.snapshot().items() if not k.endswith("/")}


def _live_and_state(root: Root) -> dict[str, bytes]:
    """Every file but the reports (a gate that ran and passed may leave its report: that is evidence)."""
    return {k: v for k, v in _files(root).items() if not k.startswith("base/reports")}


def _activate(root: Root, events: Path, env: dict[str, str], **popen: object) -> subprocess.CompletedProcess[str]:
    return qtsafe("canary", "activate", "--model", "patchtst", "--events", str(events), env=env, cwd=root.path,
                  **popen)  # type: ignore[arg-type]


@pytest.mark.fault("disk-full")
def test_activate_with_a_file_size_limit_changes_nothing(root: Root, events: Path) -> None:
    before = _files(root)
    proc = _activate(root, events, qtsafe_env(**root.env()), preexec_fn=file_size_limit(1024))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stdout.startswith("CANARY BLOCKED: cannot write ") and "File too large" in proc.stdout
    assert _files(root) == before
    assert "systemctl restart" not in root.verbs()


@pytest.mark.fault("disk-full")
def test_activate_cannot_write_its_state_file_changes_nothing(root: Root, events: Path) -> None:
    before = _live_and_state(root)
    proc = _activate(root, events, injecting(qtsafe_env(**root.env()), "replace:qsc_canary_state.json"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout.startswith("CANARY BLOCKED: cannot write ") and "No space left on device" in proc.stdout
    assert _live_and_state(root) == before  # the backups it had written are removed again
    assert "systemctl restart" not in root.verbs()


@pytest.mark.fault("disk-full")
def test_activate_cannot_write_the_dropin_rolls_back_byte_for_byte(root: Root, events: Path,
                                                                   run_cli: Callable[..., Result]) -> None:
    live_before = {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")}
    env_before = root.live_environment()
    proc = _activate(root, events, injecting(qtsafe_env(**root.env()), "replace:qsc_canary.conf"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stdout.startswith("CANARY FAILED: cannot write ") and "(rolled back and verified)" in proc.stdout
    assert {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")} == live_before
    assert root.live_environment() == env_before
    assert root.actions() == ["canary_activation_failed", "rollback_executed"]
    assert not root.state_file.exists()
    assert lifecycle.canary_status(root.settings()).status is Status.PASS
    assert run_cli("journal", "verify").exit_code == 0


@pytest.mark.fault("disk-full")
def test_activate_cannot_journal_undoes_itself_and_status_explains(root: Root, events: Path,
                                                                   run_cli: Callable[..., Result]) -> None:
    """No audit record, no activation: the live system goes back; the unjournaled rollback stays visible."""
    live_before = {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")}
    env_before = root.live_environment()
    proc = _activate(root, events, injecting(qtsafe_env(**root.env()), "write:qsc_canary.jsonl"))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    no_traceback(proc)
    assert proc.stdout.startswith("CANARY FAILED: cannot journal the activation: cannot append to ")
    assert {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")} == live_before
    assert root.live_environment() == env_before
    assert root.records() == []
    # The disk has room again: status explains, rollback finishes the job and journals it.
    status = run_cli("canary", "status", "--json")
    assert status.exit_code == 2 and json.loads(status.stdout)["phase"] == "rolling_back"
    assert "canary rollback" in json.loads(status.stdout)["repair"]
    repaired = run_cli("canary", "rollback", "--yes", "--reason", "disk freed")
    assert repaired.exit_code == 0, repaired.output
    assert run_cli("canary", "status").exit_code == 0
    assert root.actions() == ["rollback_executed"] and not root.state_file.exists()
    assert run_cli("journal", "verify").exit_code == 0


@pytest.mark.fault("disk-full")
def test_rollback_on_a_full_disk_still_takes_the_canary_out(root: Root, gate: Any) -> None:
    live_before = {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")}
    env_before = root.live_environment()
    activated = lifecycle.activate(root.settings(), model="patchtst", gate=gate, open_source=lambda *a: object(),
                                   sleep=lambda s: None)
    assert activated.status is Status.PASS
    full = injecting(qtsafe_env(**root.env()), "replace:*,write:*")  # no file can be written or appended
    proc = qtsafe("canary", "rollback", "--yes", "--reason", "disk full", env=full, cwd=root.path)
    assert proc.returncode in (0, 2), proc.stdout + proc.stderr
    no_traceback(proc)
    # Whatever could not be recorded, the live system must be back on the baseline.
    assert {k: v for k, v in root.snapshot(live_only=True).items() if not k.startswith("backups")} == live_before
    assert root.live_environment() == env_before
