"""``qtsafe doctor``."""

from __future__ import annotations

import click

from qtsafe.cli.options import base_dir_option, finish, json_option, load, read_overrides, redis_options


@click.command("doctor")
@redis_options
@base_dir_option
@json_option
@click.pass_context
def doctor(ctx: click.Context, redis_url: str | None, stream: str | None, base_dir: str | None,
           as_json: bool) -> int:
    """Check the environment before the first run and print what to fix.

    \b
    Checks: config, Redis reachable and the stream present, the newest entry's age, the
    engine unit loaded and active, the env file, write access where reports, state, the
    journal and an activation must write, and the journal's hash chain. Changes nothing.
    Exit: 0 all OK, 3 warnings (a person should look), 2 a check fails.

    \b
    Examples:
      qtsafe doctor
      qtsafe doctor --redis-url redis://127.0.0.1:6379/0 --json
    """
    from qtsafe.doctor import render_doctor_text, run_doctor

    settings = load(ctx, read_overrides(base_dir, redis_url, stream))
    result = run_doctor(settings)
    return finish(result, as_json, lambda: render_doctor_text(result))
