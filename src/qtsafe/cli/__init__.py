"""The ``qtsafe`` command line: thin wrappers over the library, one module per command group.

Errors are turned into one line on stderr and exit 2 here, and only here (a traceback only with
``--debug``). Commands return the exit code that :func:`qtsafe.status.exit_code_for` gives.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import click

from qtsafe import __version__
from qtsafe.errors import QtsafeError


class QtsafeGroup(click.Group):
    """A group whose ``main`` owns the exit-code contract for errors: never 0, never a traceback.

    Its commands load on first use (see COMMANDS), so a gate never imports pandas or torch.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return self.commands.get(cmd_name)
        import importlib

        module, _, attr = entry[0].partition(":")
        command = getattr(importlib.import_module(module), attr)
        return command if isinstance(command, click.Command) else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """``qtsafe --help`` lists the commands from COMMANDS' summaries, importing none of them."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max((len(name) for name in names), default=0)
        rows: list[tuple[str, str]] = []
        for name in names:
            # A stand-in command with the summary as its help gets exactly click's own truncation.
            command = click.Command(name, help=COMMANDS[name][1]) if name in COMMANDS else self.commands[name]
            rows.append((name, command.get_short_help_str(limit=limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(args) if args is not None else sys.argv[1:]
        debug = "--debug" in argv or os.environ.get("QTSAFE_DEBUG", "") not in ("", "0")
        error_line = ""
        RUN.clear()
        # Known before anything can fail, so an error is recorded under the same series as a success. Only
        # when gauges are kept: resolving it runs the options' callbacks once more (and imports what they need).
        if os.environ.get("QTSAFE_METRICS_FILE") or any(a.startswith("--metrics-file") for a in argv):
            RUN["command"] = _series_for_argv(self, argv)
        try:
            code = super().main(
                args=argv, prog_name=prog_name or "qtsafe", complete_var=complete_var,
                standalone_mode=False, **extra,
            )
        except click.UsageError as exc:
            exc.show()
            error_line = _one_line(exc.format_message())
            code = 2
        except click.ClickException as exc:
            error_line = _one_line(exc.format_message())
            click.echo(f"qtsafe: error: {error_line}", err=True)
            code = 2
        except click.Abort:
            error_line = "aborted"
            click.echo("qtsafe: aborted", err=True)
            code = 2
        except QtsafeError as exc:
            if debug:
                traceback.print_exc()
            error_line = _one_line(str(exc))
            click.echo(f"qtsafe: error: {error_line}", err=True)
            code = 2
        except KeyboardInterrupt:
            error_line = "interrupted"
            click.echo("qtsafe: interrupted", err=True)
            code = 2
        except Exception as exc:  # noqa: BLE001 - the one place unexpected errors become exit 2
            if debug:
                traceback.print_exc()
            error_line = f"unexpected error: {type(exc).__name__}: {_one_line(str(exc))}"
            click.echo(f"qtsafe: {error_line} (run with --debug for a traceback)", err=True)
            code = 2
        if not isinstance(code, int):
            code = 0 if code is None else 2
        if code == 2 and (error_line or not RUN.get("finished")):
            if error_line:
                _reports_for_error(error_line)
            _metrics_for_error()
            if error_line and "--json" in argv:
                # Scripts piping --json into jq get an object, not an empty stdout.
                click.echo(json.dumps({"status": "ERROR", "error": error_line, "exit_code": 2}))
        if not standalone_mode:
            return code
        sys.exit(code)


# The running command's outputs, for the error path: its metrics file and series (set by the group), the
# reports it wrote and whether finish() completed (set by finish()).
RUN: dict[str, Any] = {}


def _series_for_argv(group: click.Group, argv: list[str]) -> str | None:
    """The metrics series name of the command ``argv`` invokes, resolved the way Click will resolve it."""
    from qtsafe.cli.options import parse_rest, series_name

    try:
        ctx = group.make_context("qtsafe", list(argv), resilient_parsing=True)
        command: click.Command = group
        while isinstance(command, click.Group):
            rest = parse_rest(ctx)
            if not rest:
                break
            name, sub, remaining = command.resolve_command(ctx, rest)
            if sub is None or name is None:
                break
            ctx = sub.make_context(name, remaining, parent=ctx, resilient_parsing=True)
            command = sub
    except Exception:  # noqa: BLE001 - unparsable: the group's callback names what it can
        return None
    return series_name(ctx) if ctx.parent is not None else None


def _reports_for_error(error_line: str) -> None:
    """A run that fails after writing its report must not leave a report with another verdict."""
    reports = RUN.pop("reports", None)
    if not reports:
        return
    from qtsafe.reports import mark_report_failed

    outcome = mark_report_failed(reports[0], reports[1], error_line)
    if outcome == "left":
        click.echo(f"qtsafe: error: {reports[0]} does not show this failure and could not be removed", err=True)


def _metrics_for_error() -> None:
    """An error (or a run that never reached finish()) still updates the gauges: last exit code 2."""
    path, command = RUN.pop("metrics_file", None), RUN.pop("command", None)
    if not path or not command:
        return
    from pathlib import Path

    from qtsafe.metrics import write_metrics
    from qtsafe.status import Status

    try:
        write_metrics(Path(path), command, Status.ERROR, {})
    except QtsafeError as exc:
        click.echo(f"qtsafe: error: cannot update the metrics file: {_one_line(str(exc))}", err=True)


def _one_line(text: str) -> str:
    from qtsafe.textsafe import visible_keep_backslash

    return visible_keep_backslash(" ".join(text.split())) or "(no message)"


@click.group(cls=QtsafeGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="qtsafe")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="QTSAFE_CONFIG",
              show_envvar=True, help="Config file (default: ./qtsafe.toml or [tool.qtsafe] in ./pyproject.toml).")
@click.option("--debug", is_flag=True, help="Show a traceback on errors (also when QTSAFE_DEBUG is set and not 0).")
@click.option("--metrics-file", type=click.Path(dir_okay=False), envvar="QTSAFE_METRICS_FILE", show_envvar=True,
              help="Also write Prometheus gauges (last verdict, per-model figures) to this file, atomically.")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, debug: bool, metrics_file: str | None) -> None:
    """qtsafe: fail-closed safety gates for the trading system's ML models.

    \b
    Exit codes: 0 PASS / GO, 2 FAIL / BLOCKED / error, 3 COLLECTED / WAIT.
    Every command takes --json for a machine-readable result on stdout.

    \b
    Example:
      qtsafe quality-gate --mode canary --after 2026-01-10T05:00:00Z
    """
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    ctx.obj["debug"] = debug
    ctx.obj["metrics_file"] = metrics_file
    RUN["metrics_file"] = metrics_file
    if not RUN.get("command"):
        RUN["command"] = ctx.invoked_subcommand


# Commands load on first use: `qtsafe quality-gate` never imports pandas or torch (build-dataset and model
# commands do), so the gates start fast, and `qtsafe --help` lists them from the summaries here without importing
# any (tests/unit/test_cli_startup.py checks each summary is its command's own first help line).
COMMANDS: dict[str, tuple[str, str]] = {
    "build-dataset": ("qtsafe.cli.dataset:build_dataset",
                      "Build leak-free (N, T, F) PatchTST sequences from OHLCV candles."),
    "canary": ("qtsafe.cli.canary:canary",
               "Canary lifecycle: activate, roll back, promote, status (journaled, reversible)."),
    "doctor": ("qtsafe.cli.doctor:doctor", "Check the environment before the first run and print what to fix."),
    "export": ("qtsafe.cli.export:export",
               "Write a window of the stream to a JSONL export (replayable with --events)."),
    "feature-sanity": ("qtsafe.cli.sanity:feature_sanity",
                       "Check the model inputs are alive: NaN/Inf, invalid, missing and flatlined features."),
    "incident-bundle": ("qtsafe.cli.incident:incident_bundle",
                        "Pack the journal, reports, state, the canary's telemetry and unit logs into one tar.gz."),
    "journal": ("qtsafe.cli.journal:journal",
                "The canary audit journal (logs/qsc_canary.jsonl): verify, show, repair."),
    "model": ("qtsafe.cli.model:model",
              "Model files: inspect without executing, verify the feature contract, gate offline."),
    "monitor": ("qtsafe.cli.monitor:monitor",
                "Watch the active canary; any violation rolls it back (verified) and exits 2."),
    "quality-gate": ("qtsafe.cli.gate:quality_gate", "Judge every model's output after a cutover; write the report."),
    "scoreboard": ("qtsafe.cli.scoreboard:scoreboard",
                   "Per-model and ensemble health at a glance: GO / WAIT / NO-GO."),
    "simulate": ("qtsafe.cli.simulate:simulate",
                 "Write producer-shape trade.intent telemetry for a named scenario."),
}


def main() -> None:
    """Console-script entry point."""
    cli.main()
