"""``qtsafe simulate``."""

from __future__ import annotations

from pathlib import Path

import click

from qtsafe.cli.options import Duration, UtcTimestamp, finish, json_option, load, read_overrides, redis_options
from qtsafe.scenarios import MARKETS, MODELS, SCENARIOS


@click.command("simulate")
@click.option("--scenario", type=click.Choice(list(SCENARIOS)), default="healthy", show_default=True,
              help="What the models do (see the list below).")
@click.option("--count", type=click.IntRange(min=1), default=1000, show_default=True, help="Entries to write.")
# Kept for scripts written before --count: everywhere else --events names a JSONL file. Hidden; says so on stderr.
@click.option("--events", "events_alias", type=click.IntRange(min=1), hidden=True,
              help="Deprecated alias of --count.")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed (same seed, same telemetry).")
@click.option("--end", "end", type=UtcTimestamp(), metavar="ISO", help="Time of the newest entry (default: now, UTC).")
@click.option("--spacing", type=Duration(), default="1s", show_default=True,
              help="Time between entries (e.g. 1s, 2s, 1m).")
@click.option("--market", type=click.Choice(list(MARKETS)), default="plain", show_default=True,
              help="How the market moves: plain, or regimes every model sees at once (see below).")
@click.option("--onset", type=click.FloatRange(0, 1, max_open=True), metavar="SHARE",
              help="Healthy for this share of the events, then the scenario's defect (e.g. 0.5 = from halfway).")
@click.option("--target", type=click.Choice(list(MODELS)), help="The model the defect hits (default: the scenario's).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write a JSONL export here instead of a Redis stream.")
@click.option("--maxlen", type=click.IntRange(min=1), help="Cap the stream like the producer (XADD MAXLEN ~ N).")
@redis_options
@json_option
@click.pass_context
def simulate(ctx: click.Context, scenario: str, count: int, events_alias: int | None, seed: int, end: str | None,
             spacing: float, market: str, onset: float | None, target: str | None, out: str | None, maxlen: int | None,
             redis_url: str | None, stream: str | None, as_json: bool) -> int:
    """Write producer-shape trade.intent telemetry for a named scenario.

    \b
    Scenarios:
    """
    from qtsafe.simulate import generate, write_jsonl, write_stream
    from qtsafe.telemetry import redis_client
    from qtsafe.timeutil import parse_utc

    if events_alias is not None:
        if ctx.get_parameter_source("count") is click.core.ParameterSource.COMMANDLINE and events_alias != count:
            raise click.BadParameter(f"--events {events_alias} (deprecated alias) contradicts --count {count}",
                                     param_hint="'--events'")
        click.echo("qtsafe: warning: simulate --events N is deprecated; use --count N "
                   "(--events names a JSONL file in every other command)", err=True)
        count = events_alias
    settings = load(ctx, read_overrides(None, redis_url, stream))
    spacing_ms = int(spacing * 1000)
    entries = generate(scenario, count, seed=seed, end=parse_utc(end) if end else None, spacing_ms=spacing_ms,
                       market=market, onset=onset, target=target)
    if out:
        result = write_jsonl(Path(out), entries, scenario)
    else:
        result = write_stream(redis_client(settings), settings.stream, entries, scenario, url=settings.redis_url,
                              maxlen=maxlen)
    return finish(result, as_json, lambda: result.summary)


simulate.help = (simulate.help or "") + "\n".join(f"      {name:<15} {text}" for name, text in SCENARIOS.items()) + (
    "\n\n\b\n    Markets:\n" + "\n".join(f"      {name:<15} {text}" for name, text in MARKETS.items())
) + (
    "\n\n\b\nExamples:\n  qtsafe simulate --scenario healthy --count 1000 --out demo.jsonl\n"
    "  qtsafe simulate --scenario collapsed --count 500 --redis-url redis://127.0.0.1:6379/0\n"
    "  qtsafe simulate --scenario backwards --market regimes --onset 0.5 --spacing 2s --count 10800 --out run.jsonl"
)
