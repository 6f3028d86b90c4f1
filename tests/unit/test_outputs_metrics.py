"""--metrics-file names a command's series the same on success and on error (issue 10, item 7)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import Result

from qtsafe.cli import cli

SERIES = re.compile(r'^qtsafe_last_exit_code\{command="([^"]*)"\} (\d+)$', re.MULTILINE)


def leaf_commands(group: click.Group = cli, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every runnable command, from the Click tree itself: a command added later is covered without a edit."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            yield from leaf_commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


LEAVES = sorted(leaf_commands())


def series(prom: Path) -> dict[str, int]:
    return {name: int(code) for name, code in SERIES.findall(prom.read_text())}


@pytest.fixture
def bad_config(tmp_path: Path) -> Path:
    path = tmp_path / "bad.toml"
    path.write_text("nonsense_key = 1\n")  # an unknown key: every command that loads settings fails (exit 2)
    return path


def test_the_tree_has_the_nested_groups() -> None:
    assert {leaf[0] for leaf in LEAVES if len(leaf) == 2} >= {"canary", "journal", "model"}
    assert len(LEAVES) >= 20


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_an_error_is_recorded_under_the_full_command_path(path: tuple[str, ...], tmp_path: Path, bad_config: Path,
                                                          run_cli: Callable[..., Result]) -> None:
    """Before: an error in `journal verify` was recorded as command="journal", a success as "journal verify"."""
    prom = tmp_path / "qtsafe.prom"
    r = run_cli("--config", str(bad_config), "--metrics-file", str(prom), *path)
    assert r.exit_code == 2, r.output
    assert series(prom) == {" ".join(path): 2}


@pytest.mark.parametrize("path", LEAVES, ids=" ".join)
def test_a_bad_option_is_recorded_under_the_full_command_path(path: tuple[str, ...], tmp_path: Path,
                                                              run_cli: Callable[..., Result]) -> None:
    prom = tmp_path / "qtsafe.prom"
    r = run_cli("--metrics-file", str(prom), *path, "--no-such-option")
    assert r.exit_code == 2, r.output
    assert series(prom) == {" ".join(path): 2}


SUCCEEDING = [("journal", "verify"), ("journal", "show"), ("canary", "status"), ("monitor", "--watchdog")]


@pytest.mark.parametrize("args", SUCCEEDING, ids=" ".join)
def test_success_and_error_share_one_series(args: tuple[str, ...], tmp_path: Path, bad_config: Path,
                                            run_cli: Callable[..., Result]) -> None:
    base = ["--base-dir", str(tmp_path / "base")]
    ok_prom, err_prom = tmp_path / "ok.prom", tmp_path / "err.prom"
    ok = run_cli("--metrics-file", str(ok_prom), *args, *base)
    err = run_cli("--config", str(bad_config), "--metrics-file", str(err_prom), *args, *base)
    assert err.exit_code == 2
    assert set(series(ok_prom)) == set(series(err_prom)), (ok.output, err.output)
    assert series(ok_prom) == {next(iter(series(err_prom))): ok.exit_code}


def test_watchdog_keeps_its_own_series(tmp_path: Path, bad_config: Path, run_cli: Callable[..., Result]) -> None:
    """The every-minute watchdog must not overwrite the 6-hour monitor's gauges (nor a replay's)."""
    prom = tmp_path / "qtsafe.prom"
    base = ["--base-dir", str(tmp_path / "base")]
    run_cli("--config", str(bad_config), "--metrics-file", str(prom), "monitor", *base)
    run_cli("--metrics-file", str(prom), "monitor", "--watchdog", *base)
    run_cli("--config", str(bad_config), "--metrics-file", str(prom), "monitor", "--replay", "1-0", "2-0", *base)
    found = series(prom)
    assert set(found) == {"monitor", "monitor watchdog", "monitor replay"}
    assert found["monitor"] == 2 and found["monitor replay"] == 2
