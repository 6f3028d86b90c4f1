"""``qtsafe monitor``: the canary watch, and its subcommands ``watchdog`` and ``replay``."""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from qtsafe.cli.options import (
    base_dir_option,
    charts_option,
    finish,
    json_option,
    load,
    quiet_option,
    read_overrides,
    redis_options,
)

if TYPE_CHECKING:
    from qtsafe.config import Settings

F = TypeVar("F", bound=Callable[..., Any])


def shared_options(func: F) -> F:
    """Redis, the base directory and --json: the options of the watch and of each subcommand alike."""
    return redis_options(base_dir_option(json_option(func)))


@click.group("monitor", invoke_without_command=True)
@click.option("--duration", metavar="DURATION", help="How long to watch, counted from activation (default 6h).")
@click.option("--interval", metavar="DURATION", help="Time between checks (default 30s).")
@click.option("--watchdog", is_flag=True,
              help="Old spelling of 'qtsafe monitor watchdog' (still accepted): roll back an active canary whose "
                   "monitor heartbeat is stale.")
@click.option("--replay", nargs=2, metavar="FROM_ID TO_ID",
              help="Old spelling of 'qtsafe monitor replay FROM_ID TO_ID' (still accepted): run the rules over "
                   "recorded telemetry.")
@click.option("--model", help="With the old --replay: the model to treat as the canary.")
@click.option("--events", "events_file", type=click.Path(dir_okay=False),
              help="With the old --replay: read a JSONL export instead of Redis.")
@shared_options
@charts_option
@quiet_option
@click.pass_context
def monitor(ctx: click.Context, duration: str | None, interval: str | None, watchdog: bool,
            replay: tuple[str, str] | None, model: str | None, events_file: str | None, redis_url: str | None,
            stream: str | None, base_dir: str | None, as_json: bool, charts: bool | None, quiet: bool) -> int | None:
    """Watch the active canary; any violation rolls it back (verified) and exits 2.

    \b
    Exit: 0 completed with no violation; 2 violation (rolled back), no canary, or an error;
          3 stopped by SIGTERM/SIGINT before the end (the canary stays active, UNMONITORED).
    Telemetry loss is a violation: no trade.intent for 10 min, or Redis errors on 3 checks in a
    row or 5 in all. A restarted monitor resumes the same window (data/qsc_monitor_state.json).
    Report: reports/safety/qsc_monitor_final_<UTC ts>.md (+ .json)

    \b
    Examples:
      qtsafe monitor                               # 6 h, every 30 s, from the canary's activation
      qtsafe monitor --duration 2h --interval 10s
      qtsafe monitor watchdog                      # run by quantum-qsc-watchdog.timer
      qtsafe monitor replay 1768024065847-0 1768045665847-0 --model patchtst
    """
    if ctx.invoked_subcommand is not None:
        _refuse_options_before(ctx)
        return None
    from qtsafe import monitor as mon
    from qtsafe.telemetry import open_source
    from qtsafe.timeutil import parse_duration

    # Through the settings, so a shortened watch or a longer interval shows as loosened everywhere.
    settings = load(ctx, {**read_overrides(base_dir, redis_url, stream), "charts": charts,
                          "monitor.duration": parse_duration(duration) if duration else None,
                          "monitor.interval": parse_duration(interval) if interval else None})
    if watchdog:
        return _watchdog(settings, as_json)
    if replay:
        if not model:
            raise click.BadParameter("--replay needs --model (the model to treat as the canary)", param_hint="--model")
        return _replay(settings, events_file, replay[0], replay[1], model, as_json)
    clock = mon.SystemClock()
    stop: dict[str, str] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        stop.setdefault("reason", f"received {signal.Signals(signum).name}")
        clock.wake.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        result = mon.run_monitor(
            settings, open_source(settings), clock=clock,
            stop_requested=lambda: stop.get("reason"),
            # --quiet: no line per check (a service's journal keeps only the start and the outcome).
            emit=(lambda line: None) if as_json or quiet else (lambda line: click.echo(line)),
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return finish(result, as_json, lambda: "\n".join(
        [result.summary] + ([f"  report: {result.report_path}"] if result.report_path else [])))


def _refuse_options_before(ctx: click.Context) -> None:
    """Options typed before a subcommand belong to the watch and never reach the subcommand: a
    ``qtsafe monitor --base-dir X watchdog`` must not quietly watch the current directory instead of X."""
    from click.core import ParameterSource

    for param in ctx.command.params:
        if param.name and ctx.get_parameter_source(param.name) is ParameterSource.COMMANDLINE:
            raise click.UsageError(
                f"{param.opts[0]} cannot come before '{ctx.invoked_subcommand}': options there belong to the watch "
                f"itself; write 'qtsafe monitor {ctx.invoked_subcommand} [OPTIONS]'", ctx=ctx)


def _watchdog(settings: Settings, as_json: bool) -> int:
    from qtsafe import monitor as mon

    result = mon.run_watchdog(settings)
    return finish(result, as_json, lambda: result.summary)


def _replay(settings: Settings, events_file: str | None, from_id: str, to_id: str, model: str, as_json: bool) -> int:
    from qtsafe import monitor as mon
    from qtsafe.telemetry import open_source

    result = mon.run_replay(settings, open_source(settings, events_file), from_id, to_id, model=model)
    return finish(result, as_json, lambda: "\n".join([result.summary] + [
        f"  check {f['check']} at {f['at']}: " + "; ".join(f["violations"]) for f in result.firings[:20]]))


@monitor.command("watchdog")
@shared_options
@click.pass_context
def watchdog_command(ctx: click.Context, redis_url: str | None, stream: str | None, base_dir: str | None,
                     as_json: bool) -> int:
    """Roll back an active canary whose monitor heartbeat is stale.

    Run every minute by quantum-qsc-watchdog.timer: the monitor dying fails closed.

    \b
    Exit: 0 no active canary, or its monitor is alive; 2 the monitor is dead (canary rolled back,
          or the rollback failed), or an error; 3 wait: a fresh canary still in its grace period,
          a canary half-applied for less than the heartbeat limit, or a clean watch awaiting promote.
    A canary left half-applied or half-rolled-back by a dead process is repaired by a rollback.
    Old spelling, still accepted: qtsafe monitor --watchdog

    \b
    Example:
      qtsafe monitor watchdog                      # run by quantum-qsc-watchdog.timer
    """
    return _watchdog(load(ctx, read_overrides(base_dir, redis_url, stream)), as_json)


@monitor.command("replay")
@click.argument("from_id", metavar="FROM_ID")
@click.argument("to_id", metavar="TO_ID")
@click.option("--model", required=True, help="The model to treat as the canary.")
@click.option("--interval", metavar="DURATION", help="Stream time between replayed checks (default 30s).")
@click.option("--events", "events_file", type=click.Path(dir_okay=False), help="Read a JSONL export instead of Redis.")
@shared_options
@click.pass_context
def replay_command(ctx: click.Context, from_id: str, to_id: str, model: str, interval: str | None,
                   events_file: str | None, redis_url: str | None, stream: str | None, base_dir: str | None,
                   as_json: bool) -> int:
    """Replay recorded telemetry through the monitor's rules.

    At full speed, in checks of stream time; changes nothing; says when the rules would have fired.

    \b
    Exit: 0 no rule would have fired; 2 a rule would have fired, or an error;
          3 no entries in the range, or too few valid votes of the model to call it clean.
    Old spelling, still accepted: qtsafe monitor --replay FROM_ID TO_ID --model M

    \b
    Examples:
      qtsafe monitor replay 1768024065847-0 1768045665847-0 --model patchtst
      qtsafe monitor replay 1768024065847-0 1768045665847-0 --model patchtst --events /tmp/window.jsonl
    """
    from qtsafe.timeutil import parse_duration

    settings = load(ctx, {**read_overrides(base_dir, redis_url, stream),
                          "monitor.interval": parse_duration(interval) if interval else None})
    return _replay(settings, events_file, from_id, to_id, model, as_json)
