"""``qtsafe export``."""

from __future__ import annotations

from pathlib import Path

import click

from qtsafe.cli.options import (
    after_option,
    finish,
    json_option,
    last_option,
    load,
    progress_for,
    quiet_option,
    read_overrides,
    redis_options,
    source_and_window,
    until_option,
)


@click.command("export")
@after_option("Default: the oldest retained entry.")
@until_option
@last_option()
@click.option("--out", type=click.Path(dir_okay=False), required=True, help="JSONL file to write.")
@redis_options
@quiet_option
@json_option
@click.pass_context
def export(ctx: click.Context, after: str | None, until: str | None, last: int | None, out: str,
           redis_url: str | None, stream: str | None, quiet: bool, as_json: bool) -> int:
    """Write a window of the stream to a JSONL export (replayable with --events).

    \b
    Exit: 0 written, 2 nothing in the window or Redis unreadable.

    \b
    Examples:
      qtsafe export --after 2026-01-10T05:40:00Z --out cutover.jsonl
      qtsafe quality-gate --mode canary --after 2026-01-10T05:40:00Z --events cutover.jsonl
    """
    from qtsafe.export import export_window

    settings = load(ctx, read_overrides(None, redis_url, stream))
    source, window = source_and_window(settings, None, after, until, last, require_after=False)
    result = export_window(source, window, Path(out), progress=progress_for(quiet or as_json))
    return finish(result, as_json, lambda: result.summary)
