"""``qtsafe journal``: verify the hash chain of logs/qsc_canary.jsonl and list its records."""

from __future__ import annotations

import click

from qtsafe.canary import journal as journal_lib
from qtsafe.canary.journal_text import render_show_text, render_verify_text
from qtsafe.cli.options import base_dir_option, finish, json_option, last_option, load


@click.group()
def journal() -> None:
    """The canary audit journal (logs/qsc_canary.jsonl): verify, show, repair.

    \b
    Examples:
      qtsafe journal verify
      qtsafe journal show --action rollback_executed --last 5
      qtsafe journal repair
    """


@journal.command()
@base_dir_option
@json_option
@click.pass_context
def verify(ctx: click.Context, base_dir: str | None, as_json: bool) -> int:
    """Check every record's hash and its link to the one before (exit 0 intact, 2 broken).

    \b
    Example:
      qtsafe journal verify --base-dir /home/qt/quantum_trader
    """
    settings = load(ctx, {"base_dir": base_dir})
    result = journal_lib.verify_journal(settings)
    return finish(result, as_json, lambda: render_verify_text(result))


@journal.command()
@click.option("--action", default=None, help="Only records with this action (e.g. canary_activated).")
@last_option("records")
@base_dir_option
@json_option
@click.pass_context
def show(ctx: click.Context, action: str | None, last: int | None, base_dir: str | None, as_json: bool) -> int:
    """List journal records, oldest first (one JSON object a line after the summary).

    \b
    Example:
      qtsafe journal show --action canary_activated
    """
    settings = load(ctx, {"base_dir": base_dir})
    result = journal_lib.show_journal(settings, action=action, last=last)
    return finish(result, as_json, lambda: render_show_text(result))


@journal.command()
@base_dir_option
@json_option
@click.pass_context
def repair(ctx: click.Context, base_dir: str | None, as_json: bool) -> int:
    """Cut a torn last line left by a crash mid-append, keep it aside, and journal the repair.

    \b
    Exit: 0 repaired (or nothing to repair), 2 the journal still does not verify.
    Only an incomplete last line is cut; anything else wrong is left for a person.

    \b
    Example:
      qtsafe journal repair --base-dir /home/qt/quantum_trader
    """
    settings = load(ctx, {"base_dir": base_dir})
    result = journal_lib.repair_journal(settings)
    return finish(result, as_json, lambda: result.summary)
