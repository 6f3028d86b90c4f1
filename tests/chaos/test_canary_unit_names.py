"""Issue 10 item 14: hostile ``--unit`` names, and shell-quoted paths in every printed command.

``--unit ../../tmp/x`` used to write a drop-in outside ``systemd_dir``; ``x.service; touch /tmp/p`` made stray
directories; the manual steps pasted unit names and paths into shell commands unquoted. Now only names
systemd accepts pass (refused in preflight, dry runs included, exit 2, one line), and the library refuses
them too when a caller builds Settings by hand. Every case runs with a live canary in place, so a command
that ignored the unit name would have something to break.
"""

from __future__ import annotations

import dataclasses
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from qtsafe.canary import lifecycle
from qtsafe.canary import state as st
from qtsafe.status import Status, exit_code_for
from tests.canary.conftest import UNIT, FakeGate, Root, patch_default_gate  # noqa: F401 - fixture

pytestmark = pytest.mark.fault("hostile-unit")

HOSTILE = [
    "../../../outside/x.service",
    "../../../outside/x",
    "x.service; touch {root}/pwned",
    "$(touch {root}/pwned).service",
    "x.service\nExecStart=/bin/sh",
    "-H.service",
    "quantum-ai-engine",
    "x@.service",
    "a" * 300 + ".service",
]

COMMANDS = {
    "activate-dry-run": ["canary", "activate", "--model", "patchtst", "--dry-run"],
    "activate": ["canary", "activate", "--model", "patchtst"],
    "rollback": ["canary", "rollback", "--yes"],
    "rollback-last": ["canary", "rollback", "--last", "--yes"],
    "promote": ["canary", "promote", "--to", "0.25", "--reason", "clean"],
    "status": ["canary", "status"],
}


@pytest.fixture
def live(root: Root, gate: FakeGate, patch_default_gate: FakeGate) -> Root:  # noqa: F811
    """A verified canary on the real unit: what a command ignoring its unit name would break."""
    result = lifecycle.activate(root.settings(), model="patchtst", gate=gate, open_source=lambda *a: object(),
                                sleep=lambda s: None)
    assert result.status is Status.PASS, result.problems
    root.clear_calls()
    return root


def _names(root: Root) -> list[str]:
    return [name.replace("{root}", str(root.path)) for name in HOSTILE]


def _nothing_happened(root: Root, before: dict[str, bytes]) -> None:
    assert root.snapshot() == before  # nothing written, removed or created anywhere in the sandbox
    assert root.calls() == []  # systemctl/journalctl never ran
    assert not (root.path / "outside").exists() and not (root.path / "pwned").exists()
    assert not (root.path.parent / "outside").exists()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_cli_refuses_hostile_unit_names_in_preflight(live: Root, run_cli: Callable[..., Result],
                                                     command: str, faults: Any) -> None:
    before = live.snapshot()
    for name in _names(live):
        for how in ("flag", "env"):
            faults.add()
            if how == "flag":
                result = run_cli(*COMMANDS[command], f"--unit={name}")
            else:
                result = run_cli(*COMMANDS[command], env={"QTSAFE_UNIT": name})
            assert result.exit_code == 2, (command, how, name, result.stdout, result.stderr)
            lines = result.stderr.splitlines()
            assert len(lines) == 1 and "not a valid systemd unit name" in lines[0], (command, how, name, lines)
            assert "Traceback" not in result.stderr and result.stdout == ""
            _nothing_happened(live, before)
    # The canary on the real unit is untouched and still reads as active.
    assert run_cli("canary", "status", "--json").exit_code == 3


def test_config_file_unit_is_refused_too(live: Root, run_cli: Callable[..., Result], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QTSAFE_UNIT")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    (work / "qtsafe.toml").write_text('unit = "../../../outside/x.service"\n')
    before = live.snapshot()
    for args in COMMANDS.values():
        result = run_cli(*args)
        assert result.exit_code == 2 and result.stdout == ""
        assert "not a valid systemd unit name" in result.stderr and len(result.stderr.splitlines()) == 1
    _nothing_happened(live, before)


def _library_calls(settings: Any, gate: FakeGate) -> dict[str, Callable[[], Any]]:
    no_sleep = lambda s: None  # noqa: E731
    return {
        "activate-dry-run": lambda: lifecycle.activate(settings, model="patchtst", dry_run=True, gate=gate,
                                                       open_source=lambda *a: object(), sleep=no_sleep),
        "activate": lambda: lifecycle.activate(settings, model="patchtst", gate=gate,
                                               open_source=lambda *a: object(), sleep=no_sleep),
        "rollback": lambda: lifecycle.rollback(settings, reason="x", sleep=no_sleep),
        "rollback-last": lambda: lifecycle.rollback_last(settings, reason="x", sleep=no_sleep),
        "promote": lambda: lifecycle.promote(settings, to=0.25, reason="x", sleep=no_sleep),
        "status": lambda: lifecycle.canary_status(settings),
    }


def test_library_refuses_hostile_unit_names_from_hand_built_settings(live: Root, gate: FakeGate,
                                                                      faults: Any) -> None:
    before = live.snapshot()
    for name in _names(live):
        # Settings built by a caller, past the config loader's check: the entry points check again.
        settings = dataclasses.replace(live.settings(), unit=name)
        for command, call in _library_calls(settings, gate).items():
            faults.add()
            result = call()
            assert exit_code_for(result.status) == 2, (command, name, result.summary)
            assert "not a valid systemd unit name" in result.summary and "\n" not in result.summary, result.summary
            assert not getattr(result, "manual_steps", ()), (command, result.manual_steps)
            _nothing_happened(live, before)
        with pytest.raises(Exception, match="not a valid systemd unit name"):
            st.dropin_dir(settings)  # the one place a unit becomes a path checks it as well


def _split_steps(steps: tuple[str, ...]) -> list[list[str]]:
    """Each printed step as the shell would split it (comments cut off)."""
    return [shlex.split(step, comments=True) for step in steps]


def test_manual_steps_quote_every_path_and_unit(root: Root, gate: FakeGate, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # Paths an operator may well have (spaces) and ones a shell would act on ($(...), ;, quotes).
    systemd_dir = root.path / "etc dir" / "systemd $(touch pwned); system"
    systemd_dir.mkdir(parents=True)
    shutil.copy(root.unit_file, systemd_dir / UNIT)
    monkeypatch.setenv("FAKE_SYSTEMD_ROOT", str(systemd_dir))
    settings = root.settings(systemd_dir=str(systemd_dir), base_dir=str(root.path / "base 'q' dir"),
                             backup_dir=str(root.path / "back ups"))
    done = lifecycle.activate(settings, model="patchtst", gate=gate, open_source=lambda *a: object(),
                              sleep=lambda s: None)
    assert done.status is Status.PASS, done.problems
    root.control(restart=["fail", "fail"])
    failed = lifecycle.rollback(settings, reason="x", sleep=lambda s: None)
    assert failed.status is Status.FAIL and failed.manual_steps
    words = [word for step in _split_steps(failed.manual_steps) for word in step]
    assert str(st.dropin_path(settings)) in words and str(st.state_path(settings)) in words, failed.manual_steps
    for argv in _split_steps(failed.manual_steps):
        if "restart" in argv or "is-active" in argv:
            assert argv[-1] == UNIT
    assert not (root.path / "pwned").exists()

    # A valid unit name with a systemd escape: unquoted, the shell would eat the backslash.
    escaped = dataclasses.replace(settings, unit="quantum\\x2dai.service")
    steps = _split_steps(lifecycle._manual_steps(escaped, None))
    assert ["sudo", "systemctl", "restart", "quantum\\x2dai.service"] in steps
    assert ["sudo", "rm", "-f", str(st.dropin_path(escaped))] in steps


def test_dry_run_plan_commands_are_shell_quoted(root: Root, run_cli: Callable[..., Result],
                                                patch_default_gate: FakeGate) -> None:  # noqa: F811
    spaced = root.path / "bin dir $(x)" / "systemctl"
    spaced.parent.mkdir()
    shutil.copy(root.bin / "systemctl", spaced)
    result = run_cli("canary", "activate", "--model", "patchtst", "--dry-run", env={"QTSAFE_SYSTEMCTL": str(spaced)})
    assert result.exit_code == 0, result.stdout + result.stderr
    runs = [shlex.split(line.strip()[len("run"):]) for line in result.stdout.splitlines()
            if line.strip().startswith("run ")]
    assert runs and all(argv[0] in (str(spaced), "journalctl") for argv in runs), runs
    assert [str(spaced), "restart", UNIT] in runs
