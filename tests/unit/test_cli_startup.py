"""`qtsafe --help` lists commands without importing them; help of a command imports no heavy library.

Start-up time itself is measured by bench/bench_startup.py (whole process, medians), not asserted here: these tests
pin the causes (what gets imported), which do not depend on the machine's speed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from qtsafe.cli import COMMANDS, cli

PROBE = """
import json, sys
from qtsafe.cli import cli
try:
    cli.main(args=sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
sys.stdout.flush()
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def _modules_after(*args: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_listed_summary_is_the_commands_own_first_help_line(name: str) -> None:
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    own = (command.short_help or command.help or "").split("\n\n")[0].strip()
    assert COMMANDS[name][1] == own, f"COMMANDS[{name!r}] drifted from the command's help"


def test_top_level_help_lists_every_command_and_imports_none() -> None:
    loaded = _modules_after("--help")
    assert not {m for m in loaded if m.startswith("qtsafe.cli.") and m != "qtsafe.cli.options"} - {"qtsafe.cli"}
    assert "numpy" not in loaded and "pandas" not in loaded
    out = subprocess.run([sys.executable, "-m", "qtsafe", "--help"], capture_output=True, text=True, timeout=60).stdout
    for name in COMMANDS:
        assert f"\n  {name} " in out


@pytest.mark.parametrize("path", [[name] for name in sorted(COMMANDS)] + [["model", "inspect"], ["canary", "activate"]])
def test_command_help_imports_no_heavy_library(path: list[str]) -> None:
    loaded = _modules_after(*path, "--help")
    heavy = {"numpy", "pandas", "torch", "xgboost", "lightgbm", "pyarrow", "matplotlib", "scipy"} & loaded
    assert not heavy, f"`qtsafe {' '.join(path)} --help` imports {sorted(heavy)}"
