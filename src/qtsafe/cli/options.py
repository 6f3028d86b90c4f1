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


class UtcTimestamp(click.ParamType):
    """An ISO 8601 time (``Z``, an offset, or naive = UTC), checked when the option is parsed.

    The value stays the text the operator typed: the library resolves it (and ``auto``) through the one
    parser, :func:`qtsafe.timeutil.parse_utc`; this only makes a bad value a usage error naming the option.
    An empty value passes, as before: the library treats it as not given.
    """

    name = "timestamp"

    def __init__(self, *, allow_auto: bool = False) -> None:
        self.allow_auto = allow_auto

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = str(value)
        if not text.strip() or (self.allow_auto and text.strip().lower() == "auto"):
            return text
        from qtsafe.errors import InputError
        from qtsafe.timeutil import parse_utc

        try:
            parse_utc(text)
        except InputError as exc:
            self.fail(str(exc), param, ctx)
        return text


class Duration(click.ParamType):
    """A duration (``90``, ``30s``, ``10m``, ``6h``, ``1d``) converted to seconds when the option is parsed."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        from qtsafe.errors import InputError
        from qtsafe.timeutil import parse_duration

        try:
            return parse_duration(str(value))
        except InputError as exc:
            self.fail(str(exc), param, ctx)


class SettingOption(click.Option):
    """An option that sets one setting: ``--help`` shows the effective default (qtsafe.toml / ``QTSAFE_*`` /
    built-in) and the environment variable, while the value stays ``None`` unless given, so the settings'
    precedence (defaults < config file < environment < flags) is applied in one place, :func:`load`."""

    def __init__(self, *args: Any, setting: str, **kwargs: Any) -> None:
        kwargs.setdefault("show_envvar", True)
        super().__init__(*args, **kwargs)
        self.setting = setting

    def get_help_extra(self, ctx: click.Context) -> Any:
        extra = super().get_help_extra(ctx)
        shown = effective_default(ctx, self.setting)
        if shown:
            extra["default"] = shown
        return extra


def effective_default(ctx: click.Context, setting: str) -> str:
    """The value ``setting`` has when its flag is not given, as --help shows it (a Redis password masked)."""
    settings = help_settings(ctx)
    value: Any = settings
    for part in setting.split("."):
        value = getattr(value, part)
    text = str(value)
    if "@" in text and "://" in text:
        from qtsafe.telemetry.sources import mask_url

        text = mask_url(text)
    return text


def help_settings(ctx: click.Context) -> Settings:
    """The settings --help describes: the config file and ``QTSAFE_*`` as a run would load them.

    A config file that does not load shows the built-in defaults here; the command itself refuses it.
    """
    root = ctx.find_root()
    cached = root.meta.get("qtsafe.help_settings")
    if cached is None:
        from qtsafe.errors import QtsafeError

        try:
            cached = load_settings((root.obj or {}).get("config_path"))
        except QtsafeError:
            cached = Settings()
        root.meta["qtsafe.help_settings"] = cached
    return cached


json_option = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")

quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")

prices_option = click.option(
    "--prices", metavar="SOURCE",
    help="Score each model's directions against market data (sqlite:PATH, csv:DIR, parquet:DIR, as build-dataset "
         "reads; the dataset extra) instead of the stream's own later entry_price. Informational in reports.",
)

charts_option = click.option(
    "--charts/--no-charts", default=None,
    help="Draw a PNG chart beside the report (default: the `charts` setting, on; QTSAFE_CHARTS). A chart is "
         "never evidence: if it cannot be drawn the report says so and the verdict stands.",
)

base_dir_option = click.option(
    "--base-dir", cls=SettingOption, setting="base_dir", type=click.Path(file_okay=False), envvar="QTSAFE_BASE_DIR",
    help="Base directory for reports/, data/ and logs/.",
)

redis_options = _stack(
    click.option("--redis-url", cls=SettingOption, setting="redis_url", envvar="QTSAFE_REDIS_URL",
                 help="Redis URL."),
    click.option("--stream", cls=SettingOption, setting="stream", envvar="QTSAFE_STREAM", help="Stream key."),
)

AFTER_HELP = "Cutover: ISO 8601 (Z, +00:00 or naive = UTC), or 'auto' for the unit's last start."


def after_option(extra_help: str = "", **kwargs: Any) -> Callable[[F], F]:
    """``--after``: the same parser and the same ``auto`` in every command; ``extra_help`` adds its default."""
    return click.option("--after", type=UtcTimestamp(allow_auto=True), metavar="ISO|auto",
                        help=f"{AFTER_HELP} {extra_help}".strip(), **kwargs)


until_option = click.option("--until", type=UtcTimestamp(), metavar="ISO",
                            help="Read entries up to this time (default: now).")


def last_option(what: str = "stream entries in the window") -> Callable[[F], F]:
    """``--last N``: the newest N entries, everywhere."""
    return click.option("--last", type=click.IntRange(min=1), metavar="N", help=f"Only the newest N {what}.")


events_file_option = click.option("--events", "events_file", type=click.Path(dir_okay=False), metavar="FILE",
                                  help="Read a JSONL export (the samples' format) instead of Redis.")

window_options = _stack(after_option(), until_option, last_option(), events_file_option)


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
