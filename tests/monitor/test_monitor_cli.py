"""`qtsafe monitor watchdog` and `qtsafe monitor replay` (issue 11): subcommands of the watch, with the old
`--watchdog` / `--replay` flags kept as aliases that run the same code and say so in --help."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from click.testing import Result

from qtsafe.canary import state as st
from tests.canary.conftest import Root
from tests.conftest import SAMPLES
from tests.monitor.conftest import activated  # noqa: F401 - fixture

RunCli = Callable[..., Result]
SERIES = re.compile(r'^qtsafe_last_exit_code\{command="([^"]*)"\} (\d+)$', re.MULTILINE)


def test_monitor_help_lists_the_subcommands_and_marks_the_old_flags(run_cli: RunCli) -> None:
    out = run_cli("monitor", "--help").output
    commands = out.split("\nCommands:\n", 1)[1]
    assert re.search(r"^  replay +Replay recorded telemetry", commands, re.M), commands
    assert re.search(r"^  watchdog +Roll back an active canary", commands, re.M), commands
    options = re.sub(r"\s+", " ", out.split("\nOptions:\n", 1)[1])
    assert "--watchdog Old spelling of 'qtsafe monitor watchdog'" in options
    assert "--replay FROM_ID TO_ID Old spelling of 'qtsafe monitor replay FROM_ID TO_ID'" in options


def test_watchdog_subcommand_rolls_back_a_canary_whose_monitor_is_dead(root: Root, activated: dict[str, Any],  # noqa: F811
                                                                      run_cli: RunCli) -> None:
    st.write_heartbeat(activated["settings"], canary_id=activated["canary"].canary_id, canary_model="patchtst")
    alive = run_cli("monitor", "watchdog", env=root.env())
    assert (alive.exit_code, alive.stdout.split(" (")[0]) == (0, "OK: monitor of canary patchtst alive"), alive.output
    dead = run_cli("monitor", "watchdog", env={**root.env(), "QTSAFE_MONITOR_HEARTBEAT_MAX_AGE": "0"})
    assert dead.exit_code == 2, dead.output
    assert dead.stdout.startswith("FAIL: monitor of canary patchtst is dead (monitor heartbeat is"), dead.stdout
    assert root.records()[-1]["trigger"] == "qsc_monitor_watchdog"
    assert st.active_canary(activated["settings"]) is None


def test_old_watchdog_flag_runs_the_watchdog(root: Root, run_cli: RunCli) -> None:
    """The alias: the same result as the subcommand, not the watch (which exits 2 with no canary)."""
    old = run_cli("monitor", "--watchdog", "--json", env=root.env())
    new = run_cli("monitor", "watchdog", "--json", env=root.env())
    assert (old.exit_code, new.exit_code) == (0, 0), old.output + new.output
    assert json.loads(old.stdout)["summary"] == "OK: no active canary; nothing to watch"
    assert json.loads(old.stdout) == json.loads(new.stdout)


def test_replay_subcommand_and_its_old_flags_give_one_result(root: Root, run_cli: RunCli) -> None:
    new = run_cli("monitor", "replay", "0-0", "9999999999999-0", "--model", "patchtst", "--events", str(SAMPLES),
                  "--interval", "10s", env=root.env())
    old = run_cli("monitor", "--replay", "0-0", "9999999999999-0", "--model", "patchtst", "--events", str(SAMPLES),
                  "--interval", "10s", env=root.env())
    assert new.exit_code == 2, new.output  # the samples carry a confidence of 1.05: a rule fires
    assert new.stdout.startswith("FAIL: the monitor's rules would have fired at 2026-01-10T05:48:")
    assert (old.exit_code, old.stdout) == (new.exit_code, new.stdout)
    default = run_cli("monitor", "replay", "0-0", "9999999999999-0", "--model", "patchtst", "--events", str(SAMPLES),
                      env=root.env())
    assert default.stdout != new.stdout  # --interval reaches the replay: checks of 10 s, not 30 s


def test_replay_subcommand_needs_its_ids_and_a_model(root: Root, run_cli: RunCli) -> None:
    no_model = run_cli("monitor", "replay", "1-0", "2-0", env=root.env())
    assert no_model.exit_code == 2 and "Missing option '--model'" in no_model.stderr
    no_ids = run_cli("monitor", "replay", "--model", "patchtst", env=root.env())
    assert no_ids.exit_code == 2 and "Missing argument 'FROM_ID'" in no_ids.stderr
    reversed_ids = run_cli("monitor", "replay", "5-0", "4-0", "--model", "patchtst", "--events", str(SAMPLES),
                           env=root.env())
    assert reversed_ids.exit_code == 2 and reversed_ids.stderr == "qtsafe: error: --replay: 4-0 is before 5-0\n"


def test_options_before_a_subcommand_are_refused_not_dropped(root: Root, activated: dict[str, Any],  # noqa: F811
                                                             run_cli: RunCli, tmp_path: Path) -> None:
    """`qtsafe monitor --base-dir X watchdog` must not run the watchdog somewhere else and say OK."""
    env = {k: v for k, v in root.env().items() if k != "QTSAFE_BASE_DIR"}
    before = run_cli("monitor", "--base-dir", str(root.base), "watchdog", env=env)
    assert before.exit_code == 2 and before.stdout == ""
    assert "Error: --base-dir cannot come before 'watchdog'" in before.stderr
    assert run_cli("monitor", "--json", "replay", "1-0", "2-0", "--model", "m", env=env).exit_code == 2
    after = run_cli("monitor", "watchdog", "--base-dir", str(root.base), env=env)
    assert after.exit_code == 3 and after.stdout.startswith("WAIT: canary patchtst activated"), after.output
    from_env = run_cli("monitor", "watchdog", env=root.env())  # QTSAFE_BASE_DIR is no option typed before it
    assert (from_env.exit_code, from_env.stdout) == (after.exit_code, after.stdout)


def test_new_spellings_keep_the_metrics_series(root: Root, run_cli: RunCli, tmp_path: Path) -> None:
    """One series per job whichever spelling ran it: the every-minute watchdog never overwrites the watch's."""
    prom = tmp_path / "qtsafe.prom"
    bad = tmp_path / "bad.toml"
    bad.write_text("nonsense_key = 1\n")
    run_cli("--metrics-file", str(prom), "monitor", "watchdog", env=root.env())
    run_cli("--metrics-file", str(prom), "monitor", "replay", "1-0", "2-0", "--model", "m", "--events",
            str(SAMPLES), env=root.env())
    assert dict(SERIES.findall(prom.read_text())) == {"monitor watchdog": "0", "monitor replay": "3"}
    run_cli("--config", str(bad), "--metrics-file", str(prom), "monitor", "watchdog", env=root.env())
    run_cli("--config", str(bad), "--metrics-file", str(prom), "monitor", "replay", "1-0", "2-0", "--model", "m",
            env=root.env())
    run_cli("--metrics-file", str(prom), "monitor", "--watchdog", env=root.env())
    assert dict(SERIES.findall(prom.read_text())) == {"monitor watchdog": "0", "monitor replay": "2"}
