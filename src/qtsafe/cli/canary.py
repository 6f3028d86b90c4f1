"""``qtsafe canary``: activate, rollback, promote, status. Parse, one library call, render, exit code."""

from __future__ import annotations

import shlex
import sys
from typing import TYPE_CHECKING, Any

import click

from qtsafe.cli.options import UtcTimestamp, base_dir_option, finish, json_option, load, redis_options

if TYPE_CHECKING:  # the library loads when a subcommand runs, so `qtsafe canary --help` stays fast
    from qtsafe.canary.activate import ActivationResult
    from qtsafe.canary.promote import PromotionResult
    from qtsafe.canary.rollback import RollbackResult
    from qtsafe.canary.status import StatusResult

unit_option = click.option("--unit", envvar="QTSAFE_UNIT", show_envvar=True,
                           help="systemd unit of the engine (default quantum-ai-engine.service).")


def _weights_table(baseline: dict[str, float] | None, live: dict[str, float] | None, model: str | None,
                   live_label: str = "canary") -> list[str]:
    if not baseline and not live:
        return []
    names = sorted(set(baseline or {}) | set(live or {}))
    lines = [f"  {'model':<12} {'baseline':>9} {live_label:>9}"]
    for name in names:
        mark = "*" if name == model else " "
        base = f"{(baseline or {}).get(name, 0.0):.2%}" if baseline is not None else "-"
        now = f"{(live or {}).get(name, 0.0):.2%}" if live is not None else "-"
        lines.append(f"{mark} {name:<12} {base:>9} {now:>9}")
    return lines


def _render_rollback(result: RollbackResult) -> str:
    lines = [result.summary]
    if result.violations:
        lines.append("Violations:")
        lines += [f"  - {v}" for v in result.violations]
    if result.actions:
        lines.append("Actions:")
        lines += [f"  - {a}" for a in result.actions]
    if result.manual_steps:
        lines.append("Manual steps (run in this order, then check 'qtsafe canary status'):")
        lines += [f"  {step}" for step in result.manual_steps]
    return "\n".join(lines)


def _render_activation(result: ActivationResult) -> str:
    lines = [result.summary]
    for problem in result.problems[1:] if result.status.value == "BLOCKED" else result.problems:
        lines.append(f"  ! {problem}")
    if result.gate_summary:
        lines.append(f"Quality gate: {result.gate_summary}")
    lines += _weights_table(result.baseline_weights, result.canary_weights, result.model)
    if result.dry_run and result.plan:
        # The steps in the order a real run takes them (the plan is the dry run's own log of that run).
        lines.append("Plan (nothing has been changed):")
        for item in result.plan.get("steps", []):
            if "run" in item:
                lines.append(f"  run   {shlex.join(str(arg) for arg in item['run'])}")
                continue
            verb = "write" if "write" in item else "remove"
            lines.append(f"  {verb:<5} {item['path']}  ({item['purpose']})")
            if item.get("content"):
                lines += [f"    | {line}" for line in str(item["content"]).splitlines()]
            if item.get("old_line") is not None:
                lines.append(f"    - {item['old_line']}")
                lines.append(f"    + {item['new_line']}")
        lines.append(f"  on failure: {result.plan.get('on_failure')}")
    if result.verification.get("git_hash"):
        lines.append(f"Engine git hash: {result.verification['git_hash']}")
    if result.backups:
        lines.append("Backups:")
        lines += [f"  {b['path']}  sha256 {b['sha256']}" for b in result.backups]
    if result.rollback is not None:
        lines.append(_render_rollback(result.rollback))
    if result.rollback_command and result.status.value in ("PASS",):
        lines.append("Rollback command:")
        lines.append(f"  {result.rollback_command}")
    return "\n".join(lines)


@click.group()
def canary() -> None:
    """Canary lifecycle: activate, roll back, promote, status (journaled, reversible).

    \b
    Examples:
      qtsafe canary activate --model patchtst --after auto --dry-run
      qtsafe canary status
      qtsafe canary rollback --reason "manual stop" --yes
    """


@canary.command()
@click.option("--model", required=True,
              help="Model to give the canary share; it must have telemetry (one absent from the baseline is added).")
@click.option("--share", type=float, default=None, help="Canary share in (0, 0.5] (default 0.10).")
@click.option("--env-key", default=None, help="Older mode: edit this one KEY= line of the env file instead.")
@click.option("--value", "env_value", default=None, help="Value for --env-key.")
@click.option("--after", "--cutover", "after", type=UtcTimestamp(allow_auto=True), metavar="ISO|auto",
              default="auto", show_default=True,
              help="Cutover for the quality gate: ISO 8601 UTC, or 'auto' for the unit's last start.")
@click.option("--events", "events_file", type=click.Path(dir_okay=False),
              help="Read telemetry from a JSONL export instead of Redis (its newest entry must be fresh).")
@click.option("--dry-run", is_flag=True, help="Run the preflight and print the full plan; change nothing.")
@unit_option
@redis_options
@base_dir_option
@json_option
@click.pass_context
def activate(ctx: click.Context, model: str, share: float | None, env_key: str | None, env_value: str | None,
             after: str | None, events_file: str | None, dry_run: bool, unit: str | None, redis_url: str | None,
             stream: str | None, base_dir: str | None, as_json: bool) -> int:
    """Re-run the gate, back up, give MODEL its canary share, verify; roll back by itself on failure.

    \b
    Exit: 0 verified activation (or a clean dry run), 2 refused or failed (nothing left changed).
    \b
    Examples:
      qtsafe canary activate --model patchtst --after 2026-01-10T05:43:15Z
      qtsafe canary activate --model patchtst --share 0.10 --dry-run
      qtsafe canary activate --model patchtst --env-key PATCHTST_SHADOW_ONLY --value false
    """
    settings = load(ctx, {"unit": unit, "redis_url": redis_url, "stream": stream, "base_dir": base_dir})
    open_source = None
    if events_file:
        def open_source(s: Any) -> Any:
            from qtsafe.telemetry import open_source as opener

            return opener(s, events_file)
    from qtsafe.canary.activate import activate as activate_canary

    result = activate_canary(settings, model=model, share=share, env_key=env_key, env_value=env_value,
                             after=after, dry_run=dry_run, open_source=open_source)
    return finish(result, as_json, lambda: _render_activation(result))


def _confirm(yes: bool) -> Any:
    if yes:
        return None
    if not sys.stdin.isatty():
        raise click.UsageError("not a terminal: pass --yes to roll back without a prompt")

    def ask(plan: str) -> bool:
        click.echo(plan, err=True)
        return click.confirm("Proceed with the rollback?", default=False, err=True)

    return ask


@canary.command()
@click.option("--reason", default="", help="Why (recorded in the journal).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (scripts and the monitor).")
@click.option("--last-activation", "last_activation", is_flag=True,
              help="Restore the env file from its newest backup not restored yet, undoing the last activation "
              "(repeat to walk back; old name: --last).")
@click.option("--last", "last_alias", is_flag=True, hidden=True,
              help="Old name of --last-activation, kept for existing scripts; it does the same.")
@click.option("--trigger", default="manual", show_default=True, help="Trigger recorded in the journal.")
@click.option("--violation", "violations", multiple=True, help="A violation to record (repeatable).")
@unit_option
@base_dir_option
@json_option
@click.pass_context
def rollback(ctx: click.Context, reason: str, yes: bool, last_activation: bool, last_alias: bool, trigger: str,
             violations: tuple[str, ...], unit: str | None, base_dir: str | None, as_json: bool) -> int:
    """Restore the baseline and verify it; with nothing to roll back, say so (exit 0).

    \b
    Exit: 0 verified rollback or nothing to do, 2 refused or failed (manual steps printed).
    \b
    Examples:
      qtsafe canary rollback --reason "confidence collapse" --yes
      qtsafe canary rollback --last-activation --yes
    """
    settings = load(ctx, {"unit": unit, "base_dir": base_dir})
    confirm = _confirm(yes)
    if last_activation or last_alias:
        from qtsafe.canary.rollback_last import rollback_last

        result = rollback_last(settings, reason=reason, confirm=confirm)
    else:
        from qtsafe.canary.rollback import rollback as rollback_canary

        result = rollback_canary(settings, trigger=trigger, violations=list(violations), reason=reason,
                                 confirm=confirm)
    return finish(result, as_json, lambda: _render_rollback(result))


def _render_promotion(result: PromotionResult) -> str:
    lines = [result.summary]
    lines += [f"  ! {p}" for p in result.problems[1:]]
    if result.outcomes:
        o = result.outcomes
        lines.append(f"Outcomes (horizon {o['horizon_seconds']:g} s, prices from {o['prices']}):")
        for name, m in sorted(o["models"].items()):
            rate = "n/a" if m["hit_rate"] is None else f"{m['hit_rate']:.1%} [{m['hit_low']:.1%}, {m['hit_high']:.1%}]"
            lines.append(f"  {name:<12} hit rate {rate} on {m['scored']} resolved, {m['pending']} pending")
    if result.weights:
        lines += _weights_table(None, result.weights, result.model, live_label="weights")
    if result.rollback is not None:
        lines.append(_render_rollback(result.rollback))
    return "\n".join(lines)


@canary.command()
@click.option("--to", "to", type=click.Choice(["0.25", "0.5", "1.0"]), required=True, help="Next stage.")
@click.option("--reason", required=True, help="Why (recorded in the journal).")
@click.option("--events", "events_file", type=click.Path(dir_okay=False),
              help="To 0.5/1.0: read the telemetry since activation from a JSONL export instead of Redis.")
@click.option("--prices", default=None, metavar="sqlite:PATH|csv:DIR|parquet:DIR",
              help="To 0.5/1.0: judge directions by this market data (as build-dataset reads; needs the dataset "
              "extra) instead of the stream's own later entry_price.")
@unit_option
@redis_options
@base_dir_option
@json_option
@click.pass_context
def promote(ctx: click.Context, to: str, reason: str, events_file: str | None, prices: str | None,
            unit: str | None, redis_url: str | None, stream: str | None, base_dir: str | None,
            as_json: bool) -> int:
    """Raise the canary to the next stage after a clean monitor; at 1.0 it becomes the baseline.

    To 0.25 a clean, full-length monitor of the current stage is enough. To 0.5 and 1.0 the canary must
    also be no worse than the baseline ensemble's direction (the other voting models' consensus) by more
    than [outcomes] margin at [outcomes] confidence, judged on the same events since activation over the
    [outcomes] horizon.

    \b
    Exit: 0 verified promotion, 2 refused (no clean monitor, or the canary's outcomes are worse) or failed
    (rolled back), 3 WAIT: too few resolved outcomes yet (the output says how many more).
    \b
    Examples:
      qtsafe canary promote --to 0.25 --reason "6 h monitor clean"
      qtsafe canary promote --to 0.5 --reason "clean watch at 25 %" --prices sqlite:/opt/quantum/market.db
    """
    settings = load(ctx, {"unit": unit, "redis_url": redis_url, "stream": stream, "base_dir": base_dir})
    open_source = None
    if events_file:
        def open_source(s: Any) -> Any:
            from qtsafe.telemetry import open_source as opener

            return opener(s, events_file)
    from qtsafe.canary.promote import promote as promote_canary

    result = promote_canary(settings, to=float(to), reason=reason, open_source=open_source, prices=prices)
    return finish(result, as_json, lambda: _render_promotion(result))


def _render_status(result: StatusResult) -> str:
    lines = [result.summary, f"Unit: {result.unit} ({result.unit_state or 'unknown'})"]
    if result.canary:
        c = result.canary
        lines.append(f"Canary: {c.get('canary_id')} mode {c.get('mode')} phase {result.phase} "
                     f"since {c.get('activated_at') or c.get('started_at')}")
    lines += _weights_table(result.baseline_weights, result.live_weights,
                            (result.canary or {}).get("model"), live_label="live")
    if result.heartbeat is not None:
        lines.append(f"Monitor heartbeat: {result.heartbeat.get('timestamp')} ({result.heartbeat_age_seconds}s ago)")
    lines += [f"  ! {p}" for p in result.problems]
    if result.repair:
        lines.append(f"Next: {result.repair}")
    if result.journal_tail:
        lines.append("Last journal records:")
        lines += [f"  {r.get('timestamp')} {r.get('action')} {r.get('canary_model') or ''}".rstrip()
                  for r in result.journal_tail]
    return "\n".join(lines)


@canary.command()
@unit_option
@base_dir_option
@json_option
@click.pass_context
def status(ctx: click.Context, unit: str | None, base_dir: str | None, as_json: bool) -> int:
    """What is active, since when, weights, monitor heartbeat, last journal records.

    \b
    Exit: 0 no canary or a monitored healthy one, 3 active but unmonitored (or awaiting promotion),
    2 inconsistent (the output says how to repair it).
    \b
    Example:
      qtsafe canary status --json
    """
    settings = load(ctx, {"unit": unit, "base_dir": base_dir})
    from qtsafe.canary.status import canary_status

    result = canary_status(settings)
    return finish(result, as_json, lambda: _render_status(result))
