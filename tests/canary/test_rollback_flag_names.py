"""``canary rollback --last-activation`` is the flag; ``--last`` stays as its hidden old name and does the same."""

from __future__ import annotations

from collections.abc import Callable

from click.testing import Result

from qtsafe.cli.canary import rollback as rollback_command
from tests.canary.conftest import FakeGate, Root


def _backup(root: Root, stamp: str, text: str) -> None:
    root.backup_dir.mkdir(parents=True, exist_ok=True)
    (root.backup_dir / f"{root.env_file.name}.{stamp}.bak").write_text(text)


def test_last_activation_and_its_old_name_restore_the_newest_unrestored_backup(
        root: Root, run_cli: Callable[..., Result], patch_default_gate: FakeGate) -> None:
    _backup(root, "20260101_000000", "OLDEST=1\n")
    _backup(root, "20260102_000000", "NEWER=1\n")
    first = run_cli("canary", "rollback", "--last-activation", "--yes")
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith(
        f"ROLLBACK VERIFIED: {root.env_file} restored from ai-engine.env.20260102_000000.bak")
    assert root.env_file.read_text() == "NEWER=1\n"
    second = run_cli("canary", "rollback", "--last", "--yes")  # the old name walks on back, as before
    assert second.exit_code == 0, second.output
    assert root.env_file.read_text() == "OLDEST=1\n"
    assert [r["trigger"] for r in root.records()] == ["manual_last", "manual_last"]


def test_help_shows_the_new_name_and_hides_the_old_one_saying_what_it_is(
        root: Root, run_cli: Callable[..., Result]) -> None:
    shown = run_cli("canary", "rollback", "--help")
    assert shown.exit_code == 0
    assert "--last-activation" in shown.stdout and "old name: --last)" in shown.stdout
    assert "\n  --last " not in shown.stdout
    alias = next(p for p in rollback_command.params if "--last" in p.opts)
    assert alias.hidden and "Old name of --last-activation" in (alias.help or "")  # type: ignore[attr-defined]
