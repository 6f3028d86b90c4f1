"""``qtsafe feature-sanity``."""

from __future__ import annotations

import click

from qtsafe.cli.options import finish, load, progress_for, read_command_options, read_overrides, source_and_window


@click.command("feature-sanity")
@read_command_options
@click.pass_context
def feature_sanity(ctx: click.Context, after: str | None, until: str | None, last: int | None,
                   events_file: str | None, redis_url: str | None, stream: str | None, base_dir: str | None,
                   quiet: bool, as_json: bool) -> int:
    """Check the model inputs are alive: NaN/Inf, invalid, missing and flatlined features.

    \b
    Needs >= 50 trade.intent events. Judges the numeric payload fields and any
    `features` object; fields declared expected-constant in the config are listed, not judged.
    Exit: 0 PASS, 2 FAIL.  Report: reports/safety/feature_sanity_<UTC ts>.md (+ .json)

    \b
    Examples:
      qtsafe feature-sanity --after 2026-01-10T05:40:00Z
      qtsafe feature-sanity --after auto --last 200 --json
    """
    from qtsafe.sanity import render_sanity_text, run_feature_sanity

    settings = load(ctx, read_overrides(base_dir, redis_url, stream))
    source, window = source_and_window(settings, events_file, after, until, last, require_after=False)
    result = run_feature_sanity(settings, source, window, progress=progress_for(quiet or as_json))
    return finish(result, as_json, lambda: render_sanity_text(result))
