"""Shared options as named decorators, and the one path from a result to output and an exit code."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import click

from qtsafe.config import Settings, load_settings
from qtsafe.status import Status, exit_code_for
from qtsafe.textsafe import visible_lines

F = TypeVar("F", bound=Callable[..., Any])


class Result(Protocol):
    @property
    def status(self) -> Status: ...

    def to_dict(self) -> dict[str, Any]: ...


def _stack(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    def apply(func: F) -> F:
        for decorator in reversed(decorators):
            func = decorator(func)
        return func

    return apply


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")

quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")

base_dir_option = click.option(
    "--base-dir", type=click.Path(file_okay=False), envvar="QTSAFE_BASE_DIR", show_envvar=True,
    help="Base directory for reports/, data/ and logs/ (default: current directory).",
)

redis_options = _stack(
    click.option("--redis-url", envvar="QTSAFE_REDIS_URL", show_envvar=True,
                 help="Redis URL (default redis://127.0.0.1:6379/0)."),
    click.option("--stream", envvar="QTSAFE_STREAM", show_envvar=True,
                 help="Stream key (default quantum:stream:trade.intent)."),
)

window_options = _stack(
    click.option("--after", metavar="ISO|auto",
                 help="Cutover: ISO 8601 (Z, +00:00 or naive = UTC), or 'auto' for the unit's last start."),
    click.option("--until", metavar="ISO", help="Read entries up to this time (default: now)."),
    click.option("--last", type=click.IntRange(min=1), metavar="N",
                 help="Only the newest N stream entries in the window."),
    click.option("--events", "events_file", type=click.Path(dir_okay=False),
                 help="Read a JSONL export (the samples' format) instead of Redis."),
)


def read_command_options(func: F) -> F:
    """The options every read-only telemetry command takes: window, Redis, base dir, --quiet, --json."""
    return _stack(window_options, redis_options, base_dir_option, quiet_option, json_option)(func)


def load(ctx: click.Context, overrides: Mapping[str, Any]) -> Settings:
    """Settings for this command: defaults < config file < QTSAFE_* < the flags given."""
    obj = ctx.find_root().obj or {}
    return load_settings(obj.get("config_path"), overrides)


# Flags that turn a command into a different job, with a schedule of its own: its own metrics series, so
# the every-minute watchdog never overwrites the 6-hour monitor's gauges (nor a replay the live watch's).
MODE_FLAGS: dict[str, tuple[str, ...]] = {"monitor": ("watchdog", "replay")}


def parse_rest(ctx: click.Context) -> list[str]:
    """The arguments a group left for its subcommand after parsing its own options."""
    protected = getattr(ctx, "_protected_args", None)  # Click >= 8.2 (protected_args is deprecated there)
    if protected is None:
        protected = ctx.protected_args
    return [*protected, *ctx.args]


def series_name(ctx: click.Context) -> str:
    """The command's metrics series: its full path below the root (``journal verify``), plus a mode flag."""
    names = []
    node: click.Context | None = ctx
    while node is not None and node.parent is not None:
        names.append(node.info_name or "")
        node = node.parent
    path = " ".join(reversed(names)) or "qtsafe"
    modes = [flag for flag in MODE_FLAGS.get(path, ()) if ctx.params.get(flag)]
    return " ".join([path, *modes[:1]])


def written_reports(result: Result) -> tuple[Path, Path] | None:
    """The (Markdown, JSON) report pair a result says it wrote: telemetry commands and the monitor name them
    report_path/json_path, the offline model gate report_md/report_json."""
    for md_attr, json_attr in (("report_path", "json_path"), ("report_md", "report_json")):
        md, js = getattr(result, md_attr, None), getattr(result, json_attr, None)
        if md and js:
            return Path(md), Path(js)
    return None


def finish(result: Result, as_json: bool, render_text: Callable[[], str]) -> int:
    """Update --metrics-file, print the result (JSON, or the human summary), return the contract exit code.

    Nothing is printed before the metrics are written: a run that fails there exits 2 without a PASS
    line, and the report it wrote is rewritten to say ERROR (the group's error path, via RUN).
    """
    from qtsafe.cli import RUN

    ctx = click.get_current_context(silent=True)
    RUN["reports"] = written_reports(result)
    metrics_file = RUN.get("metrics_file")
    if metrics_file:
        from qtsafe.errors import QtsafeError
        from qtsafe.metrics import write_metrics

        command = series_name(ctx) if ctx is not None else str(RUN.get("command") or "qtsafe")
        RUN["command"] = command
        try:
            write_metrics(Path(metrics_file), command, result.status, result.to_dict())
        except QtsafeError:
            RUN["metrics_file"] = None  # the error path would fail the same way, with a second line
            raise
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K")  # clear a progress line left on the terminal
    if as_json:
        text = json.dumps(result.to_dict(), indent=2, sort_keys=False, allow_nan=False, default=str)
    else:
        # Names were escaped by the renderer; this keeps anything it missed from hiding or rewriting lines.
        text = visible_lines(render_text())
    click.echo(text)
    RUN["finished"] = True
    return exit_code_for(result.status)


def progress_for(quiet: bool) -> Callable[[int, int | None], None] | None:
    """Progress on long reads: one rewritten line on a terminal's stderr; nothing when piped or --quiet."""
    import time

    if quiet or not sys.stderr.isatty():
        return None
    started = time.monotonic()
    last = [0.0]

    def report(read: int, total: int | None) -> None:
        now = time.monotonic()
        if now - last[0] < 0.25:
            return
        last[0] = now
        rate = read / max(now - started, 1e-9)
        of = f" / <= {total:,}" if total else ""
        sys.stderr.write(f"\r  read {read:,}{of} entries ({rate:,.0f}/s)   ")
        sys.stderr.flush()

    return report


def source_and_window(
    settings: Settings, events_file: str | None, after: str | None, until: str | None, last: int | None,
    *, require_after: bool,
) -> tuple[Any, Any]:
    """The telemetry source and the resolved window for a read-only command."""
    from qtsafe.telemetry import open_source
    from qtsafe.telemetry.window import resolve_window

    def unit_active_since() -> Any:
        from qtsafe.canary.systemd import Systemd  # asked only for --after auto

        return Systemd(settings).active_since()

    window = resolve_window(after, until, last, auto=unit_active_since,
                            auto_origin=f"auto ({settings.unit} ActiveEnterTimestamp)", require_after=require_after)
    return open_source(settings, events_file), window


def read_overrides(base_dir: str | None, redis_url: str | None, stream: str | None) -> dict[str, Any]:
    return {"base_dir": base_dir, "redis_url": redis_url, "stream": stream}
