"""``qtsafe quality-gate``."""

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


@click.command("quality-gate")
@click.option("--mode", type=click.Choice(["collection", "canary"]), required=True,
              help="collection: >=100 events per model, never promotes (exit 3). canary: >=200, exit 0 when all pass.")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Judge only this model (repeatable). Default: every model seen.")
@click.option("--baseline-window", is_flag=True,
              help="Also show the same statistics for the same number of entries just before the cutover.")
@read_command_options
@charts_option
@prices_option
@click.pass_context
def quality_gate(ctx: click.Context, mode: str, models: tuple[str, ...], baseline_window: bool, after: str | None,
                 until: str | None, last: int | None, events_file: str | None, redis_url: str | None,
                 stream: str | None, base_dir: str | None, quiet: bool, as_json: bool, charts: bool | None,
                 prices: str | None) -> int:
    """Judge every model's output after a cutover; write the report.

    \b
    Exit: 0 PASS (canary mode only), 3 COLLECTED (collection mode, all green),
          2 FAIL (a blocker, too few events, unreadable telemetry).
    Report: reports/safety/quality_gate_<UTC ts>[_collection]_post_cutover.md (+ .json)

    \b
    Examples:
      qtsafe quality-gate --mode collection --after 2026-01-10T05:40:00Z
      qtsafe quality-gate --mode canary --after auto --model patchtst
      qtsafe quality-gate --mode canary --after 2026-01-10T05:40:00Z --events export.jsonl --json
    """
    from qtsafe.gate import render_gate_text, run_quality_gate

    settings = load(ctx, {**read_overrides(base_dir, redis_url, stream), "charts": charts})
    source, window = source_and_window(settings, events_file, after, until, last, require_after=True)
    result = run_quality_gate(settings, source, window, mode=mode, models=models or None,
                              baseline_window=baseline_window, progress=progress_for(quiet or as_json),
                              prices=prices)
    return finish(result, as_json, lambda: render_gate_text(result))
