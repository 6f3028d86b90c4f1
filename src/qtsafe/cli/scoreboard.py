"""``qtsafe scoreboard``."""

from __future__ import annotations

import click

from qtsafe.cli.options import (
    charts_option,
    finish,
    load,
    prices_option,
    progress_for,
    read_command_options,
    read_overrides,
    source_and_window,
)


@click.command("scoreboard")
@click.option("--model", "models", multiple=True, metavar="NAME", help="Judge only this model (repeatable).")
@read_command_options
@charts_option
@prices_option
@click.pass_context
def scoreboard(ctx: click.Context, models: tuple[str, ...], after: str | None, until: str | None, last: int | None,
               events_file: str | None, redis_url: str | None, stream: str | None, base_dir: str | None,
               quiet: bool, as_json: bool, charts: bool | None,
               prices: str | None) -> int:
    """Per-model and ensemble health at a glance: GO / WAIT / NO-GO.

    \b
    Exit: 0 GO, 3 WAIT (models pass, ensemble agreement or hard disagree out of range),
          2 NO-GO (a model fails its gate checks or there is too little evidence).
    Report: reports/safety/scoreboard_latest.md (+ .json)

    \b
    Examples:
      qtsafe scoreboard --after 2026-01-10T05:40:00Z
      qtsafe scoreboard --last 2000 --json
    """
    from qtsafe.scoreboard import render_scoreboard_text, run_scoreboard

    settings = load(ctx, {**read_overrides(base_dir, redis_url, stream), "charts": charts})
    source, window = source_and_window(settings, events_file, after, until, last, require_after=False)
    result = run_scoreboard(settings, source, window, models=models or None, progress=progress_for(quiet or as_json),
                            prices=prices)
    return finish(result, as_json, lambda: render_scoreboard_text(result))
