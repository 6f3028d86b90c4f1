"""``qtsafe incident-bundle``."""

from __future__ import annotations

from pathlib import Path

import click

from qtsafe.cli.options import base_dir_option, finish, json_option, load, read_overrides, redis_options


@click.command("incident-bundle")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Directory for the bundle (default: reports/safety under the base directory).")
@redis_options
@base_dir_option
@json_option
@click.pass_context
def incident_bundle(ctx: click.Context, out_dir: str | None, redis_url: str | None, stream: str | None,
                    base_dir: str | None, as_json: bool) -> int:
    """Pack the journal, reports, state, the canary's telemetry and unit logs into one tar.gz.

    \b
    Named qtsafe_incident_<UTC ts>.tar.gz; MANIFEST.json inside lists every file's SHA-256
    and anything that could not be collected, with the reason. The engine env file is not
    included (it may hold API keys).
    Exit: 0 complete, 3 written but partial (see "missing"), 2 could not be written.

    \b
    Examples:
      qtsafe incident-bundle
      qtsafe incident-bundle --out /tmp --json
    """
    from qtsafe.incident import build_incident_bundle, render_incident_text

    settings = load(ctx, read_overrides(base_dir, redis_url, stream))
    result = build_incident_bundle(settings, out_dir=Path(out_dir) if out_dir else None)
    return finish(result, as_json, lambda: render_incident_text(result))
