"""The Makefile tells the truth about itself: `make help` names every target, prerequisites fail in one line."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*?)(?<!\\)\n", text, re.S | re.M)
    assert phony is not None
    return set(phony.group(1).replace("\\\n", " ").split())


def test_make_help_lists_every_phony_target() -> None:
    out = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    listed = set(re.findall(r"^make ([a-z-]+)", out, re.M)) | set(re.findall(r"/ ([a-z-]+)\s", out))
    missing = _targets() - listed
    assert not missing, f"make help does not list: {sorted(missing)}"


def test_lint_and_test_cover_the_same_tree() -> None:
    text = (ROOT / "Makefile").read_text()
    scopes = re.findall(r"ruff check ([^\n]+)", text)
    assert len(scopes) == 2 and scopes[0] == scopes[1], scopes


def _path_with(tmp_path: Path, *tools: str) -> str:
    """A PATH holding only the real python and the named tools (plus bash's own needs)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(sys.executable)
    for tool in tools:
        found = shutil.which(tool)
        assert found, f"{tool} must be installed for this test (CI installs it)"
        (bindir / tool).symlink_to(found)
    return str(bindir)


@pytest.mark.parametrize(
    ("tools", "want", "message"),
    [
        ((), "test", "redis-server not on PATH"),
        (("redis-server",), "test", "systemd-analyze not on PATH"),
        (("redis-server", "systemd-analyze"), "test", None),
        ((), "demo", None),
    ],
)
def test_prereqs_name_the_missing_package_in_one_line(
    tmp_path: Path, tools: tuple[str, ...], want: str, message: str | None
) -> None:
    env = {**os.environ, "PATH": _path_with(tmp_path, *tools)}
    done = subprocess.run(["/bin/bash", str(ROOT / "scripts" / "prereqs.sh"), "python3", want],
                          env=env, capture_output=True, text=True, timeout=30)
    if message is None:
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
    else:
        assert done.returncode == 2
        assert message in done.stderr and "apt-get install -y" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


def test_prereqs_refuse_a_missing_python(tmp_path: Path) -> None:
    done = subprocess.run(["/bin/bash", str(ROOT / "scripts" / "prereqs.sh"), str(tmp_path / "no-python"), "demo"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "python3-venv" in done.stderr
