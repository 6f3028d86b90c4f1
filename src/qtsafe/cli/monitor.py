"""``qtsafe monitor``: the canary watch, its watchdog, and replays of recorded telemetry."""

from __future__ import annotations

import signal
from typing import Any

import click

from qtsafe.cli.options import base_dir_option, finish, json_option, load, read_overrides, redis_options


@click.command("monitor")
@click.option("--duration", metavar="DURATION", help="How long to watch, counted from activation (default 6h).")
@click.option("--interval", metavar="DURATION", help="Time between checks (default 30s).")
@click.option("--watchdog", is_flag=True,
              help="Do not monitor: roll back an active canary whose monitor heartbeat is stale (systemd timer).")
@click.option("--replay", nargs=2, metavar="FROM_ID TO_ID",
              help="Run the rules over recorded telemetry at full speed; change nothing; say when they would fire.")
@click.option("--model", help="With --replay: the model to treat as the canary.")
@click.option("--events", "events_file", type=click.Path(dir_okay=False),
              help="With --replay: read a JSONL export instead of Redis.")
@redis_options
@base_dir_option
@json_option
@click.pass_context
def monitor(ctx: click.Context, duration: str | None, interval: str | None, watchdog: bool,
            replay: tuple[str, str] | None, model: str | None, events_file: str | None, redis_url: str | None,
            stream: str | None, base_dir: str | None, as_json: bool) -> int:
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
      qtsafe monitor --watchdog                    # run by quantum-qsc-watchdog.timer
      qtsafe monitor --replay 1768024065847-0 1768045665847-0 --model patchtst
    """
    from qtsafe import monitor as mon
    from qtsafe.telemetry import open_source
    from qtsafe.timeutil import parse_duration

    # Through the settings, so a shortened watch or a longer interval shows as loosened everywhere.
    settings = load(ctx, {**read_overrides(base_dir, redis_url, stream),
                          "monitor.duration": parse_duration(duration) if duration else None,
                          "monitor.interval": parse_duration(interval) if interval else None})
    if watchdog:
        result: Any = mon.run_watchdog(settings)
        return finish(result, as_json, lambda: result.summary)
    if replay:
        if not model:
            raise click.BadParameter("--replay needs --model (the model to treat as the canary)", param_hint="--model")
        result = mon.run_replay(settings, open_source(settings, events_file), replay[0], replay[1], model=model)
        return finish(result, as_json, lambda: "\n".join([result.summary] + [
            f"  check {f['check']} at {f['at']}: " + "; ".join(f["violations"]) for f in result.firings[:20]]))
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
            emit=(lambda line: None) if as_json else (lambda line: click.echo(line)),
        )
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return finish(result, as_json, lambda: "\n".join(
        [result.summary] + ([f"  report: {result.report_path}"] if result.report_path else [])))
